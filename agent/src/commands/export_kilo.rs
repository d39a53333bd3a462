//! `edgewire manifest export-kilo SOURCE`: every edge of a manifest as a Kilo `Peer`
//! (kilo.squat.ai/v1alpha1), YAML on stdout for `kubectl apply -f -`, so a fleet's
//! devices join a Kilo cluster from the same source that signs their manifest.
//!
//! Kilo resets a Peer whose persistentKeepalive is 0 at every resync (squat/kilo#82,
//! #95): an edge without a keepalive gets one (25 s unless `--keepalive` says).

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::manifest::{self, Envelope, Manifest, Role};

/// WireGuard's usual NAT keepalive.
pub const DEFAULT_KEEPALIVE: u16 = 25;

pub fn run(source: &Path, keepalive: Option<u16>) -> anyhow::Result<()> {
    let manifest = read(source)?;
    let (yaml, notes) = export(&manifest, keepalive.unwrap_or(DEFAULT_KEEPALIVE))
        .with_context(|| format!("{}", source.display()))?;
    print!(
        "# Kilo Peers of network {:?} serial {}, from {} by `edgewire manifest \
         export-kilo`.\n{yaml}",
        manifest.network,
        manifest.serial,
        source.display()
    );
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// A JSON source, or a manifest built from one (its signature is not checked: the
/// Peers only restate what the file says).
fn read(path: &Path) -> anyhow::Result<Manifest> {
    let bytes = manifest::read_bounded(path)
        .with_context(|| format!("reading the manifest source {}", path.display()))?;
    if bytes.starts_with(&manifest::MAGIC) {
        let envelope = Envelope::parse(&bytes).with_context(|| format!("{}", path.display()))?;
        return envelope
            .decode_unverified()
            .with_context(|| format!("{}", path.display()));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is neither JSON nor a built manifest", path.display()))?;
    // Relays are not exported: a source meant for --turn-secret-file needs no secret here.
    let placeholder = |_: &str| ("unused".to_string(), "unused".to_string());
    manifest::from_json_minting(&text, Some(&placeholder as manifest::Mint<'_>))
        .with_context(|| format!("{}", path.display()))
}

/// The Peers as YAML documents, and notes for the operator.
pub fn export(m: &Manifest, default_keepalive: u16) -> anyhow::Result<(String, Vec<String>)> {
    let mut yaml = String::new();
    let mut notes = Vec::new();
    let edges: Vec<_> = m.nodes.iter().filter(|n| n.role == Role::Edge).collect();
    if edges.is_empty() {
        bail!("no edge nodes: hubs are Kilo nodes themselves, not Peers");
    }
    for node in edges {
        check_name(&node.name)?;
        let keepalive = match node.keepalive.filter(|&k| k > 0) {
            Some(k) => k,
            None => {
                notes.push(format!(
                    "{}: no keepalive in the source; its Peer gets {default_keepalive} s \
                     (Kilo resets a Peer whose keepalive is 0)",
                    node.name
                ));
                default_keepalive
            }
        };
        yaml.push_str("---\n");
        emit(&mut yaml, &peer(node, keepalive)?, 0);
    }
    Ok((yaml, notes))
}

/// One Peer as a JSON value (the test checks it against Kilo's CRD schema).
pub fn peer(node: &manifest::NodeSpec, keepalive: u16) -> anyhow::Result<Value> {
    let allowed: Vec<String> = node
        .addresses
        .iter()
        .chain(&node.allowed_ips)
        .map(|p| p.to_string())
        .collect();
    let mut spec = json!({
        "allowedIPs": allowed,
        "publicKey": node.public_key.to_string(),
        "persistentKeepalive": keepalive,
    });
    if let Some(psk) = node.preshared_key {
        use base64::Engine;
        spec["presharedKey"] = json!(base64::engine::general_purpose::STANDARD.encode(psk));
    }
    if let Some(endpoint) = node.endpoints.first() {
        let (host, port) = manifest::parse_endpoint(endpoint)
            .map_err(|e| anyhow::anyhow!("node {:?}: endpoint {e}", node.name))?;
        let dns_or_ip = match host {
            manifest::Host::Ip(ip) => json!({ "ip": ip.to_string() }),
            manifest::Host::Name(name) => json!({ "dns": name }),
        };
        spec["endpoint"] = json!({ "dnsOrIP": dns_or_ip, "port": port });
    }
    Ok(json!({
        "apiVersion": "kilo.squat.ai/v1alpha1",
        "kind": "Peer",
        "metadata": {
            "name": node.name,
            "labels": { "app.kubernetes.io/managed-by": "edgewire" },
        },
        "spec": spec,
    }))
}

/// Kubernetes object names are RFC 1123 subdomains.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if !ok {
        bail!(
            "node {name:?} cannot be a Kubernetes object name (lower-case letters, digits, \
             '-' and '.', starting and ending with a letter or digit): rename it in the source"
        );
    }
    Ok(())
}

/// A small YAML emitter for what `peer` builds: maps, lists of scalars, strings and
/// numbers. Strings are JSON-quoted, which YAML reads as double-quoted scalars, so no
/// key or value (base64 with `+` and `/`, `10.0.0.0/8`) is ever misread.
fn emit(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    if let Value::Object(map) = value {
        for (key, v) in map {
            match v {
                Value::Object(_) => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    emit(out, v, indent + 2);
                }
                Value::Array(items) => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    for item in items {
                        out.push_str(&format!("{pad}- {item}\n"));
                    }
                }
                scalar => out.push_str(&format!("{pad}{key}: {scalar}\n")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB_JSON: &str = include_str!("../manifest/testdata/lab.json");

    fn lab() -> Manifest {
        manifest::from_json(LAB_JSON).unwrap()
    }

    /// Facts of Kilo's CRD (squat/kilo manifests/crds.yaml, peers.kilo.squat.ai,
    /// v1alpha1, openAPIV3Schema), written down here: the spec's properties and
    /// their types, and what is required.
    const SPEC_PROPERTIES: [(&str, &str); 5] = [
        ("allowedIPs", "array<string>"),
        ("endpoint", "object"),
        ("persistentKeepalive", "integer"),
        ("presharedKey", "string"),
        ("publicKey", "string"),
    ];
    const SPEC_REQUIRED: [&str; 2] = ["allowedIPs", "publicKey"];
    const ENDPOINT_REQUIRED: [&str; 2] = ["dnsOrIP", "port"];
    const DNS_OR_IP_PROPERTIES: [&str; 2] = ["dns", "ip"];

    fn type_of(v: &Value) -> String {
        match v {
            Value::Array(items) if items.iter().all(Value::is_string) => "array<string>".into(),
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer".into(),
            Value::String(_) => "string".into(),
            Value::Object(_) => "object".into(),
            other => format!("{other}"),
        }
    }

    /// What the API server's structural schema would accept (unknown fields would be
    /// pruned silently, so they count as errors here).
    fn check_against_kilo_crd(peer: &Value) {
        assert_eq!(peer["apiVersion"], "kilo.squat.ai/v1alpha1");
        assert_eq!(peer["kind"], "Peer");
        // Cluster-scoped: no namespace.
        assert!(peer["metadata"].get("namespace").is_none());
        check_name(peer["metadata"]["name"].as_str().unwrap()).unwrap();
        let top: Vec<&String> = peer.as_object().unwrap().keys().collect();
        assert_eq!(top, ["apiVersion", "kind", "metadata", "spec"]);
        let spec = peer["spec"].as_object().expect("spec is required");
        for required in SPEC_REQUIRED {
            assert!(spec.contains_key(required), "spec.{required} is required");
        }
        for (key, value) in spec {
            let (_, ty) = SPEC_PROPERTIES
                .iter()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("spec.{key} is not in Kilo's schema"));
            assert_eq!(&type_of(value), ty, "spec.{key}");
        }
        if let Some(endpoint) = spec.get("endpoint") {
            for required in ENDPOINT_REQUIRED {
                assert!(endpoint.get(required).is_some(), "endpoint.{required}");
            }
            let port = endpoint["port"].as_i64().unwrap();
            assert!((1..=i64::from(i32::MAX)).contains(&port), "int32 port");
            for key in endpoint["dnsOrIP"].as_object().unwrap().keys() {
                assert!(DNS_OR_IP_PROPERTIES.contains(&key.as_str()), "{key}");
            }
        }
        let keepalive = spec["persistentKeepalive"].as_u64().unwrap();
        assert!(keepalive > 0, "a Peer with keepalive 0 is reset by Kilo");
        for cidr in spec["allowedIPs"].as_array().unwrap() {
            cidr.as_str()
                .unwrap()
                .parse::<crate::prefix::Prefix>()
                .unwrap();
        }
        let key = spec["publicKey"].as_str().unwrap();
        key.parse::<crate::keys::PublicKey>().unwrap();
    }

    #[test]
    fn every_edge_becomes_a_peer_that_fits_kilos_crd() {
        let m = lab();
        let edges: Vec<_> = m.nodes.iter().filter(|n| n.role == Role::Edge).collect();
        assert_eq!(edges.len(), 2);
        for node in edges {
            let peer = peer(node, DEFAULT_KEEPALIVE).unwrap();
            check_against_kilo_crd(&peer);
        }
    }

    #[test]
    fn allowed_ips_are_the_addresses_then_the_allowed_ips_and_keepalive_is_never_0() {
        let m = lab();
        let (yaml, notes) = export(&m, DEFAULT_KEEPALIVE).unwrap();
        let dev2 = m.nodes.iter().find(|n| n.name == "dev-2").unwrap();
        assert_eq!(dev2.keepalive, Some(0), "the lab source asks for 0");
        let peer = peer(dev2, 25).unwrap();
        assert_eq!(
            peer["spec"]["allowedIPs"],
            json!(["10.42.1.2/32", "fd42:1::/64"])
        );
        assert_eq!(peer["spec"]["persistentKeepalive"], 25);
        assert!(
            notes.iter().any(|n| n.starts_with("dev-2: no keepalive")),
            "{notes:?}"
        );
        assert!(!yaml.contains("hub-1"), "hubs are Kilo nodes, not Peers");
        assert_eq!(yaml.matches("kind: \"Peer\"").count(), 2);
    }

    #[test]
    fn the_yaml_is_what_kubectl_reads() {
        let m = lab();
        let dev1 = m.nodes.iter().find(|n| n.name == "dev-1").unwrap();
        let mut yaml = String::new();
        emit(&mut yaml, &peer(dev1, 30).unwrap(), 0);
        assert_eq!(
            yaml,
            "apiVersion: \"kilo.squat.ai/v1alpha1\"\n\
             kind: \"Peer\"\n\
             metadata:\n  \
               labels:\n    \
                 app.kubernetes.io/managed-by: \"edgewire\"\n  \
               name: \"dev-1\"\n\
             spec:\n  \
               allowedIPs:\n  \
               - \"10.42.1.1/32\"\n  \
               persistentKeepalive: 30\n  \
               presharedKey: \"MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\"\n  \
               publicKey: \"IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\"\n"
        );
    }

    #[test]
    fn an_edge_with_an_endpoint_gets_one_and_a_bad_name_is_refused() {
        let mut m = lab();
        let dev1 = m.nodes.iter_mut().find(|n| n.name == "dev-1").unwrap();
        dev1.endpoints = vec!["edge1.example.net:51820".into()];
        let peer = peer(dev1, 25).unwrap();
        assert_eq!(
            peer["spec"]["endpoint"],
            json!({"dnsOrIP": {"dns": "edge1.example.net"}, "port": 51820})
        );
        check_against_kilo_crd(&peer);
        dev1.name = "Dev_1".into();
        let err = export(&m, 25).unwrap_err().to_string();
        assert!(
            err.contains("\"Dev_1\" cannot be a Kubernetes object name"),
            "{err}"
        );
    }
}
