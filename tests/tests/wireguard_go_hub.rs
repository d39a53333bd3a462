//! End-to-end: an edgewire edge behind NAT uses a standard WireGuard hub (wireguard-go
//! configured with `wg`, as a Kilo node is) and reaches a second device through it.

use std::time::Duration;

use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn an_edge_behind_nat_reaches_a_wireguard_go_device_through_a_wireguard_go_hub() {
    require_root!();
    let lab = Lab::new("wggo-hub");
    let wan = lab.wan();
    let hub_host = lab.host("hub");
    wan.attach(&hub_host, "203.0.113.10/24");
    hub_host.enable_forwarding();
    let site_a = wan.nat_router("nat-a", "198.51.100.2/24", "192.168.10.1/24");
    let site_b = wan.nat_router("nat-b", "192.0.2.2/24", "192.168.20.1/24");
    let a_host = site_a.host("dev-a", "192.168.10.2/24");
    let b_host = site_b.host("dev-b", "192.168.20.2/24");

    let hub = WgDevice::wireguard_go(&hub_host, 51820);
    hub.address("10.42.0.1/16");
    let dev_b = WgDevice::wireguard_go(&b_host, 51820);
    dev_b.address("10.42.2.1/16");
    let mut dev_a = Agent::new(&a_host, "dev-a");

    // The hub knows its peers by key and allowed IPs only; they come to it.
    for (key, ip) in [
        (dev_a.public_key(), "10.42.1.1/32"),
        (dev_b.public_key(), "10.42.2.1/32"),
    ] {
        hub.add_peer(&WgPeerConfig {
            public_key: key.into(),
            allowed_ips: vec![ip.into()],
            ..Default::default()
        });
    }
    dev_b.add_peer(&WgPeerConfig {
        public_key: hub.public_key().into(),
        allowed_ips: vec!["10.42.0.0/16".into()],
        endpoint: Some("203.0.113.10:51820".into()),
        keepalive: Some(5),
    });

    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = ManifestSource::new("lab", 1)
        .node(
            NodeSource::hub("hub-1", hub.public_key(), "10.42.0.1/32")
                .endpoint("203.0.113.10:51820")
                .keepalive(25),
        )
        .node(NodeSource::edge(
            "dev-a",
            dev_a.public_key(),
            "site-a",
            "10.42.1.1/32",
        ))
        .node(NodeSource::edge(
            "dev-b",
            dev_b.public_key(),
            "site-b",
            "10.42.2.1/32",
        ))
        .build(&key, lab.dir(), "manifest");
    dev_a.start(&manifest.to_string_lossy(), &key.public);

    a_host.ping("10.42.0.1", T).unwrap();
    hub.wait_handshake(dev_b.public_key(), T);
    let reply = a_host.ping("10.42.2.1", T).unwrap();
    assert_eq!(reply.ttl, 63, "the wireguard-go hub's kernel forwards once");
    b_host.ping("10.42.1.1", T).unwrap();

    // The standard peer sees the edge at its NAT's public address.
    let seen = hub.wait_handshake(dev_a.public_key(), T);
    let endpoint = seen.endpoint.unwrap_or_default();
    assert!(
        endpoint.starts_with("198.51.100.2:"),
        "hub sees dev-a at {endpoint:?}"
    );
    let status = dev_a.wait_handshakes(&["hub-1"], T);
    assert_eq!(status.peer_names(), ["hub-1"], "{status:#?}");
}
