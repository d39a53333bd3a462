//! Why a fetch failed, in kinds a caller (and an operator) tells apart: the server is
//! unreachable or slow, it answered with an error status, it sent too much, its
//! certificate is not trusted, or a local file could not be read. Every message names
//! the URL or file and says what to check. None ever carries the bearer token.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::human::Human;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("manifest URL {url}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error(
        "cannot reach the manifest server {url}: {detail}; check the URL, DNS and the \
         device's network"
    )]
    Connect { url: String, detail: String },
    #[error(
        "the manifest server {url} did not {what} within {}; it is down, \
         overloaded, or the link is too slow",
        Human(*after)
    )]
    Timeout {
        url: String,
        /// "connect", "answer", "send the whole manifest"...
        what: &'static str,
        after: Duration,
    },
    #[error("the manifest server {url} answered HTTP {code}{}", status_hint(*code))]
    Status { url: String, code: u16 },
    #[error(
        "the manifest at {url} is larger than {limit} bytes; stopped reading. Is the URL \
         pointing at a manifest?"
    )]
    TooLarge { url: String, limit: usize },
    #[error(
        "TLS with the manifest server {url} failed: {detail}; check that --ca-file holds \
         the CA that issued the server's certificate, that the URL's host name is in that \
         certificate, and that the device's clock is right"
    )]
    Tls { url: String, detail: String },
    #[error("the manifest server {url}: {detail}")]
    Http { url: String, detail: String },
    #[error("reading the manifest {}: {error}", path.display())]
    File { path: PathBuf, error: io::Error },
    #[error(
        "reading the bearer token {}: {detail}; check --manifest-token-file",
        path.display()
    )]
    Token { path: PathBuf, detail: String },
    #[error("the CA file {}: {detail}; check --ca-file", path.display())]
    CaFile { path: PathBuf, detail: String },
    #[error(
        "no CA bundle of the system found (looked at {tried}) to check the manifest \
         server {url}: install the ca-certificates package, set SSL_CERT_FILE, or pin \
         the server's CA with --ca-file"
    )]
    NoSystemRoots { url: String, tried: String },
}

fn status_hint(code: u16) -> &'static str {
    match code {
        401 | 403 => {
            ": the server refuses this device; check --manifest-token-file and the \
             server's access rules"
        }
        404 | 410 => ": no manifest at that URL; check --manifest-url",
        500..=599 => ": the server has a problem; it is retried with backoff",
        _ => "",
    }
}
