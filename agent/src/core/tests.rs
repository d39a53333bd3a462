//! Whole-node tests: several nodes with real WireGuard sessions on a simulated network
//! and a simulated clock. The network delivers every transmit until nothing is left,
//! within a bounded number of rounds, and can put a node behind a NAT.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keys::{PrivateKey, PublicKey};
use crate::manifest::{Manifest, NodeSpec, Role};

use super::packet::ipv4_for_test;
use super::topology;
use super::{Destination, Node, PeerConfig};

struct SimNode {
    node: Node,
    /// The address the node's socket is bound to.
    addr: SocketAddr,
    /// The address its datagrams appear from outside (a NAT's mapping), if different.
    public: Option<SocketAddr>,
    /// Packets the node wrote to its TUN device.
    tun: Vec<Vec<u8>>,
    /// A hub's kernel forwards packets for other overlay addresses back into the TUN.
    forwards: bool,
    own: Vec<[u8; 4]>,
    /// Cut off the network: every datagram to or from it is lost.
    cut: bool,
}

struct Sim {
    nodes: Vec<SimNode>,
    now: Instant,
    /// Datagrams that went nowhere (no node at the address, or a NAT with no mapping).
    lost: usize,
    /// Paths that drop everything: (sender's public address, destination), one way.
    blocked: Vec<(SocketAddr, SocketAddr)>,
    /// TURN relays: each gives node `i` the relayed address `(ip, 50000 + i)`.
    relays: Vec<SimRelay>,
}

struct SimRelay {
    ip: std::net::IpAddr,
    /// A dead relay forwards nothing.
    cut: bool,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            nodes: Vec::new(),
            now: Instant::now(),
            lost: 0,
            blocked: Vec::new(),
            relays: Vec::new(),
        }
    }

    fn add(&mut self, key: PrivateKey, addr: &str, own: [u8; 4]) -> usize {
        let seed = self.nodes.len() as u32 * 1000;
        self.nodes.push(SimNode {
            node: Node::new(key, seed),
            addr: addr.parse().unwrap(),
            public: None,
            tun: Vec::new(),
            forwards: false,
            own: vec![own],
            cut: false,
        });
        self.nodes.len() - 1
    }

    /// Applies the manifest to every node, as the shell would (endpoints are literal).
    fn apply(&mut self, manifest: &Manifest) {
        let now = self.now;
        for n in &mut self.nodes {
            let t = topology::plan(manifest, &n.node.public_key()).unwrap();
            let desired: BTreeMap<PublicKey, PeerConfig> = t
                .peers
                .iter()
                .map(|(k, p)| (*k, p.resolve(|e| e.parse().into_iter().collect())))
                .collect();
            n.node.apply(desired, t.overlay.clone(), now);
        }
    }

    fn send_ping(&mut self, from: usize, src: [u8; 4], dst: [u8; 4]) {
        let now = self.now;
        self.nodes[from]
            .node
            .handle_tun(&ipv4_for_test(src, dst, 40), now);
    }

    /// Delivers every transmit until the network is quiet. Returns the rounds taken.
    fn run(&mut self) -> usize {
        for round in 0..100 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].node.poll_transmit() {
                    moved = true;
                    match t.destination {
                        Destination::Udp(_) if self.nodes[i].cut => self.lost += 1,
                        Destination::Udp(to) => {
                            let from = self.nodes[i].public.unwrap_or(self.nodes[i].addr);
                            self.deliver(from, to, &t.payload);
                        }
                        Destination::Relay { relay, peer } => {
                            let r = &self.relays[usize::from(relay)];
                            if r.cut || self.nodes[i].cut {
                                self.lost += 1;
                            } else {
                                let from = SocketAddr::new(r.ip, 50000 + i as u16);
                                self.deliver(from, peer, &t.payload);
                            }
                        }
                        Destination::Tun => {
                            let n = &mut self.nodes[i];
                            let dst: [u8; 4] = t.payload[16..20].try_into().unwrap();
                            if n.forwards && !n.own.contains(&dst) {
                                let now = self.now;
                                n.node.handle_tun(&t.payload, now);
                            } else {
                                n.tun.push(t.payload.clone());
                            }
                        }
                    }
                    self.nodes[i].node.recycle(t.payload);
                }
            }
            if !moved {
                return round;
            }
        }
        panic!("the simulated network did not settle in 100 rounds");
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let now = self.now;
        if self.blocked.contains(&(from, to)) {
            self.lost += 1;
            return;
        }
        // Sent to a relayed address: the relay forwards it to its client.
        if let Some(r) = self.relays.iter().position(|r| r.ip == to.ip()) {
            let client = usize::from(to.port() - 50000);
            if self.relays[r].cut || self.nodes[client].cut {
                self.lost += 1;
            } else {
                self.nodes[client]
                    .node
                    .handle_relay(r as u16, from, payload, now);
            }
            return;
        }
        // A node behind a NAT is reached only at its public mapping.
        match self
            .nodes
            .iter_mut()
            .find(|n| !n.cut && n.public.unwrap_or(n.addr) == to)
        {
            Some(n) => n.node.handle_udp(from, payload, now),
            None => self.lost += 1,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for n in &mut self.nodes {
            n.node.handle_timeout(now);
        }
        self.run();
    }

    fn handshakes(&self, node: usize, peer: &PublicKey) -> u64 {
        self.nodes[node].node.peer(peer).unwrap().stats.handshakes
    }
}

