//! Manifests in: raw bytes from the cache at boot or from the puller → verified, judged
//! (anti-rollback, expiry) and decoded manifests for the agent to put in force. Accepted
//! bytes are cached, then their serial recorded, so a reboot without network comes up
//! on the last good manifest.
//!
//! What is in force is what counts: the trust record refuses rollbacks, it does not say
//! that anything runs. When the cache was lost or damaged, the recorded manifest coming
//! from the server again is put in force and cached again (`Verdict::Restore`).
//!
//! Errors are logged once per change of state, not once per poll: a server that is down
//! for a day writes one line, and one more when it is back.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{ManifestFormat, RunConfig};
use crate::fetch::FetchError;
use crate::keys::PublicKey;
use crate::manifest::{self, Manifest, NetworkPublicKey, Refusal, Verdict};
use crate::prefix::Prefix;
use crate::state::cache;
use crate::state::trust::TrustFile;

use super::{clock, clocktrust};

pub struct Intake {
    state_dir: PathBuf,
    format: ManifestFormat,
    keys: Vec<NetworkPublicKey>,
    own: PublicKey,
    address: Option<Prefix>,
    trust: TrustFile,
    /// The raw bytes of the manifest in force.
    in_force: Option<Vec<u8>>,
    /// Where the manifest in force came from: the cache file after a boot from it, the
    /// manifest URL once the server sent one.
    in_force_source: String,
    /// The last problem logged, so it is not logged again on every poll.
    last_error: Option<String>,
    /// The manifest URL or path, credentials hidden (`fetch::redact_url`).
    source: String,
}

impl Intake {
    /// `source` is the manifest URL or path as it may be shown (credentials hidden).
    pub fn new(config: &RunConfig, own: PublicKey, source: String) -> anyhow::Result<Intake> {
        let trust =
            TrustFile::load(&config.state_dir).context("loading the manifest trust state")?;
        Ok(Intake {
            state_dir: config.state_dir.clone(),
            format: config.manifest_format,
            keys: config.manifest_pubkeys.clone(),
            own,
            address: config.address,
            trust,
            in_force: None,
            in_force_source: source.clone(),
            last_error: None,
            source,
        })
    }

    /// Where manifests come from, for logs.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the manifest in force came from, for logs and `status`: the cache file
    /// after a boot from it, the manifest URL (credentials hidden) otherwise.
    pub fn in_force_source(&self) -> &str {
        &self.in_force_source
    }

    /// The cached manifest, if there is a good one: what the device runs on until the
    /// server answers. A cache that does not verify is reported and left alone.
    pub fn boot(&mut self) -> Option<Manifest> {
        let path = cache::path(&self.state_dir);
        let raw = match cache::load(&self.state_dir) {
            Ok(Some(raw)) => raw,
            Ok(None) => return None,
            Err(e) => {
                log::error!("{e}; waiting for the manifest server");
                return None;
            }
        };
        let manifest = match self.decode(&raw) {
            Ok(m) => m,
            Err(e) => {
                log::error!("{}", cache::describe_corrupt(&path, &format!("{e:#}")));
                return None;
            }
        };
        match self.judge(&manifest, &raw) {
            Ok(_) => {
                log::info!(
                    "starting from the cached manifest {} (serial {})",
                    path.display(),
                    manifest.serial
                );
                self.in_force = Some(raw);
                self.in_force_source = path.display().to_string();
                Some(manifest)
            }
            Err(refusal) => {
                log::error!(
                    "not starting from the cached manifest {}: {refusal}",
                    path.display()
                );
                None
            }
        }
    }

