//! Kilo's peer configuration as a manifest: the WireGuard INI that
//! `kgctl showconf peer NAME` prints (FACTS.md, "Kilo"), read as is.
//!
//! The INI has only `[Peer]` sections: one per Kilo location leader (with an
//! `Endpoint`) and one per other Kilo Peer (often without). Each becomes a node: a hub
//! when it has an endpoint, an edge otherwise. The device itself is an edge whose
//! address comes from `--address` (`10.4.0.99/16`: the address, and the overlay's
//! length). This device and the endpoint-less peers share the site [`SITE`], so they
//! peer directly, as Kilo configures them; the leaders, in Kilo's order, carry the
//! overlay.
//!
//! Such a manifest is unsigned and has no serial ([`NO_SERIAL`]): the trust check skips
//! the serial rules for it, and it is only read from a local file or over https with a
//! pinned CA (enforced when the settings are parsed).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::trust::NO_SERIAL;
use super::{Manifest, ManifestError, NodeSpec, Role, parse_endpoint};
use crate::keys::PublicKey;
use crate::prefix::Prefix;

/// The `network` of manifests made from Kilo's INI.
pub const NETWORK: &str = "kilo";
/// The site of this device and of the Kilo peers without an endpoint.
pub const SITE: &str = "kilo";

/// One `[Peer]` section, with the line it starts on for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgPeer {
    pub line: usize,
    pub public_key: PublicKey,
    pub allowed_ips: Vec<Prefix>,
    pub endpoint: Option<String>,
    /// 0 is "unset" in Kilo's output (it always writes the key).
    pub keepalive: u16,
    pub preshared_key: Option<[u8; 32]>,
}

/// The manifest this device runs from Kilo's INI: every peer, and this device (`own`)
/// at `address`.
pub fn from_wg(text: &str, own: PublicKey, address: Prefix) -> Result<Manifest, ManifestError> {
    let manifest = to_manifest(parse_wg(text)?, Some(own), address)?;
    manifest.validate_wg()?;
    Ok(manifest)
}

/// The peers as nodes, plus this device when `own` is known. Not validated: the caller
/// picks the rules (the agent's in [`from_wg`], `manifest build`'s for an import).
pub fn to_manifest(
    peers: Vec<WgPeer>,
    own: Option<PublicKey>,
    address: Prefix,
) -> Result<Manifest, ManifestError> {
    let overlay = address.network();
    let mut nodes = Vec::new();
    for peer in peers {
        if Some(peer.public_key) == own {
            return Err(ManifestError::Wg {
                line: peer.line,
                problem: format!(
                    "this [Peer] has this device's own public key {}: the file is the \
                     configuration of another peer (`kgctl showconf peer NAME` with this \
                     device's name gives the right one)",
                    peer.public_key
                ),
            });
        }
        let (addresses, allowed_ips) = peer.allowed_ips.iter().partition(|p| {
            p.len() == if p.is_ipv4() { 32 } else { 128 } && overlay.contains(p.addr())
        });
        let hub = peer.endpoint.is_some();
        nodes.push(NodeSpec {
            name: format!(
                "{}-{}",
                if hub { "hub" } else { "peer" },
                peer.public_key.short()
            ),
            public_key: peer.public_key,
            role: if hub { Role::Hub } else { Role::Edge },
            site: (!hub).then(|| SITE.to_string()),
            addresses,
            allowed_ips,
            endpoints: peer.endpoint.into_iter().collect(),
            keepalive: (peer.keepalive != 0).then_some(peer.keepalive),
            preshared_key: peer.preshared_key,
        });
    }
    if let Some(own) = own {
        nodes.push(NodeSpec {
            name: format!("edge-{}", own.short()),
            public_key: own,
            role: Role::Edge,
            site: Some(SITE.to_string()),
            addresses: vec![Prefix::host(address.addr())],
            allowed_ips: vec![],
            endpoints: vec![],
            keepalive: None,
            preshared_key: None,
        });
    }
    Ok(Manifest {
        network: NETWORK.to_string(),
        serial: NO_SERIAL,
        overlay,
        expires: None,
        nodes,
        relays: vec![],
        stun: Vec::new(),
    })
}