fn spec(key: &PrivateKey, name: &str, role: Role, site: Option<&str>, addr: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        public_key: key.public_key(),
        role,
        site: site.map(String::from),
        addresses: vec![addr.parse().unwrap()],
        allowed_ips: vec![],
        endpoints: vec![],
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
    }
}

/// A hub on a public address and two edges on different sites, each behind a NAT.
fn hub_and_two_nated_edges() -> (Sim, Manifest, [PrivateKey; 3]) {
    let keys = [
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    ];
    let mut sim = Sim::new();
    let hub = sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    sim.nodes[hub].forwards = true;
    let a = sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.nodes[a].public = Some("198.51.100.2:40001".parse().unwrap());
    let b = sim.add(keys[2].clone(), "192.168.2.10:51820", [10, 42, 2, 1]);
    sim.nodes[b].public = Some("198.51.100.3:40002".parse().unwrap());
    let mut hub_spec = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    hub_spec.endpoints = vec!["203.0.113.10:51820".into()];
    let m = manifest(vec![
        hub_spec,
        spec(
            &keys[1],
            "dev-a",
            Role::Edge,
            Some("site-a"),
            "10.42.1.1/32",
        ),
        spec(
            &keys[2],
            "dev-b",
            Role::Edge,
            Some("site-b"),
            "10.42.2.1/32",
        ),
    ]);
    sim.apply(&m);
    sim.run();
    (sim, m, keys)
}

#[test]
fn edges_behind_nat_handshake_with_the_hub_as_soon_as_the_manifest_is_applied() {
    let (sim, _, keys) = hub_and_two_nated_edges();
    assert_eq!(sim.handshakes(1, &keys[0].public_key()), 1);
    assert_eq!(sim.handshakes(2, &keys[0].public_key()), 1);
    // The hub learned each edge's NAT mapping from the authenticated handshake.
    let hub = &sim.nodes[0].node;
    let endpoint = |k: &PrivateKey| {
        hub.peer(&k.public_key())
            .unwrap()
            .path()
            .unwrap()
            .endpoint()
    };
    assert_eq!(endpoint(&keys[1]).to_string(), "198.51.100.2:40001");
    assert_eq!(endpoint(&keys[2]).to_string(), "198.51.100.3:40002");
}

#[test]
fn edge_to_edge_traffic_goes_through_the_hub() {
    let (mut sim, _, keys) = hub_and_two_nated_edges();
    assert!(
        sim.nodes[1].node.peer(&keys[2].public_key()).is_none(),
        "different sites"
    );
    let hub_rx_before = sim.nodes[0]
        .node
        .peer(&keys[1].public_key())
        .unwrap()
        .stats
        .rx_bytes;
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 2, 1]);
    sim.run();
    assert_eq!(sim.nodes[2].tun.len(), 1, "dev-b received the packet");
    assert_eq!(&sim.nodes[2].tun[0][12..16], &[10, 42, 1, 1]);
    let hub_rx = sim.nodes[0]
        .node
        .peer(&keys[1].public_key())
        .unwrap()
        .stats
        .rx_bytes;
    assert!(hub_rx > hub_rx_before, "the packet crossed the hub");
    assert!(sim.nodes[0].tun.is_empty(), "the hub only forwarded it");
}

