//! Finds out whether the wall clock can be believed, for enforcing a manifest's expiry
//! (the answer, [`ClockTrust`], is pure and lives with the trust rules in `manifest`).
//!
//! Synchronised means: systemd-timesyncd has written `/run/systemd/timesync/synchronized`,
//! or the kernel's time status (adjtimex, kept by chrony, ntpd and timesyncd alike) has
//! `STA_UNSYNC` clear.

use std::path::Path;

use crate::manifest::ClockTrust;

/// Written by systemd-timesyncd once it has synchronised the clock since boot.
pub const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";

pub fn detect() -> ClockTrust {
    detect_with(Path::new(TIMESYNCD_FLAG), kernel_synchronised)
}

/// `detect` with the flag file and the kernel query passed in, for tests.
fn detect_with(flag: &Path, kernel: impl Fn() -> Result<bool, String>) -> ClockTrust {
    if flag.exists() {
        return ClockTrust::Synchronised(format!(
            "systemd-timesyncd synchronised it ({} exists)",
            flag.display()
        ));
    }
    match kernel() {
        Ok(true) => {
            ClockTrust::Synchronised("the kernel reports the clock synchronised (adjtimex)".into())
        }
        Ok(false) => ClockTrust::Unsynchronised(format!(
            "clock not synchronised (booted in 1970?): {} does not exist and the \
             kernel reports the clock unsynchronised",
            flag.display()
        )),
        Err(e) => ClockTrust::Unsynchronised(format!(
            "clock not synchronised as far as we can tell: {} does not exist and the \
             kernel's time status cannot be read ({e})",
            flag.display()
        )),
    }
}

/// adjtimex with no modes set only reads the status; no privilege needed.
fn kernel_synchronised() -> Result<bool, String> {
    // SAFETY: timex is plain data; all-zero is a valid value and `modes == 0` asks the
    // kernel to fill it in without changing anything.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;

    #[test]
    fn the_timesyncd_flag_file_means_synchronised() {
        let dir = TestDir::new("timesync");
        let flag = dir.path("synchronized");
        std::fs::write(&flag, "").unwrap();
        let clock = detect_with(&flag, || panic!("not asked"));
        assert!(clock.is_synchronised());
        assert!(clock.reason().contains("systemd-timesyncd"));
    }

    #[test]
    fn without_the_flag_the_kernel_status_decides_and_says_why() {
        let dir = TestDir::new("no-timesync");
        let flag = dir.path("synchronized");
        assert!(detect_with(&flag, || Ok(true)).is_synchronised());
        let clock = detect_with(&flag, || Ok(false));
        assert!(!clock.is_synchronised());
        assert!(
            clock
                .reason()
                .starts_with("clock not synchronised (booted in 1970?)")
        );
        let clock = detect_with(&flag, || Err("EPERM".into()));
        assert!(!clock.is_synchronised() && clock.reason().contains("EPERM"));
    }

    #[test]
    fn the_kernel_time_status_answers_or_says_why() {
        // Unprivileged adjtimex works on Linux; a sandbox may still refuse it.
        if let Err(e) = kernel_synchronised() {
            assert!(!e.is_empty());
        }
        assert!(!detect().reason().is_empty());
    }
}
