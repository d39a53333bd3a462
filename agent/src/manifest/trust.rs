//! Anti-rollback and expiry: which verified manifests the device may put in force.
//!
//! The highest accepted serial is recorded with the SHA-256 of the manifest that carried
//! it (the shell keeps the record in the state directory, `state/trust.rs`). A lower
//! serial is a rollback; the same serial with other bytes is a second manifest claiming
//! the same place in history; both are refused. The record refuses rollbacks; it does not
//! say what is in force: the recorded manifest arriving while it is not in force (the
//! cache was lost or damaged) is to be put in force again ([`Verdict::Restore`]). An
//! expiry is enforced only when the clock is known to be synchronised ([`ClockTrust`]);
//! otherwise the manifest is accepted with a warning that says why.
//!
//! Manifests without a serial (serial 0: Kilo's wg INI, see `wg.rs`) skip the serial
//! rules and are never recorded; they are judged by their bytes alone.
//!
//! Order for the caller, so a power cut never leaves a serial without its manifest:
//! save the cache, then record the serial.

use ring::digest::{SHA256, digest};

use super::clocktrust::ClockTrust;
use super::{Manifest, format_rfc3339};

/// The serial of manifests that have none (the wg format).
pub const NO_SERIAL: u64 = 0;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Put it in force; log each warning.
    Accept { warnings: Vec<String> },
    /// The very bytes already in force: nothing to do.
    Unchanged,
    /// The manifest the record names (same serial, same SHA-256), while it is not the
    /// one in force: at boot from the cache, or after the cache was lost or damaged.
    /// Put it in force (and cache it again); the record needs no change.
    Restore { warnings: Vec<String> },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "manifest serial {got} is lower than serial {have}, already accepted: refusing a \
         rollback (publish a manifest with a serial above {have})"
    )]
    Rollback { got: u64, have: u64 },
    #[error(
        "manifest serial {serial} was already accepted with other content: refusing it \
         (every change needs a new, higher serial)"
    )]
    SameSerialDifferentContent { serial: u64 },
    #[error(
        "manifest serial {serial} expired at {} and the clock is synchronised: refusing \
         it (publish a newer one)",
        format_rfc3339(*at)
    )]
    Expired { serial: u64, at: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Accepted {
    serial: u64,
    sha256: [u8; 32],
}

/// The record of the highest serial accepted; empty on a new device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustState {
    accepted: Option<Accepted>,
}

impl TrustState {
    /// Reads the record from the text of its file (`SERIAL SHA256-HEX`). A damaged
    /// record is an error, never an empty state: that would undo the rollback protection.
    pub fn parse(bytes: &[u8]) -> Result<TrustState, String> {
        parse(bytes).map(|accepted| TrustState {
            accepted: Some(accepted),
        })
    }

    /// The text of the record's file; `None` while nothing is recorded.
    pub fn to_text(&self) -> Option<String> {
        self.accepted.as_ref().map(format)
    }

    /// The highest serial accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.accepted.as_ref().map(|a| a.serial)
    }

    /// Judges a verified manifest. `raw` is its bytes as received, `last_raw` those of
    /// the manifest in force (if any), `now` the wall clock in unix seconds.
    pub fn check(
        &self,
        manifest: &Manifest,
        raw: &[u8],
        last_raw: Option<&[u8]>,
        clock: &ClockTrust,
        now: u64,
    ) -> Result<Verdict, Refusal> {
        let serial = manifest.serial;
        if serial != NO_SERIAL
            && let Some(have) = &self.accepted
            && serial < have.serial
        {
            return Err(Refusal::Rollback {
                got: serial,
                have: have.serial,
            });
        }
        let mut warnings = Vec::new();
        if let Some(at) = manifest.expires.filter(|_| manifest.is_expired(now)) {
            if clock.is_synchronised() {
                return Err(Refusal::Expired { serial, at });
            }
            warnings.push(format!(
                "manifest serial {serial} expired at {}, but {}: expiry not enforced",
                format_rfc3339(at),
                clock.reason()
            ));
        }
        if last_raw == Some(raw) {
            return Ok(Verdict::Unchanged);
        }
        if serial != NO_SERIAL
            && let Some(have) = self.accepted.as_ref().filter(|a| a.serial == serial)
        {
            return if have.sha256 == sha256(raw) {
                Ok(Verdict::Restore { warnings })
            } else {
                Err(Refusal::SameSerialDifferentContent { serial })
            };
        }
        Ok(Verdict::Accept { warnings })
    }

    /// The record after accepting `manifest`, or `None` when it does not change: a
    /// manifest without a serial, or one not above the recorded serial.
    pub fn after_accepting(&self, manifest: &Manifest, raw: &[u8]) -> Option<TrustState> {
        if manifest.serial == NO_SERIAL || self.highest().is_some_and(|h| h >= manifest.serial) {
            return None;
        }
        Some(TrustState {
            accepted: Some(Accepted {
                serial: manifest.serial,
                sha256: sha256(raw),
            }),
        })
    }
}

fn sha256(raw: &[u8]) -> [u8; 32] {
    digest(&SHA256, raw)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// `SERIAL SHA256-HEX\n`: readable with `cat` when someone asks why a manifest was
/// refused.
fn format(a: &Accepted) -> String {
    let hex: String = a.sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} {hex}\n", a.serial)
}

fn parse(bytes: &[u8]) -> Result<Accepted, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let mut words = text.split_whitespace();
    let (Some(serial), Some(hex), None) = (words.next(), words.next(), words.next()) else {
        return Err("expected \"SERIAL SHA256\" on one line".into());
    };
    let serial = serial
        .parse::<u64>()
        .ok()
        .filter(|s| *s != NO_SERIAL)
        .ok_or_else(|| format!("{serial:?} is not a serial"))?;
    let bad_hex = || format!("{hex:?} is not a SHA-256 in hex");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad_hex());
    }
    let mut sha256 = [0u8; 32];
    for (i, byte) in sha256.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad_hex())?;
    }
    Ok(Accepted { serial, sha256 })
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
