//! The rules a manifest must follow, checked when it is built and again on every device
//! that opens it (a signed manifest is trusted to come from the operator, not to be
//! free of mistakes). Every problem names the node (or relay) and the field, and all
//! problems are reported at once so an operator fixes a source in one pass.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::hostport::{parse_endpoint, parse_relay_url};
use super::{Manifest, ManifestError, NodeSpec, Role};
use crate::prefix::Prefix;

/// Names show up in logs, status output and interface-sized places: keep them short.
const MAX_NAME_LEN: usize = 63;

impl Manifest {
    pub fn validate(&self) -> Result<(), ManifestError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid(problems.join("; ")))
        }
    }

    /// True once `now` (unix seconds) reaches the expiry. Callers ask only when the
    /// clock is known to be synchronised: boards without an RTC boot in 1970.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|expires| now >= expires)
    }

    /// Every rule this manifest breaks, each naming where.
    pub fn problems(&self) -> Vec<String> {
        self.problems_under(Rules::SIGNED)
    }

    /// The rules for a manifest made from Kilo's wg INI (`wg.rs`): it has no serial,
    /// and a Kilo peer may carry only routed prefixes, no address of its own.
    pub(super) fn validate_wg(&self) -> Result<(), ManifestError> {
        let problems = self.problems_under(Rules::WG);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid(problems.join("; ")))
        }
    }

    fn problems_under(&self, rules: Rules) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = check_name(&self.network) {
            out.push(format!("field \"network\": {e}"));
        }
        if rules.serial && self.serial == 0 {
            out.push(
                "field \"serial\": must be 1 or more (devices refuse a serial lower \
                 than one they have accepted)"
                    .to_string(),
            );
        }
        if self.overlay.network() != self.overlay {
            out.push(format!(
                "field \"overlay\": \"{}\" has host bits set; did you mean \"{}\"?",
                self.overlay,
                self.overlay.network()
            ));
        }
        if self.nodes.is_empty() {
            out.push("field \"nodes\": the manifest lists no nodes".to_string());
        }
        for (i, server) in self.stun.iter().enumerate() {
            if let Err(e) = parse_endpoint(server) {
                out.push(format!("stun[{i}] {server:?}: {e}"));
            }
        }
        let mut names = BTreeMap::new();
        let mut keys = BTreeMap::new();
        // Which node first claimed each prefix, for "claimed twice" reports.
        let mut claims: BTreeMap<Prefix, (usize, &str)> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let at = node_context(node, i);
            let mut problem =
                |field: &str, what: String| out.push(format!("{at}: field \"{field}\": {what}"));
            if let Err(e) = check_name(&node.name) {
                problem("name", e);
            }
            if let Some(first) = names.insert(node.name.as_str(), i) {
                problem(
                    "name",
                    format!("{:?} is already the name of nodes[{first}]", node.name),
                );
            }
            if node.public_key.0 == [0; 32] {
                problem(
                    "public_key",
                    "the all-zero key is not a WireGuard key".to_string(),
                );
            }
            match keys.entry(node.public_key) {
                Entry::Vacant(e) => {
                    e.insert(i);
                }
                Entry::Occupied(e) => {
                    let other = &self.nodes[*e.get()];
                    problem(
                        "public_key",
                        format!("same key as {}", node_context(other, *e.get())),
                    );
                }
            }
            if rules.addresses && node.addresses.is_empty() {
                problem(
                    "addresses",
                    "a node needs at least one overlay address".to_string(),
                );
            }
            for address in &node.addresses {
                if address.len() != if address.is_ipv4() { 32 } else { 128 } {
                    problem(
                        "addresses",
                        format!(
                            "\"{address}\": an address is one host (/32 or /128); \
                             put wider prefixes in \"allowed_ips\""
                        ),
                    );
                } else if !self.overlay.contains(address.addr()) {
                    problem(
                        "addresses",
                        format!("\"{address}\" is outside the overlay {}", self.overlay),
                    );
                }
            }
            let claimed = node.addresses.iter().map(|p| ("addresses", p));
            let claimed = claimed.chain(node.allowed_ips.iter().map(|p| ("allowed_ips", p)));
            for (field, prefix) in claimed {
                // Equal claims make routing ambiguous; nested ones are longest-prefix match.
                match claims.entry(prefix.network()) {
                    Entry::Vacant(e) => {
                        e.insert((i, field));
                    }
                    Entry::Occupied(e) => {
                        let (j, first_field) = *e.get();
                        let whom = if j == i {
                            "this node".to_string()
                        } else {
                            node_context(&self.nodes[j], j)
                        };
                        problem(
                            field,
                            format!("\"{prefix}\" is also claimed by {whom} in \"{first_field}\""),
                        );
                    }
                }
            }
            for endpoint in &node.endpoints {
                if let Err(e) = parse_endpoint(endpoint) {
                    problem("endpoints", e);
                }
            }
            match (node.role, &node.site) {
                (Role::Hub, Some(_)) => problem(
                    "site",
                    "hubs have no site (sites group edges that peer directly); \
                     remove it or make the node an edge"
                        .to_string(),
                ),
                (Role::Edge, Some(site)) => {
                    if let Err(e) = check_name(site) {
                        problem("site", e);
                    }
                }
                (_, None) => {}
            }
            if node.role == Role::Hub && node.endpoints.is_empty() {
                problem(
                    "endpoints",
                    "a hub needs at least one endpoint: every node must be able to reach it"
                        .to_string(),
                );
            }
        }
        let mut urls = BTreeMap::new();
        for (i, relay) in self.relays.iter().enumerate() {
            let at = format!("relay {:?} (relays[{i}])", relay.url);
            if let Err(e) = parse_relay_url(&relay.url) {
                out.push(format!("{at}: field \"url\": {e}"));
            }
            if let Some(first) = urls.insert(relay.url.as_str(), i) {
                out.push(format!(
                    "{at}: field \"url\": also listed as relays[{first}]"
                ));
            }
            for (field, value) in [("username", &relay.username), ("password", &relay.password)] {
                if value.is_empty() {
                    out.push(format!(
                        "{at}: field {field:?} is missing: give it, or build with \
                         --turn-secret-file to mint time-limited credentials"
                    ));
                }
            }
        }
        out
    }
}

