//! End-to-end: an edgewire hub on a public address and edgewire edges behind NAT routers.
//! Edges of different sites reach each other through the hub (direct paths between them
//! need STUN servers: see nat_traversal.rs); edges of one site directly.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use edgewire_lab::worlds::{HubSites, SITES, hub_and_devs};
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);

/// The (rx, tx) bytes a status shows for a peer.
fn bytes(status: &Status, peer: &str) -> (u64, u64) {
    let p = status
        .peer(peer)
        .unwrap_or_else(|| panic!("no peer {peer} in {status:#?}"));
    (p.rx_bytes, p.tx_bytes)
}

/// The agent says which data path it runs, in its log and in its status (which shows
/// it as it is now, after any step down); it must be the one the environment asks for
/// (`scripts/test` runs this file again with `EDGEWIRE_OFFLOAD=off`). Called after bulk
/// traffic, so GSO has been used and kept, not only detected.
fn assert_data_path(agent: &Agent) {
    let line = agent
        .wait_log("data path:", T)
        .unwrap_or_else(|| panic!("{}: no data path line in {}", agent.name(), agent.log()));
    let path = agent.status().unwrap().data_path.unwrap();
    if offload_off() {
        assert!(line.contains("EDGEWIRE_OFFLOAD=off"), "{line}");
        assert_eq!(
            (path.udp_send.as_str(), path.udp_receive.as_str()),
            ("single", "single"),
            "{path:?}"
        );
        assert!(!path.tun_offload && !path.tun_udp_offload, "{path:?}");
    } else {
        // This kind of machine's kernel (6.2+) offloads UDP on a TUN too.
        assert!(
            line.contains("GSO") && line.contains("TUN offload on (TCP and UDP)"),
            "{line}"
        );
        assert_eq!(
            (path.udp_send.as_str(), path.udp_receive.as_str()),
            ("gso", "gro"),
            "{path:?}"
        );
        assert!(path.tun_offload && path.tun_udp_offload, "{path:?}");
    }
}

fn ping_all(from: &Host, to: &str, count: usize) {
    for _ in 0..count {
        from.ping(to, T).unwrap();
    }
}

