//! The settings that come from flags, the environment and the env file, and their
//! precedence: flags beat environment beat file beat the defaults in `config.rs`.
//!
//! Every such setting is one row of [`KEYS`]; adding one (`--manifest-interval`,
//! `--ca-file`, ...) is a new row plus reading it where the command's config is built.
//! Each value remembers where it came from, so a bad one is reported at its source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// One setting: its flag, its `EDGEWIRE_*` name (environment and env file), and how
/// many values it takes.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    pub flag: &'static str,
    pub env: &'static str,
    /// Repeated flags, or comma-separated values in the environment and the file.
    pub max: usize,
    /// The value's placeholder in usage and messages.
    pub value: &'static str,
    pub help: &'static str,
}

pub const MANIFEST_URL: Key = Key {
    flag: "--manifest-url",
    env: "EDGEWIRE_MANIFEST_URL",
    max: 1,
    value: "URL",
    help: "manifest: a path, file:// or https:// URL (required)",
};
pub const MANIFEST_PUBKEY: Key = Key {
    flag: "--manifest-pubkey",
    env: "EDGEWIRE_MANIFEST_PUBKEY",
    max: 2,
    value: "KEY",
    help: "network public key, base64; twice in a key rotation (not for wg)",
};
pub const MANIFEST_FORMAT: Key = Key {
    flag: "--manifest-format",
    env: "EDGEWIRE_MANIFEST_FORMAT",
    max: 1,
    value: "signed|wg",
    help: "signed (default) or wg (Kilo's `kgctl showconf peer`, unsigned)",
};
pub const MANIFEST_INTERVAL: Key = Key {
    flag: "--manifest-interval",
    env: "EDGEWIRE_MANIFEST_INTERVAL",
    max: 1,
    value: "SECS",
    help: "seconds between polls of the manifest URL (default 30)",
};
pub const CA_FILE: Key = Key {
    flag: "--ca-file",
    env: "EDGEWIRE_CA_FILE",
    max: 1,
    value: "FILE",
    help: "PEM CAs pinned for the manifest server and TLS relays (default: system roots)",
};
pub const MANIFEST_TOKEN_FILE: Key = Key {
    flag: "--manifest-token-file",
    env: "EDGEWIRE_MANIFEST_TOKEN_FILE",
    max: 1,
    value: "FILE",
    help: "bearer token for the manifest server, read on every poll",
};
pub const ADDRESS: Key = Key {
    flag: "--address",
    env: "EDGEWIRE_ADDRESS",
    max: 1,
    value: "PREFIX",
    help: "this device's overlay address as 10.4.0.99/16 (wg only)",
};
pub const STATE_DIR: Key = Key {
    flag: "--state-dir",
    env: "EDGEWIRE_STATE_DIR",
    max: 1,
    value: "DIR",
    help: "private key and state (default /var/lib/edgewire)",
};
pub const INTERFACE: Key = Key {
    flag: "--interface",
    env: "EDGEWIRE_INTERFACE",
    max: 1,
    value: "NAME",
    help: "TUN interface name (default ew0)",
};
pub const LISTEN_PORT: Key = Key {
    flag: "--listen-port",
    env: "EDGEWIRE_LISTEN_PORT",
    max: 1,
    value: "PORT",
    help: "WireGuard UDP port (default 51820)",
};

pub const CONTROL_DIR: Key = Key {
    flag: "--control-dir",
    env: "EDGEWIRE_CONTROL_DIR",
    max: 1,
    value: "DIR",
    help: "where `wg show` finds IFACE.sock, read-only (default /var/run/wireguard; \
           none: no socket)",
};

pub const METRICS_FILE: Key = Key {
    flag: "--metrics-file",
    env: "EDGEWIRE_METRICS_FILE",
    max: 1,
    value: "FILE",
    help: "write Prometheus metrics here, atomically, for node_exporter's textfile \
           collector (FILE.prom in its directory)",
};
pub const METRICS_INTERVAL: Key = Key {
    flag: "--metrics-interval",
    env: "EDGEWIRE_METRICS_INTERVAL",
    max: 1,
    value: "SECS",
    help: "seconds between writes of --metrics-file (default 30)",
};
pub const METRICS_LISTEN: Key = Key {
    flag: "--metrics-listen",
    env: "EDGEWIRE_METRICS_LISTEN",
    max: 1,
    value: "ADDR:PORT",
    help: "serve Prometheus metrics over HTTP here, as 127.0.0.1:9586 (default: off)",
};

/// Every setting of `run`.
pub const KEYS: &[&Key] = &[
    &MANIFEST_URL,
    &MANIFEST_PUBKEY,
    &MANIFEST_FORMAT,
    &MANIFEST_INTERVAL,
    &CA_FILE,
    &MANIFEST_TOKEN_FILE,
    &ADDRESS,
    &STATE_DIR,
    &INTERFACE,
    &LISTEN_PORT,
    &CONTROL_DIR,
    &METRICS_FILE,
    &METRICS_INTERVAL,
    &METRICS_LISTEN,
];

