//! The JSON source operators write, and its mapping into the manifest model.
//!
//! The source types keep every field optional and textual, so that each problem can be
//! reported with the node and field it belongs to, instead of serde's first error at a
//! line and column. Unknown fields are errors everywhere: a misspelt `keepalive` silently
//! ignored would be a device that drops off the network behind its NAT.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::rfc3339::parse_rfc3339;
use super::{Manifest, ManifestError, NodeSpec, RelaySpec, Role};
use crate::prefix::Prefix;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    network: Option<String>,
    serial: Option<u64>,
    overlay: Option<String>,
    expires: Option<String>,
    nodes: Option<Vec<NodeSource>>,
    relays: Option<Vec<RelaySource>>,
    /// STUN servers as `host:port`; the relays answer Binding too.
    stun: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSource {
    name: Option<String>,
    public_key: Option<String>,
    role: Option<Role>,
    site: Option<String>,
    addresses: Option<Vec<String>>,
    allowed_ips: Option<Vec<String>>,
    endpoints: Option<Vec<String>>,
    keepalive: Option<u16>,
    preshared_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelaySource {
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Parses and validates a JSON source. The caller adds the file's path to the error.
pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
    from_json_minting(text, None)
}

/// Makes a relay's (username, password) for a network: TURN REST credentials.
pub type Mint<'a> = &'a dyn Fn(&str) -> (String, String);

/// As [`from_json`]; relays given without a username and password get the ones `mint`
/// returns (time-limited TURN REST credentials), before validation.
pub fn from_json_minting(text: &str, mint: Option<Mint<'_>>) -> Result<Manifest, ManifestError> {
    let source: Source = serde_json::from_str(text).map_err(|error| ManifestError::Json {
        context: locate(text),
        error,
    })?;
    let mut manifest = source.into_manifest()?;
    if let Some(mint) = mint {
        for relay in &mut manifest.relays {
            if relay.username.is_empty() && relay.password.is_empty() {
                (relay.username, relay.password) = mint(&manifest.network);
            }
        }
    }
    manifest.validate()?;
    Ok(manifest)
}

/// Finds the node and field a serde error came from, by deserializing each field of a
/// generic JSON value on its own. Only runs after a failure, so its cost does not matter.
fn locate(text: &str) -> Option<String> {
    fn fails<T: serde::de::DeserializeOwned>(key: &str, value: &Value) -> bool {
        let single = Value::Object(Map::from_iter([(key.to_string(), value.clone())]));
        T::deserialize(single).is_err()
    }
    let value: Value = serde_json::from_str(text).ok()?;
    for (key, value) in value.as_object()? {
        let (list, what) = match (key.as_str(), value.as_array()) {
            ("nodes", Some(list)) => (list, "node"),
            ("relays", Some(list)) => (list, "relay"),
            _ if fails::<Source>(key, value) => return Some(format!("field {key:?}")),
            _ => continue,
        };
        for (i, item) in list.iter().enumerate() {
            let label = item.get(if what == "node" { "name" } else { "url" });
            let at = match label.and_then(Value::as_str) {
                Some(label) => format!("{what} {label:?} ({key}[{i}])"),
                None => format!("{key}[{i}]"),
            };
            let Some(fields) = item.as_object() else {
                return Some(at);
            };
            for (field, value) in fields {
                let bad = if what == "node" {
                    fails::<NodeSource>(field, value)
                } else {
                    fails::<RelaySource>(field, value)
                };
                if bad {
                    return Some(format!("{at}: field {field:?}"));
                }
            }
        }
    }
    None
}

/// Collects "at: field "x": what" lines.
struct Problems(Vec<String>);

impl Problems {
    fn required<T>(&mut self, at: &str, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.0.push(format!("{at}field {field:?} is missing"));
        }
        value
    }

    fn parse<T, E: std::fmt::Display>(
        &mut self,
        at: &str,
        field: &str,
        r: Result<T, E>,
    ) -> Option<T> {
        r.map_err(|e| self.0.push(format!("{at}field {field:?}: {e}")))
            .ok()
    }

    fn prefixes(&mut self, at: &str, field: &str, list: Option<Vec<String>>) -> Vec<Prefix> {
        let list = list.unwrap_or_default();
        list.iter()
            .filter_map(|p| self.parse(at, field, p.parse::<Prefix>()))
            .collect()
    }
}

