//! What the agent remembers only to tell the operator: when it started, and how its
//! manifest polls went (last poll, last success, last error, failures by kind). Read
//! by `status` (and the metrics); nothing decides anything from it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::core::RelayId;
use crate::fetch::FetchError;

pub(super) struct Record {
    pub started: Instant,
    /// Wall-clock seconds at start (may be 1970 on a board without an RTC).
    pub started_unix: u64,
    pub last_poll: Option<Instant>,
    /// The last poll the server answered (new bytes or 304).
    pub last_success: Option<Instant>,
    pub last_error: Option<(Instant, String)>,
    /// Failed polls, by [`fetch_error_kind`].
    pub failures: BTreeMap<&'static str, u64>,
    /// Path switches of all peers, by reason (`SwitchReason::name`).
    pub path_switches: BTreeMap<&'static str, u64>,
    /// Wall-clock seconds of `last_success`, for the metrics.
    pub last_success_unix: Option<u64>,
    /// Each relay's round trip when its allocation was last made.
    pub relay_rtt: BTreeMap<RelayId, Duration>,
}

impl Record {
    pub fn new(now: Instant, unix_now: u64) -> Record {
        Record {
            started: now,
            started_unix: unix_now,
            last_poll: None,
            last_success: None,
            last_error: None,
            failures: BTreeMap::new(),
            path_switches: BTreeMap::new(),
            last_success_unix: None,
            relay_rtt: BTreeMap::new(),
        }
    }

    pub fn on_pulled(&mut self, fetched: &Result<(), FetchError>, now: Instant, unix_now: u64) {
        self.last_poll = Some(now);
        match fetched {
            Ok(()) => {
                self.last_success = Some(now);
                self.last_success_unix = Some(unix_now);
            }
            Err(e) => {
                *self.failures.entry(fetch_error_kind(e)).or_default() += 1;
                self.last_error = Some((now, e.to_string()));
            }
        }
    }

    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// A short stable name per kind of fetch failure, for metrics labels and counters.
pub(super) fn fetch_error_kind(e: &FetchError) -> &'static str {
    match e {
        FetchError::BadUrl { .. } => "bad_url",
        FetchError::Connect { .. } => "connect",
        FetchError::Timeout { .. } => "timeout",
        FetchError::Status { .. } => "http_status",
        FetchError::TooLarge { .. } => "too_large",
        FetchError::Tls { .. } => "tls",
        FetchError::Http { .. } => "http",
        FetchError::File { .. } => "file",
        FetchError::Token { .. } => "token",
        FetchError::CaFile { .. } => "ca_file",
        FetchError::NoSystemRoots { .. } => "no_system_roots",
    }
}

/// Seconds since `then`, for the report.
pub(super) fn secs_since(then: Option<Instant>, now: Instant) -> Option<u64> {
    then.map(|t| now.saturating_duration_since(t).as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_poll_is_remembered_with_its_kind_and_a_later_success_keeps_it() {
        let t0 = Instant::now();
        let mut r = Record::new(t0, 1_700_000_000);
        let failed = Err(FetchError::Status {
            url: "https://m.example/m".into(),
            code: 503,
        });
        r.on_pulled(&failed, t0 + Duration::from_secs(5), 5);
        assert_eq!(r.failures.get("http_status"), Some(&1));
        assert_eq!(r.last_success, None);
        let (at, text) = r.last_error.clone().unwrap();
        assert_eq!(at, t0 + Duration::from_secs(5));
        assert!(text.contains("HTTP 503"), "{text}");
        r.on_pulled(&Ok(()), t0 + Duration::from_secs(35), 35);
        assert_eq!(r.last_success_unix, Some(35));
        assert_eq!(r.last_success, Some(t0 + Duration::from_secs(35)));
        assert_eq!(r.last_poll, r.last_success);
        // The last error stays, with its time: status shows how long ago it was.
        assert!(r.last_error.is_some());
        assert_eq!(
            secs_since(r.last_poll, t0 + Duration::from_secs(40)),
            Some(5)
        );
        assert_eq!(r.uptime(t0 + Duration::from_secs(40)).as_secs(), 40);
    }
}
