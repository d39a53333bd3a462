//! Building `RunConfig` from merged settings: required keys, defaults from `config.rs`,
//! and the checks on each value (URL scheme, interface name, port).

use std::path::{Path, PathBuf};

use super::settings::{
    INTERFACE, Key, LISTEN_PORT, MANIFEST_PUBKEY, MANIFEST_URL, STATE_DIR, Settings,
};
use crate::config::{self, RunConfig};
use crate::manifest::NetworkPublicKey;

pub(super) fn run_config(s: &Settings, config_file: &Path) -> anyhow::Result<RunConfig> {
    let missing = |key: &Key, what: &str| {
        anyhow::anyhow!(
            "no {what} given: pass {flag} {v}, set {env}={v} in the environment, or add \
             {env}={v} to {}",
            config_file.display(),
            flag = key.flag,
            env = key.env,
            v = key.value
        )
    };
    let manifest_url = s.one(&MANIFEST_URL, check_manifest_url)?;
    let manifest_url = manifest_url.ok_or_else(|| missing(&MANIFEST_URL, "manifest URL"))?;
    let manifest_pubkeys = s.list(&MANIFEST_PUBKEY, |v| {
        v.parse::<NetworkPublicKey>().map_err(|e| e.to_string())
    })?;
    if manifest_pubkeys.is_empty() {
        return Err(missing(
            &MANIFEST_PUBKEY,
            "network public key (the manifest signer)",
        ));
    }
    Ok(RunConfig {
        manifest_url,
        manifest_pubkeys,
        state_dir: s
            .one(&STATE_DIR, |v| Ok(PathBuf::from(v)))?
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR)),
        interface: s
            .one(&INTERFACE, check_interface)?
            .unwrap_or_else(|| config::DEFAULT_INTERFACE.to_string()),
        listen_port: s
            .one(&LISTEN_PORT, parse_port)?
            .unwrap_or(config::DEFAULT_LISTEN_PORT),
        mtu: config::DEFAULT_MTU,
    })
}

/// A path or a `file://` URL with an absolute path; HTTP(S) comes in a later release.
fn check_manifest_url(url: &str) -> Result<String, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(format!(
            "{url}: fetching manifests over HTTP(S) is not supported yet; \
             copy the manifest to the device and give its path or a file:// URL"
        ));
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "{url}: a file:// URL needs an absolute path, as file:///etc/edgewire/manifest"
            ));
        }
    } else if url.contains("://") {
        return Err(format!(
            "{url}: unknown URL scheme; give a path or a file:// URL"
        ));
    }
    Ok(url.to_string())
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or whitespace.
fn check_interface(name: &str) -> Result<String, String> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(format!(
            "{name:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
        ));
    }
    Ok(name.to_string())
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("{text:?} is not a port number from 1 to 65535")),
    }
}
