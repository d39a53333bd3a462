//! The settings of `edgewire run`, after flags, environment and the env file are merged
//! (see `cli.rs` for the precedence).

use std::path::PathBuf;

use crate::manifest::NetworkPublicKey;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/edgewire";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/edgewire/edgewire.conf";
pub const DEFAULT_INTERFACE: &str = "ew0";
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_MTU: u16 = 1420;

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// A filesystem path or a `file://` URL (HTTP(S) comes later).
    pub manifest_url: String,
    /// The network keys the manifest signature is checked against (one, or two during
    /// a key rotation).
    pub manifest_pubkeys: Vec<NetworkPublicKey>,
    pub state_dir: PathBuf,
    pub interface: String,
    pub listen_port: u16,
    pub mtu: u16,
}
