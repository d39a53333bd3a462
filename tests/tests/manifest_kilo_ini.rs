//! End-to-end: Kilo's peer config as the manifest. The INI is written exactly as
//! `kgctl showconf peer NAME` prints it — [Peer] sections only, Kilo's key order, one
//! leader with a preshared key — and served by nginx over HTTPS with a pinned CA. The
//! device runs `--manifest-format wg --address 10.4.0.99/16` against two wireguard-go
//! location leaders (configured with `wg`, as Kilo configures its nodes) and reaches a
//! second machine through the first leader: a node of that location, by its private IP
//! and its pod subnet, as Kilo routes them.
//!
//! The INI follows Kilo's `Topology.PeerConf` (pkg/mesh/topology.go): one section per
//! location leader, with the location's pod subnets and private IPs and the leader's
//! WireGuard IP, carrying this Peer's preshared key and keepalive; then one section per
//! other Peer, without a preshared key, its endpoint omitted when unknown.

use std::time::Duration;

use edgewire_lab::lifecycle::*;
use edgewire_lab::manifest_server::ManifestServer;
use edgewire_lab::worlds::*;
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);

/// Kilo's world: two locations whose leaders run wireguard-go; location 1 has a second
/// node, node-2, on the leader's LAN; dev-a behind a NAT; nginx over HTTPS.
struct Kilo {
    server: ManifestServer,
    leader1: WgDevice,
    leader2: WgDevice,
    node2: Host,
    a_host: Host,
    dev_a: Agent,
    psk: String,
}

fn kilo(lab: &Lab) -> Kilo {
    let wan = lab.wan();
    let www = lab.host("www");
    wan.attach(&www, &format!("{SERVER_ADDR}/24"));
    let server = ManifestServer::start(&www, SERVER_ADDR, None);

    let leader1_host = lab.host("leader1");
    wan.attach(&leader1_host, "203.0.113.10/24");
    leader1_host.enable_forwarding();
    let node2 = lab.host("node2");
    lab.link(&leader1_host, &node2, "172.16.1.1/24", "172.16.1.2/24");
    // Pods: one address of each node's pod subnet.
    leader1_host.run(&["ip", "addr", "add", "10.42.1.1/32", "dev", "lo"]);
    node2.run(&["ip", "addr", "add", "10.42.3.1/32", "dev", "lo"]);
    leader1_host.route("10.42.3.0/24", "172.16.1.2");
    // Kilo routes the WireGuard subnet through the location's leader.
    node2.route("10.4.0.0/16", "172.16.1.1");
    let leader2_host = lab.host("leader2");
    wan.attach(&leader2_host, "203.0.113.11/24");
    let site_a = wan.nat_router("nat-a", "198.51.100.2/24", "192.168.10.1/24");
    let a_host = site_a.host("dev-a", "192.168.10.2/24");

    let leader1 = WgDevice::wireguard_go(&leader1_host, 51820);
    leader1.address("10.4.0.1/16");
    let leader2 = WgDevice::wireguard_go(&leader2_host, 51820);
    leader2.address("10.4.0.2/16");
    let dev_a = Agent::new(&a_host, "dev-a");

    // dev-a's Peer has a preshared key: Kilo sets it on every leader's side for this Peer.
    let psk = KeyPair::generate().private; // 32 random bytes in base64, as `wg genpsk`
    let psk_file = lab.dir().join("dev-a.psk");
    std::fs::write(&psk_file, format!("{psk}\n")).unwrap();
    let psk_path = psk_file.to_string_lossy().into_owned();
    for leader in [&leader1, &leader2] {
        leader.host().run(&[
            "wg",
            "set",
            leader.iface(),
            "peer",
            dev_a.public_key(),
            "preshared-key",
            &psk_path,
            "allowed-ips",
            "10.4.0.99/32",
        ]);
    }
    Kilo {
        server,
        leader1,
        leader2,
        node2,
        a_host,
        dev_a,
        psk,
    }
}

impl Kilo {
    /// The two leader sections of `kgctl showconf peer dev-a`.
    fn leaders(&self) -> Vec<KiloPeer> {
        vec![
            KiloPeer {
                public_key: self.leader1.public_key().into(),
                allowed_ips: vec![
                    "10.42.1.0/24".into(),
                    "172.16.1.1/32".into(),
                    "10.42.3.0/24".into(),
                    "172.16.1.2/32".into(),
                    "10.4.0.1/32".into(),
                ],
                endpoint: Some("203.0.113.10:51820".into()),
                persistent_keepalive: 25,
                preshared_key: Some(self.psk.clone()),
            },
            KiloPeer {
                public_key: self.leader2.public_key().into(),
                allowed_ips: vec!["10.42.2.0/24".into(), "10.4.0.2/32".into()],
                endpoint: Some("203.0.113.11:51820".into()),
                persistent_keepalive: 25,
                preshared_key: Some(self.psk.clone()),
            },
        ]
    }