/// The settings that say how to reach the overlay, without the operator's tools
/// around `run` (control socket, metrics): what `netcheck` reads.
pub const OVERLAY_KEYS: &[&Key] = &[
    &MANIFEST_URL,
    &MANIFEST_PUBKEY,
    &MANIFEST_FORMAT,
    &MANIFEST_INTERVAL,
    &CA_FILE,
    &MANIFEST_TOKEN_FILE,
    &ADDRESS,
    &STATE_DIR,
    &INTERFACE,
    &LISTEN_PORT,
];

/// `EDGEWIRE_*` names that are read elsewhere, so the env file may hold them.
pub const OTHER_ENV: &[&str] = &["EDGEWIRE_LOG", "EDGEWIRE_OFFLOAD"];

/// Where a value came from, as messages name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    File {
        name: &'static str,
        path: PathBuf,
        line: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Env(name) => write!(f, "{name} (environment)"),
            Origin::File { name, path, line } => {
                write!(f, "{name} in {} line {line}", path.display())
            }
        }
    }
}

#[derive(Debug)]
pub struct Setting {
    pub values: Vec<String>,
    pub origin: Origin,
}

/// The merged settings. Layers are offered from the highest precedence down; the first
/// layer to set a key wins, and replaces all of a lower layer's values (two keys from
/// the environment are not mixed with one from the file).
#[derive(Debug, Default)]
pub struct Settings(BTreeMap<&'static str, Setting>);

impl Settings {
    pub fn offer(
        &mut self,
        key: &'static Key,
        values: Vec<String>,
        origin: Origin,
    ) -> anyhow::Result<()> {
        let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        // An empty value (`EDGEWIRE_INTERFACE=`) means "not set here", as in shells.
        if values.is_empty() || self.0.contains_key(key.env) {
            return Ok(());
        }
        if values.len() > key.max {
            anyhow::bail!("{origin}: at most {} values, got {}", key.max, values.len());
        }
        self.0.insert(key.env, Setting { values, origin });
        Ok(())
    }

    pub fn get(&self, key: &Key) -> Option<&Setting> {
        self.0.get(key.env)
    }

    /// The single value of `key`, parsed; a parse error names where the value came from.
    pub fn one<T>(
        &self,
        key: &Key,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> anyhow::Result<Option<T>> {
        Ok(self.list(key, parse)?.into_iter().next())
    }

    pub fn list<T>(
        &self,
        key: &Key,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> anyhow::Result<Vec<T>> {
        let Some(setting) = self.get(key) else {
            return Ok(Vec::new());
        };
        let parse =
            |v: &String| parse(v.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", setting.origin));
        setting.values.iter().map(parse).collect()
    }
}

pub fn key_by_env(name: &str) -> Option<&'static Key> {
    KEYS.iter().copied().find(|k| k.env == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_layer_to_set_a_key_wins_whole() {
        let mut s = Settings::default();
        s.offer(
            &MANIFEST_PUBKEY,
            vec!["a".into()],
            Origin::Flag("--manifest-pubkey"),
        )
        .unwrap();
        s.offer(
            &MANIFEST_PUBKEY,
            vec!["b".into(), "c".into()],
            Origin::Env("EDGEWIRE_MANIFEST_PUBKEY"),
        )
        .unwrap();
        assert_eq!(s.get(&MANIFEST_PUBKEY).unwrap().values, vec!["a"]);
    }

    #[test]
    fn an_empty_value_leaves_the_key_to_lower_layers() {
        let mut s = Settings::default();
        s.offer(
            &INTERFACE,
            vec![String::new()],
            Origin::Env("EDGEWIRE_INTERFACE"),
        )
        .unwrap();
        assert!(s.get(&INTERFACE).is_none());
    }

    #[test]
    fn a_parse_error_names_the_file_and_line() {
        let mut s = Settings::default();
        let origin = Origin::File {
            name: LISTEN_PORT.env,
            path: "/etc/e.conf".into(),
            line: 3,
        };
        s.offer(&LISTEN_PORT, vec!["x".into()], origin).unwrap();
        let err = s
            .one(&LISTEN_PORT, |v| Err::<u16, _>(format!("{v:?} is bad")))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "EDGEWIRE_LISTEN_PORT in /etc/e.conf line 3: \"x\" is bad"
        );
    }

    #[test]
    fn flags_and_env_names_are_unique() {
        for (i, a) in KEYS.iter().enumerate() {
            for b in &KEYS[i + 1..] {
                assert!(a.flag != b.flag && a.env != b.env);
            }
            assert!(a.env.starts_with("EDGEWIRE_") && a.flag.starts_with("--"));
        }
    }
}
