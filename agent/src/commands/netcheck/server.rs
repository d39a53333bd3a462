//! The manifest server, one step at a time so a failure says which step failed: its
//! name (DNS), TCP, TLS (who issued the certificate and when it ends), and the fetch
//! itself (HTTP status, ETag, whether the manifest verifies); and the copy this device
//! cached last time (its serial and age).

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use crate::config::{ManifestFormat, RunConfig};
use crate::fetch::x509::{CertSummary, Expiry};
use crate::fetch::{FetchConfig, Fetched, Fetcher, roots};
use crate::human::Human;
use crate::manifest::{self, Envelope, Manifest};

use super::{
    CacheReport, DNS_DEADLINE, FETCH_CONNECT, FETCH_TOTAL, Outcome, ServerReport, TCP_DEADLINE,
    TLS_DEADLINE, TlsReport,
};

/// The host and port of an `http(s)://` URL (user info and path left out).
pub fn server_of(url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = match url.split_once("://")? {
        ("https", rest) => (rest, 443),
        ("http", rest) => (rest, 80),
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((hostport.to_string(), default_port)),
    }
}

/// Name resolution on a helper thread, so a resolver that hangs costs only the deadline.
pub fn check_dns(host: &str, port: u16) -> (Outcome, String, Vec<SocketAddr>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    let _ = std::thread::Builder::new()
        .name("netcheck-dns".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        });
    match rx.recv_timeout(DNS_DEADLINE) {
        Ok(Ok(addrs)) if !addrs.is_empty() => {
            let list = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>();
            (Outcome::Ok, format!("{host}: {}", list.join(", ")), addrs)
        }
        Ok(Ok(_)) => (Outcome::Fail, format!("{host}: no addresses"), Vec::new()),
        Ok(Err(e)) => (Outcome::Fail, format!("{host}: {e}"), Vec::new()),
        Err(_) => (
            Outcome::Fail,
            format!(
                "{host}: no answer within {} ms; check /etc/resolv.conf",
                DNS_DEADLINE.as_millis()
            ),
            Vec::new(),
        ),
    }
}

/// The connection, kept for the TLS step.
pub fn check_tcp(addrs: &[SocketAddr]) -> (Outcome, String, Option<TcpStream>) {
    let Some(first) = addrs.first() else {
        return (Outcome::Fail, "no address to connect to".into(), None);
    };
    let start = Instant::now();
    match TcpStream::connect_timeout(first, TCP_DEADLINE) {
        Ok(stream) => (
            Outcome::Ok,
            format!("{first}: connected in {}", Human(start.elapsed())),
            Some(stream),
        ),
        Err(e) => (
            Outcome::Fail,
            format!("{first}: {e} (firewall, server down, or wrong port)"),
            None,
        ),
    }
}