#[test]
fn edges_of_the_same_site_talk_directly() {
    let keys = [
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    ];
    let mut sim = Sim::new();
    sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.add(keys[2].clone(), "192.168.1.11:51820", [10, 42, 1, 2]);
    let mut hub = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    hub.endpoints = vec!["203.0.113.10:51820".into()];
    let mut a = spec(&keys[1], "dev-a", Role::Edge, Some("lab"), "10.42.1.1/32");
    a.endpoints = vec!["192.168.1.10:51820".into()];
    let mut b = spec(&keys[2], "dev-b", Role::Edge, Some("lab"), "10.42.1.2/32");
    b.endpoints = vec!["192.168.1.11:51820".into()];
    sim.apply(&manifest(vec![hub, a, b]));
    sim.run();
    let hub_tx = sim.nodes[1]
        .node
        .peer(&keys[0].public_key())
        .unwrap()
        .stats
        .tx_bytes;
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 1, 2]);
    sim.run();
    assert_eq!(sim.nodes[2].tun.len(), 1);
    assert_eq!(
        sim.nodes[1]
            .node
            .peer(&keys[0].public_key())
            .unwrap()
            .stats
            .tx_bytes,
        hub_tx
    );
}

#[test]
fn a_packet_with_a_source_outside_the_peers_allowed_ips_is_dropped() {
    let (mut sim, _, _) = hub_and_two_nated_edges();
    // dev-a claims to be 10.42.2.1 (dev-b's address) toward the hub.
    sim.send_ping(1, [10, 42, 2, 1], [10, 42, 0, 1]);
    sim.run();
    assert!(sim.nodes[0].tun.is_empty());
    // A packet with its own source passes.
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    assert_eq!(sim.nodes[0].tun.len(), 1);
}

#[test]
fn a_packet_no_peer_routes_is_counted_and_dropped() {
    let (mut sim, _, _) = hub_and_two_nated_edges();
    sim.send_ping(1, [10, 42, 1, 1], [192, 0, 2, 7]);
    assert_eq!(sim.run(), 0);
    assert_eq!(sim.nodes[1].node.drops.no_route, 1);
}

#[test]
fn garbage_datagrams_are_counted_and_change_nothing() {
    let (mut sim, _, keys) = hub_and_two_nated_edges();
    let from: SocketAddr = "192.0.2.66:9999".parse().unwrap();
    let now = sim.now;
    let hub = &mut sim.nodes[0].node;
    for junk in [
        &[][..],
        &[1, 0, 0, 0][..],
        &[4, 0, 0, 0, 9, 9, 9, 9][..],
        &[0xff; 200][..],
        &[1u8; 148][..],
        &[4u8; 1500][..],
    ] {
        hub.handle_udp(from, junk, now);
    }
    let mut data = vec![4u8, 0, 0, 0];
    data.extend_from_slice(&[0u8; 60]);
    hub.handle_udp(from, &data, now);
    assert!(hub.poll_transmit().is_none());
    assert!(hub.drops.unknown_datagram >= 5);
    let endpoint = hub
        .peer(&keys[1].public_key())
        .unwrap()
        .path()
        .unwrap()
        .endpoint();
    assert_eq!(
        endpoint.to_string(),
        "198.51.100.2:40001",
        "garbage must not move an endpoint"
    );
}