#[test]
fn edges_of_different_sites_reach_each_other_through_the_hub_and_not_directly() {
    require_root!();
    let lab = Lab::new("hub-two-sites");
    let world = HubSites::new(&lab, 2);
    let (hub_host, a_host, b_host) = (&world.hub_host, &world.devs[0], &world.devs[1]);

    let mut hub = Agent::new(hub_host, "hub-1");
    let mut dev_a = Agent::new(a_host, "dev-a");
    let mut dev_b = Agent::new(b_host, "dev-b");
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = hub_and_devs(
        1,
        hub.public_key(),
        &[dev_a.public_key(), dev_b.public_key()],
    )
    .build(&key, lab.dir(), "manifest");
    let url = manifest.to_string_lossy();
    for agent in [&mut hub, &mut dev_a, &mut dev_b] {
        agent.start(&url, &key.public);
    }

    // Edges first: the hub learns their NATed endpoints from their handshakes.
    a_host.ping("10.42.0.1", T).unwrap();
    b_host.ping("10.42.0.1", T).unwrap();
    hub_host.ping("10.42.1.1", T).unwrap();
    hub_host.ping("10.42.2.1", T).unwrap();
    a_host.ping("10.42.2.1", T).unwrap();
    b_host.ping("10.42.1.1", T).unwrap();

    // Neither edge has a direct path to the other: this world has no STUN server, so
    // neither knows its reflexive address, and host addresses of another site are not
    // reachable. An on-demand session may exist while it tries; its traffic stays on
    // the hub.
    for (edge, other) in [(&dev_a, "dev-b"), (&dev_b, "dev-a")] {
        let status = edge.wait_handshakes(&["hub-1"], T);
        if let Some(p) = status.peer(other) {
            assert_eq!(p.path, None, "{}: {status:#?}", edge.name());
            assert_eq!(
                p.via.as_deref(),
                Some("hub"),
                "{}: {status:#?}",
                edge.name()
            );
        }
        let hub_peer = status.peer("hub-1").unwrap();
        assert_eq!(hub_peer.endpoint.as_deref(), Some("203.0.113.10:51820"));
        assert_eq!(hub_peer.path.as_deref(), Some("direct"));
    }
    // The hub sees each edge at its NAT router's public address.
    let status = hub.wait_handshakes(&["dev-a", "dev-b"], T);
    for (edge, public) in [("dev-a", "198.51.100.2:"), ("dev-b", "192.0.2.2:")] {
        let endpoint = status
            .peer(edge)
            .unwrap()
            .endpoint
            .clone()
            .unwrap_or_default();
        assert!(
            endpoint.starts_with(public),
            "hub sees {edge} at {endpoint:?}"
        );
    }

    // Edge-to-edge traffic crosses the hub: its counters for both edges grow, in both
    // directions, by at least the ICMP payloads.
    let before = hub.status().unwrap();
    ping_all(a_host, "10.42.2.1", 5);
    let after = hub.status().unwrap();
    for edge in ["dev-a", "dev-b"] {
        let (rx0, tx0) = bytes(&before, edge);
        let (rx1, tx1) = bytes(&after, edge);
        assert!(
            rx1 >= rx0 + 5 * 84 && tx1 >= tx0 + 5 * 84,
            "hub counters for {edge} did not grow by 5 pings: rx {rx0}->{rx1}, tx {tx0}->{tx1}"
        );
    }

    // Bulk TCP through the hub arrives whole: the hub's kernel forwards what it read from
    // the TUN (coalesced by GRO) back into it (as a super-packet to split again).
    bulk_tcp(a_host, b_host, "10.42.2.1:7001", 16 << 20, T);
    // So does UDP an application sends with GSO, datagram by datagram: the hub writes
    // the runs it decrypts coalesced, and its kernel forwards them back into the TUN as
    // UDP super-packets.
    gso_udp(a_host, b_host, "10.42.2.1:7002", &gso_sends(), T);
    assert_eq!(hub.status().unwrap().drops.bad_batch, 0);
    assert_data_path(&hub);
}

