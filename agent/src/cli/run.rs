//! Building `RunConfig` from merged settings: required keys, defaults from `config.rs`,
//! the checks on each value (URL scheme, interface name, port), and the rules between
//! them (the unsigned wg format only from a local file or over https with a pinned CA).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::settings::{
    ADDRESS, CA_FILE, CONTROL_DIR, INTERFACE, Key, LISTEN_PORT, MANIFEST_FORMAT, MANIFEST_INTERVAL,
    MANIFEST_PUBKEY, MANIFEST_TOKEN_FILE, MANIFEST_URL, METRICS_FILE, METRICS_INTERVAL,
    METRICS_LISTEN, STATE_DIR, Settings,
};
use crate::config::{self, ManifestFormat, OperatorConfig, RunConfig};
use crate::manifest::NetworkPublicKey;
use crate::prefix::Prefix;

/// Polls further apart than a day are more likely a typo than a plan.
const MAX_INTERVAL_SECS: u64 = 86_400;

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
    let manifest_format = s.one(&MANIFEST_FORMAT, parse_format)?.unwrap_or_default();
    let ca_file = s.one(&CA_FILE, |v| Ok(PathBuf::from(v)))?;
    let address = s.one(&ADDRESS, |v| v.parse::<Prefix>().map_err(|e| e.to_string()))?;
    let mut manifest_pubkeys = s.list(&MANIFEST_PUBKEY, |v| {
        v.parse::<NetworkPublicKey>().map_err(|e| e.to_string())
    })?;
    match manifest_format {
        ManifestFormat::Signed => {
            if manifest_pubkeys.is_empty() {
                return Err(missing(
                    &MANIFEST_PUBKEY,
                    "network public key (the manifest signer)",
                ));
            }
            if let Some(setting) = s.get(&ADDRESS) {
                anyhow::bail!(
                    "{}: --address is only for --manifest-format wg; a signed manifest gives \
                     each node its addresses",
                    setting.origin
                );
            }
            if manifest_url.starts_with("http://") {
                log::warn!(
                    "the manifest URL {manifest_url} is plain http: the signature still \
                     protects its content, but anyone on the path can read it and hold back \
                     updates; prefer https"
                );
            }
        }
        ManifestFormat::Wg => {
            if address.is_none() {
                return Err(missing(
                    &ADDRESS,
                    "overlay address (needed by --manifest-format wg)",
                ));
            }
            check_wg_source(&manifest_url, ca_file.as_deref())?;
            if let Some(setting) = s.get(&MANIFEST_PUBKEY) {
                log::warn!(
                    "{}: ignored with --manifest-format wg (Kilo's peer config is not signed)",
                    setting.origin
                );
                manifest_pubkeys.clear();
            }
        }
    }
    Ok(RunConfig {
        manifest_url,
        manifest_pubkeys,
        manifest_format,
        manifest_interval: s
            .one(&MANIFEST_INTERVAL, parse_interval)?
            .unwrap_or(config::DEFAULT_MANIFEST_INTERVAL),
        ca_file,
        manifest_token_file: s.one(&MANIFEST_TOKEN_FILE, |v| Ok(PathBuf::from(v)))?,
        address,
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

/// The settings of the operator's tools around `run` (see [`OperatorConfig`]).
pub(super) fn operator_config(s: &Settings) -> anyhow::Result<OperatorConfig> {
    Ok(OperatorConfig {
        control_dir: match s.one(&CONTROL_DIR, |v| Ok(v.to_string()))? {
            Some(v) if v == "none" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => Some(PathBuf::from(config::DEFAULT_CONTROL_DIR)),
        },
        metrics_file: s.one(&METRICS_FILE, |v| Ok(PathBuf::from(v)))?,
        metrics_interval: s
            .one(&METRICS_INTERVAL, parse_interval)?
            .unwrap_or(config::DEFAULT_METRICS_INTERVAL),
        metrics_listen: s.one(&METRICS_LISTEN, |v| {
            v.parse()
                .map_err(|_| format!("{v:?} is not an address and port, such as 127.0.0.1:9586"))
        })?,
    })
}

/// A path, a `file://` URL with an absolute path, or an `http(s)://` URL with a host.
fn check_manifest_url(url: &str) -> Result<String, String> {
    if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!(
                "{url}: the URL names no host; write it as https://HOST/PATH"
            ));
        }
        return Ok(url.to_string());
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "{url}: a file:// URL needs an absolute path, as file:///etc/edgewire/manifest"
            ));
        }
    } else if url.contains("://") {
        return Err(format!(
            "{url}: unknown URL scheme; give a path, a file:// or an https:// URL"
        ));
    }
    Ok(url.to_string())
}

/// Kilo's INI carries no signature, so whoever can change it in transit decides whom
/// the device trusts: it is read only from a local file, or over https from a server
/// whose CA is pinned with --ca-file (not any CA the system trusts).
fn check_wg_source(url: &str, ca_file: Option<&Path>) -> anyhow::Result<()> {
    if url.starts_with("http://") {
        anyhow::bail!(
            "{url}: --manifest-format wg is not signed, so it is not read over plain http; \
             serve it over https and pin the server's CA with --ca-file, or copy it to the \
             device and give its path"
        );
    }
    if url.starts_with("https://") && ca_file.is_none() {
        anyhow::bail!(
            "{url}: --manifest-format wg is not signed, so over https it needs --ca-file \
             FILE (the PEM CA of that server) rather than every CA the system trusts"
        );
    }
    Ok(())
}

fn parse_format(text: &str) -> Result<ManifestFormat, String> {
    match text.to_ascii_lowercase().as_str() {
        "signed" => Ok(ManifestFormat::Signed),
        "wg" => Ok(ManifestFormat::Wg),
        _ => Err(format!(
            "{text:?} is not a manifest format: signed (built by `edgewire manifest build`) \
             or wg (Kilo's `kgctl showconf peer NAME`)"
        )),
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(secs) if (1..=MAX_INTERVAL_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{text:?} is not a poll interval: whole seconds from 1 to {MAX_INTERVAL_SECS}"
        )),
    }
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or whitespace.
pub(super) fn check_interface(name: &str) -> Result<String, String> {
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
