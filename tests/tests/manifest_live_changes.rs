//! End-to-end: what a running overlay does when the manifest changes under it
//! (a new serial adds one peer and removes another: nothing else re-handshakes) and when
//! the preferred hub dies (the overlay prefix moves to the next hub and comes back).
//! Every edgewire node polls nginx over HTTPS every second.

use std::time::{Duration, Instant};

use edgewire_lab::lifecycle::*;
use edgewire_lab::manifest_server::ManifestServer;
use edgewire_lab::pingstream::PingStream;
use edgewire_lab::worlds::*;
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);

fn start_polling(agent: &mut Agent, server: &ManifestServer, key: &NetworkKey) {
    let flags = https_flags(server, "manifest", Some(&key.public), 1);
    agent.start_args(&[], &as_strs(&flags));
}

fn handshakes(status: &Status, peer: &str) -> u64 {
    status
        .peer(peer)
        .unwrap_or_else(|| panic!("no peer {peer}: {status:#?}"))
        .handshakes
}

#[test]
fn a_new_serial_adds_and_removes_peers_without_new_handshakes_for_the_others() {
    require_root!();
    let lab = Lab::new("live-diff");
    let wan = lab.wan();
    let www = lab.host("www");
    wan.attach(&www, &format!("{SERVER_ADDR}/24"));
    let server = ManifestServer::start(&www, SERVER_ADDR, None);
    let hub1_host = lab.host("hub1");
    wan.attach(&hub1_host, "203.0.113.10/24");
    hub1_host.enable_forwarding();
    let hub2_host = lab.host("hub2");
    wan.attach(&hub2_host, "203.0.113.11/24");
    let site = wan.nat_router("nat-a", "198.51.100.2/24", "192.168.10.1/24");
    let hosts: Vec<Host> = (1..=3)
        .map(|i| site.host(&format!("a{i}"), &format!("192.168.10.{}/24", i + 1)))
        .collect();

    let key = NetworkKey::generate(lab.dir(), "network.key");
    let mut hub1 = Agent::new(&hub1_host, "hub-1");
    // A standard WireGuard hub too: its `wg show` is the other end's own account.
    let hub2 = WgDevice::wireguard_go(&hub2_host, 51820);
    hub2.address("10.42.0.2/16");
    let mut edges: Vec<Agent> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Agent::new(h, &format!("a{}", i + 1)))
        .collect();
    for (i, edge) in edges.iter().enumerate() {
        hub2.add_peer(&WgPeerConfig {
            public_key: edge.public_key().into(),
            allowed_ips: vec![format!("10.42.1.{}/32", i + 1)],
            ..Default::default()
        });
    }
    let manifest = |serial: u64, members: [usize; 2]| {
        let mut src = ManifestSource::new("lab", serial)
            .node(
                NodeSource::hub("hub-1", hub1.public_key(), "10.42.0.1/32")
                    .endpoint("203.0.113.10:51820")
                    .keepalive(25),
            )
            .node(
                NodeSource::hub("hub-2", hub2.public_key(), "10.42.0.2/32")
                    .endpoint("203.0.113.11:51820")
                    .keepalive(25),
            );
        for i in members {
            src = src.node(
                NodeSource::edge(
                    edges[i].name(),
                    edges[i].public_key(),
                    "lab-a",
                    &format!("10.42.1.{}/32", i + 1),
                )
                .endpoint(&format!("192.168.10.{}:51820", i + 2)),
            );
        }
        src
    };
    // Serial 1: a1 and a2. Serial 2: a2 leaves, a3 joins.
    let serial1 = manifest(1, [0, 1]);
    let serial2 = manifest(2, [0, 2]);
    publish_signed(&server, &serial1, &key, lab.dir());
    start_polling(&mut hub1, &server, &key);
    // The hub first: an edge that starts before it answers retries on its own schedule
    // while boringtun retransmits too, and a late second handshake would be counted
    // against the change below.
    hub1.wait_status("hub-1 on serial 1", T, |s| {
        s.manifest.as_ref().is_some_and(|m| m.serial == 1)
    });
    for edge in &mut edges {
        start_polling(edge, &server, &key);
    }
    let (a1, a2, a3) = (&edges[0], &edges[1], &edges[2]);
    for addr in ["10.42.0.1", "10.42.0.2", "10.42.1.2"] {
        hosts[0].ping(addr, T).unwrap();
    }
    a3.wait_log("not in the manifest", T)
        .unwrap_or_else(|| panic!("a3 should wait for a manifest with it:\n{}", a3.log()));
    let before = a1.wait_handshakes(&["hub-1", "hub-2", "a2"], T);
    let hub1_before = hub1.wait_handshakes(&["a1", "a2"], T);
    let hub2_before = hub2.wait_handshake(a1.public_key(), T);
    let a1_endpoint_of_hub1 = before.peer("hub-1").unwrap().endpoint.clone();

    publish_signed(&server, &serial2, &key, lab.dir());
    let after = a1.wait_status("serial 2 with a3 instead of a2", T, |s| {
        s.manifest.as_ref().is_some_and(|m| m.serial == 2) && s.peer("a2").is_none()
    });
    let mut names = after.peer_names();
    names.sort();
    assert_eq!(names, ["a3", "hub-1", "hub-2"], "{after:#?}");
    let reply = hosts[0].ping("10.42.1.3", T).unwrap();
    assert_eq!(reply.ttl, 64, "a1 reaches the new peer a3 directly");
    hub1.wait_status("hub-1 on serial 2 without a2", T, |s| {
        s.manifest.as_ref().is_some_and(|m| m.serial == 2) && s.peer("a2").is_none()
    });
    // Traffic to the untouched peers after the change rides the old sessions.
    for addr in ["10.42.0.1", "10.42.0.2"] {
        hosts[0].ping(addr, T).unwrap();
    }
    let after = a1.status().unwrap();
    let hub1_after = hub1.status().unwrap();
    for peer in ["hub-1", "hub-2"] {
        assert_eq!(
            handshakes(&after, peer),
            handshakes(&before, peer),
            "a1 handshook again with the untouched {peer}: before {before:#?} after {after:#?}"
        );
    }
    assert_eq!(
        after.peer("hub-1").unwrap().endpoint,
        a1_endpoint_of_hub1,
        "the untouched hub kept its endpoint"
    );
    assert_eq!(
        handshakes(&hub1_after, "a1"),
        handshakes(&hub1_before, "a1"),
        "hub-1 handshook again with the untouched a1"
    );
    let hub2_after = hub2.peer_stat(a1.public_key()).unwrap();
    assert_eq!(
        hub2_after.latest_handshake, hub2_before.latest_handshake,
        "wireguard-go hub-2 saw a new handshake from a1"
    );
    assert!(handshakes(&after, "a3") >= 1, "{after:#?}");
    let applied = a1
        .wait_log("serial 2 applied", T)
        .unwrap_or_else(|| panic!("no apply logged:\n{}", a1.log()));
    assert!(
        applied.contains("added a3") && applied.contains("removed a2"),
        "{applied}"
    );
    assert!(!applied.contains("new session"), "{applied}");
    // The removed node learns it from the same manifest and takes its peers down.
    a2.wait_status("a2 without peers", T, |s| s.peers.is_empty());
}

