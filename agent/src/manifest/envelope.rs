//! The binary envelope: the bytes that travel from the manifest server to the device.
//!
//! ```text
//! "EWMF" | version u16 LE | payload length u32 LE | postcard payload | Ed25519 signature (64)
//! ```
//!
//! The signature covers every byte before it, header included, so a verified envelope
//! also proves its format version. Parsing only looks at the fixed header; nothing in
//! the payload is decoded until a pinned key has verified it. The type states make that
//! order hard to get wrong: `Envelope::parse` → `verify` → `Verified::decode`.

use ring::signature::{ED25519, UnparsedPublicKey};

use super::model::ManifestV1;
use super::signing::NetworkKeyPair;
use super::{MAX_SIZE, Manifest, ManifestError, NetworkPublicKey};

pub const MAGIC: [u8; 4] = *b"EWMF";
/// The newest payload layout, the one `model.rs` describes. A new layout gets a new
/// number and its own decoder next to the old ones. Version 1 lacks the `stun` list;
/// `seal` writes it whenever the list is empty, so agents that know only version 1 keep
/// reading manifests that do not use STUN servers.
pub const FORMAT_VERSION: u16 = 2;

const HEADER_LEN: usize = 4 + 2 + 4;
const SIGNATURE_LEN: usize = 64;

/// A structurally sound envelope whose signature has not been checked yet.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// Header and payload: what the signature covers.
    signed: &'a [u8],
    signature: &'a [u8],
}

/// An envelope whose signature a trusted key has verified.
#[derive(Debug)]
pub struct Verified<'a> {
    envelope: Envelope<'a>,
    key: NetworkPublicKey,
}

impl<'a> Envelope<'a> {
    /// Checks size, magic, version and lengths; reads nothing of the payload.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_SIZE {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let truncated = |need| ManifestError::Truncated {
            have: bytes.len(),
            need,
        };
        if bytes.len() < MAGIC.len() {
            // A prefix of the magic is a cut download; anything else is not ours.
            return if MAGIC.starts_with(bytes) {
                Err(truncated(HEADER_LEN + SIGNATURE_LEN))
            } else {
                Err(ManifestError::BadMagic)
            };
        }
        if bytes[..4] != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(truncated(HEADER_LEN + SIGNATURE_LEN));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(ManifestError::UnsupportedVersion(version));
        }
        let payload_len = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
        // Saturating: a hostile length near u32::MAX must not wrap on 32-bit ARM.
        let need = HEADER_LEN
            .saturating_add(payload_len)
            .saturating_add(SIGNATURE_LEN);
        if bytes.len() < need {
            return Err(truncated(need));
        }
        if bytes.len() > need {
            return Err(ManifestError::TrailingBytes(bytes.len() - need));
        }
        let (signed, signature) = bytes.split_at(need - SIGNATURE_LEN);
        Ok(Envelope { signed, signature })
    }

    /// Accepts the envelope when any of `keys` made its signature.
    pub fn verify(self, keys: &[NetworkPublicKey]) -> Result<Verified<'a>, ManifestError> {
        let key = keys
            .iter()
            .find(|key| {
                UnparsedPublicKey::new(&ED25519, &key.0)
                    .verify(self.signed, self.signature)
                    .is_ok()
            })
            .copied()
            .ok_or(ManifestError::BadSignature)?;
        Ok(Verified {
            envelope: self,
            key,
        })
    }

    /// Decodes without a signature check. Only for `edgewire manifest show` without
    /// `--pubkey`, where the operator is told the signature was not checked.
    pub fn decode_unverified(&self) -> Result<Manifest, ManifestError> {
        let payload = &self.signed[HEADER_LEN..];
        match u16::from_le_bytes([self.signed[4], self.signed[5]]) {
            1 => decode_payload::<ManifestV1>(payload).map(Manifest::from),
            _ => decode_payload::<Manifest>(payload),
        }
    }
}

impl Verified<'_> {
    /// The pinned key that signed it (one of two during a key rotation).
    pub fn key(&self) -> NetworkPublicKey {
        self.key
    }

    pub fn decode(&self) -> Result<Manifest, ManifestError> {
        self.envelope.decode_unverified()
    }
}

fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, ManifestError> {
    let (manifest, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|e| ManifestError::Decode(e.to_string()))?;
    // postcard stops at the end of the value; leftover payload bytes mean the writer
    // and this reader disagree about the layout.
    if !rest.is_empty() {
        return Err(ManifestError::Decode(format!(
            "{} bytes left over after the manifest; was it built for another layout?",
            rest.len()
        )));
    }
    Ok(manifest)
}