#[test]
fn reapplying_a_manifest_keeps_unchanged_sessions_and_updates_the_rest() {
    let (mut sim, mut m, keys) = hub_and_two_nated_edges();
    let hub_key = keys[0].public_key();
    // Drop dev-b, give dev-a a lab subnet.
    m.serial = 2;
    m.nodes.pop();
    m.nodes[1].allowed_ips = vec!["192.168.50.0/24".parse().unwrap()];
    let now = sim.now;
    let t = topology::plan(&m, &hub_key).unwrap();
    let desired = t
        .peers
        .iter()
        .map(|(k, p)| (*k, p.resolve(|_| vec![])))
        .collect();
    let changes = sim.nodes[0].node.apply(desired, t.overlay.clone(), now);
    assert_eq!(changes.removed, vec!["dev-b".to_string()]);
    assert_eq!(changes.updated, vec!["dev-a".to_string()]);
    assert!(changes.added.is_empty() && changes.rekeyed.is_empty());
    sim.run();
    assert_eq!(
        sim.handshakes(0, &keys[1].public_key()),
        1,
        "no new handshake"
    );
    assert!(
        sim.nodes[0]
            .node
            .routed_prefixes()
            .contains(&"192.168.50.0/24".parse().unwrap())
    );
    // The learned NAT endpoint survived the update.
    let p = sim.nodes[0].node.peer(&keys[1].public_key()).unwrap();
    assert_eq!(
        p.path().unwrap().endpoint().to_string(),
        "198.51.100.2:40001"
    );
    // And traffic still flows on the old session.
    sim.send_ping(0, [10, 42, 0, 1], [192, 168, 50, 9]);
    sim.run();
    assert_eq!(sim.nodes[1].tun.len(), 1);
}

#[test]
fn a_new_preshared_key_rebuilds_only_that_session() {
    let (mut sim, mut m, keys) = hub_and_two_nated_edges();
    m.nodes[1].preshared_key = Some([7; 32]);
    sim.apply(&m);
    sim.run();
    // dev-a and the hub rebuilt their session; the hub and dev-b did not.
    assert_eq!(sim.handshakes(2, &keys[0].public_key()), 1);
    assert_eq!(sim.handshakes(0, &keys[2].public_key()), 1);
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    assert_eq!(
        sim.nodes[0].tun.len(),
        1,
        "the new session with the PSK works"
    );
}

#[test]
fn an_idle_node_sleeps_until_its_keepalive_is_due() {
    let (mut sim, _, keys) = hub_and_two_nated_edges();
    // Data makes the peer active: timers checked every second.
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    let (t, _) = sim.nodes[1].node.poll_timeout().unwrap();
    assert_eq!(t - sim.now, Duration::from_secs(1));
    // After the active window, the next wakeup is the 25 s keepalive toward the hub.
    for _ in 0..20 {
        sim.advance(Duration::from_secs(1));
    }
    let (t, reason) = sim.nodes[1].node.poll_timeout().unwrap();
    assert_eq!(reason, "hub");
    assert!(
        t - sim.now > Duration::from_secs(3),
        "no busy tick: next in {:?}",
        t - sim.now
    );
    // The hub has no keepalive toward edges: it sleeps a minute.
    let (t, _) = sim.nodes[0].node.poll_timeout().unwrap();
    assert!(t - sim.now >= Duration::from_secs(40));
    let _ = keys;
}

#[test]
fn the_route_table_follows_the_manifest_overlay_to_the_first_hub() {
    let (sim, _, keys) = hub_and_two_nated_edges();
    let routes: HashMap<_, _> = [(0, "10.42.0.0/16")].into_iter().collect();
    let prefixes = sim.nodes[1].node.routed_prefixes();
    assert!(prefixes.contains(&routes[&0].parse().unwrap()));
    assert!(prefixes.contains(&"10.42.0.1/32".parse().unwrap()));
    let _ = keys;
}

fn overlay_via(sim: &Sim, node: usize) -> String {
    sim.nodes[node]
        .node
        .overlay_via()
        .map(|p| p.config.name.clone())
        .unwrap_or_default()
}