#[test]
fn a_node_removed_from_the_manifest_and_added_back_reaches_the_overlay_again() {
    require_root!();
    let lab = Lab::new("re-added");
    let mut w = OneHub::new(&lab, None);
    let with_dev = w.source(1);
    w.publish(&with_dev);
    w.start_hub(&with_dev);
    w.start_dev(&[]);
    w.dev_host.ping(HUB_OVERLAY, T).unwrap();

    let without_dev = ManifestSource {
        nodes: w.source(2).nodes.into_iter().take(1).collect(),
        ..w.source(2)
    };
    w.publish(&without_dev);
    w.dev
        .wait_log("is not in the manifest", T)
        .unwrap_or_else(|| panic!("dev-a did not notice its removal:\n{}", w.dev.log()));
    w.dev
        .wait_status("dev-a without peers", T, |s| s.peers.is_empty());
    assert!(
        w.dev_host.ping_once(HUB_OVERLAY).is_none(),
        "a removed node still reaches the overlay"
    );

    w.publish(&w.source(3));
    w.dev.wait_status("dev-a on serial 3 with hub-1", T, |s| {
        s.manifest.as_ref().is_some_and(|m| m.serial == 3) && s.peer("hub-1").is_some()
    });
    w.dev_host.ping(HUB_OVERLAY, T).unwrap_or_else(|e| {
        panic!(
            "{e}; routes on dev-a: {}\nlog:\n{}",
            w.dev_host.run(&["ip", "route", "show", "dev", AGENT_IFACE]),
            w.dev.log()
        )
    });
    let log = w.dev.log();
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR")),
        "errors while leaving and rejoining:\n{log}"
    );
}

