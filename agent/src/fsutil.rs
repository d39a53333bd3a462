//! Files that must never be seen half-written or too widely readable: keys, manifests;
//! and a manifest file read no further than the size limit.
//!
//! A field device loses power at any moment, so a file is written to a temporary name
//! in the same directory, synced, and renamed over the target; a reader sees the old
//! file or the new one. The mode is given to `open`, so a secret is never readable by
//! others, not even for the moment between create and chmod.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

/// Writes `bytes` to `path` atomically with `mode`. Without `overwrite`, an existing
/// file is left alone and the error is `AlreadyExists`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A crash of an earlier process with the same pid may have left one behind.
    let _ = fs::remove_file(&tmp);
    let result = write_then_place(&tmp, path, bytes, mode, overwrite);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Makes the rename itself durable. Some filesystems refuse to sync a directory;
    // the data is then as safe as that filesystem allows.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn write_then_place(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    mode: u32,
    overwrite: bool,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    if overwrite {
        return fs::rename(tmp, path);
    }
    // link() fails when the target exists, so there is no window in which a check
    // and a rename could both pass for two writers.
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // Filesystems without hard links (vfat on a USB stick): check, then rename.
        Err(_) if path.exists() => Err(io::ErrorKind::AlreadyExists.into()),
        Err(_) => fs::rename(tmp, path),
    }
}

/// Reads a manifest file, at most `manifest::MAX_SIZE + 1` bytes: enough for
/// `manifest::open` to report `TooLarge` without reading an endless file (a device node,
/// a FIFO) to the end.
pub fn read_manifest_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?
        .take(crate::manifest::MAX_SIZE as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates `dir` (and missing parents) 0700, or tightens an existing one that other
/// users can enter, with a warning: the private key lives there.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| anyhow::anyhow!("creating the state directory {}: {e}", dir.display())),
        Err(e) => Err(anyhow::anyhow!(
            "reading the state directory {}: {e}",
            dir.display()
        )),
        Ok(meta) if !meta.is_dir() => {
            anyhow::bail!("the state directory {} is not a directory", dir.display())
        }
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
                    anyhow::anyhow!(
                        "the state directory {} is open to other users (mode {mode:04o}) and \
                         could not be changed to 0700: {e}; fix it with `chmod 700 {}`",
                        dir.display(),
                        dir.display()
                    )
                })?;
                log::warn!(
                    "the state directory {} was open to other users (mode {mode:04o}); \
                     changed it to 0700",
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// A directory under the system temp dir, removed on drop, for tests.
#[cfg(test)]
pub(crate) struct TestDir(pub PathBuf);

#[cfg(test)]
impl TestDir {
    pub fn new(name: &str) -> TestDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("edgewire-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_atomic_write_creates_the_file_with_the_given_mode_and_no_leftovers() {
        let dir = TestDir::new("atomic");
        let path = dir.path("secret");
        write_atomic(&path, b"one", 0o600, false).unwrap();
        assert_eq!(
            (fs::read(&path).unwrap(), mode(&path)),
            (b"one".to_vec(), 0o600)
        );
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn an_atomic_write_without_overwrite_leaves_an_existing_file_alone() {
        let dir = TestDir::new("no-overwrite");
        let path = dir.path("key");
        write_atomic(&path, b"one", 0o600, false).unwrap();
        let err = write_atomic(&path, b"two", 0o600, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two", 0o644, true).unwrap();
        assert_eq!(
            (fs::read(&path).unwrap(), mode(&path)),
            (b"two".to_vec(), 0o644)
        );
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_state_dir_is_created_0700_and_a_loose_one_is_tightened() {
        let dir = TestDir::new("state");
        let state = dir.path("a/b");
        ensure_private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
    }
}
