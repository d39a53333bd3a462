//! End-to-end: an edgewire edge behind NAT uses a standard WireGuard hub (wireguard-go
//! configured with `wg`, as a Kilo node is) and reaches a second device through it.

use std::time::Duration;

use edgewire_lab::worlds::{HubSites, hub_and_devs, wireguard_go_hub};
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn an_edge_behind_nat_reaches_a_wireguard_go_device_through_a_wireguard_go_hub() {
    require_root!();
    let lab = Lab::new("wggo-hub");
    let world = HubSites::new(&lab, 2);
    let (hub_host, a_host, b_host) = (&world.hub_host, &world.devs[0], &world.devs[1]);

    let dev_b = WgDevice::wireguard_go(b_host, 51820);
    dev_b.address("10.42.2.1/16");
    let mut dev_a = Agent::new(a_host, "dev-a");
    let hub = wireguard_go_hub(
        hub_host,
        &[
            (dev_a.public_key(), "10.42.1.1/32"),
            (dev_b.public_key(), "10.42.2.1/32"),
        ],
    );
    dev_b.add_peer(&WgPeerConfig {
        public_key: hub.public_key().into(),
        allowed_ips: vec!["10.42.0.0/16".into()],
        endpoint: Some("203.0.113.10:51820".into()),
        keepalive: Some(5),
    });

    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = hub_and_devs(
        1,
        hub.public_key(),
        &[dev_a.public_key(), dev_b.public_key()],
    )
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
    // dev-b is a standard WireGuard peer: it never answers dev-a's offer of a direct
    // path, so dev-a's on-demand session to it (if still there) has no path, and its
    // traffic stays with the hub.
    let status = dev_a.wait_handshakes(&["hub-1"], T);
    if let Some(b) = status.peer("dev-b") {
        assert_eq!(
            (b.path.as_deref(), b.via.as_deref()),
            (None, Some("hub")),
            "{status:#?}"
        );
    }
}

/// libfaketime makes the agent's wall clock read 1970 (a board without an RTC, booted
/// with no NTP in reach); stat() is left alone so the state files keep their real times.
const BOOTED_IN_1970: [&str; 4] = [
    "env",
    "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "FAKETIME=@1970-01-02 00:00:00",
    "NO_FAKE_STAT=1",
];

// wireguard-go, like every WireGuard, refuses an initiation whose timestamp is not newer
// than the last one it saw from that key. An edge that restarts with its clock in 1970
// stamps its handshakes from the time it saved in its state directory, so the hub
// answers at once instead of refusing it until the clock is set.
#[test]
fn an_edge_restarted_with_its_clock_in_1970_is_still_answered_by_a_wireguard_go_hub() {
    require_root!();
    let lab = Lab::new("wggo-1970");
    let world = HubSites::new(&lab, 1);
    let mut dev_a = Agent::new(&world.devs[0], "dev-a");
    let hub = wireguard_go_hub(&world.hub_host, &[(dev_a.public_key(), "10.42.1.1/32")]);
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest =
        hub_and_devs(1, hub.public_key(), &[dev_a.public_key()]).build(&key, lab.dir(), "manifest");
    let manifest = manifest.to_string_lossy();
    dev_a.start(&manifest, &key.public);
    world.devs[0].ping("10.42.0.1", T).unwrap();
    hub.wait_handshake(dev_a.public_key(), T);
    dev_a.stop();

    dev_a.start_args(
        &BOOTED_IN_1970,
        &[
            "--manifest-url",
            &manifest,
            "--manifest-pubkey",
            &key.public,
        ],
    );
    let answered = world.devs[0].ping("10.42.0.1", T);
    assert!(
        answered.is_ok(),
        "the hub never answered the edge restarted in 1970:\n{}",
        dev_a.log()
    );
    let behind = dev_a.wait_log("is behind the time this device last saved", T);
    assert!(
        behind.is_some(),
        "the 1970 clock went unnoticed:\n{}",
        dev_a.log()
    );
}
