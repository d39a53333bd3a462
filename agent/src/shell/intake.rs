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
use log::Level;

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
    /// Every line logged, for the tests.
    #[cfg(test)]
    said: Vec<(log::Level, String)>,
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
            #[cfg(test)]
            said: Vec::new(),
        })
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
                self.say(
                    Level::Error,
                    format!("{e}; waiting for the manifest server"),
                );
                return None;
            }
        };
        let manifest = match self.decode(&raw) {
            Ok(m) => m,
            Err(e) => {
                self.say(
                    Level::Error,
                    cache::describe_corrupt(&path, &format!("{e:#}")),
                );
                return None;
            }
        };
        match self.judge(&manifest, &raw) {
            Ok(_) => {
                self.say(
                    Level::Info,
                    format!(
                        "starting from the cached manifest {} (serial {})",
                        path.display(),
                        manifest.serial
                    ),
                );
                self.in_force = Some(raw);
                self.in_force_source = path.display().to_string();
                Some(manifest)
            }
            Err(refusal) => {
                self.say(
                    Level::Error,
                    format!(
                        "not starting from the cached manifest {}: {refusal}",
                        path.display()
                    ),
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
                if self.in_force_source != self.source {
                    let line = format!(
                        "{} sends the manifest in force (serial {}, started from the cache)",
                        self.source, manifest.serial
                    );
                    self.say(Level::Info, line);
                    self.in_force_source = self.source.clone();
                }
                None
            }
            Ok(Verdict::Accept { warnings }) => {
                self.resolved();
                for w in warnings {
                    self.say(Level::Warn, w);
                }
                // Cache first, then record the serial: a power cut in between leaves a
                // cache that is accepted again at boot, never a serial without its bytes.
                if self.save_cache(&raw)
                    && let Err(e) = self.trust.accept(&manifest, &raw)
                {
                    let line = format!(
                        "recording manifest serial {} in {}: {e}",
                        manifest.serial,
                        self.trust.path().display()
                    );
                    self.say(Level::Error, line);
                }
                self.put_in_force(raw);
                Some(manifest)
            }
            Ok(Verdict::Restore { warnings }) => {
                self.resolved();
                for w in warnings {
                    self.say(Level::Warn, w);
                }
                let line = format!(
                    "manifest serial {} from {} is the one recorded in {}, but it is not in \
                     force (the cached copy was lost or damaged): putting it in force and \
                     caching it again",
                    manifest.serial,
                    self.source,
                    self.trust.path().display()
                );
                self.say(Level::Info, line);
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
    fn save_cache(&mut self, raw: &[u8]) -> bool {
        match cache::save(&self.state_dir, raw) {
            Ok(()) => true,
            Err(e) => {
                let line = format!(
                    "caching the manifest in {}: {e}; it is in force but a reboot \
                     without network will not find it",
                    cache::path(&self.state_dir).display()
                );
                self.say(Level::Error, line);
                false
            }
        }
    }

    fn put_in_force(&mut self, raw: Vec<u8>) {
        self.in_force = Some(raw);
        self.in_force_source = self.source.clone();
    }

    /// The puller could not fetch.
    pub fn failed(&mut self, error: &FetchError) {
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
            self.say(Level::Error, error.clone());
            self.last_error = Some(error);
        }
    }

    fn resolved(&mut self) {
        if self.last_error.take().is_some() {
            let line = format!("manifest source {} is fine again", self.source);
            self.say(Level::Info, line);
        }
    }

    fn say(&mut self, level: Level, line: String) {
        log::log!(level, "{line}");
        #[cfg(test)]
        self.said.push((level, line));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fsutil::TestDir;
    use crate::manifest::{NetworkKeyPair, seal, test_manifest};

    const SOURCE: &str = "https://***@manifests.example/lab.ewm?***";

    struct World {
        _dir: TestDir,
        config: RunConfig,
        key: NetworkKeyPair,
    }

    impl World {
        fn new(name: &str) -> World {
            let dir = TestDir::new(name);
            let key = NetworkKeyPair::from_seed(&[7; 32]);
            let config = RunConfig {
                manifest_url: "https://user:pw@manifests.example/lab.ewm?sig=1".into(),
                manifest_pubkeys: vec![key.public_key()],
                manifest_format: ManifestFormat::Signed,
                manifest_interval: Duration::from_secs(30),
                ca_file: None,
                manifest_token_file: None,
                address: None,
                state_dir: dir.path("state"),
                interface: "ew-test".into(),
                listen_port: 51820,
                mtu: 1420,
            };
            World {
                _dir: dir,
                config,
                key,
            }
        }

        /// A start of the agent: a new intake over the same state directory, given the
        /// URL as the agent shows it.
        fn start(&self) -> Intake {
            let source = crate::fetch::redact_url(&self.config.manifest_url);
            assert_eq!(source, SOURCE);
            Intake::new(&self.config, PublicKey([0x11; 32]), source).unwrap()
        }

        /// Signed bytes of the lab manifest with `serial` and no expiry.
        fn signed(&self, serial: u64) -> Vec<u8> {
            let manifest = Manifest {
                expires: None,
                ..test_manifest(serial)
            };
            seal(&manifest, &self.key).unwrap()
        }

        fn cache(&self) -> PathBuf {
            cache::path(&self.config.state_dir)
        }
    }

    fn said_with(intake: &Intake, needle: &str) -> Vec<String> {
        intake
            .said
            .iter()
            .map(|(_, line)| line.clone())
            .filter(|line| line.contains(needle))
            .collect()
    }

    #[test]
    fn a_lost_cache_with_the_record_intact_is_restored_by_the_next_fetch() {
        let world = World::new("intake-lost-cache");
        let m5 = world.signed(5);
        let mut first = world.start();
        assert_eq!(first.take(m5.clone()).map(|m| m.serial), Some(5));
        std::fs::remove_file(world.cache()).unwrap();

        let mut second = world.start();
        assert!(second.boot().is_none(), "no cache to boot from");
        let restored = second.take(m5.clone());
        assert_eq!(restored.map(|m| m.serial), Some(5), "{:?}", second.said);
        assert_eq!(std::fs::read(world.cache()).unwrap(), m5, "cached again");
        let lines = said_with(&second, "is the one recorded in");
        assert_eq!(lines.len(), 1, "{:?}", second.said);
        assert!(
            lines[0].starts_with(&format!("manifest serial 5 from {SOURCE} is the one")),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("lost or damaged"), "{}", lines[0]);
        // In force now: the same bytes again change nothing.
        assert!(second.take(m5).is_none());
        // And the next start boots from the cache again.
        assert_eq!(world.start().boot().map(|m| m.serial), Some(5));
    }

    #[test]
    fn a_damaged_cache_with_the_record_intact_is_restored_by_the_next_fetch() {
        let world = World::new("intake-damaged-cache");
        let m5 = world.signed(5);
        assert!(world.start().take(m5.clone()).is_some());
        let mut damaged = m5.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        std::fs::write(world.cache(), &damaged).unwrap();

        let mut next = world.start();
        assert!(next.boot().is_none());
        assert_eq!(
            said_with(&next, "is not usable").len(),
            1,
            "{:?}",
            next.said
        );
        assert_eq!(next.take(m5.clone()).map(|m| m.serial), Some(5));
        assert_eq!(std::fs::read(world.cache()).unwrap(), m5);
        // The record still refuses a rollback.
        assert!(next.take(world.signed(4)).is_none());
        assert_eq!(said_with(&next, "refusing a rollback").len(), 1);
    }

    #[test]
    fn a_boot_from_the_cache_names_the_cache_file_as_the_source() {
        let world = World::new("intake-boot-source");
        assert!(world.start().take(world.signed(5)).is_some());
        let mut next = world.start();
        assert_eq!(next.boot().map(|m| m.serial), Some(5));
        let cache = world.cache().display().to_string();
        assert_eq!(next.in_force_source(), cache);
        assert!(
            said_with(&next, "starting from the cached manifest")[0].contains(&cache),
            "{:?}",
            next.said
        );
        // The server sending the same bytes makes it the source, with one line.
        assert!(next.take(world.signed(5)).is_none());
        assert_eq!(next.in_force_source(), SOURCE);
        assert_eq!(
            said_with(
                &next,
                "sends the manifest in force (serial 5, started from the cache)"
            )
            .len(),
            1,
            "{:?}",
            next.said
        );
        assert!(next.take(world.signed(5)).is_none());
        assert_eq!(said_with(&next, "sends the manifest in force").len(), 1);
        assert!(next.take(world.signed(6)).is_some());
        assert_eq!(next.in_force_source(), SOURCE);
    }

    #[test]
    fn a_fetch_problem_ending_in_refused_bytes_is_not_fine_again() {
        let world = World::new("intake-fine-again");
        let mut intake = world.start();
        let down = FetchError::Connect {
            url: SOURCE.into(),
            detail: "the connection failed".into(),
        };
        intake.failed(&down);
        let m5 = world.signed(5);
        assert!(intake.take(m5[..20].to_vec()).is_none());
        let lines: Vec<&str> = intake.said.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("cannot reach"), "{lines:?}");
        assert!(
            lines[1].starts_with(&format!("refusing the manifest from {SOURCE}")),
            "{lines:?}"
        );
        assert!(lines[1].contains("truncated"), "{lines:?}");
        // Good bytes end the problem, with one line saying so.
        assert!(intake.take(m5).is_some());
        assert_eq!(said_with(&intake, "is fine again").len(), 1);
        // A fetch failure then a 304: fine again.
        intake.failed(&down);
        intake.fetched();
        assert_eq!(said_with(&intake, "is fine again").len(), 2);
    }

    #[test]
    fn no_line_shows_the_credentials_of_the_manifest_url() {
        let world = World::new("intake-redacted");
        let mut intake = world.start();
        intake.take(b"garbage".to_vec());
        intake.take(world.signed(5));
        assert!(intake.said.len() >= 2);
        for (_, line) in &intake.said {
            assert!(!line.contains("pw") && !line.contains("sig=1"), "{line}");
        }
    }
}
