//! WireGuard keys: the types, their base64 text form, generation, and the key file in
//! the state directory (`store`), written through `crate::fsutil`.
//!
//! A private key is never printed or logged: `PrivateKey` has no `Display`, and its
//! `Debug` hides the bytes.

mod store;

pub use store::{PRIVATE_KEY_FILE, create, key_path, load, load_or_create};

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a WireGuard key: expected 44 characters of base64 (32 bytes)")]
pub struct KeyError(pub String);

fn decode32(s: &str) -> Result<[u8; 32], KeyError> {
    let bytes = BASE64
        .decode(s.trim())
        .map_err(|_| KeyError(s.to_string()))?;
    bytes.try_into().map_err(|_| KeyError(s.to_string()))
}

/// A Curve25519 public key: who a peer is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The first characters of the base64 form, for log lines.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        decode32(s).map(PublicKey)
    }
}

/// Base64 text in JSON; 32 raw bytes in postcard.
impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(PublicKey)
        }
    }
}

/// A Curve25519 private key. Zeroed on drop by the underlying type.
#[derive(Clone)]
pub struct PrivateKey(boringtun::x25519::StaticSecret);

impl PrivateKey {
    pub fn generate() -> Self {
        PrivateKey(boringtun::x25519::StaticSecret::random_from_rng(
            rand_core::OsRng,
        ))
    }

    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        // The error must not echo a private key back into a log.
        decode32(s)
            .map(|b| PrivateKey(boringtun::x25519::StaticSecret::from(b)))
            .map_err(|_| KeyError("<private key>".to_string()))
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(boringtun::x25519::PublicKey::from(&self.0).to_bytes())
    }

    pub(crate) fn secret(&self) -> &boringtun::x25519::StaticSecret {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_through_base64() {
        let key = PrivateKey::generate().public_key();
        assert_eq!(key.to_string().len(), 44);
        assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
    }

    #[test]
    fn private_key_parse_error_does_not_echo_the_input() {
        let err = PrivateKey::from_base64("c2VjcmV0").unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert!(!format!("{:?}", PrivateKey::generate()).contains('='));
    }
}
