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

/// Notices jumps of the wall clock against the monotonic one: NTP setting the time on a
/// board that booted in 1970, or an operator fixing it.
pub struct WallClockWatch {
    base: Instant,
    /// Wall clock minus monotonic clock, in milliseconds, at the last look.
    offset_ms: i128,
}

/// Smaller steps are NTP slewing or scheduling noise.
const JUMP_MS: i128 = 2_000;

impl WallClockWatch {
    pub fn new() -> WallClockWatch {
        let base = Instant::now();
        WallClockWatch {
            base,
            offset_ms: offset_ms(base),
        }
    }

    /// How far the wall clock jumped (seconds, negative when backwards) since the last
    /// look, if it did.
    pub fn jumped(&mut self) -> Option<i64> {
        let offset = offset_ms(self.base);
        let delta = offset - self.offset_ms;
        self.offset_ms = offset;
        (delta.abs() > JUMP_MS).then_some((delta / 1000) as i64)
    }
}

fn offset_ms(base: Instant) -> i128 {
    let wall = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    };
    wall - base.elapsed().as_millis() as i128
}

/// The modification time of `path` in unix seconds, if it has one.
pub fn mtime(path: &std::path::Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_clock_does_not_count_as_a_jump() {
        let mut watch = WallClockWatch::new();
        assert_eq!(watch.jumped(), None);
        // A jump is the offset moving: shift the remembered offset as NTP would.
        watch.offset_ms -= 3_600_000;
        assert_eq!(watch.jumped(), Some(3600));
        assert_eq!(watch.jumped(), None);
    }
}
