//! Peers that stop answering: the overlay moves between hubs, a silent site peer falls
//! back to the hub route, a moved hub is followed.

use std::time::Duration;

use crate::keys::PrivateKey;
use crate::manifest::Role;

use super::sim::*;

pub fn overlay_via(sim: &Sim, node: usize) -> String {
    sim.nodes[node]
        .node
        .overlay_via()
        .map(|p| p.config.name.clone())
        .unwrap_or_default()
}

/// Two hubs (hub-1 preferred), two edges on different sites.
pub fn two_hubs() -> (Sim, [PrivateKey; 4]) {
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
pub fn the_overlay_moves_to_the_next_hub_when_the_preferred_one_stops_answering_and_back() {
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
pub fn a_hub_that_never_answers_is_passed_over_at_start() {
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
    assert_eq!(hub1.health(), super::super::Health::Down);
}

#[test]
pub fn a_silent_same_site_peer_falls_back_to_the_hub_route() {
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
    assert_eq!(b_peer.health(), super::super::Health::Down);
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
pub fn a_hub_whose_name_resolves_to_a_new_address_is_followed_at_once() {
    let (mut sim, mut m, keys) = hub_and_two_nated_edges();
    // A while later (WireGuard refuses a second initiation stamped the same instant as
    // the first), the hub moves; the manifest (by DNS, here by literal) points at the
    // new address.
    sim.advance(Duration::from_secs(1));
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

#[test]
fn a_site_peer_without_an_endpoint_is_reached_through_the_hub_until_it_calls() {
    // As Kilo lists other Peers: same "site", no endpoint. Neither edge can start a
    // direct session, so their traffic takes the overlay route through the hub.
    let keys = [0; 3].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    let hub = sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    sim.nodes[hub].forwards = true;
    let a = sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.nodes[a].public = Some("198.51.100.2:40001".parse().unwrap());
    let b = sim.add(keys[2].clone(), "192.168.2.10:51820", [10, 42, 1, 2]);
    sim.nodes[b].public = Some("198.51.100.3:40002".parse().unwrap());
    let mut h = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    h.endpoints = vec!["203.0.113.10:51820".into()];
    sim.apply(&manifest(vec![
        h,
        spec(&keys[1], "dev-a", Role::Edge, Some("kilo"), "10.42.1.1/32"),
        spec(&keys[2], "dev-b", Role::Edge, Some("kilo"), "10.42.1.2/32"),
    ]));
    sim.run();
    assert!(
        sim.nodes[a].node.peer(&keys[2].public_key()).is_some(),
        "a site peer"
    );
    let hub_rx = sim.nodes[hub]
        .node
        .peer(&keys[1].public_key())
        .unwrap()
        .stats
        .rx_bytes;
    sim.send_ping(a, [10, 42, 1, 1], [10, 42, 1, 2]);
    sim.run();
    assert_eq!(sim.nodes[b].tun.len(), 1, "delivered");
    let hub_rx_after = sim.nodes[hub]
        .node
        .peer(&keys[1].public_key())
        .unwrap()
        .stats
        .rx_bytes;
    assert!(hub_rx_after > hub_rx, "through the hub");
}
