//! The hashes STUN authentication and demultiplexing need: the long-term credential key,
//! HMAC-SHA1 for MESSAGE-INTEGRITY (ring), CRC-32 for FINGERPRINT, and the TURN REST
//! credentials coturn mints from its `static-auth-secret`.

use base64::Engine;
use ring::hmac;

use super::md5::md5;

/// The long-term credential key (RFC 8489 §9.2.2): `MD5(username ":" realm ":" password)`.
///
/// The RFC asks for OpaqueString (SASLprep) processing of the password; coturn does not
/// apply it, and our credentials are ASCII, so the bytes are used as given.
#[derive(Clone, PartialEq, Eq)]
pub struct LongTermKey(pub [u8; 16]);

impl LongTermKey {
    pub fn new(username: &str, realm: &[u8], password: &str) -> LongTermKey {
        LongTermKey(md5(&[
            username.as_bytes(),
            b":",
            realm,
            b":",
            password.as_bytes(),
        ]))
    }

    pub(crate) fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0)
    }
}

impl std::fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LongTermKey(..)") // a password equivalent: never printed
    }
}

/// HMAC-SHA1 over the concatenation of `parts`.
pub fn hmac_sha1(key: &hmac::Key, parts: &[&[u8]]) -> [u8; 20] {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut out = [0u8; 20];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The FINGERPRINT value is the CRC-32 of the message XORed with this ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) over the concatenation of
/// `parts`. The table is built at compile time: 1 KiB of read-only data.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = CRC_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

static CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// TURN REST API credentials (coturn `use-auth-secret` / `static-auth-secret`):
/// username `"{expires_unix}:{network}"`, password base64(HMAC-SHA1(secret, username)).
/// coturn accepts them until `expires_unix`; whoever holds `secret` can mint them, so
/// devices only ever receive the result.
pub fn rest_credentials(secret: &[u8], network: &str, expires_unix: u64) -> (String, String) {
    let username = format!("{expires_unix}:{network}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac_sha1(&key, &[username.as_bytes()]);
    let password = base64::engine::general_purpose::STANDARD.encode(mac);
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(&[b"123456789"]), 0xcbf4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xcbf4_3926);
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        // printf 'alice:edgewire.test:s3cret' | md5sum
        let key = LongTermKey::new("alice", b"edgewire.test", "s3cret");
        assert_eq!(hex(&key.0), "a3c4347d03f0ae9090c9e6f80fbb1377");
    }

    #[test]
    fn rest_credentials_match_openssl() {
        // printf '1700000000:edge-7' | openssl dgst -sha1 -hmac 'north-secret' -binary | base64
        let (user, pass) = rest_credentials(b"north-secret", "edge-7", 1_700_000_000);
        assert_eq!(user, "1700000000:edge-7");
        assert_eq!(pass, "FXO8g/IXQ3rszJdosAlhoOSWPwc=");
    }

    #[test]
    fn the_long_term_key_is_not_printed() {
        let key = LongTermKey::new("u", b"r", "p");
        assert_eq!(format!("{key:?}"), "LongTermKey(..)");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
