//! End to end: edges of different sites, each behind its own NAT router, reach each other
//! through an edgewire hub, and go direct on demand when their NATs allow it (two coturns
//! serve as STUN servers): cone NATs, a firewall, a public address; a symmetric NAT keeps
//! the pair on the hub, working; a NAT that rebinds sends the pair back to the hub until
//! it is punched again. Each test prints its figures (`--nocapture` shows them).

use std::time::{Duration, Instant};

use edgewire_lab::pingstream::PingStream;
use edgewire_lab::worlds::{HubSites, StunPair, hub_and_devs, wireguard_go_hub};
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);
const DEV_A: &str = "10.42.1.1";
const DEV_B: &str = "10.42.2.1";

struct Mesh {
    /// Owns the namespaces and processes: held until the test ends.
    _lab: Lab,
    world: HubSites,
    _stun: StunPair,
    /// Runs until the test ends; the hub host's counters tell what it forwards.
    _hub: Agent,
    dev_a: Agent,
    dev_b: Agent,
}

/// Signs `src` with the coturns as relays, starts `agents` on it and waits until each
/// edge among them has a handshake with hub-1.
fn start(lab: &Lab, stun: &StunPair, src: ManifestSource, agents: &mut [&mut Agent]) {
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = stun.add_to(src).build(&key, lab.dir(), "manifest");
    let url = manifest.to_string_lossy();
    for agent in agents.iter_mut() {
        agent.start(&url, &key.public);
    }
    for agent in agents.iter().filter(|a| a.name() != "hub-1") {
        agent.wait_handshakes(&["hub-1"], T);
    }
}

/// Pings dev-b from `from` until `dev_a` reaches it `via` (`punched`, `lan`); the peer's
/// status then.
fn wait_via(from: &Host, dev_a: &Agent, via: &str) -> Option<PeerStatus> {
    poll_until(T, || {
        from.ping(DEV_B, T).ok()?;
        let status = dev_a.status().ok()?;
        let peer = status.peer("dev-b")?;
        (peer.via.as_deref() == Some(via)).then(|| peer.clone())
    })
}

fn mesh(name: &str, nats: [NatKind; 2]) -> Mesh {
    let lab = Lab::new(name);
    let world = HubSites::with_nats(&lab, &nats);
    let stun = StunPair::start(&lab, &world.wan);
    let mut hub = Agent::new(&world.hub_host, "hub-1");
    let mut dev_a = Agent::new(&world.devs[0], "dev-a");
    let mut dev_b = Agent::new(&world.devs[1], "dev-b");
    let src = hub_and_devs(
        1,
        hub.public_key(),
        &[dev_a.public_key(), dev_b.public_key()],
    );
    start(&lab, &stun, src, &mut [&mut hub, &mut dev_a, &mut dev_b]);
    // The hub's agent hands the pair's packets to the kernel, which routes them back
    // into the overlay: counted there, they are what the hub forwards for the pair.
    world.hub_host.count_forwarded(DEV_A, DEV_B);
    // Each edge learns its NAT's mapping from the two STUN servers before traffic flows.
    for edge in [&dev_a, &dev_b] {
        let mapped = poll_until(T, || {
            let s = edge.status().ok()?;
            (s.nat_mapping.as_deref() != Some("unknown")).then_some(s.nat_mapping)
        });
        assert!(mapped.is_some(), "{}: no NAT mapping learned", edge.name());
    }
    Mesh {
        _lab: lab,
        world,
        _stun: stun,
        _hub: hub,
        dev_a,
        dev_b,
    }
}

/// A peer's (path, via), as status says them.
type PathVia = (Option<String>, Option<String>);

/// How dev-a reaches dev-b now.
fn path_to_b(m: &Mesh) -> PathVia {
    let Ok(status) = m.dev_a.status() else {
        return (None, None);
    };
    let p = status.peer("dev-b");
    (
        p.and_then(|p| p.path.clone()),
        p.and_then(|p| p.via.clone()),
    )
}

/// Bytes of the pair's packets the hub host has forwarded (see `mesh`): pings, answers
/// and candidate messages, not the devices' keepalives and handshakes with the hub.
fn hub_forwarded(m: &Mesh) -> u64 {
    m.world.hub_host.forwarded_bytes(DEV_A, DEV_B)
}

/// Whether dev-a reaches dev-b on a punched direct path now.
fn punched(m: &Mesh) -> bool {
    let (path, via) = path_to_b(m);
    path.as_deref() == Some("direct") && via.as_deref() == Some("punched")
}