    /// New bytes from the manifest URL: the manifest to put in force, or `None` when they
    /// are refused (logged) or change nothing. Called instead of [`Intake::fetched`]: a
    /// fetch problem that ends in a refused manifest is not "fine again".
    pub fn take(&mut self, raw: Vec<u8>) -> Option<Manifest> {
        let manifest = match self.decode(&raw) {
            Ok(m) => m,
            Err(e) => {
                self.problem(format!("refusing the manifest from {}: {e:#}", self.source));
                return None;
            }
        };
        match self.judge(&manifest, &raw) {
            Ok(Verdict::Unchanged) => {
                self.resolved();
                None
            }
            Ok(Verdict::Accept { warnings }) => {
                self.resolved();
                for w in warnings {
                    log::warn!("{w}");
                }
                // Cache first, then record the serial: a power cut in between leaves a
                // cache that is accepted again at boot, never a serial without its bytes.
                if self.save_cache(&raw)
                    && let Err(e) = self.trust.accept(&manifest, &raw)
                {
                    log::error!(
                        "recording manifest serial {} in {}: {e}",
                        manifest.serial,
                        self.trust.path().display()
                    );
                }
                self.put_in_force(raw);
                Some(manifest)
            }
            Ok(Verdict::Restore { warnings }) => {
                self.resolved();
                for w in warnings {
                    log::warn!("{w}");
                }
                log::info!(
                    "manifest serial {} from {} is the one recorded in {}, but it is not in \
                     force (the cached copy was lost or damaged): putting it in force and \
                     caching it again",
                    manifest.serial,
                    self.source,
                    self.trust.path().display()
                );
                self.save_cache(&raw);
                self.put_in_force(raw);
                Some(manifest)
            }
            Err(refusal) => {
                self.problem(format!(
                    "refusing the manifest from {}: {refusal}",
                    self.source
                ));
                None
            }
        }
    }

    /// Caches accepted bytes; says so when it fails. Whether they were cached.
    fn save_cache(&self, raw: &[u8]) -> bool {
        match cache::save(&self.state_dir, raw) {
            Ok(()) => true,
            Err(e) => {
                log::error!(
                    "caching the manifest in {}: {e}; it is in force but a reboot \
                     without network will not find it",
                    cache::path(&self.state_dir).display()
                );
                false
            }
        }
    }

    fn put_in_force(&mut self, raw: Vec<u8>) {
        self.in_force = Some(raw);
        self.in_force_source = self.source.clone();
    }

    /// The puller could not fetch.
    pub fn failed(&mut self, error: FetchError) {
        let keeping = if self.in_force.is_some() {
            "keeping the manifest in force"
        } else {
            "no manifest yet; retrying"
        };
        self.problem(format!("{error}; {keeping}"));
    }

    /// The puller fetched and nothing changed (a 304, or the same bytes): a fetch
    /// problem is over. New bytes go to [`Intake::take`] instead.
    pub fn fetched(&mut self) {
        if self
            .last_error
            .as_deref()
            .is_some_and(|e| !e.starts_with("refusing"))
        {
            self.resolved();
        }
    }

    fn decode(&self, raw: &[u8]) -> anyhow::Result<Manifest> {
        match self.format {
            ManifestFormat::Signed => Ok(manifest::open(raw, &self.keys)?),
            ManifestFormat::Wg => {
                let address = self
                    .address
                    .context("--address is required with --manifest-format wg")?;
                let text =
                    std::str::from_utf8(raw).context("the WireGuard config is not UTF-8 text")?;
                Ok(manifest::wg::from_wg(text, self.own, address)?)
            }
        }
    }

    fn judge(&self, manifest: &Manifest, raw: &[u8]) -> Result<Verdict, Refusal> {
        let clock_trust = clocktrust::detect();
        self.trust.check(
            manifest,
            raw,
            self.in_force.as_deref(),
            &clock_trust,
            clock::unix_now(),
        )
    }

    fn problem(&mut self, error: String) {
        if self.last_error.as_ref() != Some(&error) {
            log::error!("{error}");
            self.last_error = Some(error);
        }
    }

    fn resolved(&mut self) {
        if self.last_error.take().is_some() {
            log::info!("manifest source {} is fine again", self.source);
        }
    }
}