/// A TLS handshake of our own on the TCP connection, against the same CAs the fetch
/// uses (`--ca-file`, else the system's), to show the certificate the server presents
/// — also, and above all, when it is not trusted.
pub fn check_tls(
    tcp: TcpStream,
    host: &str,
    ca_file: Option<&Path>,
    report: &mut ServerReport,
) -> (Outcome, String) {
    let tls = &mut report.tls;
    let (outcome, detail, found) = match handshake(tcp, host, ca_file) {
        Ok(found) => {
            let (outcome, detail) = describe(&found, now_unix());
            (outcome, detail, found)
        }
        Err(e) => return (Outcome::Fail, e),
    };
    *tls = Some(TlsReport {
        version: found.version.clone(),
        issuer: found.cert.as_ref().map(|c| c.issuer.clone()),
        subject: found.cert.as_ref().map(|c| c.subject.clone()),
        not_after: found.cert.as_ref().map(CertSummary::not_after_rfc3339),
        expires_in_secs: found
            .cert
            .as_ref()
            .map(|c| c.not_after.saturating_sub(now_unix())),
        trusted: found.refused.is_none(),
        error: found.refused.clone(),
    });
    (outcome, detail)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the handshake showed.
#[derive(Debug, Default)]
struct Handshake {
    /// The end-entity certificate, when it could be read.
    cert: Option<CertSummary>,
    /// "TLSv1.3", once agreed.
    version: Option<String>,
    /// Why the certificate (or the handshake) was refused.
    refused: Option<String>,
}

/// The verdict and the line an operator reads.
fn describe(h: &Handshake, now: u64) -> (Outcome, String) {
    let cert = match &h.cert {
        Some(c) => {
            let ends = match c.judge(now) {
                Expiry::Fine(left) => {
                    format!("expires {} (in {})", c.not_after_rfc3339(), days(left))
                }
                Expiry::Soon(left) => format!(
                    "expires {} (in {}): renewal is late",
                    c.not_after_rfc3339(),
                    days(left)
                ),
                Expiry::Expired => format!("EXPIRED {}", c.not_after_rfc3339()),
                Expiry::NotYetValid => format!(
                    "not valid before {} (is this device's clock behind?)",
                    manifest::format_rfc3339(c.not_before)
                ),
            };
            format!("issued by {} to {}, {ends}", c.issuer, c.subject)
        }
        None => "certificate not readable".into(),
    };
    let version = h
        .version
        .as_deref()
        .map_or(String::new(), |v| format!("{v}, "));
    match (&h.refused, h.cert.as_ref().map(|c| c.judge(now))) {
        (Some(why), _) => (
            Outcome::Fail,
            format!(
                "{version}{cert}; refused: {why}; check --ca-file (the CA that issued it), \
                 the URL's host name, and this device's clock"
            ),
        ),
        (None, Some(Expiry::Soon(_))) => (Outcome::Warn, format!("{version}{cert}")),
        (None, _) => (Outcome::Ok, format!("{version}{cert}")),
    }
}

/// Whole days when there are some, else hours.
fn days(secs: u64) -> String {
    match secs / 86_400 {
        0 => format!("{} h", secs / 3600),
        1 => "1 day".into(),
        d => format!("{d} days"),
    }
}

fn handshake(mut tcp: TcpStream, host: &str, ca_file: Option<&Path>) -> Result<Handshake, String> {
    let certs = match ca_file {
        Some(path) => roots::from_file(path),
        None => roots::system(host),
    }
    .map_err(|e| e.to_string())?;
    let mut store = RootCertStore::empty();
    for cert in certs {
        // A CA webpki cannot use is the fetch's problem too; it shows there.
        let _ = store.add(CertificateDer::from(cert.der().to_vec()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| format!("no usable CA: {e}; check --ca-file"))?;
    let recorder = Arc::new(Recorder {
        inner,
        seen: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a name TLS can check: {e}"))?;
    let mut conn =
        ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS setup: {e}"))?;
    let until = Instant::now() + TLS_DEADLINE;
    let mut result = Ok(());
    while conn.is_handshaking() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            result = Err(io::Error::from(io::ErrorKind::TimedOut));
            break;
        }
        let _ = tcp.set_read_timeout(Some(left));
        let _ = tcp.set_write_timeout(Some(left));
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                result = Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let seen = recorder.seen.lock().map(|s| s.clone()).unwrap_or(None);
    let cert = seen.as_deref().and_then(CertSummary::parse);
    let version = conn
        .protocol_version()
        .filter(|_| result.is_ok())
        .map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            other => format!("{other:?}"),
        });
    match result {
        Ok(()) => Ok(Handshake {
            cert,
            version,
            refused: None,
        }),
        // Refused after we saw the certificate: show it with the reason.
        Err(e) if seen.is_some() => Ok(Handshake {
            cert,
            version: None,
            refused: Some(tls_error(&e)),
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(format!(
                "no TLS handshake within {}: is this port TLS (https)?",
                Human(TLS_DEADLINE)
            ))
        }
        Err(e) => Err(format!("TLS handshake failed: {}", tls_error(&e))),
    }
}

fn tls_error(e: &io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

/// webpki's verifier, unchanged, that keeps a copy of the certificate it was shown.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.to_vec());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The copy the agent cached: its serial and age.
pub fn check_cache(
    state_dir: &Path,
    format: ManifestFormat,
    report: &mut Option<CacheReport>,
) -> (Outcome, String, Option<Manifest>) {
    let path = crate::state::cache::path(state_dir);
    let raw = match crate::state::cache::load(state_dir) {
        Ok(Some(raw)) => raw,
        Ok(None) => return (Outcome::Skip, format!("none at {}", path.display()), None),
        Err(e) => return (Outcome::Fail, e.to_string(), None),
    };
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    let age_text = age.map_or("age unknown".to_string(), |d| format!("{} old", Human(d)));
    let mut cache = CacheReport {
        path: path.display().to_string(),
        bytes: raw.len(),
        network: None,
        serial: None,
        age_secs: age.map(|d| d.as_secs()),
    };
    if format == ManifestFormat::Wg {
        *report = Some(cache);
        return (
            Outcome::Ok,
            format!("{} bytes, {age_text}", raw.len()),
            None,
        );
    }
    // The agent verified it before caching; here only its content is read.
    let result = match Envelope::parse(&raw).and_then(|e| e.decode_unverified()) {
        Ok(m) => {
            cache.network = Some(m.network.clone());
            cache.serial = Some(m.serial);
            (
                Outcome::Ok,
                format!("network {:?} serial {}, {age_text}", m.network, m.serial),
                Some(m),
            )
        }
        Err(e) => (Outcome::Fail, format!("{}: {e}", path.display()), None),
    };
    *report = Some(cache);
    result
}

/// The fetch as the agent does it; the server's status and ETag go to `report`.
pub fn check_fetch(
    config: &RunConfig,
    report: &mut Option<ServerReport>,
) -> (Outcome, String, Option<Manifest>) {
    let fetch_config = FetchConfig {
        connect_timeout: FETCH_CONNECT,
        read_timeout: FETCH_TOTAL,
        ..FetchConfig::from_run(config)
    };
    let mut fetcher = match Fetcher::new(fetch_config) {
        Ok(f) => f,
        Err(e) => return (Outcome::Fail, e.to_string(), None),
    };
    let fetched = fetcher.fetch();
    let answer = fetcher.last_answer().cloned();
    let http = answer.as_ref().map_or(String::new(), |a| {
        let etag = a.etag.as_deref().unwrap_or("none");
        format!("HTTP {}, ETag {etag}, ", a.status)
    });
    if let (Some(server), Some(answer)) = (report.as_mut(), answer) {
        server.http_status = Some(answer.status);
        server.etag = answer.etag;
    }
    let bytes = match fetched {
        Ok(Fetched::New(bytes)) => bytes,
        Ok(Fetched::NotModified) => {
            return (Outcome::Ok, format!("{http}not modified"), None);
        }
        Err(e) => return (Outcome::Fail, e.to_string(), None),
    };
    match config.manifest_format {
        ManifestFormat::Signed => match manifest::open(&bytes, &config.manifest_pubkeys) {
            Ok(m) => (
                Outcome::Ok,
                format!(
                    "{http}{} bytes, signature valid, network {:?} serial {}",
                    bytes.len(),
                    m.network,
                    m.serial
                ),
                Some(m),
            ),
            Err(e) => (
                Outcome::Fail,
                format!("{http}fetched but refused: {e}"),
                None,
            ),
        },
        ManifestFormat::Wg => (
            Outcome::Ok,
            format!("{http}{} bytes (Kilo peer config)", bytes.len()),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_of_a_url_is_its_host_and_port() {
        let s = |u: &str| server_of(u).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(
            s("https://m.example/lab.ewm").as_deref(),
            Some("m.example 443")
        );
        assert_eq!(
            s("http://u:pw@192.0.2.1:8080/m?x").as_deref(),
            Some("192.0.2.1 8080")
        );
        assert_eq!(
            s("https://[2001:db8::1]/m").as_deref(),
            Some("2001:db8::1 443")
        );
        assert_eq!(
            s("https://[2001:db8::1]:8443").as_deref(),
            Some("2001:db8::1 8443")
        );
        assert_eq!(s("/etc/edgewire/m"), None);
        assert_eq!(s("file:///etc/edgewire/m"), None);
    }

    fn cert(not_before: u64, not_after: u64) -> CertSummary {
        CertSummary {
            issuer: "CN=R11, O=Let's Encrypt, C=US".into(),
            subject: "CN=m.example".into(),
            not_before,
            not_after,
        }
    }

    #[test]
    fn a_trusted_certificate_reads_as_issuer_subject_and_expiry() {
        let day = 86_400;
        let h = Handshake {
            cert: Some(cert(0, 90 * day)),
            version: Some("TLSv1.3".into()),
            refused: None,
        };
        let (outcome, detail) = describe(&h, 30 * day);
        assert_eq!(outcome, Outcome::Ok);
        assert_eq!(
            detail,
            "TLSv1.3, issued by CN=R11, O=Let's Encrypt, C=US to CN=m.example, expires \
             1970-04-01T00:00:00Z (in 60 days)"
        );
        let (outcome, detail) = describe(&h, 80 * day);
        assert_eq!(outcome, Outcome::Warn);
        assert!(
            detail.ends_with("(in 10 days): renewal is late"),
            "{detail}"
        );
    }

    #[test]
    fn a_refused_certificate_is_shown_with_the_reason_and_what_to_check() {
        let h = Handshake {
            cert: Some(cert(0, 86_400)),
            version: None,
            refused: Some("invalid peer certificate: Expired".into()),
        };
        let (outcome, detail) = describe(&h, 2 * 86_400);
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(
            detail,
            "issued by CN=R11, O=Let's Encrypt, C=US to CN=m.example, EXPIRED \
             1970-01-02T00:00:00Z; refused: invalid peer certificate: Expired; check \
             --ca-file (the CA that issued it), the URL's host name, and this device's clock"
        );
    }
}
