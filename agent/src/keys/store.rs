//! The device's WireGuard private key on disk: `<state dir>/private.key`, base64 text,
//! mode 0600 in a 0700 directory. Generated on the device and never leaves it; only the
//! public half is ever printed or logged.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::PrivateKey;
use crate::fsutil::{ensure_private_dir, write_atomic};

pub const PRIVATE_KEY_FILE: &str = "private.key";

pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(PRIVATE_KEY_FILE)
}

/// Loads the key, refusing one that other users could have read.
pub fn load(state_dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = key_path(state_dir);
    let file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => anyhow::anyhow!(
            "no WireGuard private key at {}: run `edgewire keygen --state-dir {}` \
             (or start `edgewire run`, which makes one)",
            path.display(),
            state_dir.display()
        ),
        _ => anyhow::anyhow!("reading the private key {}: {e}", path.display()),
    })?;
    // fstat on the open file: the mode checked is the mode of the bytes read.
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("the private key {} is not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the private key {} is open to other users (mode {mode:04o}), so it may have \
             leaked: if you are sure it has not, run `chmod 600 {}`; otherwise make a new \
             one with `edgewire keygen --force` and enrol the new public key",
            path.display(),
            path.display()
        );
    }
    // A key is 45 bytes; the bound keeps a wrong file from being read whole.
    let mut text = String::new();
    file.take(1024)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the private key {}", path.display()))?;
    PrivateKey::from_base64(&text).map_err(|_| {
        anyhow::anyhow!(
            "{} does not hold a WireGuard private key (44 characters of base64); \
             make one with `edgewire keygen --force`",
            path.display()
        )
    })
}

/// Makes a new key in `state_dir` (creating it 0700). Refuses to replace an existing
/// key unless `force`: replacing it cuts the device off until peers learn the new one.
pub fn create(state_dir: &Path, force: bool) -> anyhow::Result<PrivateKey> {
    ensure_private_dir(state_dir)?;
    let path = key_path(state_dir);
    let key = PrivateKey::generate();
    let text = format!("{}\n", key.to_base64());
    write_atomic(&path, text.as_bytes(), 0o600, force).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists: keep it (`edgewire pubkey` prints its public key), or pass \
             --force to replace it, after which every peer needs the new public key",
            path.display()
        ),
        _ => anyhow::anyhow!("writing the private key {}: {e}", path.display()),
    })?;
    Ok(key)
}

/// What `edgewire run` does at start: the existing key, or a new one on first start.
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<PrivateKey> {
    ensure_private_dir(state_dir)?;
    if key_path(state_dir).exists() {
        return load(state_dir);
    }
    match create(state_dir, false) {
        Ok(key) => {
            log::info!(
                "generated a new WireGuard key; public key {}",
                key.public_key()
            );
            Ok(key)
        }
        // Someone else made one between our check and our write: use theirs.
        Err(_) if key_path(state_dir).exists() => load(state_dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::fsutil::TestDir;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_start_creates_a_0600_key_in_a_0700_dir_and_later_starts_load_it() {
        let dir = TestDir::new("store");
        let state = dir.path("state");
        let key = load_or_create(&state).unwrap();
        assert_eq!((mode(&state), mode(&key_path(&state))), (0o700, 0o600));
        let text = fs::read_to_string(key_path(&state)).unwrap();
        assert_eq!(text.trim(), key.to_base64());
        assert_eq!(
            load_or_create(&state).unwrap().public_key(),
            key.public_key()
        );
        assert_eq!(load(&state).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn a_missing_key_names_the_file_and_says_to_run_keygen() {
        let dir = TestDir::new("missing");
        let err = load(&dir.0).unwrap_err().to_string();
        assert!(
            err.contains("private.key") && err.contains("edgewire keygen"),
            "{err}"
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = TestDir::new("loose");
        create(&dir.0, false).unwrap();
        fs::set_permissions(key_path(&dir.0), fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&dir.0).unwrap_err().to_string();
        assert!(err.contains("open to other users (mode 0644)"), "{err}");
    }

    #[test]
    fn keygen_refuses_to_replace_a_key_without_force() {
        let dir = TestDir::new("force");
        let first = create(&dir.0, false).unwrap();
        let err = create(&dir.0, false).unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(load(&dir.0).unwrap().public_key(), first.public_key());
        let second = create(&dir.0, true).unwrap();
        assert_eq!(load(&dir.0).unwrap().public_key(), second.public_key());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_without_echoing_it() {
        let dir = TestDir::new("garbage");
        write_atomic(&key_path(&dir.0), b"c2VjcmV0\n", 0o600, false).unwrap();
        let err = load(&dir.0).unwrap_err().to_string();
        assert!(
            err.contains("does not hold a WireGuard private key"),
            "{err}"
        );
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}
