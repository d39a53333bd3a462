//! HTTP(S) with ureq: a conditional GET (`If-None-Match` with the last ETag, so an
//! unchanged manifest costs a 304), an optional bearer token read from its file before
//! every request, end-to-end timeouts, and a body read no further than the cap.

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

use ureq::tls::{RootCerts, TlsConfig};

use super::body::read_capped;
use super::redact::scrub;
use super::{Answer, FetchConfig, FetchError, redact_url, roots};

/// A token is a line of text; this bounds a wrong path.
const MAX_TOKEN: usize = 16 * 1024;

pub struct Http {
    agent: ureq::Agent,
    url: String,
    /// `url` as it may be shown (`redact_url`): what every error carries.
    shown: String,
    token_file: Option<PathBuf>,
    connect_timeout: Duration,
    total_timeout: Duration,
    etag: Option<String>,
    /// The status and ETag of the last response, whatever its status.
    answer: Option<Answer>,
}

impl Http {
    pub fn new(config: &FetchConfig) -> Result<Http, FetchError> {
        let https = config.url.starts_with("https://");
        // ureq picks the process-wide rustls provider; ring is the one in our build.
        // An error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = match (&config.ca_file, https) {
            (Some(path), _) => roots::from_file(path)?,
            (None, true) => roots::system(&redact_url(&config.url))?,
            // Plain http never uses them; an empty list keeps ureq from its defaults.
            (None, false) => Vec::new(),
        };
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::from(roots))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.read_timeout))
            .max_idle_age(config.keep_alive)
            .http_status_as_error(false)
            // An https URL is never followed to plain http by a redirect.
            .https_only(https)
            .user_agent(concat!("edgewire/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Http {
            agent,
            url: config.url.clone(),
            shown: redact_url(&config.url),
            token_file: config.token_file.clone(),
            connect_timeout: config.connect_timeout,
            total_timeout: config.read_timeout,
            etag: None,
            answer: None,
        })
    }

    /// The URL as it may be shown.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn forget(&mut self) {
        self.etag = None;
    }

    pub fn answer(&self) -> Option<&Answer> {
        self.answer.as_ref()
    }

    /// `None` for 304 Not Modified.
    pub fn get(&mut self, max: usize) -> Result<Option<Vec<u8>>, FetchError> {
        let mut request = self.agent.get(&self.url);
        if let Some(etag) = &self.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(path) = &self.token_file {
            request = request.header("Authorization", format!("Bearer {}", read_token(path)?));
        }
        self.answer = None;
        let mut response = request.call().map_err(|e| self.error(e))?;
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.answer = Some(Answer {
            status: response.status().as_u16(),
            etag: etag.clone(),
        });
        match response.status().as_u16() {
            200 => {}
            304 if self.etag.is_some() => return Ok(None),
            code => {
                return Err(FetchError::Status {
                    url: self.shown.clone(),
                    code,
                });
            }
        }
        let too_large = || FetchError::TooLarge {
            url: self.shown.clone(),
            limit: max,
        };
        if response
            .body()
            .content_length()
            .is_some_and(|n| n > max as u64)
        {
            return Err(too_large());
        }
        let body = response.body_mut().as_reader();
        let bytes = read_capped(body, max)
            .map_err(|e| self.body_error(e))?
            .ok_or_else(too_large)?;
        self.etag = etag;
        Ok(Some(bytes))
    }

    fn error(&self, e: ureq::Error) -> FetchError {
        let url = self.shown.clone();
        match e {
            ureq::Error::Timeout(which) => FetchError::Timeout {
                url,
                what: timeout_what(which),
                after: match which {
                    ureq::Timeout::Connect => self.connect_timeout,
                    _ => self.total_timeout,
                },
            },
            ureq::Error::HostNotFound => FetchError::Connect {
                url,
                detail: "the host name does not resolve".into(),
            },
            ureq::Error::ConnectionFailed => FetchError::Connect {
                url,
                detail: "the connection failed".into(),
            },
            ureq::Error::Io(e) => self.io_error(e),
            ureq::Error::Rustls(e) => FetchError::Tls {
                url,
                detail: e.to_string(),
            },
            ureq::Error::Tls(detail) => FetchError::Tls {
                url,
                detail: detail.into(),
            },
            ureq::Error::BadUri(detail) => FetchError::BadUrl {
                url,
                detail: scrub(&detail, &self.url),
            },
            ureq::Error::RequireHttpsOnly(to) => FetchError::Http {
                url,
                detail: format!(
                    "redirected to {}, which is not https; refused",
                    redact_url(&to)
                ),
            },
            e => FetchError::Http {
                url,
                detail: scrub(&e.to_string(), &self.url),
            },
        }
    }

    fn io_error(&self, e: io::Error) -> FetchError {
        let url = self.shown.clone();
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return FetchError::Tls {
                url,
                detail: tls.to_string(),
            };
        }
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FetchError::Timeout {
                url,
                what: "answer",
                after: self.total_timeout,
            },
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable => FetchError::Connect {
                url,
                detail: e.to_string(),
            },
            _ => FetchError::Http {
                url,
                detail: scrub(&e.to_string(), &self.url),
            },
        }
    }

    /// ureq reports its own errors (a timeout) inside the body reader's `io::Error`.
    fn body_error(&self, e: io::Error) -> FetchError {
        match e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
            Some(ureq::Error::Timeout(which)) => FetchError::Timeout {
                url: self.shown.clone(),
                what: timeout_what(*which),
                after: self.total_timeout,
            },
            _ => self.io_error(e),
        }
    }
}

fn timeout_what(which: ureq::Timeout) -> &'static str {
    match which {
        ureq::Timeout::Resolve => "resolve its name",
        ureq::Timeout::Connect => "complete a connection (TCP and TLS)",
        ureq::Timeout::RecvBody => "send the whole manifest",
        ureq::Timeout::Global => "send the manifest",
        _ => "answer",
    }
}

/// The token, trimmed. Read on every request so it can be rotated in place.
fn read_token(path: &std::path::Path) -> Result<String, FetchError> {
    let error = |detail: String| FetchError::Token {
        path: path.to_path_buf(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let bytes = read_capped(file.take(MAX_TOKEN as u64 + 1), MAX_TOKEN)
        .map_err(|e| error(e.to_string()))?
        .ok_or_else(|| error(format!("larger than {MAX_TOKEN} bytes, not a token")))?;
    let text = String::from_utf8(bytes).map_err(|_| error("not text".into()))?;
    let token = text.trim();
    // The message must never echo the token.
    if token.is_empty() {
        return Err(error("the file is empty".into()));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(error(
            "holds more than one word or control characters; put the token alone on one line"
                .into(),
        ));
    }
    Ok(token.to_string())
}
