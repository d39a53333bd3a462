//! Manifests for tests: the JSON source (a builder for the format `edgewire manifest
//! build` reads), network signing keys, and signed manifests built with the agent's own
//! tool.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::{edgewire_bin, run_tool};

/// The network's Ed25519 signing key, made by `edgewire manifest keygen`.
#[derive(Debug, Clone)]
pub struct NetworkKey {
    /// The private key file (0600); `<path>.pub` holds the public half.
    pub path: PathBuf,
    /// Base64 public key, what agents pin with `--manifest-pubkey`.
    pub public: String,
}

impl NetworkKey {
    /// `edgewire manifest keygen --out DIR/NAME`.
    pub fn generate(dir: &Path, name: &str) -> NetworkKey {
        let path = dir.join(name);
        let out = run_tool(&[
            "manifest".as_ref(),
            "keygen".as_ref(),
            "--out".as_ref(),
            path.as_os_str(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let public = last_line(&out);
        assert!(!public.is_empty(), "manifest keygen printed no public key");
        NetworkKey { path, public }
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// The JSON manifest source.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSource {
    pub network: String,
    pub serial: u64,
    pub overlay: String,
    pub nodes: Vec<NodeSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<serde_json::Value>,
}

/// One node of the manifest source. Optional fields are left out of the JSON when unset.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSource {
    pub name: String,
    pub public_key: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preshared_key: Option<String>,
    /// Fields this builder does not model yet (`expires`, `relays`, …), written as given.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl NodeSource {
    fn new(name: &str, public_key: &str, role: &str, address: &str) -> NodeSource {
        NodeSource {
            name: name.to_owned(),
            public_key: public_key.to_owned(),
            role: role.to_owned(),
            site: None,
            addresses: vec![address.to_owned()],
            allowed_ips: Vec::new(),
            endpoints: Vec::new(),
            keepalive: None,
            preshared_key: None,
            extra: serde_json::Map::new(),
        }
    }

    pub fn hub(name: &str, public_key: &str, address: &str) -> NodeSource {
        NodeSource::new(name, public_key, "hub", address)
    }

    pub fn edge(name: &str, public_key: &str, site: &str, address: &str) -> NodeSource {
        NodeSource::new(name, public_key, "edge", address).site(site)
    }

    pub fn site(mut self, site: &str) -> Self {
        self.site = Some(site.to_owned());
        self
    }

    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoints.push(endpoint.to_owned());
        self
    }

    pub fn allowed_ip(mut self, prefix: &str) -> Self {
        self.allowed_ips.push(prefix.to_owned());
        self
    }

    pub fn keepalive(mut self, seconds: u16) -> Self {
        self.keepalive = Some(seconds);
        self
    }

    pub fn field(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }
}

impl ManifestSource {
    /// An empty manifest for network `network` with overlay 10.42.0.0/16.
    pub fn new(network: &str, serial: u64) -> ManifestSource {
        ManifestSource {
            network: network.to_owned(),
            serial,
            overlay: "10.42.0.0/16".to_owned(),
            nodes: Vec::new(),
            relays: Vec::new(),
        }
    }

    /// A TURN relay with long-term credentials.
    pub fn relay(mut self, url: &str, username: &str, password: &str) -> Self {
        let relay = serde_json::json!({"url": url, "username": username, "password": password});
        self.relays.push(relay);
        self
    }

    pub fn node(mut self, node: NodeSource) -> Self {
        self.nodes.push(node);
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest source serialises")
    }

    /// Writes the JSON source and signs it with `edgewire manifest build`; returns the
    /// signed manifest's path (`DIR/NAME`; the source goes to `DIR/NAME.json`).
    pub fn build(&self, key: &NetworkKey, dir: &Path, name: &str) -> PathBuf {
        self.try_build(key, dir, name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`ManifestSource::build`], returning the tool's error instead of panicking.
    pub fn try_build(&self, key: &NetworkKey, dir: &Path, name: &str) -> Result<PathBuf, String> {
        let src = dir.join(format!("{name}.json"));
        let out = dir.join(name);
        fs::write(&src, self.to_json()).map_err(|e| format!("writing {}: {e}", src.display()))?;
        run_tool(&[
            "manifest".as_ref(),
            "build".as_ref(),
            src.as_os_str(),
            "--key".as_ref(),
            key.path.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ])?;
        assert!(
            out.is_file(),
            "{} built no file {}",
            edgewire_bin().display(),
            out.display()
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_json_leaves_unset_optional_fields_out() {
        let src = ManifestSource::new("lab", 1)
            .node(
                NodeSource::hub("hub-1", "SFVC", "10.42.0.1/32")
                    .endpoint("203.0.113.10:51820")
                    .keepalive(25),
            )
            .node(NodeSource::edge("dev-1", "REVW", "lab-a", "10.42.1.1/32"));
        let v: serde_json::Value = serde_json::from_str(&src.to_json()).unwrap();
        assert_eq!(v["overlay"], "10.42.0.0/16");
        assert_eq!(v["nodes"][0]["endpoints"][0], "203.0.113.10:51820");
        assert_eq!(v["nodes"][0]["keepalive"], 25);
        assert!(v["nodes"][0].get("site").is_none());
        assert_eq!(v["nodes"][1]["site"], "lab-a");
        assert!(v["nodes"][1].get("endpoints").is_none());
        assert!(v["nodes"][1].get("allowed_ips").is_none());
    }
}
