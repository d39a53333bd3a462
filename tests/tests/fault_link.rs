//! Faults of the network under an edgewire edge, with the lab's link emulator on its NAT
//! router's uplink: a lossy link must not send a working direct path to the relay, a
//! long round trip is not a dead peer, and a NAT that rebinds mid-stream (new public
//! address and port) costs a moment, not the tunnel.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use edgewire_lab::pingstream::PingStream;
use edgewire_lab::relaylab::{HUB_OVERLAY, HubKind, RelayWorld, RelayWorldConfig};
use edgewire_lab::*;

/// How long each start is watched after its first handshake: the relay fallback this
/// guards against came within seconds of a lost handshake.
const OBSERVE: Duration = Duration::from_secs(8);

/// Lines of the agent's log that say hub-1 went to a relay.
fn relay_switches(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("hub-1: path switched to") && l.contains("through relay"))
        .map(str::to_owned)
        .collect()
}

/// A lost handshake on a start must not send a working direct path to the relay.
/// About 5 minutes.
#[test]
fn twenty_starts_on_a_link_with_20_percent_loss_each_way_never_take_the_relay() {
    require_root!();
    let lab = Lab::new("fault-lossy-starts");
    let config = RelayWorldConfig::new(HubKind::Edgewire)
        .tls(false)
        .impaired_link(13);
    let mut world = RelayWorld::new(&lab, config);
    world.nat.emulator().set_both(Impairment::none().loss(0.2));
    let mut relayed = Vec::new();
    let mut handshake_times = Vec::new();
    for start in 1..=20 {
        let t0 = Instant::now();
        world.start_dev();
        let mut paths = BTreeSet::new();
        world.dev.wait_status(
            "a handshake with hub-1 over a 20 % lossy link",
            Duration::from_secs(60),
            |s| {
                let hub = s.peer("hub-1");
                if let Some(path) = hub.and_then(|p| p.path.clone()) {
                    paths.insert(path);
                }
                hub.is_some_and(PeerStatus::has_handshake)
            },
        );
        handshake_times.push(t0.elapsed());
        // Watching, not waiting for a result: whatever the path does in this window counts.
        poll_until(OBSERVE, || {
            if let Some(path) = world.dev_hub().and_then(|p| p.path) {
                paths.insert(path);
            }
            None::<()>
        });
        let switches = relay_switches(&world.dev.log());
        if paths.contains("relay") || !switches.is_empty() {
            relayed.push(format!("start {start}: paths {paths:?}, {switches:?}"));
        }
        world.dev.stop();
    }
    handshake_times.sort();
    eprintln!(
        "20 starts at 20 % loss each way: first handshake after min {:?}, median {:?}, max {:?}; \
         {} took the relay",
        handshake_times[0],
        handshake_times[10],
        handshake_times[19],
        relayed.len()
    );
    let up = world.nat.emulator().stats(Direction::Up);
    assert!(up.lost > 0, "the link dropped nothing: {up:?}");
    assert!(
        relayed.is_empty(),
        "{} of 20 starts went to the relay although direct works at 20 % loss:\n{}",
        relayed.len(),
        relayed.join("\n")
    );
}