/// What going direct cost: measured on a 10 ms ping stream from dev-a to dev-b.
struct Switch {
    /// From the first packet to dev-a's status showing the punched path.
    took: Duration,
    /// Bytes of the pair's packets the hub forwarded before (the candidate messages, the
    /// first pings: proof the counter counts) and during 100 pings (1 s) once direct.
    hub_bytes_before: u64,
    hub_bytes: u64,
    /// Pings lost over the whole stream (the hub, the switch, the direct path).
    lost: usize,
    judged: usize,
}

/// Pings dev-b from dev-a until the pair is punched, then 200 more; what it cost.
fn goes_direct(m: &Mesh) -> Switch {
    let a = &m.world.devs[0];
    // The first packet of the stream starts the exchange.
    let pings = PingStream::start(a, DEV_B, Duration::from_millis(10));
    let start = Instant::now();
    let direct = poll_until(T, || punched(m).then_some(()));
    let took = start.elapsed();
    assert!(direct.is_some(), "never went direct: {:?}", path_to_b(m));
    // Pings in flight on the hub path when the status changed are answered within
    // 50 pings; the next 100 tell whether the hub still carries the pair.
    let answered = |n| {
        let switched = start + took;
        poll_until(T, || {
            (pings.snapshot().answers_after(switched) >= n).then_some(())
        })
        .unwrap_or_else(|| panic!("{n} pings answered on the direct path"))
    };
    answered(50);
    let before = hub_forwarded(m);
    answered(150);
    let hub_bytes = hub_forwarded(m) - before;
    answered(200);
    let record = pings.stop(Duration::from_secs(1));
    let end = Instant::now();
    let grace = Duration::from_secs(1);
    Switch {
        took,
        hub_bytes_before: before,
        hub_bytes,
        lost: record.lost(end, grace),
        judged: record.judged(end, grace),
    }
}

/// Prints what going direct cost and asserts its bounds: the hub no longer carries the
/// pair and no ping is lost (both targets of issue 9), within a generous 3 s.
fn check_switch(what: &str, s: &Switch) {
    eprintln!(
        "{what}: first packet → direct path {} ms; the hub forwarded {} bytes of the \
         pair's before, {} in 1 s of pings once direct; pings lost {} of {}",
        s.took.as_millis(),
        s.hub_bytes_before,
        s.hub_bytes,
        s.lost,
        s.judged
    );
    assert!(s.hub_bytes_before > 0, "the hub's counter saw nothing");
    assert_eq!(s.hub_bytes, 0, "the hub still forwards the pair's traffic");
    assert_eq!(s.lost, 0, "pings lost while switching");
    assert!(
        s.took <= Duration::from_secs(3),
        "took {:?} to go direct",
        s.took
    );
}

#[test]
fn cone_to_cone_goes_direct_within_a_second_and_the_hub_stops_carrying_the_pair() {
    require_root!();
    let m = mesh("nat-cone-cone", [NatKind::Masquerade, NatKind::Masquerade]);
    check_switch("cone↔cone", &goes_direct(&m));
}

#[test]
fn a_device_behind_a_firewall_and_a_device_behind_a_cone_nat_go_direct() {
    require_root!();
    // The firewall admits only answers: dev-a's own punch opens it, as a NAT's would.
    let m = mesh("nat-fw-cone", [NatKind::Firewall, NatKind::Masquerade]);
    check_switch("firewall↔cone", &goes_direct(&m));
}

#[test]
fn a_device_with_a_public_address_and_a_device_behind_a_cone_nat_go_direct() {
    require_root!();
    let m = mesh("nat-public-cone", [NatKind::Public, NatKind::Masquerade]);
    let status = m.dev_a.status().unwrap();
    assert_eq!(status.nat_mapping.as_deref(), Some("none"));
    check_switch("public↔cone", &goes_direct(&m));
}

/// What a rebinding NAT cost, each time from the rebinding (the conntrack flush).
#[derive(Debug, Default)]
struct Rebinding {
    /// dev-a's status no longer shows the punched path, and what it shows instead.
    left_direct: Option<(Duration, PathVia)>,
    /// The first answer to a ping sent after the rebinding: traffic flows again.
    resumed: Option<Duration>,
    /// dev-a's status shows a punched path again.
    punched_again: Option<Duration>,
}

/// How long a rebound pair may take to be punched again: the agent waits 5 s after a
/// direct path died, and a Linux NAT forgets an unreplied flow (which the rebound side's
/// own sends toward the other NAT may have left there) after 30 s; one 10 s punch more.
const REPUNCH_WITHIN: Duration = Duration::from_secs(60);

