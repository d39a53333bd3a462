//! Relay fallback on a simulated network with TURN relays: direct first, relay when
//! direct is silent, back to direct when it answers again, relay failover.

use std::time::Duration;

use crate::keys::PrivateKey;
use crate::manifest::Role;

use super::sim::*;

pub fn path_of(sim: &Sim, node: usize, peer: &PrivateKey) -> Option<super::super::Path> {
    sim.nodes[node]
        .node
        .peer(&peer.public_key())
        .unwrap()
        .path()
}

/// An edge behind NAT, a hub, and two relays; the edge-to-hub direct path is blocked
/// (both ways) when `blocked`.
pub fn relayed_edge(blocked: bool) -> (Sim, [PrivateKey; 2]) {
    relayed_edge_on(blocked, |_| {})
}

/// `relayed_edge` on a network that `network` sets up (loss, latency).
pub fn relayed_edge_on(blocked: bool, network: impl FnOnce(&mut Sim)) -> (Sim, [PrivateKey; 2]) {
    let keys = [0; 2].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    network(&mut sim);
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
    apply_hub_and_edge(&mut sim, &keys);
    (sim, keys)
}

/// Applies the manifest of a hub (node 0, keys[0]) and one edge (node 1, keys[1]).
pub fn apply_hub_and_edge(sim: &mut Sim, keys: &[PrivateKey; 2]) {
    let mut hub = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    hub.endpoints = vec!["203.0.113.10:51820".into()];
    let dev = spec(&keys[1], "dev", Role::Edge, None, "10.42.1.1/32");
    sim.apply(&manifest(vec![hub, dev]));
    sim.run();
}

const EDGE_PUBLIC: &str = "198.51.100.2:40001";
const HUB: &str = "203.0.113.10:51820";

pub fn block_direct(sim: &mut Sim) {
    let (edge, hub) = (EDGE_PUBLIC.parse().unwrap(), HUB.parse().unwrap());
    sim.blocked.push((edge, hub));
    sim.blocked.push((hub, edge));
}

/// Pings from the edge to the hub every 100 ms for `secs`; returns the time of each
/// ping the hub received, in seconds from the start.
pub fn ping_hub(sim: &mut Sim, secs: f64) -> Vec<f64> {
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
pub fn direct_blocked_from_the_start_falls_back_to_the_fastest_relay_within_2s() {
    let (mut sim, keys) = relayed_edge(true);
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().kind(), "direct");
    let got = ping_hub(&mut sim, 3.0);
    // Direct gets seven handshakes in 1.9 s first (one lost datagram is no reason to
    // relay); the relay carries traffic by 2 s.
    assert!(
        !got.is_empty() && got[0] <= 2.0,
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
pub fn a_direct_path_that_dies_mid_stream_moves_to_a_relay_within_5s() {
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
pub fn the_peer_returns_to_direct_after_the_block_is_lifted() {
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
pub fn a_probe_that_gets_no_answer_leaves_the_peer_on_the_relay() {
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
pub fn a_dead_relay_hands_its_peers_to_the_other_relay() {
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
pub fn a_silently_dead_relay_is_noticed_from_the_data_path_too() {
    let (mut sim, keys) = relayed_edge(true);
    ping_hub(&mut sim, 2.0);
    sim.relays[0].cut = true; // no word from the shell: the allocation just stops working
    let got = ping_hub(&mut sim, 8.0);
    assert!(got.first().is_some_and(|&t| t <= 5.0), "resumed at {got:?}");
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(1));
}

#[test]
pub fn a_relayed_peer_handshakes_on_the_relay_only_when_its_keys_age() {
    let (mut sim, keys) = relayed_edge(true);
    ping_hub(&mut sim, 3.0);
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(0));
    let before = sim.handshakes(1, &keys[0].public_key());
    // Ten minutes on the relay with a ping every 100 ms; direct is probed every 20 s.
    let got = ping_hub(&mut sim, 600.0);
    let handshakes = sim.handshakes(1, &keys[0].public_key()) - before;
    assert!(
        got.len() >= 5990,
        "traffic flowed on the relay: {}",
        got.len()
    );
    // A rekey every 2 minutes, not a handshake per probe (30 in ten minutes).
    assert!(
        (4..=7).contains(&handshakes),
        "{handshakes} handshakes in 10 minutes"
    );
}
