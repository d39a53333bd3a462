//! The signed manifest: what the overlay looks like and who may change it.
//!
//! Owns the payload model (`model`), the operator's JSON source (`source`), the binary
//! envelope and its signature (`envelope`, `signing`), the validation rules (`validate`,
//! `hostport`), and the human-readable dump (`show`). The agent only ever calls [`open`]:
//! signature first, then decode, then validate. Around it: which verified manifests may
//! be put in force (`trust`, `clocktrust`) and Kilo's unsigned peer config read as a
//! manifest (`wg`).
//!
//! Pure: nothing here reads the clock (`now` is an argument), touches a file or uses
//! `unsafe`, and the compiler and clippy hold it to that (the lints below, with the list
//! in `agent/clippy.toml`). The files around manifests are the shell's side: the cache and
//! the trust record in `state`, reading a manifest file in `fsutil`, whether the clock
//! is synchronised in `shell/clocktrust.rs`.

#![deny(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod clocktrust;
mod envelope;
#[cfg(test)]
mod fixtures;
mod hostport;
mod model;
mod rfc3339;
mod show;
mod signing;
mod source;
mod tojson;
pub mod trust;
mod validate;
pub mod wg;

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Reads a manifest file, bounded. Lives in `fsutil` (this module touches no file);
/// re-exported under its old name for the commands that call it.
pub use crate::fsutil::read_manifest_file as read_bounded;
pub use clocktrust::ClockTrust;
pub use envelope::{Envelope, FORMAT_VERSION, MAGIC, Verified, seal};
pub use hostport::{Host, RelayUrl, Transport, parse_endpoint, parse_relay_url};
pub use model::{Manifest, NodeSpec, RelaySpec, Role};
pub use rfc3339::{format_rfc3339, parse_rfc3339};
pub use show::render;
pub use signing::{NetworkKeyPair, pkcs8_to_pem};
pub use source::{Mint, from_json, from_json_minting};
pub use tojson::to_json;
pub use trust::{NO_SERIAL, Refusal, TrustState, Verdict};
pub use wg::from_wg;

/// The largest manifest accepted, checked before anything else is done with the bytes.
/// Thousands of nodes fit in a small fraction of it; the bound keeps a hostile server
/// from making a small device allocate without limit.
pub const MAX_SIZE: usize = 4 * 1024 * 1024;

/// An Ed25519 public key of the network: what a device pins to trust manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkPublicKey(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a network public key: expected 44 characters of base64 (32 bytes), \
     as printed by `edgewire manifest keygen`"
)]
pub struct NetworkKeyError(pub String);

impl fmt::Display for NetworkPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl FromStr for NetworkPublicKey {
    type Err = NetworkKeyError;
    fn from_str(s: &str) -> Result<Self, NetworkKeyError> {
        let err = || NetworkKeyError(s.to_string());
        let bytes = BASE64.decode(s.trim()).map_err(|_| err())?;
        bytes.try_into().map(NetworkPublicKey).map_err(|_| err())
    }
}

/// Why a manifest was refused. The variants are what a caller may want to tell apart
/// (a truncated download is retried; a bad signature is an alarm).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "manifest is {0} bytes, over the {MAX_SIZE} byte limit: \
         is this a manifest built by `edgewire manifest build`?"
    )]
    TooLarge(usize),
    #[error(
        "manifest is truncated: {have} bytes, expected {need}; \
         the download or copy was cut short"
    )]
    Truncated { have: usize, need: usize },
    #[error(
        "not an edgewire manifest (it does not start with \"EWMF\"): \
         is this a file built by `edgewire manifest build`?"
    )]
    BadMagic,
    #[error(
        "manifest format version {0} is not known to this agent (it reads version \
         {FORMAT_VERSION}): upgrade the agent"
    )]
    UnsupportedVersion(u16),
    #[error(
        "manifest signature is not valid: it was signed by a key this device does not \
         trust, or changed after signing; check --manifest-pubkey"
    )]
    BadSignature,
    /// Sealing: the source makes a manifest larger than a device accepts.
    #[error(
        "the signed manifest would be {0} bytes, over the {MAX_SIZE} byte limit devices \
         accept: split the network or shorten the source (fewer nodes, endpoints or \
         allowed IPs)"
    )]
    TooLargeToSeal(usize),
    #[error("manifest has {0} unexpected bytes after its signature; rebuild it")]
    TrailingBytes(usize),
    #[error("manifest payload does not decode (format version {FORMAT_VERSION}): {0}")]
    Decode(String),
    #[error("manifest is not valid: {0}")]
    Invalid(String),
    /// Kilo's wg INI does not read; `line` is 1-based.
    #[error("line {line}: {problem}")]
    Wg { line: usize, problem: String },
    /// The JSON source does not parse: `context` names the node and field when known;
    /// serde_json's own message carries the line and column.
    #[error("{}{error}", context.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Json {
        context: Option<String>,
        error: serde_json::Error,
    },
}

/// Opens a manifest as the agent receives it: refuses oversized input, verifies the
/// signature against any of `keys` over the raw bytes before decoding anything, then
/// decodes the payload and validates it.
pub fn open(bytes: &[u8], keys: &[NetworkPublicKey]) -> Result<Manifest, ManifestError> {
    let manifest = Envelope::parse(bytes)?.verify(keys)?.decode()?;
    manifest.validate()?;
    Ok(manifest)
}

/// The lab manifest with `serial`, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_manifest(serial: u64) -> Manifest {
    Manifest {
        serial,
        ..fixtures::lab_manifest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_public_key_round_trips_through_base64() {
        let key = NetworkPublicKey([9; 32]);
        assert_eq!(key.to_string().parse::<NetworkPublicKey>().unwrap(), key);
        assert!("AAAA".parse::<NetworkPublicKey>().is_err());
    }

    #[test]
    fn json_error_names_its_context_before_the_serde_message() {
        let error = serde_json::from_str::<u8>("x").unwrap_err();
        let err = ManifestError::Json {
            context: Some("node \"a\" (nodes[0])".into()),
            error,
        };
        assert!(
            err.to_string()
                .starts_with("node \"a\" (nodes[0]): expected value at line 1")
        );
    }
}