/// Two hubs (hub-1 preferred), two edges on different sites.
fn two_hubs() -> (Sim, [PrivateKey; 4]) {
    let keys = [0; 4].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    for (i, addr, own) in [(0, "203.0.113.10:51820", 1), (1, "203.0.113.11:51820", 2)] {
        let hub = sim.add(keys[i].clone(), addr, [10, 42, 0, own]);
        sim.nodes[hub].forwards = true;
    }
    sim.add(keys[2].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.add(keys[3].clone(), "192.168.2.10:51820", [10, 42, 2, 1]);
    let mut hub1 = spec(&keys[0], "hub-1", Role::Hub, None, "10.42.0.1/32");
    hub1.endpoints = vec!["203.0.113.10:51820".into()];
    let mut hub2 = spec(&keys[1], "hub-2", Role::Hub, None, "10.42.0.2/32");
    hub2.endpoints = vec!["203.0.113.11:51820".into()];
    sim.apply(&manifest(vec![
        hub1,
        hub2,
        spec(&keys[2], "dev-a", Role::Edge, Some("a"), "10.42.1.1/32"),
        spec(&keys[3], "dev-b", Role::Edge, Some("b"), "10.42.2.1/32"),
    ]));
    sim.run();
    (sim, keys)
}

#[test]
fn the_overlay_moves_to_the_next_hub_when_the_preferred_one_stops_answering_and_back() {
    let (mut sim, _) = two_hubs();
    assert_eq!(overlay_via(&sim, 2), "hub-1");
    sim.nodes[0].cut = true;
    // dev-a keeps sending toward dev-b; nothing comes back through hub-1.
    let mut moved_after = None;
    for step in 1..=10 {
        sim.send_ping(2, [10, 42, 1, 1], [10, 42, 2, 1]);
        sim.run();
        sim.advance(Duration::from_millis(500));
        if overlay_via(&sim, 2) == "hub-2" {
            moved_after = Some(step);
            break;
        }
    }
    let steps = moved_after.expect("the overlay never left the silent hub");
    assert!(steps <= 9, "took {steps} half-seconds, want at most 4.5 s");
    // The next packet crosses hub-2 and dev-b accepts it from there.
    let delivered = sim.nodes[3].tun.len();
    sim.send_ping(2, [10, 42, 1, 1], [10, 42, 2, 1]);
    sim.run();
    assert_eq!(sim.nodes[3].tun.len(), delivered + 1);

    // hub-1 comes back: the next probe finds it and the overlay returns to it.
    sim.nodes[0].cut = false;
    for _ in 0..40 {
        sim.advance(Duration::from_secs(1));
        if overlay_via(&sim, 2) == "hub-1" {
            break;
        }
    }
    assert_eq!(overlay_via(&sim, 2), "hub-1");
}

#[test]
fn a_hub_that_never_answers_is_passed_over_at_start() {
    let keys = [0; 3].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    sim.add(keys[1].clone(), "203.0.113.11:51820", [10, 42, 0, 2]);
    sim.add(keys[2].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.nodes[0].cut = true;
    let mut hub1 = spec(&keys[0], "hub-1", Role::Hub, None, "10.42.0.1/32");
    hub1.endpoints = vec!["203.0.113.10:51820".into()];
    let mut hub2 = spec(&keys[1], "hub-2", Role::Hub, None, "10.42.0.2/32");
    hub2.endpoints = vec!["203.0.113.11:51820".into()];
    let edge = spec(&keys[2], "dev-a", Role::Edge, None, "10.42.1.1/32");
    sim.apply(&manifest(vec![hub1, hub2, edge]));
    sim.run();
    assert_eq!(
        overlay_via(&sim, 2),
        "hub-1",
        "preferred until proven silent"
    );
    sim.advance(Duration::from_secs(2));
    assert_eq!(overlay_via(&sim, 2), "hub-2");
    let hub1 = sim.nodes[2].node.peer(&keys[0].public_key()).unwrap();
    assert_eq!(hub1.health(), super::Health::Down);
}

#[test]
fn a_silent_same_site_peer_falls_back_to_the_hub_route() {
    let keys = [0; 3].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    let hub = sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    sim.nodes[hub].forwards = true;
    sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.add(keys[2].clone(), "192.168.1.11:51820", [10, 42, 1, 2]);
    let mut h = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    h.endpoints = vec!["203.0.113.10:51820".into()];
    let mut a = spec(&keys[1], "dev-a", Role::Edge, Some("lab"), "10.42.1.1/32");
    a.endpoints = vec!["192.168.1.10:51820".into()];
    let mut b = spec(&keys[2], "dev-b", Role::Edge, Some("lab"), "10.42.1.2/32");
    b.endpoints = vec!["192.168.1.11:51820".into()];
    sim.apply(&manifest(vec![h, a, b]));
    sim.run();
    // The LAN between the two edges fails; both still reach the hub.
    let (a_addr, b_addr) = (sim.nodes[1].addr, sim.nodes[2].addr);
    sim.blocked.push((a_addr, b_addr));
    sim.blocked.push((b_addr, a_addr));
    for _ in 0..10 {
        sim.send_ping(1, [10, 42, 1, 1], [10, 42, 1, 2]);
        sim.run();
        sim.advance(Duration::from_millis(500));
    }
    let b_peer = sim.nodes[1].node.peer(&keys[2].public_key()).unwrap();
    assert_eq!(b_peer.health(), super::Health::Down);
    let before = sim.nodes[2].tun.len();
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 1, 2]);
    sim.run();
    assert_eq!(
        sim.nodes[2].tun.len(),
        before + 1,
        "delivered through the hub"
    );
}

