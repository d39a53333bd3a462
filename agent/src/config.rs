//! The settings of `edgewire run`, after flags, environment and the env file are merged
//! (see `cli.rs` for the precedence).

use std::path::PathBuf;
use std::time::Duration;

use crate::manifest::NetworkPublicKey;
use crate::prefix::Prefix;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/edgewire";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/edgewire/edgewire.conf";
pub const DEFAULT_INTERFACE: &str = "ew0";
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_MTU: u16 = 1420;
/// How often `--metrics-file` is rewritten: twice per usual 1-minute scrape interval.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(30);
/// Where `wg` looks for `IFACE.sock` (wireguard-tools' and wireguard-go's path).
pub const DEFAULT_CONTROL_DIR: &str = "/var/run/wireguard";
/// How often the manifest URL is asked for a new manifest (before jitter and backoff).
pub const DEFAULT_MANIFEST_INTERVAL: Duration = Duration::from_secs(30);

/// What the manifest URL serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManifestFormat {
    /// An envelope built by `edgewire manifest build`, checked against `manifest_pubkeys`.
    #[default]
    Signed,
    /// WireGuard INI as `kgctl showconf peer NAME` prints it: unsigned, so only read from
    /// a local file or over https with a pinned CA (`ca_file`).
    Wg,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// A filesystem path, a `file://` URL, or an `http://` / `https://` URL.
    pub manifest_url: String,
    /// The network keys the manifest signature is checked against (one, or two during
    /// a key rotation). Empty with [`ManifestFormat::Wg`].
    pub manifest_pubkeys: Vec<NetworkPublicKey>,
    pub manifest_format: ManifestFormat,
    /// Time between polls of the manifest URL while it answers.
    pub manifest_interval: Duration,
    /// PEM bundle of the CAs trusted for the manifest server; the system roots when
    /// absent. Required for `https://` with [`ManifestFormat::Wg`].
    pub ca_file: Option<PathBuf>,
    /// A file holding a bearer token for the manifest server, read again on every poll
    /// (so it can be rotated without a restart).
    pub manifest_token_file: Option<PathBuf>,
    /// This device's overlay address with the overlay's prefix length
    /// (`10.4.0.99/16`); required with, and only used by, [`ManifestFormat::Wg`].
    pub address: Option<Prefix>,
    pub state_dir: PathBuf,
    pub interface: String,
    pub listen_port: u16,
    pub mtu: u16,
}

/// What `run` offers the operator's tools: `wg`'s control socket and the metrics. Kept
/// apart from [`RunConfig`], which the data path and its tests build by hand.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The directory of the read-only WireGuard control socket; `None`: no socket.
    pub control_dir: Option<PathBuf>,
    /// Prometheus text written here (atomically) every `metrics_interval`.
    pub metrics_file: Option<PathBuf>,
    pub metrics_interval: Duration,
    /// Prometheus text served over HTTP here.
    pub metrics_listen: Option<std::net::SocketAddr>,
}
