//! From the manifest to this node's peers: who peers with whom, and which prefixes
//! each peer carries (DESIGN.md, "Topology from the manifest").
//!
//! - every node peers with every hub (so a hub peers with everyone);
//! - edges of the same site peer directly;
//! - on an edge, the hubs (in manifest order of preference) may carry the whole overlay
//!   prefix, so traffic to nodes without a direct peer goes through one; the node routes
//!   it to the first hub that answers. More specific prefixes win by longest-prefix match.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::keys::PublicKey;
use crate::manifest::{Manifest, NodeSpec, Role};
use crate::prefix::Prefix;

use super::node::Overlay;
use super::peer::PeerConfig;

/// Keepalive an edge uses toward a hub when the manifest sets none: edges sit behind
/// NATs whose UDP mappings expire, and a hub cannot reach an edge without a mapping.
pub const DEFAULT_EDGE_TO_HUB_KEEPALIVE: u16 = 25;

/// This node's part of the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub name: String,
    pub role: Role,
    pub addresses: Vec<Prefix>,
    pub peers: BTreeMap<PublicKey, PeerPlan>,
    /// On an edge: the overlay prefix and the hubs that may carry it, in manifest order.
    pub overlay: Option<Overlay>,
    /// On an edge: the edges it does not peer with (other sites), reached through a hub
    /// and directly once a path is punched on demand. Never endpoints: a punched path
    /// comes from the candidate exchange.
    pub remote: BTreeMap<PublicKey, PeerPlan>,
}

/// A peer before its endpoint names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPlan {
    pub name: String,
    pub role: Role,
    pub allowed_ips: Vec<Prefix>,
    pub endpoints: Vec<String>,
    pub keepalive: Option<u16>,
    pub preshared_key: Option<[u8; 32]>,
}

impl PeerPlan {
    /// The peer's configuration once `resolve` has turned its endpoint names into
    /// addresses (an endpoint that does not resolve is left out).
    pub fn resolve(&self, resolve: impl Fn(&str) -> Vec<SocketAddr>) -> PeerConfig {
        let mut endpoints: Vec<SocketAddr> =
            self.endpoints.iter().flat_map(|e| resolve(e)).collect();
        endpoints.dedup();
        PeerConfig {
            name: self.name.clone(),
            role: self.role,
            allowed_ips: self.allowed_ips.clone(),
            endpoints,
            keepalive: self.keepalive,
            preshared_key: self.preshared_key,
        }
    }
}

/// This node is not in the manifest: the operator has not enrolled its key yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this node (public key {0}) is not in the manifest: add a node with this public_key to \
     the manifest source, rebuild and publish it"
)]
pub struct NotListed(pub PublicKey);

pub fn plan(manifest: &Manifest, own: &PublicKey) -> Result<Topology, NotListed> {
    let me = manifest.node(own).ok_or(NotListed(*own))?;
    let hubs: Vec<PublicKey> = manifest
        .nodes
        .iter()
        .filter(|n| n.role == Role::Hub && &n.public_key != own)
        .map(|n| n.public_key)
        .collect();
    let overlay = (me.role == Role::Edge && !hubs.is_empty()).then(|| Overlay {
        prefix: manifest.overlay.network(),
        via: hubs,
    });
    let peers = manifest
        .nodes
        .iter()
        .filter(|n| &n.public_key != own && peers_with(me, n))
        .map(|n| {
            let allowed_ips: Vec<Prefix> =
                n.addresses.iter().chain(&n.allowed_ips).copied().collect();
            let keepalive = n
                .keepalive
                .or((me.role == Role::Edge && n.role == Role::Hub)
                    .then_some(DEFAULT_EDGE_TO_HUB_KEEPALIVE));
            let plan = PeerPlan {
                name: n.name.clone(),
                role: n.role,
                allowed_ips,
                endpoints: n.endpoints.clone(),
                keepalive,
                preshared_key: pair_preshared_key(me, n),
            };
            (n.public_key, plan)
        })
        .collect();
    let remote = manifest
        .nodes
        .iter()
        .filter(|n| me.role == Role::Edge && n.role == Role::Edge)
        .filter(|n| &n.public_key != own && !peers_with(me, n))
        .map(|n| {
            let plan = PeerPlan {
                name: n.name.clone(),
                role: n.role,
                allowed_ips: n.addresses.iter().chain(&n.allowed_ips).copied().collect(),
                endpoints: Vec::new(),
                keepalive: None,
                preshared_key: pair_preshared_key(me, n),
            };
            (n.public_key, plan)
        })
        .collect();
    Ok(Topology {
        name: me.name.clone(),
        role: me.role,
        addresses: me.addresses.clone(),
        peers,
        overlay,
        remote,
    })
}

/// Both ends of a session must use the same preshared key, but each node names its own.
/// The key of a pair is the one set on either node; where both set one, the hub's wins,
/// and between two nodes of the same role the one with the smaller public key.
fn pair_preshared_key(me: &NodeSpec, other: &NodeSpec) -> Option<[u8; 32]> {
    let (first, second) =
        if (me.role == Role::Hub, other.public_key) > (other.role == Role::Hub, me.public_key) {
            (me, other)
        } else {
            (other, me)
        };
    first.preshared_key.or(second.preshared_key)
}