#[test]
fn a_hub_whose_name_resolves_to_a_new_address_is_followed_at_once() {
    let (mut sim, mut m, keys) = hub_and_two_nated_edges();
    // The hub moves; the manifest (by DNS, here by literal) points at the new address.
    sim.nodes[0].addr = "203.0.113.99:51820".parse().unwrap();
    m.nodes[0].endpoints = vec!["203.0.113.99:51820".into()];
    let before = sim.handshakes(1, &keys[0].public_key());
    sim.apply(&m);
    sim.run();
    assert_eq!(
        sim.handshakes(1, &keys[0].public_key()),
        before + 1,
        "handshake on the new path"
    );
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    assert_eq!(sim.nodes[0].tun.len(), 1);
}

fn path_of(sim: &Sim, node: usize, peer: &PrivateKey) -> Option<super::Path> {
    sim.nodes[node]
        .node
        .peer(&peer.public_key())
        .unwrap()
        .path()
}

/// An edge behind NAT, a hub, and two relays; the edge-to-hub direct path is blocked
/// (both ways) when `blocked`.
fn relayed_edge(blocked: bool) -> (Sim, [PrivateKey; 2]) {
    let keys = [0; 2].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    let edge = sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.nodes[edge].public = Some("198.51.100.2:40001".parse().unwrap());
    sim.relays.push(SimRelay {
        ip: "192.0.2.1".parse().unwrap(),
        cut: false,
    });
    sim.relays.push(SimRelay {
        ip: "192.0.2.2".parse().unwrap(),
        cut: false,
    });
    if blocked {
        block_direct(&mut sim);
    }
    let now = sim.now;
    sim.nodes[edge]
        .node
        .relay_up(0, Duration::from_millis(30), now);
    sim.nodes[edge]
        .node
        .relay_up(1, Duration::from_millis(60), now);
    let mut hub = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    hub.endpoints = vec!["203.0.113.10:51820".into()];
    let dev = spec(&keys[1], "dev", Role::Edge, None, "10.42.1.1/32");
    sim.apply(&manifest(vec![hub, dev]));
    sim.run();
    (sim, keys)
}

const EDGE_PUBLIC: &str = "198.51.100.2:40001";
const HUB: &str = "203.0.113.10:51820";

fn block_direct(sim: &mut Sim) {
    let (edge, hub) = (EDGE_PUBLIC.parse().unwrap(), HUB.parse().unwrap());
    sim.blocked.push((edge, hub));
    sim.blocked.push((hub, edge));
}

/// Pings from the edge to the hub every 100 ms for `secs`; returns the time of each
/// ping the hub received, in seconds from the start.
fn ping_hub(sim: &mut Sim, secs: f64) -> Vec<f64> {
    let start = sim.now;
    let mut got = Vec::new();
    while sim.now - start < Duration::from_secs_f64(secs) {
        let before = sim.nodes[0].tun.len();
        sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
        sim.run();
        // The hub answers each ping, so traffic is request/response both ways.
        if sim.nodes[0].tun.len() > before {
            got.push((sim.now - start).as_secs_f64());
            sim.send_ping(0, [10, 42, 0, 1], [10, 42, 1, 1]);
            sim.run();
        }
        sim.advance(Duration::from_millis(100));
    }
    got
}

