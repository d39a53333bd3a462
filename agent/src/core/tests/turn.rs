//! The core's own TURN clients against a sans-IO TURN server (`turn::testserver`): the
//! node asks for connections, keeps permissions, frames relayed datagrams for the
//! server, and reconnects with growing pauses; all in simulated time.

use std::time::Duration;

use crate::keys::PrivateKey;

use super::super::Event;
use super::relay::{apply_hub_and_edge, block_direct, path_of, ping_hub};
use super::sim::*;

/// The hub, an edge whose UDP to the hub is blocked, and one TURN server (not yet used).
fn edge_behind_a_block() -> (Sim, [PrivateKey; 2]) {
    let keys = [0; 2].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    let edge = sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.nodes[edge].public = Some("198.51.100.2:40001".parse().unwrap());
    sim.add_turn("192.0.2.50:3478", "192.0.2.51");
    block_direct(&mut sim);
    apply_hub_and_edge(&mut sim, &keys);
    (sim, keys)
}

fn connects(sim: &Sim, node: usize) -> Vec<f64> {
    let start = sim.nodes[node].events.first().map(|(t, _)| *t);
    (sim.nodes[node].events.iter())
        .filter(|(_, e)| matches!(e, Event::ConnectRelay { .. }))
        .map(|(t, _)| (*t - start.unwrap()).as_secs_f64())
        .collect()
}

#[test]
fn an_edge_cut_off_from_its_hub_reaches_it_through_its_own_turn_client() {
    let (mut sim, keys) = edge_behind_a_block();
    sim.use_turn(1);
    let up = (sim.nodes[1].events.iter()).any(|(_, e)| matches!(e, Event::RelayUp { id: 0, .. }));
    assert!(up, "relay up: {:?}", sim.nodes[1].events);
    let (server, transport, relayed) = sim.nodes[1].node.relay_link(0).expect("relay 0 is up");
    assert_eq!(server.to_string(), "192.0.2.50:3478");
    assert_eq!(transport.name(), "udp");
    let got = ping_hub(&mut sim, 3.0);
    assert!(
        !got.is_empty() && got[0] <= 2.0,
        "first ping through at {got:?}"
    );
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(0));
    // The hub sees the allocation's relayed address: the server forwarded it, which it
    // does only for a peer the client gave a permission.
    assert_eq!(path_of(&sim, 0, &keys[1]).unwrap().endpoint(), relayed);
    // Every ping of the last second went through, both ways.
    assert!(got.iter().filter(|t| **t >= 2.0).count() >= 9, "{got:?}");
}

#[test]
fn a_dead_turn_server_is_asked_for_again_after_pauses_that_double_to_a_minute() {
    let (mut sim, _keys) = edge_behind_a_block();
    sim.turn[0].cut = true;
    sim.use_turn(1);
    sim.advance(Duration::from_secs(400));
    // At once, then 5, 10, 20, 40, 60, 60, ... seconds later.
    let at = connects(&sim, 1);
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(&gaps[..6], [5.0, 10.0, 20.0, 40.0, 60.0, 60.0], "{at:?}");
    // Back: the next try allocates and traffic flows through it.
    sim.turn[0].cut = false;
    sim.advance(Duration::from_secs(61));
    assert!(sim.nodes[1].node.relay_link(0).is_some(), "relay up again");
    let got = ping_hub(&mut sim, 3.0);
    assert!(!got.is_empty(), "no ping through the relay that came back");
}

#[test]
fn a_relay_no_longer_listed_frees_its_allocation_and_its_peer_moves_off_it() {
    let (mut sim, keys) = edge_behind_a_block();
    sim.use_turn(1);
    ping_hub(&mut sim, 3.0);
    let relayed = sim.nodes[1].node.relay_link(0).unwrap().2;
    assert!(sim.turn[0].server.owns(relayed));
    let now = sim.now;
    sim.nodes[1].node.set_relays(Vec::new(), now);
    sim.run();
    assert!(
        !sim.turn[0].server.owns(relayed),
        "Refresh with lifetime 0 sent"
    );
    assert_eq!(sim.nodes[1].node.relay_link(0), None);
    assert_ne!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(0));
}

#[test]
fn a_turn_server_that_lost_the_allocation_is_allocated_again_and_traffic_resumes() {
    let (mut sim, keys) = edge_behind_a_block();
    sim.use_turn(1);
    ping_hub(&mut sim, 3.0);
    // The server restarted: its next answer to our refreshes is 437 (no allocation).
    sim.turn[0].server.forget();
    sim.advance(Duration::from_secs(600));
    let got = ping_hub(&mut sim, 5.0);
    assert!(got.iter().filter(|t| **t >= 3.0).count() >= 15, "{got:?}");
    assert_eq!(path_of(&sim, 1, &keys[0]).unwrap().relay(), Some(0));
}
