//! The only place that reads the clock: everything else gets `now` passed in.

use std::time::Instant;

pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock seconds since 1970, for manifest expiry. Boards without a real-time clock
/// boot in 1970: callers judge this only when `ClockTrust` says it is synchronised.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