/// A slow link is not a dead peer. About 1 minute.
#[test]
fn a_round_trip_of_two_seconds_is_not_down() {
    require_root!();
    let lab = Lab::new("fault-long-rtt");
    let config = RelayWorldConfig::new(HubKind::Edgewire)
        .tls(false)
        .impaired_link(21);
    let mut world = RelayWorld::new(&lab, config);
    world
        .nat
        .emulator()
        .set_both(Impairment::none().delay(Duration::from_secs(1)));
    world.start_dev();
    let pings = PingStream::start(&world.dev_host, HUB_OVERLAY, Duration::from_millis(500));
    world
        .dev
        .wait_handshakes(&["hub-1"], Duration::from_secs(30));
    let handshake_at = Instant::now();
    // Several keepalive and liveness rounds at a 2 s round trip.
    poll_until(Duration::from_secs(40), || None::<()>);
    let record = pings.stop(Duration::from_secs(3));
    let log = world.dev.log();
    let downs: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("WARN") && l.contains("down"))
        .collect();
    let hub = world.dev_hub().expect("dev-a lists hub-1");
    let end = Instant::now();
    let lost = record.lost(end, Duration::from_secs(4));
    let judged_after = record
        .sent
        .iter()
        .zip(&record.answered)
        .filter(|(s, _)| **s > handshake_at)
        .collect::<Vec<_>>();
    let rtts: Vec<Duration> = judged_after
        .iter()
        .filter_map(|(s, a)| a.map(|a| a.duration_since(**s)))
        .collect();
    eprintln!(
        "RTT 2 s: hub-1 health {}, path {:?}; {} pings answered after the handshake \
         (RTT min {:?}), {lost} lost overall; WARN down lines: {downs:?}",
        hub.health,
        hub.path,
        rtts.len(),
        rtts.iter().min()
    );
    assert!(
        rtts.iter().all(|r| *r >= Duration::from_millis(1900)),
        "the link's delay was not applied: {rtts:?}"
    );
    assert!(
        downs.is_empty(),
        "a 2 s round trip was called down: {downs:#?}"
    );
    assert_eq!(hub.health, "up", "hub-1 after 40 s at 2 s RTT: {hub:#?}");
    assert!(
        rtts.len() >= 60,
        "only {} of the pings after the handshake were answered",
        rtts.len()
    );
}

/// The NAT router loses its public address and comes back with another one and other
/// ports (a cellular reconnect): its conntrack entries are flushed with the address.
/// The edge keeps sending; the hub must follow it to the new address at once. About 1
/// minute.
#[test]
fn a_nat_that_rebinds_mid_stream_to_a_new_address_and_port_recovers_within_seconds() {
    require_root!();
    let lab = Lab::new("fault-nat-rebind");
    let mut world = RelayWorld::new(&lab, RelayWorldConfig::new(HubKind::Edgewire).tls(false));
    world.start_dev();
    let pings = PingStream::start(&world.dev_host, HUB_OVERLAY, Duration::from_millis(100));
    world
        .dev
        .wait_handshakes(&["hub-1"], Duration::from_secs(20));
    world
        .wait_hub_sees("198.51.100.2:", Duration::from_secs(20))
        .unwrap();
    poll_until(Duration::from_secs(3), || None::<()>);

    let router = &world.nat.router;
    let uplink = world.nat.uplink.clone();
    // New mappings get ports from a range the old mapping (51820) is not in.
    router.iptables(&[
        "-t",
        "nat",
        "-I",
        "POSTROUTING",
        "1",
        "-o",
        &uplink,
        "-p",
        "udp",
        "-j",
        "MASQUERADE",
        "--to-ports",
        "40000-40099",
    ]);
    router.sysctl(&format!("net.ipv4.conf.{uplink}.promote_secondaries"), "1");
    router.run(&["ip", "addr", "add", "198.51.100.3/24", "dev", &uplink]);
    let rebound_at = Instant::now();
    // MASQUERADE forgets every mapping of an address that goes away.
    router.run(&["ip", "addr", "del", "198.51.100.2/24", "dev", &uplink]);
    router.default_route("198.51.100.1");

    let seen = world
        .wait_hub_sees("198.51.100.3:", Duration::from_secs(30))
        .unwrap();
    poll_until(Duration::from_secs(5), || None::<()>);
    let record = pings.stop(Duration::from_secs(1));
    let (gap, _) = record.longest_silence().expect("pings were answered");
    let after = record.answers_after(rebound_at);
    eprintln!(
        "NAT rebinding: the hub sees dev-a at {seen}; longest silence {gap:?}; {after} answers \
         since"
    );
    assert!(
        seen.split(':').nth(1).is_some_and(|p| p.starts_with("400")),
        "the new mapping has a new port: {seen}"
    );
    assert!(
        after >= 30,
        "only {after} pings answered after the rebinding"
    );
    assert!(
        gap <= Duration::from_secs(5),
        "traffic stopped for {gap:?} after the NAT rebound"
    );
}
