//! One hub and its edges: handshakes through NAT, routing through the hub and between
//! edges of a site, inbound source checks, garbage, re-applied manifests, idle timers.

use std::net::SocketAddr;
use std::time::Duration;

use crate::keys::PrivateKey;
use crate::manifest::Role;

use super::super::topology;
use super::sim::*;

#[test]
pub fn edges_behind_nat_handshake_with_the_hub_as_soon_as_the_manifest_is_applied() {
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
pub fn edge_to_edge_traffic_goes_through_the_hub() {
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
pub fn edges_of_the_same_site_talk_directly() {
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
pub fn a_packet_with_a_source_outside_the_peers_allowed_ips_is_dropped() {
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
pub fn a_packet_no_peer_routes_is_counted_and_dropped() {
    let (mut sim, _, _) = hub_and_two_nated_edges();
    sim.send_ping(1, [10, 42, 1, 1], [192, 0, 2, 7]);
    assert_eq!(sim.run(), 0);
    assert_eq!(sim.nodes[1].node.drops.no_route, 1);
}

#[test]
pub fn garbage_datagrams_are_counted_and_change_nothing() {
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
pub fn reapplying_a_manifest_keeps_unchanged_sessions_and_updates_the_rest() {
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
pub fn a_diff_of_the_changed_peers_only_does_what_the_whole_manifest_would() {
    let (mut sim, mut m, keys) = hub_and_two_nated_edges();
    let hub_key = keys[0].public_key();
    // Serial 2: dev-b leaves, dev-c joins, dev-a is unchanged (and is not in the diff).
    let dev_c = PrivateKey::generate();
    m.serial = 2;
    m.nodes.pop();
    m.nodes.push(spec(
        &dev_c,
        "dev-c",
        Role::Edge,
        Some("site-c"),
        "10.42.3.1/32",
    ));
    let t = topology::plan(&m, &hub_key).unwrap();
    let c = dev_c.public_key();
    let desired = [(c, t.peers[&c].resolve(|_| vec![]))].into_iter().collect();
    let now = sim.now;
    let changes =
        sim.nodes[0]
            .node
            .apply_diff(vec![keys[2].public_key()], desired, t.overlay.clone(), now);
    assert_eq!(changes.removed, vec!["dev-b".to_string()]);
    assert_eq!(changes.added, vec!["dev-c".to_string()]);
    assert!(changes.updated.is_empty() && changes.rekeyed.is_empty());
    let hub = &sim.nodes[0].node;
    let names: Vec<&str> = hub.peers().map(|p| p.config.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"dev-a") && names.contains(&"dev-c"));
    // The same prefixes as the whole manifest gives (test builds also check the routes
    // against ones made from scratch after every apply).
    let mut whole = hub_and_two_nated_edges().0;
    let full = t
        .peers
        .iter()
        .map(|(k, p)| (*k, p.resolve(|_| vec![])))
        .collect();
    whole.nodes[0].node.apply(full, t.overlay.clone(), now);
    assert_eq!(
        sim.nodes[0].node.routed_prefixes(),
        whole.nodes[0].node.routed_prefixes()
    );
    // dev-a kept its session: traffic flows with no new handshake.
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    assert_eq!(sim.nodes[0].tun.len(), 1);
    assert_eq!(sim.handshakes(0, &keys[1].public_key()), 1);
}

#[test]
pub fn a_new_preshared_key_rebuilds_only_that_session() {
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
pub fn an_idle_node_sleeps_until_its_keepalive_is_due() {
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
pub fn the_route_table_follows_the_manifest_overlay_to_the_first_hub() {
    let (sim, _, keys) = hub_and_two_nated_edges();
    let prefixes = sim.nodes[1].node.routed_prefixes();
    assert!(prefixes.contains(&"10.42.0.0/16".parse().unwrap()));
    assert!(prefixes.contains(&"10.42.0.1/32".parse().unwrap()));
    let _ = keys;
}

#[test]
fn renewed_sessions_handshake_again_and_keep_paths_and_traffic() {
    let (mut sim, _, keys) = hub_and_two_nated_edges();
    let before = sim.handshakes(1, &keys[0].public_key());
    let now = sim.now;
    sim.nodes[1].node.renew_sessions(now);
    sim.run();
    assert_eq!(sim.handshakes(1, &keys[0].public_key()), before + 1);
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    assert_eq!(sim.nodes[0].tun.len(), 1, "the hub took the new session");
}

/// A fixed-seed stream of random datagrams, some starting like WireGuard messages so they
/// get past the first check: nothing may panic, and nothing may come out.
#[test]
fn random_datagrams_and_packets_never_panic_or_produce_output() {
    let (mut sim, _, _) = hub_and_two_nated_edges();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let from: SocketAddr = "192.0.2.66:9999".parse().unwrap();
    let now = sim.now;
    let hub = &mut sim.nodes[0].node;
    for i in 0..20_000 {
        let len = (next() % 1600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && len >= 4 {
            bytes[..4].copy_from_slice(&[(1 + i % 4) as u8, 0, 0, 0]);
        }
        hub.handle_udp(from, &bytes, now);
        hub.handle_tun(&bytes, now);
    }
    // Random TUN packets may be routed and start handshakes toward the edges; datagrams
    // from nobody must never reach the TUN device.
    while let Some(t) = hub.poll_transmit() {
        assert_ne!(t.destination, super::super::Destination::Tun);
    }
    assert!(hub.drops.unknown_datagram + hub.drops.refused >= 10_000);
}
