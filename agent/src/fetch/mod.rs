//! Where manifests come from: one [`Fetcher`] for `https://`, `http://`, `file://` and
//! plain paths, blocking (run it on a helper thread; the data plane never waits on it).
//!
//! Each fetch either says nothing changed ([`Fetched::NotModified`]: a 304 to our
//! `If-None-Match`, or the same bytes as last time) or hands over new raw bytes, never
//! more than `max_size` of them. What the bytes mean (signature, serial, INI) is the
//! caller's business; here is only transport, with errors that tell its failures apart.
//! [`Backoff`] says when to try again. A URL is only ever shown through [`redact_url`]:
//! credentials in it (userinfo, a presigned query) never reach a log line or `status`.

mod backoff;
mod body;
mod error;
mod file;
mod http;
mod redact;
pub(crate) mod roots;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testserver;
pub mod x509;

use std::path::PathBuf;
use std::time::Duration;

pub use backoff::Backoff;
pub use body::read_capped;
pub use error::FetchError;
pub use redact::redact_url;

use crate::config::RunConfig;
use crate::manifest;

/// Time to set up a connection (DNS, TCP, TLS) before the attempt counts as failed.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a whole fetch, from DNS to the last byte: a stalled server costs no more.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// `https://…`, `http://…`, `file:///…` or a path.
    pub url: String,
    /// PEM bundle of the CAs trusted for the server; the system bundle when absent.
    pub ca_file: Option<PathBuf>,
    /// Holds a bearer token, read again before every request (rotatable).
    pub token_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The whole fetch, body included.
    pub read_timeout: Duration,
    /// Reading stops (with [`FetchError::TooLarge`]) past this many bytes.
    pub max_size: usize,
    /// How long an idle connection to the server is kept for the next poll.
    pub keep_alive: Duration,
}

impl FetchConfig {
    /// The run settings' manifest source, with the default timeouts and size cap.
    pub fn from_run(config: &RunConfig) -> FetchConfig {
        FetchConfig {
            url: config.manifest_url.clone(),
            ca_file: config.ca_file.clone(),
            token_file: config.manifest_token_file.clone(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_size: manifest::MAX_SIZE,
            // A poll that finds the connection still open costs about 0.5 KB instead of
            // about 2.3 KB for a new TCP connection and a resumed TLS session (measured
            // against nginx, which keeps idle connections 75 s). Longer than the interval
            // plus its jitter, so the next poll finds it.
            keep_alive: config.manifest_interval
                + config.manifest_interval / 5
                + Duration::from_secs(5),
        }
    }
}

/// What the server said to the last request, for `netcheck`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// As sent, quotes included; `to_str` already kept it to visible ASCII.
    pub etag: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Same manifest as the last one handed over.
    NotModified,
    /// Bytes that differ from the last ones handed over (or the first ones).
    New(Vec<u8>),
}

pub struct Fetcher {
    target: Target,
    max_size: usize,
    /// Digest of the last bytes handed over: a server without ETags, or a file, still
    /// costs the caller nothing when unchanged.
    last: Option<ring::digest::Digest>,
}

enum Target {
    Http(http::Http),
    File(PathBuf),
}

impl Fetcher {
    /// Checks the URL and loads the CAs (from `ca_file`, or the system bundle for
    /// `https://`); nothing is fetched yet.
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        let target = if config.url.starts_with("https://") || config.url.starts_with("http://") {
            Target::Http(http::Http::new(&config)?)
        } else if let Some(path) = config.url.strip_prefix("file://") {
            Target::File(PathBuf::from(path))
        } else if config.url.contains("://") {
            return Err(FetchError::BadUrl {
                url: redact_url(&config.url),
                detail: "unknown scheme; use https://, http://, file:// or a path".into(),
            });
        } else {
            Target::File(PathBuf::from(&config.url))
        };
        Ok(Fetcher {
            target,
            max_size: config.max_size,
            last: None,
        })
    }

    /// One attempt. Blocking for up to the connect plus total timeouts.
    pub fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let bytes = match &mut self.target {
            Target::Http(http) => match http.get(self.max_size)? {
                Some(bytes) => bytes,
                None => return Ok(Fetched::NotModified),
            },
            Target::File(path) => file::read(path, self.max_size)?,
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        if self
            .last
            .as_ref()
            .is_some_and(|last| last.as_ref() == digest.as_ref())
        {
            return Ok(Fetched::NotModified);
        }
        self.last = Some(digest);
        Ok(Fetched::New(bytes))
    }

    /// Makes the next successful fetch return [`Fetched::New`] even if nothing changed
    /// (drops the ETag and the digest), e.g. to judge the same bytes again later.
    pub fn forget(&mut self) {
        self.last = None;
        if let Target::Http(http) = &mut self.target {
            http.forget();
        }
    }

    /// The HTTP status and ETag of the last answer (`None` before one, or for a file).
    pub fn last_answer(&self) -> Option<&Answer> {
        match &self.target {
            Target::Http(http) => http.answer(),
            Target::File(_) => None,
        }
    }

    /// The URL or path, for log lines and `status`: credentials in the URL hidden.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Http(http) => http.shown().to_string(),
            Target::File(path) => format!("file://{}", path.display()),
        }
    }
}
