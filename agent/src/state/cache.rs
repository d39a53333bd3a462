//! The last good manifest, kept in the state directory (`manifest.cache`, 0600) so the
//! device comes up in its overlay with no manifest server in reach.
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory): after a
//! power cut the cache is the old manifest or the new one, never half of each. The raw
//! bytes are stored as received and verified again with `open()` when loaded; a cache
//! that fails is reported with its path and left alone — never deleted, and replaced
//! only by the next good manifest.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{ensure_private_dir, write_atomic};
use crate::manifest::MAX_SIZE;

pub const CACHE_FILE: &str = "manifest.cache";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(CACHE_FILE)
}

/// Replaces the cache with `raw`, which the caller has verified and accepted.
pub fn save(state_dir: &Path, raw: &[u8]) -> io::Result<()> {
    ensure_private_dir(state_dir).map_err(io::Error::other)?;
    write_atomic(&path(state_dir), raw, 0o600, true)
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("reading the cached manifest {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "the cached manifest {} is larger than {MAX_SIZE} bytes; it was not written by \
         edgewire",
        path.display()
    )]
    TooLarge { path: PathBuf },
}

/// The cached bytes; `None` when there is no cache yet.
pub fn load(state_dir: &Path) -> Result<Option<Vec<u8>>, CacheError> {
    let path = path(state_dir);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(CacheError::Io { path, error }),
    };
    match crate::fetch::read_capped(file, MAX_SIZE) {
        Ok(Some(bytes)) => Ok(Some(bytes)),
        Ok(None) => Err(CacheError::TooLarge { path }),
        Err(error) => Err(CacheError::Io { path, error }),
    }
}

/// The log line for a cache that loads but does not open (`err` from `open()` or
/// `from_wg()`): what is wrong, where, and that it is kept as it is.
pub fn describe_corrupt(path: &Path, err: &dyn std::fmt::Display) -> String {
    format!(
        "the cached manifest {} is not usable ({err}); ignoring it and waiting for the \
         manifest server. It is kept as it is for inspection and replaced by the next \
         good manifest (it may be from another --manifest-format or network key)",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::fsutil::TestDir;

    #[test]
    fn a_saved_manifest_loads_back_and_is_private() {
        let dir = TestDir::new("cache");
        let state = dir.path("state");
        assert!(load(&state).unwrap().is_none());
        save(&state, b"first").unwrap();
        save(&state, b"second").unwrap();
        assert_eq!(load(&state).unwrap().unwrap(), b"second");
        let mode = std::fs::metadata(path(&state))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(&state).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn an_oversized_cache_is_an_error_naming_the_file_and_is_left_alone() {
        let dir = TestDir::new("cache-big");
        std::fs::write(path(&dir.0), vec![0u8; MAX_SIZE + 1]).unwrap();
        let err = load(&dir.0).unwrap_err().to_string();
        assert!(
            err.contains("manifest.cache") && err.contains("larger than"),
            "{err}"
        );
        assert_eq!(
            std::fs::metadata(path(&dir.0)).unwrap().len(),
            MAX_SIZE as u64 + 1
        );
    }

    #[test]
    fn a_corrupt_cache_is_described_with_its_path_and_kept() {
        let text = describe_corrupt(Path::new("/var/lib/edgewire/manifest.cache"), &"bad magic");
        assert!(
            text.starts_with(
                "the cached manifest /var/lib/edgewire/manifest.cache is not usable (bad magic)"
            ),
            "{text}"
        );
        assert!(text.contains("kept as it is"), "{text}");
    }
}