impl Source {
    fn into_manifest(self) -> Result<Manifest, ManifestError> {
        let mut p = Problems(Vec::new());
        let network = p.required("", "network", self.network);
        let serial = p.required("", "serial", self.serial);
        let overlay = p
            .required("", "overlay", self.overlay)
            .and_then(|o| p.parse("", "overlay", o.parse::<Prefix>()));
        let expires = match self.expires {
            Some(text) => p.parse("", "expires", parse_rfc3339(&text)),
            None => None,
        };
        let nodes = p.required("", "nodes", self.nodes).unwrap_or_default();
        let nodes: Vec<_> = nodes
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| n.into_spec(i, &mut p))
            .collect();
        let relays = self.relays.unwrap_or_default();
        let relays: Vec<_> = relays
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.into_spec(i, &mut p))
            .collect();
        match (network, serial, overlay) {
            (Some(network), Some(serial), Some(overlay)) if p.0.is_empty() => Ok(Manifest {
                network,
                serial,
                overlay,
                expires,
                nodes,
                relays,
                stun: self.stun.unwrap_or_default(),
            }),
            _ => Err(ManifestError::Invalid(p.0.join("; "))),
        }
    }
}

impl NodeSource {
    fn into_spec(self, i: usize, p: &mut Problems) -> Option<NodeSpec> {
        let at = match &self.name {
            Some(name) => format!("node {name:?} (nodes[{i}]): "),
            None => format!("nodes[{i}]: "),
        };
        let name = p.required(&at, "name", self.name);
        let public_key = p
            .required(&at, "public_key", self.public_key)
            .and_then(|k| p.parse(&at, "public_key", k.parse()));
        let role = p.required(&at, "role", self.role);
        let addresses = p.required(&at, "addresses", self.addresses);
        let addresses = p.prefixes(&at, "addresses", addresses);
        let allowed_ips = p.prefixes(&at, "allowed_ips", self.allowed_ips);
        let preshared_key = match self.preshared_key {
            // The message must not echo a secret into a terminal or CI log.
            Some(text) => p.parse(&at, "preshared_key", decode_key(&text)),
            None => None,
        };
        Some(NodeSpec {
            name: name?,
            public_key: public_key?,
            role: role?,
            site: self.site,
            addresses,
            allowed_ips,
            endpoints: self.endpoints.unwrap_or_default(),
            keepalive: self.keepalive,
            preshared_key,
        })
    }
}

impl RelaySource {
    fn into_spec(self, i: usize, p: &mut Problems) -> Option<RelaySpec> {
        let at = match &self.url {
            Some(url) => format!("relay {url:?} (relays[{i}]): "),
            None => format!("relays[{i}]: "),
        };
        // Without credentials, `manifest build --turn-secret-file` mints them; validation
        // refuses a relay that still has none.
        let url = p.required(&at, "url", self.url);
        Some(RelaySpec {
            url: url?,
            username: self.username.unwrap_or_default(),
            password: self.password.unwrap_or_default(),
        })
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], &'static str> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| "not base64")?;
    bytes
        .try_into()
        .map_err(|_| "not a 32-byte key (44 characters of base64)")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{LAB_JSON, lab_manifest};
    use super::*;

    fn error_of(json: &str) -> String {
        from_json(json).unwrap_err().to_string()
    }

    fn lab_with(from: &str, to: &str) -> String {
        assert!(LAB_JSON.contains(from), "fixture lacks {from}");
        LAB_JSON.replacen(from, to, 1)
    }

    #[test]
    fn the_lab_source_maps_to_the_lab_manifest() {
        assert_eq!(from_json(LAB_JSON).unwrap(), lab_manifest());
    }

