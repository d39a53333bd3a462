//! The CAs a TLS manifest server is checked against: the PEM file given with
//! `--ca-file`, or else the system's bundle, read from its usual places (Debian,
//! Raspberry Pi OS and Yocto's ca-certificates all write
//! `/etc/ssl/certs/ca-certificates.crt`). No roots are compiled into the binary.

use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, PemItem, parse_pem};

use super::FetchError;
use super::body::read_capped;

/// Where distributions put the PEM bundle of their trusted CAs, in the order tried
/// (after `$SSL_CERT_FILE`).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A CA bundle is a few hundred kilobytes; this bounds a wrong path (a disk image).
const MAX_BUNDLE: usize = 4 * 1024 * 1024;

pub fn from_file(path: &Path) -> Result<Vec<Certificate<'static>>, FetchError> {
    let error = |detail: String| FetchError::CaFile {
        path: path.to_path_buf(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let pem = read_capped(file, MAX_BUNDLE)
        .map_err(|e| error(e.to_string()))?
        .ok_or_else(|| error(format!("larger than {MAX_BUNDLE} bytes, not a CA bundle")))?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            // A key next to the certificate is not ours to use; skip it.
            Ok(_) => {}
            Err(e) => return Err(error(format!("not valid PEM ({e})"))),
        }
    }
    if certs.is_empty() {
        return Err(error(
            "holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)".into(),
        ));
    }
    Ok(certs)
}

/// The system bundle; `url` is only for the message when there is none.
pub fn system(url: &str) -> Result<Vec<Certificate<'static>>, FetchError> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    let mut tried = Vec::new();
    for path in candidates {
        if path.is_file() {
            return from_file(&path);
        }
        tried.push(path.display().to_string());
    }
    Err(FetchError::NoSystemRoots {
        url: url.to_string(),
        tried: tried.join(", "),
    })
}