/// Which rules apply beyond the common ones.
#[derive(Clone, Copy)]
struct Rules {
    /// A serial of 1 or more (anti-rollback needs one).
    serial: bool,
    /// Every node has an overlay address.
    addresses: bool,
}

impl Rules {
    const SIGNED: Rules = Rules {
        serial: true,
        addresses: true,
    };
    const WG: Rules = Rules {
        serial: false,
        addresses: false,
    };
}

/// How errors point at a node: `node "dev-1" (nodes[1])`.
pub(super) fn node_context(node: &NodeSpec, index: usize) -> String {
    format!("node {:?} (nodes[{index}])", node.name)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("must not be empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Err(format!("{name:?} is longer than {MAX_NAME_LEN} bytes"))
    } else if name.chars().any(char::is_control) {
        Err(format!("{name:?} contains control characters"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::lab_manifest;
    use super::*;
    use crate::keys::PublicKey;
    use crate::manifest::RelaySpec;

    fn problems_after(change: impl FnOnce(&mut Manifest)) -> String {
        let mut manifest = lab_manifest();
        change(&mut manifest);
        manifest.problems().join("\n")
    }

    fn prefix(text: &str) -> Prefix {
        text.parse().unwrap()
    }

    #[test]
    fn the_lab_manifest_is_valid() {
        assert_eq!(lab_manifest().problems(), Vec::<String>::new());
        assert!(lab_manifest().validate().is_ok());
    }

    #[test]
    fn serial_zero_is_refused() {
        assert!(problems_after(|m| m.serial = 0).contains("field \"serial\""));
    }

    #[test]
    fn an_overlay_with_host_bits_suggests_the_network() {
        let p = problems_after(|m| m.overlay = prefix("10.42.0.1/16"));
        assert!(p.contains("did you mean \"10.42.0.0/16\""), "{p}");
    }

    #[test]
    fn a_manifest_without_nodes_is_refused() {
        assert!(problems_after(|m| m.nodes.clear()).contains("lists no nodes"));
    }

    #[test]
    fn node_names_must_be_unique_short_and_printable() {
        let p = problems_after(|m| m.nodes[1].name = "hub-1".into());
        let expected = "node \"hub-1\" (nodes[1]): field \"name\": \"hub-1\" is already the name";
        assert!(p.contains(expected), "{p}");
        assert!(problems_after(|m| m.nodes[1].name = String::new()).contains("must not be empty"));
        assert!(problems_after(|m| m.nodes[1].name = "x".repeat(64)).contains("longer than 63"));
        assert!(problems_after(|m| m.nodes[1].name = "a\nb".into()).contains("control characters"));
    }

    #[test]
    fn two_nodes_with_the_same_public_key_are_refused() {
        let p = problems_after(|m| m.nodes[2].public_key = m.nodes[0].public_key);
        assert!(
            p.contains("field \"public_key\": same key as node \"hub-1\" (nodes[0])"),
            "{p}"
        );
        assert!(
            problems_after(|m| m.nodes[2].public_key = PublicKey([0; 32])).contains("all-zero")
        );
    }

    #[test]
    fn every_node_needs_an_address() {
        let p = problems_after(|m| m.nodes[1].addresses.clear());
        assert!(
            p.contains("node \"dev-1\" (nodes[1]): field \"addresses\": a node needs at least one"),
            "{p}"
        );
    }

    #[test]
    fn an_address_must_be_a_single_host() {
        let p = problems_after(|m| m.nodes[1].addresses = vec![prefix("10.42.1.0/24")]);
        assert!(
            p.contains("\"10.42.1.0/24\": an address is one host"),
            "{p}"
        );
    }

    #[test]
    fn an_address_outside_the_overlay_is_refused_but_allowed_ips_may_be_anywhere() {
        let p = problems_after(|m| m.nodes[1].addresses = vec![prefix("10.43.1.1/32")]);
        assert!(
            p.contains("\"10.43.1.1/32\" is outside the overlay 10.42.0.0/16"),
            "{p}"
        );
        let p = problems_after(|m| m.nodes[0].allowed_ips = vec![prefix("192.168.50.0/24")]);
        assert_eq!(p, "");
        let p = problems_after(|m| m.nodes[1].addresses = vec![prefix("fd00::1/128")]);
        assert!(p.contains("outside the overlay"), "{p}");
    }

    #[test]
    fn two_nodes_claiming_the_same_prefix_are_refused_but_nested_prefixes_are_fine() {
        let p = problems_after(|m| m.nodes[2].allowed_ips = vec![prefix("10.42.128.0/24")]);
        assert!(
            p.contains(
                "node \"dev-2\" (nodes[2]): field \"allowed_ips\": \"10.42.128.0/24\" \
                 is also claimed by node \"hub-1\" (nodes[0]) in \"allowed_ips\""
            ),
            "{p}"
        );
        let p = problems_after(|m| m.nodes[2].addresses = m.nodes[1].addresses.clone());
        assert!(
            p.contains("also claimed by node \"dev-1\" (nodes[1]) in \"addresses\""),
            "{p}"
        );
        let p = problems_after(|m| m.nodes[2].allowed_ips = vec![prefix("10.42.128.0/25")]);
        assert_eq!(p, "");
    }

    #[test]
    fn a_prefix_listed_twice_by_one_node_is_refused() {
        let p = problems_after(|m| m.nodes[0].allowed_ips.push(prefix("10.42.128.0/24")));
        assert!(p.contains("also claimed by this node"), "{p}");
    }

    #[test]
    fn endpoints_must_be_host_and_port() {
        let p = problems_after(|m| m.nodes[0].endpoints = vec!["203.0.113.10".into()]);
        assert!(
            p.contains(
                "node \"hub-1\" (nodes[0]): field \"endpoints\": \"203.0.113.10\" has no port"
            ),
            "{p}"
        );
        let p = problems_after(|m| m.nodes[0].endpoints = vec!["hub.example.com:51820".into()]);
        assert_eq!(p, "");
    }

    #[test]
    fn keepalive_zero_means_off_and_is_valid() {
        assert_eq!(problems_after(|m| m.nodes[1].keepalive = Some(0)), "");
    }

    #[test]
    fn a_hub_without_endpoints_is_refused() {
        let p = problems_after(|m| m.nodes[0].endpoints.clear());
        assert!(
            p.contains(
                "node \"hub-1\" (nodes[0]): field \"endpoints\": a hub needs at least one endpoint"
            ),
            "{p}"
        );
    }

    #[test]
    fn edges_may_have_a_site_but_hubs_may_not() {
        let p = problems_after(|m| m.nodes[0].site = Some("lab-a".into()));
        assert!(
            p.contains("node \"hub-1\" (nodes[0]): field \"site\": hubs have no site"),
            "{p}"
        );
        assert!(
            problems_after(|m| m.nodes[1].site = Some(String::new())).contains("field \"site\"")
        );
    }

    #[test]
    fn relay_urls_must_be_turn_urls_and_unique() {
        let relay = |url: &str| RelaySpec {
            url: url.into(),
            username: "u".into(),
            password: "p".into(),
        };
        let p = problems_after(|m| m.relays = vec![relay("http://relay.example")]);
        assert!(
            p.contains("relay \"http://relay.example\" (relays[0]): field \"url\""),
            "{p}"
        );
        let p =
            problems_after(|m| m.relays = vec![relay("turns:r.example"), relay("turns:r.example")]);
        assert!(p.contains("also listed as relays[0]"), "{p}");
    }

    #[test]
    fn a_manifest_expires_at_its_expiry_second() {
        let manifest = lab_manifest();
        assert!(!manifest.is_expired(1_798_761_599));
        assert!(manifest.is_expired(1_798_761_600));
        assert!(
            !Manifest {
                expires: None,
                ..manifest
            }
            .is_expired(u64::MAX)
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let mut manifest = lab_manifest();
        manifest.serial = 0;
        manifest.nodes[0].endpoints.clear();
        let err = manifest.validate().unwrap_err().to_string();
        assert!(
            err.contains("serial") && err.contains("a hub needs"),
            "{err}"
        );
    }
}