/// Reads the INI: `[Peer]` sections of `Key = value` lines; `#` comments, blank
/// lines, any case of the key names and extra spaces are fine.
pub fn parse_wg(text: &str) -> Result<Vec<WgPeer>, ManifestError> {
    let mut peers: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |problem: String| ManifestError::Wg { line, problem };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if let Some(name) = content.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| err(format!("{content:?}: a section header ends with ']'")))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "peer" => peers.push(Section::new(line)),
                "interface" => {
                    return Err(err(
                        "an [Interface] section: Kilo's `kgctl showconf peer` prints none, \
                         and this device's private key stays on the device (in the state \
                         directory); remove the section and give the address with --address"
                            .into(),
                    ));
                }
                other => return Err(err(format!("unknown section [{other}]; expected [Peer]"))),
            }
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(err(format!("{content:?}: expected Key = value")));
        };
        let Some(peer) = peers.last_mut() else {
            return Err(err("a setting before the first [Peer]".into()));
        };
        peer.set(key.trim(), value.trim()).map_err(err)?;
    }
    if peers.is_empty() {
        return Err(ManifestError::Wg {
            line: 1,
            problem: "no [Peer] section: is this the output of `kgctl showconf peer NAME`?".into(),
        });
    }
    peers.into_iter().map(Section::finish).collect()
}

/// A `[Peer]` while its lines are read.
struct Section {
    line: usize,
    public_key: Option<PublicKey>,
    allowed_ips: Vec<Prefix>,
    endpoint: Option<String>,
    keepalive: Option<u16>,
    preshared_key: Option<[u8; 32]>,
}

impl Section {
    fn new(line: usize) -> Section {
        Section {
            line,
            public_key: None,
            allowed_ips: Vec::new(),
            endpoint: None,
            keepalive: None,
            preshared_key: None,
        }
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn once<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), String> {
            match slot.replace(value) {
                Some(_) => Err(format!("{key} is given twice in this [Peer]")),
                None => Ok(()),
            }
        }
        match key.to_ascii_lowercase().as_str() {
            "publickey" => {
                let parsed = value.parse().map_err(|e| format!("PublicKey: {e}"))?;
                once(&mut self.public_key, "PublicKey", parsed)
            }
            // wg(8) appends repeated AllowedIPs lines; so do we.
            "allowedips" => {
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let prefix: Prefix = item
                        .parse()
                        .map_err(|e| format!("AllowedIPs: {item:?}: {e}"))?;
                    self.allowed_ips.push(prefix.network());
                }
                Ok(())
            }
            "endpoint" => {
                parse_endpoint(value).map_err(|e| format!("Endpoint: {e}"))?;
                once(&mut self.endpoint, "Endpoint", value.to_string())
            }
            "persistentkeepalive" => {
                let secs = match value {
                    "off" => 0,
                    _ => value.parse::<u16>().map_err(|_| {
                        format!("PersistentKeepalive: {value:?} is not 0 to 65535 seconds or off")
                    })?,
                };
                once(&mut self.keepalive, "PersistentKeepalive", secs)
            }
            "presharedkey" => {
                // The message must not echo a secret.
                let bytes = BASE64
                    .decode(value)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or("PresharedKey: not a 32-byte key in base64 (44 characters)")?;
                once(&mut self.preshared_key, "PresharedKey", bytes)
            }
            _ => Err(format!(
                "unknown key {key:?}; a [Peer] of `kgctl showconf peer` has PublicKey, \
                 AllowedIPs, Endpoint, PersistentKeepalive and PresharedKey"
            )),
        }
    }

    fn finish(self) -> Result<WgPeer, ManifestError> {
        let public_key = self.public_key.ok_or_else(|| ManifestError::Wg {
            line: self.line,
            problem: "this [Peer] has no PublicKey".into(),
        })?;
        Ok(WgPeer {
            line: self.line,
            public_key,
            allowed_ips: self.allowed_ips,
            endpoint: self.endpoint,
            keepalive: self.keepalive.unwrap_or(0),
            preshared_key: self.preshared_key,
        })
    }
}

#[cfg(test)]
#[path = "wg_tests.rs"]
mod tests;
