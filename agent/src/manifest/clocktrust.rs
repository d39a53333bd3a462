//! Whether the wall clock can be believed, for enforcing a manifest's expiry. Many
//! boards have no real-time clock and boot in 1970 (or at the build date) until NTP
//! answers; until then an expiry check would either refuse everything or nothing.
//!
//! Only the answer lives here; the shell finds it out (`shell/clocktrust.rs`: the
//! timesyncd flag file and the kernel's time status).

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClockTrust {
    /// How we know, for the log.
    Synchronised(String),
    /// Why we do not trust it, for the log.
    Unsynchronised(String),
}

impl ClockTrust {
    pub fn is_synchronised(&self) -> bool {
        matches!(self, ClockTrust::Synchronised(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            ClockTrust::Synchronised(why) | ClockTrust::Unsynchronised(why) => why,
        }
    }
}