/// Watches dev-a's status and the ping stream from `rebound` until traffic flows again
/// and the pair is punched again, or [`REPUNCH_WITHIN`] has passed.
fn watch_rebinding(m: &Mesh, pings: &PingStream, rebound: Instant) -> Rebinding {
    let mut seen = Rebinding::default();
    poll_until(REPUNCH_WITHIN, || {
        let now = rebound.elapsed();
        if seen.resumed.is_none() {
            let record = pings.snapshot();
            let after = record.sent.iter().zip(&record.answered);
            seen.resumed = after
                .filter(|(sent, _)| **sent > rebound)
                .filter_map(|(_, answered)| *answered)
                .min()
                .map(|t| t - rebound);
        }
        let direct = punched(m);
        match (&seen.left_direct, direct) {
            (None, false) => seen.left_direct = Some((now, path_to_b(m))),
            (Some(_), true) if seen.punched_again.is_none() => seen.punched_again = Some(now),
            _ => {}
        }
        (seen.resumed.is_some() && seen.punched_again.is_some()).then_some(())
    });
    seen
}

// A real rebinding: site A's NAT forgets every mapping and gives dev-a's socket a new
// port; dev-a sees no change, only dev-b does. The session made on demand must leave
// the dead path for the hub (never a relay: a relay cannot reach an edge behind a NAT
// that admits only replies) within 3 s, and punch again once dev-b's NAT has forgotten
// the unreplied entry dev-a's sends from the new port left there (30 s in Linux
// conntrack; before that dev-b's punch toward the new port clashes with it and leaves
// from a random port, the deadlock of FACTS.md). Found with this test: the agent tried
// both relays first (back after 6.3 s) and retried every 30-40 s into that entry, so
// it never punched again; deleting the entry by hand let it punch again at once.
#[test]
fn a_nat_that_rebinds_mid_stream_falls_back_to_the_hub_and_punches_again() {
    require_root!();
    let m = mesh("nat-rebind", [NatKind::Masquerade, NatKind::Masquerade]);
    // Site A's NAT forgets its mappings and gives dev-a's socket port 51821 from now
    // on; dev-a notices nothing, dev-b's packets to the old port are dropped. The flush
    // ends `rebind`, so the instant after it is the rebinding (a few ms late at most).
    falls_back_and_punches_again(&m, || m.world.sites[0].rebind(51821));
}

// Site A's uplink moves to another network: its NAT's public address changes and every
// mapping is forgotten. The hub learns dev-a's new address from its next authenticated
// packet; dev-b's NAT drops dev-a's direct packets from the new address (they answer
// nothing it sent), so the punched path dies both ways and must be found again.
#[test]
fn a_device_whose_uplink_moves_falls_back_to_the_hub_and_punches_again() {
    require_root!();
    let m = mesh("nat-uplink", [NatKind::Masquerade, NatKind::Masquerade]);
    falls_back_and_punches_again(&m, || m.world.sites[0].move_uplink("203.0.113.77/24"));
}

/// Pings dev-b from dev-a until they are direct, breaks the direct path with `fault`
/// (which returns once the fault has happened), prints what it cost, and asserts that
/// traffic flowed again through the hub and the pair was punched again.
fn falls_back_and_punches_again(m: &Mesh, fault: impl FnOnce()) {
    let a = &m.world.devs[0];
    let pings = PingStream::start(a, DEV_B, Duration::from_millis(10));
    let direct = poll_until(T, || punched(m).then_some(Instant::now()));
    let direct = direct.unwrap_or_else(|| panic!("never went direct: {:?}", path_to_b(m)));
    poll_until(T, || {
        (pings.snapshot().answers_after(direct) >= 100).then_some(())
    })
    .expect("pings answered on the direct path");

    fault();
    let rebound = Instant::now();
    let seen = watch_rebinding(m, &pings, rebound);
    if let Some(again) = seen.punched_again {
        let again = rebound + again;
        poll_until(T, || {
            (pings.snapshot().answers_after(again) >= 150).then_some(())
        });
    }
    let record = pings.stop(Duration::from_secs(1));
    let end = Instant::now() - Duration::from_secs(1);
    let resumed_at = seen.resumed.map_or(end, |t| rebound + t);
    let lost_between = |from: Instant, to: Instant| {
        let sent = record.sent.iter().zip(&record.answered);
        sent.filter(|(s, a)| **s >= from && **s < to && a.is_none())
            .count()
    };
    let ms = |d: Option<Duration>| d.map_or("never".into(), |d| format!("{} ms", d.as_millis()));
    let then = seen.left_direct.as_ref().map(|(_, (path, via))| {
        let word = |w: &Option<String>| w.clone().unwrap_or_else(|| "none".into());
        format!("path {}, via {}", word(path), word(via))
    });
    eprintln!(
        "fault → off the punched path {} (then {}); → traffic flowing again {}; → \
         punched again {}",
        ms(seen.left_direct.as_ref().map(|l| l.0)),
        then.unwrap_or_default(),
        ms(seen.resumed),
        ms(seen.punched_again)
    );
    eprintln!(
        "pings lost: {} from the fault to the first answer, {} after it (the switch \
         back to direct included), of {} sent",
        lost_between(rebound, resumed_at),
        lost_between(resumed_at, end),
        record.sent.len()
    );
    for (agent, peer) in [(&m.dev_a, "dev-b"), (&m.dev_b, "dev-a")] {
        let needle = format!("peer {peer}:");
        for line in agent.log().lines().filter(|l| l.contains(&needle)) {
            eprintln!("{}: {line}", agent.name());
        }
    }
    let resumed = seen.resumed.expect("traffic never flowed again");
    assert!(resumed < Duration::from_secs(10), "back after {resumed:?}");
    assert!(seen.punched_again.is_some(), "never punched again");
}

