//! The network's Ed25519 signing key, as the operator keeps it on their workstation.
//!
//! Stored as PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`), the form OpenSSL and most
//! key tooling read and write, so an operator can also bring a key made by
//! `openssl genpkey -algorithm ed25519`. The device never holds this key; it pins the
//! public half.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::NetworkPublicKey;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// The key pair that signs manifests.
#[derive(Debug)]
pub struct NetworkKeyPair(Ed25519KeyPair);

impl NetworkKeyPair {
    /// A fresh key pair and its PKCS#8 document (what goes into the key file).
    pub fn generate() -> anyhow::Result<(Self, Vec<u8>)> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| anyhow::anyhow!("ring rejected its own key: {e}"))?;
        Ok((NetworkKeyPair(pair), pkcs8.as_ref().to_vec()))
    }

    /// Reads the PEM text of a key file; the error says what is wrong, never the key.
    pub fn from_pem(text: &str) -> anyhow::Result<Self> {
        let body = text
            .trim()
            .strip_prefix(PEM_BEGIN)
            .and_then(|rest| rest.strip_suffix(PEM_END))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "not a PEM private key ({PEM_BEGIN} ... {PEM_END}); \
                     make one with `edgewire manifest keygen`"
                )
            })?;
        let der: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = BASE64
            .decode(der)
            .map_err(|_| anyhow::anyhow!("the PEM body is not valid base64"))?;
        // maybe_unchecked: OpenSSL writes PKCS#8 v1, which has no public key to check.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 private key ({e})"))?;
        Ok(NetworkKeyPair(pair))
    }

    /// A deterministic key, for golden-byte tests.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        NetworkKeyPair(Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are a seed"))
    }

    pub fn public_key(&self) -> NetworkPublicKey {
        let mut key = [0; 32];
        key.copy_from_slice(self.0.public_key().as_ref());
        NetworkPublicKey(key)
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0; 64];
        signature.copy_from_slice(self.0.sign(message).as_ref());
        signature
    }
}

/// PEM text for a PKCS#8 document, wrapped at 64 columns as RFC 7468 asks.
pub fn pkcs8_to_pem(der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut pem = format!("{PEM_BEGIN}\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_survives_the_pem_round_trip() {
        let (pair, der) = NetworkKeyPair::generate().unwrap();
        let again = NetworkKeyPair::from_pem(&pkcs8_to_pem(&der)).unwrap();
        assert_eq!(again.public_key(), pair.public_key());
        assert_eq!(again.sign(b"m"), pair.sign(b"m"));
    }

    #[test]
    fn an_openssl_pkcs8_v1_key_is_accepted() {
        // `openssl genpkey -algorithm ed25519` output: v1, seed only.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH\n\
                   -----END PRIVATE KEY-----\n";
        let pair = NetworkKeyPair::from_pem(pem).unwrap();
        assert_eq!(
            pair.public_key(),
            NetworkKeyPair::from_seed(&[7; 32]).public_key()
        );
    }

    #[test]
    fn a_public_key_file_is_not_taken_for_a_private_key() {
        let err = NetworkKeyPair::from_pem("AAAA\n").unwrap_err();
        assert!(err.to_string().contains("not a PEM private key"));
    }
}