#[test]
fn direct_blocked_from_the_start_falls_back_to_the_fastest_relay_within_a_second() {
    let (mut sim, keys) = relayed_edge(true);
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().kind(), "direct");
    let got = ping_hub(&mut sim, 3.0);
    assert!(
        !got.is_empty() && got[0] <= 1.2,
        "first ping through at {got:?}"
    );
    assert_eq!(
        path_of(&sim, 1, &keys[0]).unwrap().relay(),
        Some(0),
        "relay 0 answers faster"
    );
    // The hub, a plain WireGuard peer, followed by roaming to the relayed address.
    let hub_sees = path_of(&sim, 0, &keys[1]).unwrap().endpoint();
    assert_eq!(hub_sees.to_string(), "192.0.2.1:50001");
}

#[test]
fn a_direct_path_that_dies_mid_stream_moves_to_a_relay_within_5s() {
    let (mut sim, keys) = relayed_edge(false);
    let got = ping_hub(&mut sim, 2.0);
    assert!(got.len() >= 19, "direct works: {got:?}");
    block_direct(&mut sim);
    let got = ping_hub(&mut sim, 8.0);
    let first = got.first().copied().expect("traffic never resumed");
    assert!(first <= 5.0, "pings lost for {first} s");
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().kind(), "relay");
}

#[test]
fn the_peer_returns_to_direct_after_the_block_is_lifted() {
    let (mut sim, keys) = relayed_edge(true);
    ping_hub(&mut sim, 2.0);
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().kind(), "relay");
    sim.blocked.clear();
    let start = sim.now;
    for _ in 0..300 {
        ping_hub(&mut sim, 0.1);
        if path_of(&sim, 1, &keys[0]).unwrap().kind() == "direct" {
            break;
        }
    }
    let took = sim.now - start;
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().kind(), "direct");
    assert!(
        took <= Duration::from_secs(21),
        "back to direct after {took:?}"
    );
    // And the hub follows, so the traffic is direct both ways.
    assert_eq!(
        path_of(&sim, 0, &keys[1]).unwrap().endpoint().to_string(),
        "198.51.100.2:40001"
    );
    let got = ping_hub(&mut sim, 1.0);
    assert!(got.len() >= 9);
}

#[test]
fn a_probe_that_gets_no_answer_leaves_the_peer_on_the_relay() {
    let (mut sim, keys) = relayed_edge(true);
    ping_hub(&mut sim, 2.0);
    // Only the way back is blocked: the hub hears the direct probe but cannot answer.
    sim.blocked = vec![(HUB.parse().unwrap(), EDGE_PUBLIC.parse().unwrap())];
    let got = ping_hub(&mut sim, 45.0);
    // Two direct probes happened in 45 s; traffic never stopped for long.
    let gaps = got.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(gaps < 1.0, "longest gap {gaps} s");
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().kind(), "relay");
}

#[test]
fn a_dead_relay_hands_its_peers_to_the_other_relay() {
    let (mut sim, keys) = relayed_edge(true);
    ping_hub(&mut sim, 2.0);
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(0));
    sim.relays[0].cut = true;
    let now = sim.now;
    sim.nodes[1].node.relay_down(0, now);
    sim.run();
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(1));
    let got = ping_hub(&mut sim, 1.0);
    assert!(got.first().is_some_and(|&t| t < 0.2), "resumed at {got:?}");
}

#[test]
fn a_silently_dead_relay_is_noticed_from_the_data_path_too() {
    let (mut sim, keys) = relayed_edge(true);
    ping_hub(&mut sim, 2.0);
    sim.relays[0].cut = true; // no word from the shell: the allocation just stops working
    let got = ping_hub(&mut sim, 8.0);
    assert!(got.first().is_some_and(|&t| t <= 5.0), "resumed at {got:?}");
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(1));
}