fn peers_with(me: &NodeSpec, other: &NodeSpec) -> bool {
    match (me.role, other.role) {
        (Role::Hub, _) | (_, Role::Hub) => true,
        (Role::Edge, Role::Edge) => me.site.is_some() && me.site == other.site,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8, role: Role, site: Option<&str>) -> NodeSpec {
        NodeSpec {
            name: format!("n{n}"),
            public_key: PublicKey([n; 32]),
            role,
            site: site.map(String::from),
            addresses: vec![format!("10.42.0.{n}/32").parse().unwrap()],
            allowed_ips: vec![],
            endpoints: vec![format!("203.0.113.{n}:51820")],
            keepalive: None,
            preshared_key: None,
        }
    }

    fn manifest(nodes: Vec<NodeSpec>) -> Manifest {
        Manifest {
            network: "lab".into(),
            serial: 1,
            overlay: "10.42.0.0/16".parse().unwrap(),
            expires: None,
            nodes,
            relays: vec![],
            stun: Vec::new(),
        }
    }

    fn lab() -> Manifest {
        let mut hub2 = node(2, Role::Hub, None);
        hub2.allowed_ips = vec!["10.42.128.0/24".parse().unwrap()];
        manifest(vec![
            node(1, Role::Hub, None),
            hub2,
            node(3, Role::Edge, Some("a")),
            node(4, Role::Edge, Some("a")),
            node(5, Role::Edge, Some("b")),
            node(6, Role::Edge, None),
        ])
    }

    fn names(t: &Topology) -> Vec<&str> {
        let mut v: Vec<&str> = t.peers.values().map(|p| p.name.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn an_edge_peers_with_every_hub_and_its_own_site_only() {
        let t = plan(&lab(), &PublicKey([3; 32])).unwrap();
        assert_eq!(names(&t), ["n1", "n2", "n4"]);
        let t = plan(&lab(), &PublicKey([6; 32])).unwrap();
        assert_eq!(
            names(&t),
            ["n1", "n2"],
            "an edge without a site has no site peers"
        );
    }

    #[test]
    fn a_hub_peers_with_everyone() {
        let t = plan(&lab(), &PublicKey([1; 32])).unwrap();
        assert_eq!(names(&t), ["n2", "n3", "n4", "n5", "n6"]);
        assert!(
            t.peers
                .values()
                .all(|p| !p.allowed_ips.contains(&"10.42.0.0/16".parse().unwrap()))
        );
    }

    #[test]
    fn an_edge_may_reach_the_overlay_through_every_hub_in_manifest_order() {
        let t = plan(&lab(), &PublicKey([5; 32])).unwrap();
        let overlay = t.overlay.unwrap();
        assert_eq!(overlay.prefix, "10.42.0.0/16".parse().unwrap());
        assert_eq!(overlay.via, vec![PublicKey([1; 32]), PublicKey([2; 32])]);
        let hub2 = &t.peers[&PublicKey([2; 32])];
        assert_eq!(
            hub2.allowed_ips,
            vec![
                "10.42.0.2/32".parse().unwrap(),
                "10.42.128.0/24".parse().unwrap()
            ]
        );
        let hub = plan(&lab(), &PublicKey([1; 32])).unwrap();
        assert_eq!(hub.overlay, None, "hubs route per peer");
    }

    #[test]
    fn edges_keep_hubs_alive_by_default_and_honour_the_manifest() {
        let mut m = lab();
        m.nodes[1].keepalive = Some(10);
        let t = plan(&m, &PublicKey([3; 32])).unwrap();
        assert_eq!(t.peers[&PublicKey([1; 32])].keepalive, Some(25));
        assert_eq!(t.peers[&PublicKey([2; 32])].keepalive, Some(10));
        assert_eq!(t.peers[&PublicKey([4; 32])].keepalive, None);
        let hub = plan(&m, &PublicKey([1; 32])).unwrap();
        assert_eq!(hub.peers[&PublicKey([3; 32])].keepalive, None);
    }

    #[test]
    fn a_node_missing_from_the_manifest_is_named_by_its_key() {
        let err = plan(&lab(), &PublicKey([9; 32])).unwrap_err();
        assert!(err.to_string().contains(&PublicKey([9; 32]).to_string()));
        assert!(err.to_string().contains("not in the manifest"));
    }

    #[test]
    fn both_ends_of_a_pair_agree_on_the_preshared_key() {
        let mut m = lab();
        m.nodes[2].preshared_key = Some([3; 32]); // edge n3
        m.nodes[0].preshared_key = Some([1; 32]); // hub n1
        m.nodes[3].preshared_key = Some([4; 32]); // edge n4, same site as n3
        let psk = |me: u8, peer: u8| {
            plan(&m, &PublicKey([me; 32])).unwrap().peers[&PublicKey([peer; 32])].preshared_key
        };
        assert_eq!(psk(3, 1), psk(1, 3));
        assert_eq!(psk(3, 1), Some([1; 32]), "the hub's key wins");
        assert_eq!(psk(2, 3), Some([3; 32]), "the only key set");
        assert_eq!(psk(3, 2), Some([3; 32]));
        assert_eq!(psk(3, 4), psk(4, 3));
        assert_eq!(psk(5, 2), None);
    }

    #[test]
    fn own_addresses_come_from_the_own_node() {
        let t = plan(&lab(), &PublicKey([4; 32])).unwrap();
        assert_eq!(t.name, "n4");
        assert_eq!(t.addresses, vec!["10.42.0.4/32".parse().unwrap()]);
    }
}
