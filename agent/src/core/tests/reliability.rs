//! Faults a device must ride out, in simulated time: steady traffic across rekeys, floods
//! of forged handshakes, and links that lose datagrams.

use std::net::SocketAddr;
use std::time::Duration;

use crate::keys::PrivateKey;

use super::super::session::{COOKIE_REPLIES_PER_SECOND, HandshakeGate, MessageKind, Session};
use super::relay::{path_of, ping_hub, relayed_edge_on};
use super::sim::*;

#[test]
pub fn steady_traffic_rekeys_every_two_minutes_and_never_uses_a_key_past_180s() {
    let (mut sim, _, keys) = hub_and_two_nated_edges();
    let hub = keys[0].public_key();
    let dev_a = keys[1].public_key();
    let (edge_before, hub_before) = (sim.handshakes(1, &hub), sim.handshakes(0, &dev_a));
    let start = sim.now;
    let (mut lost, mut oldest) = (0, Duration::ZERO);
    // Five pings a second each way for ten minutes: the packets are never more than
    // 200 ms apart, which is what once kept WireGuard's timers from ever running.
    while sim.now - start < Duration::from_secs(600) {
        let (hub_got, edge_got) = (sim.nodes[0].tun.len(), sim.nodes[1].tun.len());
        sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
        sim.send_ping(0, [10, 42, 0, 1], [10, 42, 1, 1]);
        sim.run();
        lost += (sim.nodes[0].tun.len() == hub_got) as u32;
        lost += (sim.nodes[1].tun.len() == edge_got) as u32;
        let age = sim.nodes[1]
            .node
            .peer(&hub)
            .unwrap()
            .last_handshake(sim.now);
        oldest = oldest.max(age.expect("a handshake happened"));
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(lost, 0, "packets lost across rekeys");
    let edge = sim.handshakes(1, &hub) - edge_before;
    let hub_side = sim.handshakes(0, &dev_a) - hub_before;
    assert!((4..=6).contains(&edge), "{edge} handshakes in 10 min");
    assert_eq!(edge, hub_side, "both ends count the same handshakes");
    // Rekey after 120 s, checked every second: never near the 180 s reject limit.
    assert!(
        oldest < Duration::from_secs(125),
        "a key was {oldest:?} old"
    );
}

/// `n` handshake initiations toward `to`'s key from strangers, each with a valid MAC1.
fn stranger_initiations(sim: &Sim, to: &PrivateKey, n: usize) -> Vec<Vec<u8>> {
    let stranger = PrivateKey::generate();
    let gate = HandshakeGate::new(&stranger, sim.now);
    let mut session = Session::new(to.public_key(), "peer", None, None, 7, &gate);
    (0..n)
        .map(|_| session.initiate(Vec::new(), sim.now).unwrap())
        .collect()
}

fn spoofed(i: usize) -> SocketAddr {
    SocketAddr::from((
        [198, 51, 100, (i % 250) as u8 + 1],
        1024 + (i as u16 % 60000),
    ))
}

#[test]
pub fn random_initiations_are_dropped_at_the_mac_check() {
    let (mut sim, _, _) = hub_and_two_nated_edges();
    let now = sim.now;
    let hub = &mut sim.nodes[0].node;
    let before = hub.drops;
    let mut x: u64 = 1;
    for i in 0..5_000 {
        let mut d = [0u8; 148];
        for b in d.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        d[..4].copy_from_slice(&[1, 0, 0, 0]);
        hub.handle_udp(spoofed(i), &d, now);
    }
    assert_eq!(hub.drops.unknown_datagram - before.unknown_datagram, 5_000);
    assert!(hub.poll_transmit().is_none(), "nothing answers a bad MAC1");
}

#[test]
pub fn a_flood_of_valid_looking_initiations_gets_cookies_and_known_peers_still_connect() {
    let (mut sim, _, keys) = hub_and_two_nated_edges();
    sim.advance(Duration::from_secs(1));
    let flood = stranger_initiations(&sim, &keys[0], 600);
    let send_flood = |sim: &mut Sim, part: &[Vec<u8>]| {
        let mut cookies = 0;
        let now = sim.now;
        for (i, init) in part.iter().enumerate() {
            sim.nodes[0].node.handle_udp(spoofed(i), init, now);
        }
        while let Some(t) = sim.nodes[0].node.poll_transmit() {
            assert_eq!(MessageKind::of(&t.payload), Some(MessageKind::CookieReply));
            cookies += 1;
            sim.nodes[0].node.recycle(t.payload);
        }
        cookies
    };
    // 300 strangers in one instant: the first 200 cost an X25519 each and are dropped as
    // unknown; the rest are asked for a cookie and cost nothing more.
    assert_eq!(send_flood(&mut sim, &flood[..300]), 100);
    // A known peer that handshakes now, under load, is asked for a cookie too, and gets
    // through with it on its next attempt while the flood goes on.
    let hub = keys[0].public_key();
    let before = sim.handshakes(1, &hub);
    let now = sim.now;
    sim.nodes[1].node.renew_sessions(now);
    sim.run();
    assert_eq!(
        sim.handshakes(1, &hub),
        before,
        "under load: a cookie first"
    );
    assert!(sim.nodes[1].node.peer(&hub).is_some());
    sim.now += Duration::from_millis(500);
    assert_eq!(send_flood(&mut sim, &flood[300..]), 300);
    sim.advance(Duration::ZERO);
    assert_eq!(
        sim.handshakes(1, &hub),
        before + 1,
        "through with the cookie"
    );
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    assert_eq!(sim.nodes[0].tun.len(), 1, "the tunnel works");
    assert!(sim.nodes[0].node.drops.cookie_replies >= 400);
}

#[test]
pub fn past_the_cookie_budget_a_flood_is_dropped_unanswered_until_the_next_second() {
    let (mut sim, _, keys) = hub_and_two_nated_edges();
    sim.advance(Duration::from_secs(1));
    let flood = stranger_initiations(&sim, &keys[0], 300);
    let send = |sim: &mut Sim, n: usize| {
        let now = sim.now;
        for i in 0..n {
            sim.nodes[0]
                .node
                .handle_udp(spoofed(i), &flood[i % flood.len()], now);
        }
        let mut cookies = 0;
        while let Some(t) = sim.nodes[0].node.poll_transmit() {
            cookies += usize::from(MessageKind::of(&t.payload) == Some(MessageKind::CookieReply));
            sim.nodes[0].node.recycle(t.payload);
        }
        cookies
    };
    // 200 pass the limiter (and are dropped as strangers), 2,000 get a cookie, the rest
    // of this second's flood gets nothing.
    assert_eq!(send(&mut sim, 2_700), COOKIE_REPLIES_PER_SECOND as usize);
    assert_eq!(sim.nodes[0].node.drops.shed, 500);
    // A second later the limiter and the budget start again.
    sim.now += Duration::from_secs(1);
    assert_eq!(send(&mut sim, 300), 100);
}

/// 500 starts, not 20: the first handshakes' schedule allowed one relayed start in about
/// 220, which 20 seeded starts did not show and CI's 20 real ones sometimes did.
#[test]
pub fn five_hundred_starts_on_a_link_losing_20_percent_each_way_never_take_the_relay() {
    let mut relayed = Vec::new();
    for seed in 0..500 {
        let (mut sim, keys) = relayed_edge_on(false, |sim| {
            sim.loss = 0.2;
            sim.seed(seed);
        });
        for step in 0..50 {
            ping_hub(&mut sim, 0.1);
            if path_of(&sim, 1, &keys[0]).unwrap().relay().is_some() {
                relayed.push((seed, step));
                break;
            }
        }
    }
    assert_eq!(
        relayed,
        Vec::<(u64, i32)>::new(),
        "starts that went to the relay"
    );
}

/// A slow path is not a dead one, from the start: the answer to one of the first
/// handshakes after a 0.9 s round trip still counts (boringtun takes the answer to the
/// last initiation or the one before), and the peer stays direct.
#[test]
pub fn a_start_on_a_path_with_a_0_9_s_round_trip_stays_direct() {
    let (mut sim, keys) = relayed_edge_on(false, |sim| sim.latency = Duration::from_millis(450));
    let mut paths = Vec::new();
    for _ in 0..50 {
        sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
        sim.advance(Duration::from_millis(100));
        let path = path_of(&sim, 1, &keys[0]).unwrap();
        if paths.last() != Some(&path) {
            paths.push(path);
        }
    }
    assert!(
        !sim.nodes[0].tun.is_empty(),
        "no ping reached the hub in 5 s"
    );
    assert!(
        paths.iter().all(|p| p.relay().is_none()),
        "the edge's path to the hub went {paths:?}"
    );
}

#[test]
pub fn a_hub_with_offline_peers_backs_off_to_one_initiation_each_five_minutes() {
    let keys: Vec<PrivateKey> = (0..101).map(|_| PrivateKey::generate()).collect();
    let mut sim = Sim::new();
    sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    let mut hub = spec(
        &keys[0],
        "hub",
        crate::manifest::Role::Hub,
        None,
        "10.42.0.1/32",
    );
    hub.endpoints = vec!["203.0.113.10:51820".into()];
    let mut nodes = vec![hub];
    // 100 edges that list an endpoint but never answer (nobody is at the address).
    for (i, key) in keys[1..].iter().enumerate() {
        let mut edge = spec(
            key,
            &format!("dev-{i}"),
            crate::manifest::Role::Edge,
            Some(&format!("site-{i}")),
            &format!("10.42.{}.{}/32", 1 + i / 200, 1 + i % 200),
        );
        edge.endpoints = vec![format!("198.51.100.{}:51820", 1 + i)];
        nodes.push(edge);
    }
    sim.apply(&manifest(nodes));
    let count = |sim: &mut Sim, secs: u64| {
        let lost_before = sim.lost;
        for _ in 0..secs {
            sim.advance(Duration::from_secs(1));
        }
        sim.lost - lost_before
    };
    count(&mut sim, 600);
    let sent = count(&mut sim, 600);
    // 100 peers, one initiation per peer every 300 s: 200 in ten minutes, 0.33/s (a
    // thousand peers: 3.3/s, under the target of 4).
    assert!(sent <= 240, "{sent} initiations in 10 minutes");
    assert!(sent >= 150, "still retried: {sent}");
}

/// boringtun's own log lines name no peer; the logger takes the name from here.
#[test]
pub fn boringtun_is_told_whose_tunnel_it_runs() {
    let sim = Sim::new();
    let (own, them) = (PrivateKey::generate(), PrivateKey::generate());
    let gate = HandshakeGate::new(&own, sim.now);
    assert_eq!(crate::core::boringtun_peer(), None);
    let mut session = Session::new(them.public_key(), "dev-7", None, None, 7, &gate);
    session.initiate(Vec::new(), sim.now);
    assert_eq!(crate::core::boringtun_peer().as_deref(), Some("dev-7"));
    session.rename("dev-7b");
    session.initiate(Vec::new(), sim.now);
    assert_eq!(crate::core::boringtun_peer().as_deref(), Some("dev-7b"));
    // A call for no peer (the handshake gate) names none.
    gate.check(spoofed(1).ip(), &[0u8; 148], sim.now);
    assert_eq!(crate::core::boringtun_peer(), None);
}

/// boringtun cuts an IPv4 packet to the length its header claims, and a peer may claim
/// less than the header. Such packets once reached the TUN's write, where an empty one
/// made tun-rs refuse the whole write: the packets of every peer in it lost.
#[test]
pub fn a_packet_a_peer_cut_shorter_than_its_ip_header_never_reaches_the_tun() {
    let (mut sim, _, _) = hub_and_two_nated_edges();
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    let before = sim.nodes[0].tun.len();
    assert!(before > 0, "the hub got dev-a's first ping");
    for claimed in [0u16, 1, 10, 19] {
        let mut packet = crate::core::packet::ipv4_for_test([10, 42, 1, 1], [10, 42, 0, 1], 40);
        packet[2..4].copy_from_slice(&claimed.to_be_bytes());
        let now = sim.now;
        sim.nodes[1].node.handle_tun(&packet, now);
    }
    sim.send_ping(1, [10, 42, 1, 1], [10, 42, 0, 1]);
    sim.run();
    let lengths: Vec<usize> = sim.nodes[0].tun[before..].iter().map(Vec::len).collect();
    assert_eq!(lengths, [60], "only the second ping reached the hub's TUN");
}