#[test]
fn when_the_preferred_hub_dies_a_continuous_ping_moves_to_the_second_hub_and_back_when_it_returns()
{
    require_root!();
    let lab = Lab::new("hub-failover");
    let mut w = TwoHubs::new(&lab);
    w.start_all();
    w.a_host.ping("10.42.2.1", T).unwrap();
    let via = |agent: &Agent, hub: &str| {
        agent.wait_status(
            &format!("overlay via {hub}"),
            Duration::from_secs(45),
            |s| s.overlay_via.as_deref() == Some(hub),
        )
    };
    via(&w.dev_a, "hub-1");
    via(&w.dev_b, "hub-1");

    let stream = PingStream::start(&w.a_host, "10.42.2.1", Duration::from_millis(100));
    wait_for("ten answers before the hub dies", T, || {
        let s = stream.snapshot();
        (s.answers_after(s.started) >= 10).then_some(())
    });
    let killed = Instant::now();
    w.hubs[0].proc().signal(libc::SIGKILL);
    let status = via(&w.dev_a, "hub-2");
    assert_eq!(
        status.peer("hub-1").map(|p| p.health.as_str()),
        Some("down"),
        "{status:#?}"
    );
    via(&w.dev_b, "hub-2");
    let moved = Instant::now();
    wait_for("ten answers through hub-2", T, || {
        (stream.snapshot().answers_after(moved) >= 10).then_some(())
    });
    let failed_over = stream.snapshot();

    let returned = Instant::now();
    w.restart_hub(0);
    via(&w.dev_a, "hub-1");
    via(&w.dev_b, "hub-1");
    let back = Instant::now();
    wait_for("ten answers through hub-1 again", T, || {
        (stream.snapshot().answers_after(back) >= 10).then_some(())
    });
    let record = stream.stop(Duration::from_secs(1));
    let end = Instant::now();

    let (gap, gap_from) = record.longest_silence().unwrap();
    let lost = record.lost(end, Duration::from_secs(1));
    let (failover_gap, _) = failed_over.longest_silence().unwrap();
    let offset = |t: Instant| {
        if t >= killed {
            (t - killed).as_secs_f64()
        } else {
            -(killed - t).as_secs_f64()
        }
    };
    eprintln!(
        "hub failover: {} pings at 10/s, {lost} lost; longest silence {gap:?} from {:+.2} s \
         (0 = the kill); the hub was restarted at {:+.2} s and had the prefix again at {:+.2} s",
        record.judged(end, Duration::from_secs(1)),
        offset(gap_from),
        offset(returned),
        offset(back)
    );
    assert!(
        failover_gap < Duration::from_secs(10),
        "traffic stopped for {failover_gap:?} when hub-1 died (the design aims at ~4 s)"
    );
    assert!(
        gap < Duration::from_secs(10),
        "traffic stopped for {gap:?} (the design aims at ~4 s)"
    );
}
