//! What the agent keeps in its state directory besides its key (`keys`): the last good
//! manifest (`cache`), the record of the highest serial accepted (`trust`), and the
//! clean-up of temporary files that a crash left behind.
//!
//! This is the I/O half of the manifest's trust; the rules themselves are pure and live
//! in `manifest` (`manifest::trust`).

pub mod cache;
pub mod trust;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// A temporary file of [`crate::fsutil::write_atomic`] that no running process owns.
#[derive(Debug, PartialEq, Eq)]
pub struct Stale {
    pub path: PathBuf,
    pub pid: u32,
}

/// Removes the temporary files `write_atomic` leaves when a process dies between create
/// and rename (`.NAME.tmp-PID`), from the state directory only and only those whose PID
/// is not a live process (another agent, or `edgewire keygen`, may be writing right
/// now). Called at start, before this process writes anything, so one named with our
/// own PID is a leftover of an earlier process that had it. Returns what was removed;
/// a directory that does not exist yet has nothing to clean.
pub fn remove_stale_temporaries(state_dir: &Path) -> io::Result<Vec<Stale>> {
    remove_stale_with(state_dir, |pid| pid != std::process::id() && is_alive(pid))
}

fn remove_stale_with(state_dir: &Path, alive: impl Fn(u32) -> bool) -> io::Result<Vec<Stale>> {
    let entries = match std::fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(pid) = temporary_pid(&entry.file_name()) else {
            continue;
        };
        // Never follow a link or remove a directory that happens to match the pattern.
        if !entry.file_type()?.is_file() || alive(pid) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(Stale { path, pid }),
            // Its writer renamed or removed it just now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    removed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(removed)
}

/// The PID in a name `write_atomic` gives its temporaries: `.NAME.tmp-PID`.
fn temporary_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    let rest = name.strip_prefix('.')?;
    let (target, pid) = rest.rsplit_once(".tmp-")?;
    if target.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid != 0)
}

/// Whether a process with this PID exists (signal 0 checks without sending anything;
/// EPERM means it exists but belongs to someone else).
fn is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the PID exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;

    #[test]
    fn only_names_of_write_atomic_temporaries_carry_a_pid() {
        let pid = |s: &str| temporary_pid(OsStr::new(s));
        assert_eq!(pid(".manifest.cache.tmp-123"), Some(123));
        assert_eq!(pid(".private.key.tmp-7"), Some(7));
        assert_eq!(pid(".a.tmp-b.tmp-42"), Some(42));
        for other in [
            "manifest.cache",
            "manifest.cache.tmp-123",
            ".manifest.cache.tmp-",
            ".manifest.cache.tmp-12x",
            ".manifest.cache.tmp--1",
            ".manifest.cache.tmp-0",
            "..tmp-5x",
            ".tmp-5",
            ".x.tmp-99999999999999999999",
        ] {
            assert_eq!(pid(other), None, "{other}");
        }
    }

    #[test]
    fn stale_temporaries_go_and_live_ones_and_other_files_stay() {
        let dir = TestDir::new("stale");
        for name in [
            "manifest.cache",
            "manifest.serial",
            "private.key",
            ".manifest.cache.tmp-100",
            ".manifest.serial.tmp-200",
            ".private.key.tmp-300",
            "notes.tmp-100",
        ] {
            std::fs::write(dir.path(name), name).unwrap();
        }
        std::fs::create_dir(dir.path(".dir.tmp-100")).unwrap();
        let removed = remove_stale_with(&dir.0, |pid| pid == 300).unwrap();
        assert_eq!(
            removed,
            vec![
                Stale {
                    path: dir.path(".manifest.cache.tmp-100"),
                    pid: 100
                },
                Stale {
                    path: dir.path(".manifest.serial.tmp-200"),
                    pid: 200
                },
            ]
        );
        let mut left: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".dir.tmp-100",
                ".private.key.tmp-300",
                "manifest.cache",
                "manifest.serial",
                "notes.tmp-100",
                "private.key"
            ]
        );
    }

    #[test]
    fn a_missing_state_directory_has_nothing_to_clean() {
        let dir = TestDir::new("stale-missing");
        assert_eq!(
            remove_stale_temporaries(&dir.path("absent")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn our_own_pid_and_dead_pids_are_stale_and_a_live_one_is_not() {
        let dir = TestDir::new("stale-pids");
        let own = std::process::id();
        // PID 1 is always alive; a pid above the kernel's pid_max never is.
        let dead = 4_194_304 + 1;
        for pid in [own, 1, dead] {
            std::fs::write(dir.path(&format!(".manifest.cache.tmp-{pid}")), "x").unwrap();
        }
        let mut pids: Vec<u32> = remove_stale_temporaries(&dir.0)
            .unwrap()
            .into_iter()
            .map(|s| s.pid)
            .collect();
        pids.sort();
        let mut want = vec![own, dead];
        want.sort();
        assert_eq!(pids, want);
        assert!(dir.path(".manifest.cache.tmp-1").exists());
        assert!(is_alive(1) && is_alive(own) && !is_alive(dead));
    }
}
