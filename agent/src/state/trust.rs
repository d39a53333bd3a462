//! The trust record on disk: `manifest.serial` in the state directory, `SERIAL
//! SHA256-HEX` on one line, 0600, written atomically. The rules it serves are in
//! `manifest::trust`; this file only loads and stores them.
//!
//! Order for the caller, so a power cut never leaves a serial without its manifest:
//! `cache::save`, then [`TrustFile::accept`].

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{ensure_private_dir, write_atomic};
use crate::manifest::{ClockTrust, Manifest, Refusal, TrustState, Verdict};

pub const TRUST_FILE: &str = "manifest.serial";

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("reading the trust state {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "the trust state {} is damaged ({detail}); fix it or, knowing that the device \
         then accepts any serial once, remove it",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
}

/// The trust record and the file it lives in.
#[derive(Debug)]
pub struct TrustFile {
    path: PathBuf,
    state: TrustState,
}

impl TrustFile {
    /// Reads the record; none yet (a new device) is not an error. A damaged file is:
    /// silently starting over would undo the rollback protection.
    pub fn load(state_dir: &Path) -> Result<TrustFile, TrustError> {
        let path = state_dir.join(TRUST_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => TrustState::parse(&bytes).map_err(|detail| TrustError::Corrupt {
                path: path.clone(),
                detail,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => TrustState::default(),
            Err(error) => return Err(TrustError::Io { path, error }),
        };
        Ok(TrustFile { path, state })
    }

    /// The highest serial accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.state.highest()
    }

    /// [`TrustState::check`] against the record.
    pub fn check(
        &self,
        manifest: &Manifest,
        raw: &[u8],
        last_raw: Option<&[u8]>,
        clock: &ClockTrust,
        now: u64,
    ) -> Result<Verdict, Refusal> {
        self.state.check(manifest, raw, last_raw, clock, now)
    }

    /// Records an accepted manifest's serial (after `cache::save`). A manifest without
    /// a serial, or one not above the recorded serial, changes nothing.
    pub fn accept(&mut self, manifest: &Manifest, raw: &[u8]) -> io::Result<()> {
        let Some(next) = self.state.after_accepting(manifest, raw) else {
            return Ok(());
        };
        if let Some(dir) = self.path.parent() {
            ensure_private_dir(dir).map_err(io::Error::other)?;
        }
        let text = next.to_text().unwrap_or_default();
        write_atomic(&self.path, text.as_bytes(), 0o600, true)?;
        self.state = next;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;
    use crate::manifest::test_manifest;

    fn synced() -> ClockTrust {
        ClockTrust::Synchronised("test".into())
    }

    #[test]
    fn a_new_device_has_no_record() {
        let dir = TestDir::new("trustfile-new");
        assert_eq!(TrustFile::load(&dir.0).unwrap().highest(), None);
    }

    #[test]
    fn a_higher_serial_is_recorded_across_restarts() {
        let dir = TestDir::new("trustfile-higher");
        let mut file = TrustFile::load(&dir.0).unwrap();
        file.accept(&test_manifest(5), b"m5").unwrap();
        file.accept(&test_manifest(6), b"m6").unwrap();
        let reloaded = TrustFile::load(&dir.0).unwrap();
        assert_eq!(reloaded.highest(), Some(6));
        assert!(
            reloaded
                .check(&test_manifest(5), b"m5", None, &synced(), 0)
                .is_err()
        );
        let text = std::fs::read_to_string(dir.path(TRUST_FILE)).unwrap();
        assert!(text.starts_with("6 ") && text.ends_with('\n'), "{text:?}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path(TRUST_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn accepting_a_lower_equal_or_serialless_manifest_never_lowers_the_record() {
        let dir = TestDir::new("trustfile-never-lower");
        let mut file = TrustFile::load(&dir.0).unwrap();
        file.accept(&test_manifest(5), b"m5").unwrap();
        file.accept(&test_manifest(3), b"m3").unwrap();
        file.accept(&test_manifest(5), b"m5-other").unwrap();
        file.accept(&test_manifest(crate::manifest::NO_SERIAL), b"ini")
            .unwrap();
        let reloaded = TrustFile::load(&dir.0).unwrap();
        assert_eq!(reloaded.highest(), Some(5));
        assert!(matches!(
            reloaded.check(&test_manifest(5), b"m5", None, &synced(), 0),
            Ok(Verdict::Restore { .. })
        ));
    }

    #[test]
    fn a_damaged_state_file_is_an_error_naming_it_not_a_fresh_start() {
        let dir = TestDir::new("trustfile-corrupt");
        for text in [
            "",
            "x y",
            "5",
            "0 00",
            "5 abc",
            &format!("5 {}", "zz".repeat(32)),
        ] {
            std::fs::write(dir.path(TRUST_FILE), text).unwrap();
            let err = TrustFile::load(&dir.0).unwrap_err();
            assert!(
                matches!(err, TrustError::Corrupt { .. }),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains("manifest.serial"), "{err}");
        }
    }
}
