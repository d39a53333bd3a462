//! End to end: edges of different sites, each behind its own NAT router, reach each other
//! through an edgewire hub, and go direct on demand when their NATs allow it (two coturns
//! serve as STUN servers); a symmetric NAT keeps the pair on the hub, working.

use std::time::{Duration, Instant};

use edgewire_lab::pingstream::PingStream;
use edgewire_lab::worlds::{HubSites, StunPair, hub_and_devs, wireguard_go_hub};
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);
const DEV_B: &str = "10.42.2.1";

struct Mesh {
    lab: Lab,
    world: HubSites,
    _stun: StunPair,
    hub: Agent,
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
    // Each edge learns its NAT's mapping from the two STUN servers before traffic flows.
    for edge in [&dev_a, &dev_b] {
        let mapped = poll_until(T, || {
            let s = edge.status().ok()?;
            (s.nat_mapping.as_deref() != Some("unknown")).then_some(s.nat_mapping)
        });
        assert!(mapped.is_some(), "{}: no NAT mapping learned", edge.name());
    }
    Mesh {
        lab,
        world,
        _stun: stun,
        hub,
        dev_a,
        dev_b,
    }
}

/// How dev-a reaches dev-b now: (path, via).
fn path_to_b(m: &Mesh) -> (Option<String>, Option<String>) {
    let Ok(status) = m.dev_a.status() else {
        return (None, None);
    };
    let p = status.peer("dev-b");
    (
        p.and_then(|p| p.path.clone()),
        p.and_then(|p| p.via.clone()),
    )
}

/// Bytes the hub has received from dev-a.
fn hub_rx_from_a(m: &Mesh) -> u64 {
    let status = m.hub.status().expect("the hub answers");
    status.peer("dev-a").map_or(0, |p| p.rx_bytes)
}

#[test]
fn cone_to_cone_goes_direct_within_a_second_and_the_hub_stops_carrying_the_pair() {
    require_root!();
    let m = mesh("nat-cone-cone", [NatKind::Masquerade, NatKind::Masquerade]);
    let a = &m.world.devs[0];
    // A 10 ms ping stream from dev-a to dev-b: the first packet starts the exchange.
    let pings = PingStream::start(a, DEV_B, Duration::from_millis(10));
    let start = Instant::now();
    let direct = poll_until(T, || {
        let (path, via) = path_to_b(&m);
        (path.as_deref() == Some("direct") && via.as_deref() == Some("punched")).then_some(())
    });
    let took = start.elapsed();
    assert!(direct.is_some(), "never went direct: {:?}", path_to_b(&m));
    eprintln!("first packet → direct path: {} ms", took.as_millis());
    // Once direct, the hub carries nothing of the pair's traffic (keepalives aside).
    let switched = Instant::now();
    poll_until(T, || {
        (pings.snapshot().answers_after(switched) >= 50).then_some(())
    })
    .expect("pings answered on the direct path");
    let before = hub_rx_from_a(&m);
    poll_until(T, || {
        (pings.snapshot().answers_after(switched) >= 150).then_some(())
    })
    .expect("pings answered on the direct path");
    let after = hub_rx_from_a(&m);
    let record = pings.stop(Duration::from_secs(1));
    let end = Instant::now();
    assert!(
        after - before < 200,
        "the hub still got {} bytes from dev-a",
        after - before
    );
    let lost = record.lost(end, Duration::from_secs(1));
    assert_eq!(lost, 0, "pings lost while switching");
    assert!(took <= Duration::from_secs(3), "took {took:?} to go direct");
    let _ = (&m.lab, &m.dev_b);
}

#[test]
fn symmetric_to_symmetric_stays_on_the_hub_and_works() {
    require_root!();
    let m = mesh("nat-sym-sym", [NatKind::RandomFully, NatKind::RandomFully]);
    let a = &m.world.devs[0];
    for _ in 0..20 {
        a.ping(DEV_B, T).unwrap();
    }
    let status = m.dev_a.status().unwrap();
    assert_eq!(status.nat_mapping.as_deref(), Some("endpoint-dependent"));
    let (path, _) = path_to_b(&m);
    assert_ne!(
        path.as_deref(),
        Some("direct"),
        "two symmetric NATs cannot be punched"
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