/// Two symmetric NATs cannot be punched to each other, but each can reach the other's
/// TURN allocation (a relayed candidate): the pair leaves the hub for one relay hop.
#[test]
fn symmetric_to_symmetric_leaves_the_hub_through_a_relayed_candidate_and_works() {
    require_root!();
    let m = mesh("nat-sym-sym", [NatKind::RandomFully, NatKind::RandomFully]);
    let a = &m.world.devs[0];
    let first = Instant::now();
    let relayed = poll_until(T, || {
        a.ping(DEV_B, T).ok()?;
        let (path, via) = path_to_b(&m);
        (path.as_deref() == Some("relay")).then_some(via)
    });
    let took = first.elapsed();
    let status = m.dev_a.status().unwrap();
    assert_eq!(status.nat_mapping.as_deref(), Some("endpoint-dependent"));
    let via = relayed.unwrap_or_else(|| {
        panic!(
            "dev-a never reached dev-b through a relay: {:?}\n{}",
            path_to_b(&m),
            m.dev_a.log()
        )
    });
    eprintln!("dev-a reaches dev-b through a relay (via {via:?}) {took:?} after the first ping");
    // Settled: 50 more pings, none lost, none through the hub.
    let before = hub_forwarded(&m);
    for _ in 0..50 {
        a.ping(DEV_B, T).unwrap();
    }
    let through_hub = hub_forwarded(&m) - before;
    assert!(
        through_hub < 500,
        "the hub forwarded {through_hub} bytes of the pair"
    );
}

#[test]
fn two_devices_behind_one_symmetric_nat_go_direct_on_their_lan_addresses() {
    require_root!();
    let lab = Lab::new("nat-hairpin");
    let world = HubSites::with_nats(&lab, &[NatKind::RandomFully]);
    let stun = StunPair::start(&lab, &world.wan);
    let b_host = world.sites[0].host("dev-b", "192.168.10.3/24");
    let mut hub = Agent::new(&world.hub_host, "hub-1");
    let mut dev_a = Agent::new(&world.devs[0], "dev-a");
    let mut dev_b = Agent::new(&b_host, "dev-b");
    // Two sites in the manifest, one LAN in fact.
    let src = hub_and_devs(1, hub.public_key(), &[dev_a.public_key()]).node(NodeSource::edge(
        "dev-b",
        dev_b.public_key(),
        "site-b",
        &format!("{DEV_B}/32"),
    ));
    start(&lab, &stun, src, &mut [&mut hub, &mut dev_a, &mut dev_b]);
    let lan = wait_via(&world.devs[0], &dev_a, "lan").and_then(|p| p.endpoint);
    assert_eq!(
        lan.as_deref(),
        Some("192.168.10.3:51820"),
        "dev-a reaches dev-b on the LAN: {:#?}",
        dev_a.status()
    );
}

#[test]
fn cone_to_cone_goes_direct_through_a_wireguard_go_hub_too() {
    require_root!();
    let lab = Lab::new("nat-wggo-hub");
    let world = HubSites::new(&lab, 2);
    let stun = StunPair::start(&lab, &world.wan);
    let mut dev_a = Agent::new(&world.devs[0], "dev-a");
    let mut dev_b = Agent::new(&world.devs[1], "dev-b");
    let hub = wireguard_go_hub(
        &world.hub_host,
        &[
            (dev_a.public_key(), "10.42.1.1/32"),
            (dev_b.public_key(), "10.42.2.1/32"),
        ],
    );
    let src = hub_and_devs(
        1,
        hub.public_key(),
        &[dev_a.public_key(), dev_b.public_key()],
    );
    start(&lab, &stun, src, &mut [&mut dev_a, &mut dev_b]);
    let punched = wait_via(&world.devs[0], &dev_a, "punched");
    assert!(punched.is_some(), "not punched: {:#?}", dev_a.status());
}
