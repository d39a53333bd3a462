//! A manifest back as the JSON source operators write (the format `from_json` reads),
//! for `edgewire manifest import-wg`: fields in the documented order, optional ones
//! left out when empty, keys in base64 and times in RFC 3339.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use super::rfc3339::format_rfc3339;
use super::{Manifest, NodeSpec, RelaySpec, Role};

#[derive(Serialize)]
struct Source<'a> {
    network: &'a str,
    serial: u64,
    overlay: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    nodes: Vec<Node<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    relays: Vec<&'a RelaySpec>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stun: &'a [String],
}

#[derive(Serialize)]
struct Node<'a> {
    name: &'a str,
    public_key: String,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'a str>,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_ips: Vec<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    endpoints: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    keepalive: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preshared_key: Option<String>,
}

pub fn to_json(m: &Manifest) -> String {
    let source = Source {
        network: &m.network,
        serial: m.serial,
        overlay: m.overlay.to_string(),
        expires: m.expires.map(format_rfc3339),
        nodes: m.nodes.iter().map(node).collect(),
        relays: m.relays.iter().collect(),
        stun: &m.stun,
    };
    // Plain data with string keys: serializing cannot fail.
    serde_json::to_string_pretty(&source).expect("the source serializes") + "\n"
}

fn node(n: &NodeSpec) -> Node<'_> {
    let strings = |list: &[crate::prefix::Prefix]| list.iter().map(|p| p.to_string()).collect();
    Node {
        name: &n.name,
        public_key: n.public_key.to_string(),
        role: n.role,
        site: n.site.as_deref(),
        addresses: strings(&n.addresses),
        allowed_ips: strings(&n.allowed_ips),
        endpoints: &n.endpoints,
        keepalive: n.keepalive,
        preshared_key: n.preshared_key.map(|k| BASE64.encode(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::lab_manifest;
    use super::super::from_json;
    use super::*;

    #[test]
    fn the_lab_manifest_round_trips_through_its_json_source() {
        let json = to_json(&lab_manifest());
        assert_eq!(from_json(&json).unwrap(), lab_manifest());
        assert!(
            json.starts_with("{\n  \"network\": \"lab\",\n  \"serial\": 1,"),
            "{json}"
        );
    }
}