/// Encodes `manifest` and signs it. Does not validate: callers validate first so the
/// operator sees every problem in the source, not an encoding error.
pub fn seal(manifest: &Manifest, key: &NetworkKeyPair) -> Result<Vec<u8>, ManifestError> {
    let encoded = match manifest.as_v1() {
        Some(v1) => postcard::to_stdvec(&v1).map(|p| (1u16, p)),
        None => postcard::to_stdvec(manifest).map(|p| (FORMAT_VERSION, p)),
    };
    let (version, payload) = encoded.map_err(|e| ManifestError::Decode(e.to_string()))?;
    let too_large = ManifestError::TooLargeToSeal(HEADER_LEN + payload.len() + SIGNATURE_LEN);
    if HEADER_LEN + payload.len() + SIGNATURE_LEN > MAX_SIZE {
        return Err(too_large);
    }
    let payload_len = u32::try_from(payload.len()).map_err(|_| too_large)?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len() + SIGNATURE_LEN);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&payload_len.to_le_bytes());
    bytes.extend_from_slice(&payload);
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&signature);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures as testdata;
    use super::*;
    use crate::manifest::open;

    const GOLDEN: &[u8] = include_bytes!("testdata/lab-v1.ewm");

    fn golden_key() -> NetworkKeyPair {
        NetworkKeyPair::from_seed(&testdata::SEED)
    }

    /// Rewrites the golden file when EDGEWIRE_BLESS=1, for a deliberate format change.
    #[test]
    #[allow(clippy::disallowed_methods)] // test code writes the golden file
    fn sealing_the_lab_manifest_gives_the_golden_bytes() {
        let bytes = seal(&testdata::lab_manifest(), &golden_key()).unwrap();
        if std::env::var_os("EDGEWIRE_BLESS").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/manifest/testdata/lab-v1.ewm"
            );
            std::fs::write(path, &bytes).unwrap();
        }
        assert_eq!(
            bytes, GOLDEN,
            "encoding changed: this breaks every deployed device"
        );
    }

    #[test]
    fn opening_the_golden_bytes_gives_the_lab_manifest() {
        let manifest = open(GOLDEN, &[golden_key().public_key()]).unwrap();
        assert_eq!(manifest, testdata::lab_manifest());
    }

    #[test]
    fn golden_header_is_magic_version_one_and_payload_length() {
        assert_eq!(&GOLDEN[..4], b"EWMF");
        assert_eq!(&GOLDEN[4..6], &[1, 0]);
        let len = u32::from_le_bytes(GOLDEN[6..10].try_into().unwrap()) as usize;
        assert_eq!(GOLDEN.len(), 10 + len + 64);
    }

    #[test]
    fn one_flipped_payload_bit_is_a_bad_signature() {
        let mut bytes = GOLDEN.to_vec();
        bytes[20] ^= 0x01;
        let err = open(&bytes, &[golden_key().public_key()]).unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature), "{err}");
    }

    #[test]
    fn a_flipped_length_byte_is_refused_before_any_decoding() {
        let mut bytes = GOLDEN.to_vec();
        bytes[6] ^= 0x01;
        let err = open(&bytes, &[golden_key().public_key()]).unwrap_err();
        assert!(matches!(
            err,
            ManifestError::Truncated { .. } | ManifestError::TrailingBytes(_)
        ));
    }

    #[test]
    fn a_manifest_signed_by_another_key_is_a_bad_signature() {
        let other = NetworkKeyPair::from_seed(&[8; 32]).public_key();
        let err = open(GOLDEN, &[other]).unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature));
        assert!(err.to_string().contains("--manifest-pubkey"));
    }

    #[test]
    fn either_of_two_pinned_keys_may_sign_during_a_rotation() {
        let other = NetworkKeyPair::from_seed(&[8; 32]).public_key();
        let right = golden_key().public_key();
        let verified = Envelope::parse(GOLDEN)
            .unwrap()
            .verify(&[other, right])
            .unwrap();
        assert_eq!(verified.key(), right);
        assert!(matches!(
            open(GOLDEN, &[]),
            Err(ManifestError::BadSignature)
        ));
    }

    #[test]
    fn a_truncated_manifest_is_reported_as_truncated() {
        let key = golden_key().public_key();
        for len in [0, 2, 9, 10, GOLDEN.len() - 1] {
            let err = open(&GOLDEN[..len], &[key]).unwrap_err();
            assert!(
                matches!(err, ManifestError::Truncated { .. }),
                "len {len}: {err}"
            );
        }
    }

    #[test]
    fn bytes_after_the_signature_are_refused() {
        let mut bytes = GOLDEN.to_vec();
        bytes.push(0);
        let err = open(&bytes, &[golden_key().public_key()]).unwrap_err();
        assert!(matches!(err, ManifestError::TrailingBytes(1)));
    }

    #[test]
    fn a_version_three_header_asks_for_an_agent_upgrade() {
        let mut bytes = GOLDEN.to_vec();
        bytes[4] = 3;
        let err = open(&bytes, &[golden_key().public_key()]).unwrap_err();
        assert!(matches!(err, ManifestError::UnsupportedVersion(3)));
        assert!(err.to_string().contains("upgrade the agent"));
    }

    #[test]
    fn a_manifest_without_stun_servers_is_still_version_one_and_one_with_them_version_two() {
        let key = golden_key();
        let mut manifest = testdata::lab_manifest();
        let v1 = seal(&manifest, &key).unwrap();
        assert_eq!(v1, GOLDEN, "older agents keep reading it");
        manifest.stun = vec!["stun.example.net:3478".into(), "192.0.2.9:3478".into()];
        let v2 = seal(&manifest, &key).unwrap();
        assert_eq!(u16::from_le_bytes([v2[4], v2[5]]), 2);
        assert_eq!(open(&v2, &[key.public_key()]).unwrap(), manifest);
        // A version-2 payload under a version-1 header does not decode as version 1.
        let mut mislabelled = v2.clone();
        mislabelled[4] = 1;
        let resigned = {
            let body = &mislabelled[..mislabelled.len() - 64];
            let mut b = body.to_vec();
            b.extend_from_slice(&key.sign(body));
            b
        };
        assert!(open(&resigned, &[key.public_key()]).is_err());
    }

    #[test]
    fn other_files_are_not_manifests() {
        let err = open(b"{\"network\": \"lab\"}", &[]).unwrap_err();
        assert!(matches!(err, ManifestError::BadMagic));
    }

    #[test]
    fn oversized_input_is_refused_before_looking_at_it() {
        let bytes = vec![0u8; MAX_SIZE + 1];
        assert!(matches!(open(&bytes, &[]), Err(ManifestError::TooLarge(_))));
    }

    #[test]
    fn a_huge_declared_length_is_truncated_not_an_allocation() {
        let mut bytes = GOLDEN[..10].to_vec();
        bytes[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Envelope::parse(&bytes),
            Err(ManifestError::Truncated { .. })
        ));
    }

    #[test]
    fn payload_bytes_left_over_after_the_manifest_are_a_decode_error() {
        let key = golden_key();
        let mut payload = postcard::to_stdvec(&testdata::lab_manifest()).unwrap();
        payload.push(0);
        let mut bytes = b"EWMF\x01\x00".to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let signature = key.sign(&bytes);
        bytes.extend_from_slice(&signature);
        let err = open(&bytes, &[key.public_key()]).unwrap_err();
        assert!(matches!(err, ManifestError::Decode(_)), "{err}");
    }

    /// A poor man's fuzz run over the signed bytes: no flip passes, none panics.
    #[test]
    fn no_single_bit_flip_opens_or_panics() {
        let key = golden_key().public_key();
        for bit in 0..GOLDEN.len() * 8 {
            let mut bytes = GOLDEN.to_vec();
            bytes[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&bytes, &[key]).is_err(), "bit {bit}");
        }
    }

    /// `manifest show` decodes unverified bytes, so the decoder must survive hostile
    /// payloads (lengths that claim more than there is) without panicking.
    #[test]
    fn decoding_unverified_corrupt_payloads_never_panics() {
        for at in 10..GOLDEN.len() - 64 {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut bytes = GOLDEN.to_vec();
                bytes[at] = value;
                let _ = Envelope::parse(&bytes).unwrap().decode_unverified();
            }
        }
    }

    #[test]
    fn a_signed_but_invalid_manifest_is_refused_by_open() {
        let key = golden_key();
        let mut manifest = testdata::lab_manifest();
        manifest.serial = 0;
        let bytes = seal(&manifest, &key).unwrap();
        let err = open(&bytes, &[key.public_key()]).unwrap_err();
        assert!(matches!(err, ManifestError::Invalid(_)), "{err}");
    }

    #[test]
    fn sealing_past_the_size_limit_speaks_of_the_source_not_of_a_url() {
        let mut manifest = testdata::lab_manifest();
        manifest.nodes[0].name = "n".repeat(MAX_SIZE);
        let err = seal(&manifest, &golden_key()).unwrap_err();
        assert!(matches!(err, ManifestError::TooLargeToSeal(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("over the 4194304 byte limit"), "{text}");
        assert!(!text.contains("URL"), "{text}");
    }
}
