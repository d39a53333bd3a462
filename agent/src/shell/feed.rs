//! Where manifests come from. This issue reads a local path or a `file://` URL; the
//! HTTP(S) puller plugs in here as another `Source`.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::manifest::{self, Manifest, NetworkPublicKey};

/// How often the source is read again for a new manifest.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

pub enum Source {
    File(PathBuf),
}

impl Source {
    pub fn parse(url: &str) -> anyhow::Result<Source> {
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(Source::File(PathBuf::from(path)));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            bail!(
                "manifest URL {url}: HTTP(S) sources are not supported by this build yet; use a path or file://"
            );
        }
        Ok(Source::File(PathBuf::from(url)))
    }

    /// Reads the raw bytes. Blocking: call it off the event loop.
    fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            Source::File(path) => std::fs::read(path)
                .with_context(|| format!("reading the manifest {}", path.display())),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::File(path) => format!("file://{}", path.display()),
        }
    }
}

/// Fetches and verifies manifests, remembering the last bytes so an unchanged one costs
/// nothing, and the last error so it is logged once per change, not once per poll.
pub struct Feed {
    source: std::sync::Arc<Source>,
    keys: Vec<NetworkPublicKey>,
    last_bytes: Option<Vec<u8>>,
    last_error: Option<String>,
}

impl Feed {
    pub fn new(source: Source, keys: Vec<NetworkPublicKey>) -> Feed {
        Feed {
            source: std::sync::Arc::new(source),
            keys,
            last_bytes: None,
            last_error: None,
        }
    }

    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// A new, verified manifest, or `None` when nothing changed or the new one is bad
    /// (then the error is logged and the last good manifest stays in force).
    pub async fn poll(&mut self) -> Option<Manifest> {
        let source = self.source.clone();
        let result = smol::unblock(move || source.read()).await;
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                self.report(format!("{e:#}"));
                return None;
            }
        };
        if self.last_bytes.as_deref() == Some(&bytes[..]) {
            return None;
        }
        match manifest::open(&bytes, &self.keys) {
            Ok(manifest) => {
                self.last_bytes = Some(bytes);
                self.last_error = None;
                Some(manifest)
            }
            Err(e) => {
                self.report(format!(
                    "refusing the manifest {}: {e}",
                    self.source.describe()
                ));
                None
            }
        }
    }

    fn report(&mut self, error: String) {
        if self.last_error.as_ref() != Some(&error) {
            log::error!("{error}; keeping the last good manifest");
            self.last_error = Some(error);
        }
    }
}
