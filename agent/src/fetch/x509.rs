//! Just enough of an X.509 certificate to tell an operator whose it is and when it
//! ends: the issuer and subject names and the validity dates, read from the DER the
//! server sent. It decides nothing (rustls and webpki verify the certificate); it only
//! describes. Server-controlled bytes: every length is checked before it is used, and
//! nothing here can panic or allocate more than the input.

use crate::manifest::format_rfc3339;

/// The parts of a certificate `netcheck` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// `C=US, O=Let's Encrypt, CN=R11`: the attributes we know, in the certificate's order.
    pub issuer: String,
    pub subject: String,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
}

impl CertSummary {
    /// Reads a DER certificate; `None` when it is not one we can read.
    pub fn parse(der: &[u8]) -> Option<CertSummary> {
        let (cert, _) = Der::read(der, SEQUENCE)?;
        let (mut tbs, _) = Der::read(cert, SEQUENCE)?;
        // [0] EXPLICIT version, optional.
        if tbs.first() == Some(&0xa0) {
            tbs = Der::read(tbs, 0xa0)?.1;
        }
        let (_serial, rest) = Der::read(tbs, INTEGER)?;
        let (_algorithm, rest) = Der::read(rest, SEQUENCE)?;
        let (issuer, rest) = Der::read(rest, SEQUENCE)?;
        let (validity, rest) = Der::read(rest, SEQUENCE)?;
        let (subject, _) = Der::read(rest, SEQUENCE)?;
        let (not_before, after) = time(validity)?;
        let (not_after, _) = time(after)?;
        Some(CertSummary {
            issuer: name(issuer)?,
            subject: name(subject)?,
            not_before,
            not_after,
        })
    }

    /// How far into its life the certificate is at `now` (unix seconds), as a verdict
    /// an operator reads: `Err` once expired or not yet valid.
    pub fn judge(&self, now: u64) -> Expiry {
        if now < self.not_before {
            return Expiry::NotYetValid;
        }
        if now >= self.not_after {
            return Expiry::Expired;
        }
        let left = self.not_after - now;
        let lifetime = self.not_after - self.not_before;
        // ACME clients renew with a third of the lifetime left (certbot: 30 of 90 days);
        // past that, renewal is late. Capped at 14 days so a year-long certificate is
        // not flagged for four months.
        if left < (lifetime / 3).min(LATE_CAP) {
            Expiry::Soon(left)
        } else {
            Expiry::Fine(left)
        }
    }

    /// `2026-05-01T12:00:00Z`.
    pub fn not_after_rfc3339(&self) -> String {
        format_rfc3339(self.not_after)
    }
}

const LATE_CAP: u64 = 14 * 86_400;

/// A certificate's validity at one moment; the numbers are seconds left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Fine(u64),
    Soon(u64),
    Expired,
    NotYetValid,
}

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One DER element at a time.
struct Der;

impl Der {
    /// The content of the element at the start of `bytes` if its tag is `tag`, and what
    /// follows it.
    fn read(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, rest) = bytes.split_first()?;
        if found != tag {
            return None;
        }
        Der::content(rest)
    }

    /// Any element: its tag, content and what follows.
    fn any(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        let (content, rest) = Der::content(rest)?;
        Some((tag, content, rest))
    }

    fn content(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&first, mut rest) = bytes.split_first()?;
        let len = match first {
            0..=0x7f => usize::from(first),
            // Long form, up to four length bytes (a certificate is far smaller).
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                if rest.len() < n {
                    return None;
                }
                let (digits, after) = rest.split_at(n);
                rest = after;
                digits
                    .iter()
                    .fold(0usize, |len, &d| (len << 8) | usize::from(d))
            }
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        Some(rest.split_at(len))
    }
}

/// A Name: a SEQUENCE of SETs of (OID, value). Attributes we do not name are left out.
fn name(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (mut set, rest) = Der::read(rdns, SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (pair, rest) = Der::read(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = Der::read(pair, OID)?;
            let (tag, text, _) = Der::any(value)?;
            let Some(label) = label(oid) else { continue };
            // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1
            // would be wrong for some; shown lossily like the others).
            if matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
                parts.push(format!("{label}={}", printable(text)));
            }
        }
    }
    Some(parts.join(", "))
}

