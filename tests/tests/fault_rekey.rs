//! Rekey under steady traffic: an edgewire edge behind NAT pings a standard WireGuard hub
//! (wireguard-go, boringtun-cli) 5 times a second for 6 minutes. WireGuard rekeys every
//! 120 s and refuses keys older than 180 s, so the run crosses at least two rekeys:
//! every ping must be answered and both ends must count at least two handshakes.
//!
//! Before the agent ran boringtun's timers at least once a second whatever the packet
//! rate, this failed: no rekey, keys used past 180 s. Each test takes about 6.5 minutes;
//! they run in parallel.

use std::time::{Duration, Instant};

use edgewire_lab::pingstream::PingStream;
use edgewire_lab::worlds::{HubSites, hub_and_dev_a};
use edgewire_lab::*;

const RUN: Duration = Duration::from_secs(6 * 60);
const EVERY: Duration = Duration::from_millis(200);
const T: Duration = Duration::from_secs(20);

fn rekey_under_traffic(implementation: WgImpl) {
    if implementation.binary().is_none() {
        panic!(
            "{} is not installed: scripts/install-deps (EDGEWIRE_INSTALL_BORINGTUN=1 for \
             boringtun-cli)",
            implementation.name()
        );
    }
    let lab = Lab::new(&format!("rekey-{}", implementation.name()));
    let world = HubSites::new(&lab, 1);
    let (hub_host, dev_host) = (&world.hub_host, &world.devs[0]);

    let hub = WgDevice::start(hub_host, implementation, 51820);
    hub.address("10.42.0.1/16");
    let mut dev = Agent::new(dev_host, "dev-a");
    hub.add_peer(&WgPeerConfig {
        public_key: dev.public_key().into(),
        allowed_ips: vec!["10.42.1.1/32".into()],
        ..Default::default()
    });
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest =
        hub_and_dev_a(1, hub.public_key(), dev.public_key()).build(&key, lab.dir(), "manifest");
    // The hub's handshakes, counted on the wire whoever starts them: a handshake
    // response is the only 92-byte WireGuard message (120 bytes with IPv4 and UDP), sent
    // by the hub when the edge initiates, received by it when it initiates. (`wg show`
    // gives only the latest time, and boringtun-cli's wobbles.)
    for (chain, port) in [("OUTPUT", "--sport"), ("INPUT", "--dport")] {
        hub_host.iptables(&[
            "-A", chain, "-p", "udp", port, "51820", "-m", "length", "--length", "120", "-j",
            "ACCEPT",
        ]);
    }
    dev.start(&manifest.to_string_lossy(), &key.public);
    dev_host.ping("10.42.0.1", T).unwrap();

    let pings = PingStream::start(dev_host, "10.42.0.1", EVERY);
    let started = Instant::now();
    let mut lost_so_far = 0;
    poll_until(RUN, || {
        let lost = pings
            .snapshot()
            .lost(Instant::now(), Duration::from_secs(2));
        if lost > lost_so_far {
            eprintln!(
                "{}: {lost} pings lost after {:?}",
                implementation.name(),
                started.elapsed()
            );
            lost_so_far = lost;
        }
        None::<()>
    });
    let record = pings.stop(Duration::from_secs(2));
    let end = Instant::now();
    let lost = record.lost(end, Duration::from_secs(2));
    let judged = record.judged(end, Duration::from_secs(2));
    let status = dev.status().expect("dev-a's status");
    let edge_handshakes = status.peer("hub-1").map(|p| p.handshakes).unwrap_or(0);
    let hub_handshakes =
        first_rule_packets(hub_host, "OUTPUT") + first_rule_packets(hub_host, "INPUT");
    eprintln!(
        "{} hub, {RUN:?} at 5 pings/s: {lost} of {judged} lost, longest silence {:?}; \
         handshakes: edge {edge_handshakes}, hub {hub_handshakes} (responses it sent or \
         received)",
        implementation.name(),
        record.longest_silence().map(|(gap, _)| gap),
    );
    assert_eq!(
        lost,
        0,
        "pings lost across rekeys with {}",
        implementation.name()
    );
    // The first handshake plus a rekey at ~120 s and ~240 s: at least 2 in 6 minutes.
    assert!(
        edge_handshakes >= 2,
        "the edge counted {edge_handshakes} handshakes in 6 minutes of traffic"
    );
    assert!(
        hub_handshakes >= 2,
        "the {} hub saw {} handshakes in 6 minutes of traffic",
        implementation.name(),
        hub_handshakes
    );
}

/// The packet counter of the first rule of `chain` in `host`'s filter table.
fn first_rule_packets(host: &Host, chain: &str) -> u64 {
    let out = host.run(&["iptables", "-w", "-L", chain, "-v", "-x", "-n"]);
    // Two header lines, then one line per rule starting with its packet count.
    out.lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {chain}:\n{out}"))
}

#[test]
fn six_minutes_of_pings_to_a_wireguard_go_hub_lose_nothing_across_rekeys() {
    require_root!();
    rekey_under_traffic(WgImpl::WireguardGo);
}

#[test]
fn six_minutes_of_pings_to_a_boringtun_cli_hub_lose_nothing_across_rekeys() {
    require_root!();
    rekey_under_traffic(WgImpl::BoringtunCli);
}