/// Also: a burst of UDP reaches the TUN coalesced, the TUN's queue is deep, and a stream
/// of UDP makes the sending edge's event loop a batch task until it ends (see the end).
#[test]
fn two_edges_of_the_same_site_reach_each_other_directly() {
    require_root!();
    let lab = Lab::new("same-site");
    let world = HubSites::new(&lab, 0);
    let hub_host = &world.hub_host;
    let (_, public, lan, ..) = SITES[0];
    let site = world.wan.nat_router("nat-a", public, lan);
    let a1_host = site.host("dev-a1", "192.168.10.2/24");
    let a2_host = site.host("dev-a2", "192.168.10.3/24");

    let mut hub = Agent::new(hub_host, "hub-1");
    let mut a1 = Agent::new(&a1_host, "dev-a1");
    let mut a2 = Agent::new(&a2_host, "dev-a2");
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = ManifestSource::new("lab", 1)
        .node(
            NodeSource::hub("hub-1", hub.public_key(), "10.42.0.1/32")
                .endpoint("203.0.113.10:51820")
                .keepalive(25),
        )
        .node(
            NodeSource::edge("dev-a1", a1.public_key(), "lab-a", "10.42.1.1/32")
                .endpoint("192.168.10.2:51820"),
        )
        .node(
            NodeSource::edge("dev-a2", a2.public_key(), "lab-a", "10.42.1.2/32")
                .endpoint("192.168.10.3:51820"),
        )
        .build(&key, lab.dir(), "manifest");
    let url = manifest.to_string_lossy();
    for agent in [&mut hub, &mut a1, &mut a2] {
        agent.start(&url, &key.public);
    }

    let reply = a1_host.ping("10.42.1.2", T).unwrap();
    a2_host.ping("10.42.1.1", T).unwrap();
    assert_eq!(reply.ttl, 64, "a direct path has no forwarding hop");

    let status = a1.wait_handshakes(&["dev-a2"], T);
    let names = status.peer_names();
    assert!(
        names.contains(&"hub-1"),
        "every node peers with the hub: {names:?}"
    );
    let peer = status.peer("dev-a2").unwrap();
    assert_eq!(peer.endpoint.as_deref(), Some("192.168.10.3:51820"));
    assert_eq!(peer.path.as_deref(), Some("direct"));

    let (rx0, tx0) = bytes(&status, "dev-a2");
    ping_all(&a1_host, "10.42.1.2", 5);
    let (rx1, tx1) = bytes(&a1.status().unwrap(), "dev-a2");
    assert!(
        rx1 >= rx0 + 5 * 84 && tx1 >= tx0 + 5 * 84,
        "dev-a1's counters for dev-a2 did not grow by 5 pings: rx {rx0}->{rx1}, tx {tx0}->{tx1}"
    );
    // And the same from the other side.
    a2.wait_handshakes(&["dev-a1", "hub-1"], T);

    // Bulk TCP both ways over the direct path arrives whole.
    bulk_tcp(&a1_host, &a2_host, "10.42.1.2:7001", 32 << 20, T);
    bulk_tcp(&a2_host, &a1_host, "10.42.1.1:7001", 32 << 20, T);
    assert_data_path(&a1);
    let drops = a2.status().unwrap().drops;
    assert_eq!(drops.bad_batch, 0, "{drops:?}");

    // A burst of UDP that waited on dev-a2's socket is decrypted in one go: with TUN
    // offload its datagrams go to the TUN coalesced, in runs of 16, a few writes for them
    // all (until each flow's first buffer was given room, tun-rs coalesced only what fit
    // in the core's 2 KiB buffers: one write per datagram of this size); without offload
    // one write each.
    let count = 48;
    let writes = frozen_udp_burst(&a1_host, &a2, 51820, "10.42.1.2:7002", count, 1200, T);
    if offload_off() {
        assert!(
            writes >= count as u64,
            "{writes} write calls for {count} datagrams"
        );
    } else {
        assert!(
            writes <= count as u64 / 4,
            "{writes} write calls for {count} datagrams"
        );
    }

    // A stream's bursts wait in the TUN while the batch task is not running: the agent
    // gives it room for 2,000 packets (netlink/mod.rs), the kernel's default being 500.
    let queue_len = format!("/sys/class/net/{AGENT_IFACE}/tx_queue_len");
    assert_eq!(a1_host.run(&["cat", &queue_len]).trim(), "2000");
    // What overflows it is counted in the status and the metrics (`tun_queue_full`):
    // 2,600 datagrams sent while the agent is frozen, 2,000 of them queued.
    let queue_drops = || a1.status().unwrap().drops.tun_queue_full;
    let before = queue_drops().expect("dev-a1 reads its TUN's drop counter");
    udp_into_frozen_tun(&a1, "10.42.1.2:7004", 2600, 200);
    let dropped = queue_drops().unwrap() - before;
    assert!(
        (500..=700).contains(&dropped),
        "{dropped} dropped at the TUN"
    );

    // A stream of small datagrams into dev-a1's TUN makes its event loop a batch task,
    // and the end of the stream a normal one again, by itself (wake_policy.rs).
    // (Without TUN offload the bulk TCP above came as a stream of packets too.)
    let policy = || a1.proc().sched_policy().expect("dev-a1 runs");
    wait_for(
        "dev-a1's event loop to be a normal task before the stream",
        T,
        || (policy() == libc::SCHED_OTHER).then_some(()),
    );
    let sender = in_netns(&a1_host, || std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    let streaming = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let until = std::time::Instant::now() + T;
            while streaming.load(Relaxed) && std::time::Instant::now() < until {
                let _ = sender.send_to(&[7; 64], "10.42.1.2:7003");
            }
        });
        wait_for("dev-a1's event loop to become a batch task", T, || {
            (policy() == libc::SCHED_BATCH).then_some(())
        });
        streaming.store(false, Relaxed);
    });
    wait_for("dev-a1's event loop to be a normal task again", T, || {
        (policy() == libc::SCHED_OTHER).then_some(())
    });
    a1.wait_log("now a normal task", T)
        .unwrap_or_else(|| panic!("no policy line in {}", a1.log()));
}
