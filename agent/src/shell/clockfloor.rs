//! The floor under handshake timestamps. Peers refuse a handshake initiation whose
//! timestamp is not newer than the last one they saw from us, and a board without a
//! real-time clock boots in 1970 (or with whatever its clock file says): until its clock
//! is set, every peer would refuse it, and a device with no NTP server in reach would
//! never join. So the agent saves the time in its state directory every [`SAVE_EVERY`]
//! and, at start, has boringtun stamp handshakes no earlier than the latest time it
//! knows this device reached, plus [`SAVE_EVERY`] (it may have sent handshakes until
//! just before the save it did not live to make). The floor advances with the monotonic
//! clock; the wall clock wins once it is ahead.
//!
//! Being ahead of the true time costs nothing: WireGuard only compares a peer's
//! timestamps with each other. Each quick restart may move the floor up to
//! [`SAVE_EVERY`] ahead; the wall clock overtakes it within that time once set.

use std::path::{Path, PathBuf};
use std::time::Duration;

use boringtun::noise::handshake::{set_timestamp_floor, timestamp_floor};

use super::clock;

/// How often the time is saved: 144 small writes a day.
pub const SAVE_EVERY: Duration = Duration::from_secs(600);
const FILE: &str = "clock";

/// The state directory's saved time.
pub struct ClockFloor {
    path: PathBuf,
}

impl ClockFloor {
    /// Sets boringtun's floor from what `state_dir` holds (the saved time, and the
    /// modification times of the state files); says so when the wall clock is behind it.
    pub fn restore(state_dir: &Path) -> ClockFloor {
        let path = state_dir.join(FILE);
        let saved = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        let written = [
            crate::state::cache::path(state_dir),
            crate::keys::key_path(state_dir),
        ]
        .iter()
        .filter_map(|p| clock::mtime(p))
        .max();
        let reached = saved.max(written);
        if let Some(reached) = reached {
            set_timestamp_floor(Duration::from_secs(reached) + SAVE_EVERY);
            let now = clock::unix_now();
            if now + 60 < reached {
                log::warn!(
                    "the clock ({}) is behind the time this device last saved ({}): \
                     handshake timestamps go on from that time, so peers still answer; \
                     set the clock (NTP, an RTC) so the manifest's expiry can be checked",
                    crate::manifest::format_rfc3339(now),
                    crate::manifest::format_rfc3339(reached)
                );
            }
        }
        ClockFloor { path }
    }

    /// Saves the later of the wall clock and the floor. A failure is logged and the
    /// floor kept in memory: the next save may work.
    pub fn save(&self) {
        let now = clock::unix_now().max(timestamp_floor().as_secs());
        if let Err(e) =
            crate::fsutil::write_atomic(&self.path, format!("{now}\n").as_bytes(), 0o600, true)
        {
            log::warn!("saving the time to {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;

    fn floor_secs() -> u64 {
        timestamp_floor().as_secs()
    }

    // One test: the floor is one process-wide value.
    #[test]
    fn the_floor_starts_past_the_saved_time_and_is_saved_again() {
        let dir = TestDir::new("clockfloor");
        let far = clock::unix_now() + 30 * 86_400;
        std::fs::write(dir.path(FILE), format!("{far}\n")).unwrap();
        let floor = ClockFloor::restore(&dir.0);
        assert!(
            (far + 600..far + 610).contains(&floor_secs()),
            "floor {} for a saved {far}",
            floor_secs()
        );
        floor.save();
        let saved: u64 = std::fs::read_to_string(dir.path(FILE))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(saved >= far + 600, "saved {saved}, below the floor");

        // Garbage in the file: the state files' times still count; nothing panics.
        std::fs::write(dir.path(FILE), "not a time").unwrap();
        ClockFloor::restore(&dir.0);
    }
}
