//! A manifest server that can misbehave on cue: nginx over HTTPS with a CA made for the
//! test, like [`crate::FileServer`], plus what the lifecycle tests need from a real
//! server — answer 500 while a flag file exists, require a bearer token, stop and start
//! again with the same certificate (agents pin its CA once, at start), and an access log
//! that says which request got which status on which TLS connection.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fileserver::TestCa;
use crate::host::Host;
use crate::proc::Proc;
use crate::wait::wait_for;

/// The flag file (in the served root) that makes every answer a 500.
const FAIL_FLAG: &str = ".answer-500";

/// nginx serving a directory over HTTPS on `addr:443`, TLS 1.2 and 1.3 (nginx 1.22's
/// default leaves 1.3 out; servers configured today offer it).
pub struct ManifestServer {
    host: Host,
    addr: String,
    dir: PathBuf,
    root: PathBuf,
    conf: PathBuf,
    ca: TestCa,
    proc: Option<Proc>,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub uri: String,
    pub status: u16,
    /// Bytes nginx sent for this response, headers included (not TLS overhead).
    pub bytes_sent: u64,
    /// nginx's serial number of the connection: the same number means a reused one.
    pub connection: u64,
    /// The number of this request on its connection (1 for a new connection).
    pub connection_request: u64,
}

impl ManifestServer {
    /// Starts nginx in `host` on `addr` (an address of that host). With `bearer_token`,
    /// every request without `Authorization: Bearer <token>` gets a 401.
    pub fn start(host: &Host, addr: &str, bearer_token: Option<&str>) -> ManifestServer {
        let dir = host
            .lab_dir()
            .join(format!("manifest-server-{}", host.name()));
        let root = dir.join("www");
        let tmp = dir.join("tmp");
        for d in [&root, &tmp] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        let ca = TestCa::create(&dir.join("pki"), addr);
        let d = |p: &Path| p.to_string_lossy().into_owned();
        let token_rule = match bearer_token {
            Some(token) => {
                assert!(
                    token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "keep the token to letters, digits and '-'"
                );
                format!("      if ($http_authorization != \"Bearer {token}\") {{ return 401; }}\n")
            }
            None => String::new(),
        };
        let conf = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
             error_log stderr info;\nevents {{ worker_connections 64; }}\n\
             http {{\n\
             \x20 log_format ew '$request_uri $status $bytes_sent $connection $connection_requests';\n\
             \x20 access_log {dir}/access.log ew;\n\
             \x20 default_type application/octet-stream;\n\
             \x20 client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
             \x20 fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n\
             \x20 scgi_temp_path {tmp}/scgi;\n\
             \x20 server {{\n    listen {addr}:443 ssl;\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   ssl_protocols TLSv1.2 TLSv1.3;\n\
             \x20   root {root};\n    etag on;\n\
             \x20   location / {{\n\
             \x20     if (-f {root}/{FAIL_FLAG}) {{ return 500; }}\n\
             {token_rule}\
             \x20   }}\n  }}\n}}\n",
            dir = d(&dir),
            tmp = d(&tmp),
            root = d(&root),
            cert = ca.server_cert.display(),
            key = ca.server_key.display(),
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("writing nginx.conf");
        let mut server = ManifestServer {
            host: host.clone(),
            addr: addr.to_owned(),
            dir,
            root,
            conf: conf_path,
            ca,
            proc: None,
        };
        server.restart();
        server
    }

    /// Starts nginx again (same config, same certificate) after [`ManifestServer::stop`].
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "nginx is already running");
        let d = |p: &Path| p.to_string_lossy().into_owned();
        let proc = self.host.spawn(
            "nginx",
            &[
                "nginx",
                "-e",
                "stderr",
                "-p",
                &d(&self.dir),
                "-c",
                &d(&self.conf),
            ],
        );
        let port = format!("{}:443", self.addr);
        wait_for("nginx to listen on 443", Duration::from_secs(10), || {
            assert!(proc.is_running(), "nginx exited:\n{}", proc.log());
            let out = self.host.exec(&["ss", "-Hltn", "src", &port]);
            (!out.stdout.trim().is_empty()).then_some(())
        });
        self.proc = Some(proc);
    }

    /// Stops nginx (SIGTERM, then SIGKILL): connections are refused until
    /// [`ManifestServer::restart`].
    pub fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop();
        }
    }

    /// Publishes `contents` as `/name`, atomically (write, then rename).
    ///
    /// nginx's ETag is the file's mtime in whole seconds and its size: a new manifest of
    /// the same size published within the same second as the last one (a serial bumped
    /// by one often keeps the size) would get the old ETag, and pollers would be told
    /// 304 for it. So each version gets an mtime at least a second after the last one.
    pub fn publish(&self, name: &str, contents: &[u8]) {
        let tmp = self.root.join(format!(".{name}.tmp"));
        let path = self.root.join(name);
        fs::write(&tmp, contents).expect("writing a published file");
        let now = SystemTime::now();
        let mtime = match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(last) if now < last + Duration::from_secs(1) => last + Duration::from_secs(1),
            _ => now,
        };
        fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(mtime))
            .expect("setting a published file's mtime");
        fs::rename(&tmp, &path).expect("renaming a published file");
    }

    /// While set, every request is answered with HTTP 500.
    pub fn answer_500(&self, on: bool) {
        let flag = self.root.join(FAIL_FLAG);
        if on {
            fs::write(&flag, b"").expect("writing the 500 flag");
        } else {
            let _ = fs::remove_file(&flag);
        }
    }

    pub fn https_url(&self, name: &str) -> String {
        format!("https://{}/{name}", self.addr)
    }

    /// The served directory (what nginx's ETag is computed from).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA certificate agents pin with `--ca-file`.
    pub fn ca_file(&self) -> String {
        self.ca.ca_cert.to_string_lossy().into_owned()
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Every request logged so far, oldest first.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        let text = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines().filter_map(parse_access_line).collect()
    }

    /// Requests for `/name` logged so far with status `status`.
    pub fn count(&self, name: &str, status: u16) -> usize {
        let uri = format!("/{name}");
        self.access_log()
            .iter()
            .filter(|e| e.uri == uri && e.status == status)
            .count()
    }
}

fn parse_access_line(line: &str) -> Option<AccessEntry> {
    let mut f = line.split_whitespace();
    Some(AccessEntry {
        uri: f.next()?.to_owned(),
        status: f.next()?.parse().ok()?,
        bytes_sent: f.next()?.parse().ok()?,
        connection: f.next()?.parse().ok()?,
        connection_request: f.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_access_log_line_in_the_servers_format() {
        assert_eq!(
            parse_access_line("/manifest 304 181 7 3"),
            Some(AccessEntry {
                uri: "/manifest".into(),
                status: 304,
                bytes_sent: 181,
                connection: 7,
                connection_request: 3,
            })
        );
        assert_eq!(parse_access_line("garbage"), None);
    }
}
