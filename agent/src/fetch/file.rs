//! Manifests from the filesystem (`file://` or a path): a USB stick, a config
//! management drop, the lab. Read bounded, so a device node or a FIFO cannot make the
//! agent read forever.

use std::fs::File;
use std::path::Path;

use super::FetchError;
use super::body::read_capped;

pub fn read(path: &Path, max: usize) -> Result<Vec<u8>, FetchError> {
    let error = |error| FetchError::File {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(error)?;
    match read_capped(file, max).map_err(error)? {
        Some(bytes) => Ok(bytes),
        None => Err(FetchError::TooLarge {
            url: format!("file://{}", path.display()),
            limit: max,
        }),
    }
}