    #[test]
    fn the_minimal_source_from_the_issue_is_accepted() {
        let json = r#"{"network": "lab", "serial": 1, "overlay": "10.42.0.0/16", "nodes": [
            {"name": "hub-1", "role": "hub",
             "public_key": "ERERERERERERERERERERERERERERERERERERERERERE=",
             "addresses": ["10.42.0.1/32"], "endpoints": ["203.0.113.10:51820"]}]}"#;
        let manifest = from_json(json).unwrap();
        assert_eq!((manifest.expires, manifest.relays.len()), (None, 0));
    }

    #[test]
    fn stun_servers_are_host_and_port_and_a_bad_one_is_named() {
        let with = |stun: &str| {
            LAB_JSON.replacen(
                "\"serial\": 1,",
                &format!("\"serial\": 1, \"stun\": {stun},"),
                1,
            )
        };
        let m = from_json(&with(r#"["stun.example.net:3478", "[2001:db8::9]:3478"]"#)).unwrap();
        assert_eq!(m.stun, ["stun.example.net:3478", "[2001:db8::9]:3478"]);
        let err = from_json(&with(r#"["stun.example.net"]"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("stun[0] \"stun.example.net\""), "{err}");
    }

    #[test]
    fn a_bad_prefix_names_the_node_the_field_and_the_value() {
        let err = error_of(&lab_with("10.42.1.1/32", "10.42.1.1/33"));
        assert!(
            err.contains(
                "node \"dev-1\" (nodes[1]): field \"addresses\": \"10.42.1.1/33\": prefix length 33"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_node_field_names_the_node_and_the_line() {
        let err = error_of(&lab_with(
            "\"keepalive\": 25",
            "\"keepalive\": 25, \"keepalives\": 1",
        ));
        assert!(
            err.starts_with("node \"hub-1\" (nodes[0]): field \"keepalives\": unknown field"),
            "{err}"
        );
        assert!(err.contains("line 9"), "{err}");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let err = error_of(&lab_with("\"keepalive\": 25", "\"keepalive\": \"25\""));
        assert!(
            err.starts_with("node \"hub-1\" (nodes[0]): field \"keepalive\": invalid type"),
            "{err}"
        );
        let err = error_of(&lab_with("\"role\": \"hub\"", "\"role\": \"hubb\""));
        assert!(
            err.starts_with("node \"hub-1\" (nodes[0]): field \"role\": unknown variant"),
            "{err}"
        );
        let err = error_of(&lab_with("\"serial\": 1", "\"serial\": -1"));
        assert!(err.starts_with("field \"serial\": invalid value"), "{err}");
    }

    #[test]
    fn unknown_top_level_and_relay_fields_are_errors() {
        assert!(
            error_of(&lab_with("\"serial\": 1", "\"serial\": 1, \"x\": 1"))
                .starts_with("field \"x\"")
        );
        let err = error_of(&lab_with(
            "\"password\": \"p\"",
            "\"password\": \"p\", \"secret\": \"s\"",
        ));
        assert!(
            err.starts_with(
                "relay \"turn:198.51.100.1:3478?transport=udp\" (relays[0]): field \"secret\""
            ),
            "{err}"
        );
    }

    #[test]
    fn a_json_syntax_error_carries_line_and_column() {
        let err = error_of("{\n  \"network\": \"lab\",\n}");
        assert!(err.contains("line 3 column 1"), "{err}");
    }

    #[test]
    fn missing_required_fields_are_all_named() {
        let err = error_of(r#"{"serial": 1, "nodes": [{"role": "edge"}]}"#);
        for missing in [
            "field \"network\" is missing",
            "field \"overlay\" is missing",
            "nodes[0]: field \"name\" is missing",
            "field \"addresses\" is missing",
        ] {
            assert!(err.contains(missing), "{missing} in {err}");
        }
    }

    #[test]
    fn a_bad_preshared_key_is_named_without_echoing_it() {
        let err = error_of(&lab_with(
            "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=",
            "c2VjcmV0",
        ));
        assert!(
            err.contains("node \"dev-1\" (nodes[1]): field \"preshared_key\""),
            "{err}"
        );
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn a_bad_expiry_is_named() {
        let err = error_of(&lab_with("2027-01-01T00:00:00Z", "2027-01-01"));
        assert!(
            err.contains("field \"expires\": \"2027-01-01\" is not an RFC 3339 time"),
            "{err}"
        );
    }

    #[test]
    fn validation_runs_after_mapping() {
        let err = error_of(&lab_with("\"serial\": 1", "\"serial\": 0"));
        assert!(err.contains("field \"serial\": must be 1 or more"), "{err}");
    }
}