    /// Publishes `peers` as `kgctl showconf peer dev-a` and starts dev-a on it.
    fn start(&mut self, peers: &[KiloPeer]) {
        self.server
            .publish("dev-a.ini", kilo_showconf(peers).as_bytes());
        let mut flags = https_flags(&self.server, "dev-a.ini", None, 1);
        flags.extend(
            ["--manifest-format", "wg", "--address", "10.4.0.99/16"]
                .iter()
                .map(|s| s.to_string()),
        );
        self.dev_a.start_args(&[], &as_strs(&flags));
    }
}

#[test]
fn a_device_on_kilos_showconf_ini_over_https_reaches_a_node_behind_a_wireguard_go_leader() {
    require_root!();
    let lab = Lab::new("kilo-ini");
    let mut k = kilo(&lab);
    let other_peer = KeyPair::generate();
    let mut peers = k.leaders();
    // Another Kilo Peer, endpoint unknown: listed, keepalive is dev-a's own.
    peers.push(KiloPeer {
        public_key: other_peer.public,
        allowed_ips: vec!["10.4.0.3/32".into()],
        endpoint: None,
        persistent_keepalive: 25,
        preshared_key: None,
    });
    k.start(&peers);

    // Leader 1 and its pod; node-2 by private IP and pod, one hop behind leader 1.
    k.a_host.ping("10.4.0.1", T).unwrap();
    k.a_host.ping("10.42.1.1", T).unwrap();
    for addr in ["172.16.1.2", "10.42.3.1"] {
        let reply = k.a_host.ping(addr, T).unwrap();
        assert_eq!(
            reply.ttl, 63,
            "{addr} is one forwarding hop behind leader 1"
        );
    }
    k.node2.ping("10.4.0.99", T).unwrap();
    // Leader 2 answers only with the preshared key.
    k.a_host.ping("10.4.0.2", T).unwrap();
    for leader in [&k.leader1, &k.leader2] {
        leader.wait_handshake(k.dev_a.public_key(), T);
    }

    let status = k.dev_a.status().unwrap();
    let manifest = status.manifest.clone().expect("a manifest in force");
    assert_eq!(manifest.source, k.server.https_url("dev-a.ini"));
    assert_eq!(status.peers.len(), 3, "{status:#?}");
    let name_of = |key: &str| {
        status
            .peers
            .iter()
            .find(|p| p.public_key == key)
            .unwrap_or_else(|| panic!("no peer {key}: {status:#?}"))
    };
    let l1 = name_of(k.leader1.public_key());
    assert!(l1.has_handshake() && name_of(k.leader2.public_key()).has_handshake());
    assert_eq!(
        status.overlay_via.as_deref(),
        Some(l1.name.as_str()),
        "the first leader carries the overlay"
    );
    assert!(
        k.dev_a.state_dir().join("manifest.cache").is_file(),
        "the INI manifest is cached like a signed one"
    );
    // Unchanged INI: the polls cost 304s and change nothing.
    wait_for("three polls answered 304", T, || {
        (k.server.count("dev-a.ini", 304) >= 3).then_some(())
    });
    let log = k.dev_a.log();
    assert_eq!(count_lines(&log, "applied as node"), 1, "{log}");
}

#[test]
fn another_kilo_peer_without_an_endpoint_is_reached_through_the_first_leader() {
    require_root!();
    let lab = Lab::new("kilo-peer");
    let mut k = kilo(&lab);
    // dev-b: a plain WireGuard Kilo Peer behind leader 1 (its only peer: the whole subnet).
    let b_host = lab.host("dev-b");
    let leader1_host = k.leader1.host().clone();
    lab.link(&leader1_host, &b_host, "172.16.9.1/24", "172.16.9.2/24");
    let dev_b = WgDevice::wireguard_go(&b_host, 51820);
    dev_b.address("10.4.0.3/16");
    k.leader1.add_peer(&WgPeerConfig {
        public_key: dev_b.public_key().into(),
        allowed_ips: vec!["10.4.0.3/32".into()],
        ..Default::default()
    });
    dev_b.add_peer(&WgPeerConfig {
        public_key: k.leader1.public_key().into(),
        allowed_ips: vec!["10.4.0.0/16".into()],
        endpoint: Some("172.16.9.1:51820".into()),
        keepalive: Some(5),
    });
    let mut peers = k.leaders();
    peers.push(KiloPeer {
        public_key: dev_b.public_key().into(),
        allowed_ips: vec!["10.4.0.3/32".into()],
        endpoint: None,
        persistent_keepalive: 25,
        preshared_key: None,
    });
    k.start(&peers);
    k.a_host.ping("10.4.0.1", T).unwrap();
    k.leader1.wait_handshake(dev_b.public_key(), T);
    let reply = k.a_host.ping("10.4.0.3", T).unwrap_or_else(|e| {
        panic!(
            "{e}; dev-a's status: {:#?}",
            k.dev_a.status().map(|s| s.peers)
        )
    });
    assert_eq!(reply.ttl, 63, "dev-b is reached through leader 1's kernel");
}