fn label(oid: &[u8]) -> Option<&'static str> {
    // 2.5.4.x: id-at-*.
    match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x06] => Some("C"),
        [0x55, 0x04, 0x07] => Some("L"),
        [0x55, 0x04, 0x08] => Some("ST"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        _ => None,
    }
}

/// The text with control characters replaced: it goes to a terminal and a log line.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A Time (UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`) in unix
/// seconds, and what follows it.
fn time(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (tag, text, rest) = Der::any(bytes)?;
    let text = std::str::from_utf8(text).ok()?;
    let full = match tag {
        // RFC 5280 §4.1.2.5.1: YY of 50 or more is 19YY.
        UTC_TIME if text.len() == 13 => {
            let yy: u32 = text.get(..2)?.parse().ok()?;
            format!("{}{text}", if yy >= 50 { "19" } else { "20" })
        }
        GENERALIZED_TIME if text.len() == 15 => text.to_string(),
        _ => return None,
    };
    if !full.ends_with('Z') || !full[..14].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    let unix = crate::manifest::parse_rfc3339(&rfc3339).ok()?;
    Some((unix, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fetcher tests' server certificate, made by openssl (see testdata/README.md):
    /// its notBefore is a UTCTime, its notAfter (2126) a GeneralizedTime.
    const CERT: &str = include_str!("testdata/server.pem");

    fn der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }

    #[test]
    fn a_real_certificate_gives_its_issuer_subject_and_dates() {
        let cert = CertSummary::parse(&der(CERT)).expect("parses");
        assert_eq!(cert.issuer, "CN=edgewire test CA");
        assert_eq!(cert.subject, "CN=localhost");
        assert_eq!(format_rfc3339(cert.not_before), "2026-11-26T04:37:53Z");
        assert_eq!(cert.not_after_rfc3339(), "2126-11-02T04:37:53Z");
    }

    #[test]
    fn every_truncation_of_a_certificate_is_refused_without_panicking() {
        let bytes = der(CERT);
        for n in 0..bytes.len() {
            assert_eq!(CertSummary::parse(&bytes[..n]), None, "{n} bytes");
        }
    }

    #[test]
    fn utc_years_from_50_are_in_the_last_century() {
        let t = |s: &str| {
            let mut b = vec![UTC_TIME, s.len() as u8];
            b.extend_from_slice(s.as_bytes());
            time(&b).map(|(t, _)| format_rfc3339(t))
        };
        assert_eq!(t("491231235959Z").unwrap(), "2049-12-31T23:59:59Z");
        assert_eq!(t("700101000001Z").unwrap(), "1970-01-01T00:00:01Z");
        assert_eq!(t("500101000000Z"), None, "1950, before unix time, not 2050");
        assert_eq!(t("5001010000Z"), None, "no seconds");
        assert_eq!(t("500101000000+"), None, "no zone");
    }

    #[test]
    fn a_certificate_with_less_than_a_third_of_its_life_left_expires_soon() {
        let day = 86_400;
        let c = |lifetime: u64| CertSummary {
            issuer: String::new(),
            subject: String::new(),
            not_before: 1_000 * day,
            not_after: (1_000 + lifetime) * day,
        };
        let at = |d: u64| (1_000 + d) * day;
        assert_eq!(c(90).judge(at(50)), Expiry::Fine(40 * day));
        assert_eq!(c(90).judge(at(77)), Expiry::Soon(13 * day));
        assert_eq!(c(6).judge(at(3)), Expiry::Fine(3 * day));
        assert_eq!(c(6).judge(at(5)), Expiry::Soon(day));
        assert_eq!(c(365).judge(at(300)), Expiry::Fine(65 * day));
        assert_eq!(c(90).judge(at(90)), Expiry::Expired);
        assert_eq!(c(90).judge(at(0) - 1), Expiry::NotYetValid);
    }

    #[test]
    fn control_characters_in_a_name_are_not_printed() {
        assert_eq!(printable(b"evil\x1b[2Jname"), "evil?[2Jname");
    }
}
