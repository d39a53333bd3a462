//! Self-tests of the lab with standard WireGuard peers only (no edgewire): NAT routers,
//! a wireguard-go hub forwarding between two wireguard-go devices, cleanup, file serving,
//! and the site kinds of the catalogue (firewall, public, a NAT that rebinds) checked
//! with plain UDP sockets, so an agent test that fails is not a lab that lies.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use edgewire_lab::worlds::HubSites;
use edgewire_lab::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn two_wireguard_go_devices_behind_nat_reach_each_other_through_a_wireguard_go_hub() {
    require_root!();
    let lab = Lab::new("selftest-wg-nat");
    let world = HubSites::new(&lab, 2);
    let (hub_host, a_host, b_host) = (&world.hub_host, &world.devs[0], &world.devs[1]);

    // The underlay works and the devices' traffic leaves masqueraded.
    a_host.ping("203.0.113.10", T).unwrap();
    b_host.ping("203.0.113.10", T).unwrap();

    let hub = WgDevice::wireguard_go(hub_host, 51820);
    let a = WgDevice::wireguard_go(a_host, 51820);
    let b = WgDevice::wireguard_go(b_host, 51820);
    hub.address("10.42.0.1/16");
    a.address("10.42.1.1/16");
    b.address("10.42.2.1/16");
    for (dev, addr) in [(&a, "10.42.1.1/32"), (&b, "10.42.2.1/32")] {
        hub.add_peer(&WgPeerConfig {
            public_key: dev.public_key().into(),
            allowed_ips: vec![addr.into()],
            ..Default::default()
        });
        dev.add_peer(&WgPeerConfig {
            public_key: hub.public_key().into(),
            allowed_ips: vec!["10.42.0.0/16".into()],
            endpoint: Some("203.0.113.10:51820".into()),
            keepalive: Some(1),
        });
    }

    hub.wait_handshake(a.public_key(), T);
    hub.wait_handshake(b.public_key(), T);
    // The hub sees each device at its NAT router's public address.
    let seen_a = hub.peer_stat(a.public_key()).unwrap().endpoint.unwrap();
    let seen_b = hub.peer_stat(b.public_key()).unwrap().endpoint.unwrap();
    // Plain MASQUERADE keeps the source port: an endpoint-independent mapping.
    assert_eq!(seen_a, "198.51.100.2:51820", "hub sees dev-a at {seen_a}");
    assert!(
        seen_b.starts_with("192.0.2.2:"),
        "hub sees dev-b at {seen_b}"
    );

    a_host.ping("10.42.0.1", T).unwrap();
    let reply = a_host.ping("10.42.2.1", T).unwrap();
    // One kernel hop: the hub forwarded it.
    assert_eq!(
        reply.ttl, 63,
        "dev-a -> dev-b should be forwarded once by the hub"
    );
    b_host.ping("10.42.1.1", T).unwrap();
}

#[test]
fn a_dropped_lab_leaves_no_namespace_and_no_process_behind() {
    require_root!();
    let lab = Lab::new("selftest-cleanup");
    let host = lab.host("h");
    let netns = host.netns().to_owned();
    let proc = host.spawn("sleeper", &["sleep", "600"]);
    let pid = proc.pid();
    let dir = lab.dir().to_path_buf();
    let wg = WgDevice::wireguard_go(&host, 51820);
    let socket = format!("/var/run/wireguard/{}.sock", wg.iface());
    assert!(Path::new(&socket).exists());
    // The lab goes first: it must cope with guards that outlive it.
    drop(lab);
    drop(proc);
    drop(wg);
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&netns));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} survived"
    );
    assert!(!Path::new(&socket).exists(), "{socket} survived");
    if std::env::var("EDGEWIRE_KEEP_LAB").as_deref() != Ok("1") {
        assert!(!dir.exists(), "{} survived", dir.display());
    }
}

#[test]
fn a_nat_router_hides_its_lan_and_a_firewall_can_drop_udp() {
    require_root!();
    let lab = Lab::new("selftest-firewall");
    let wan = lab.wan();
    let server = lab.host("server");
    wan.attach(&server, "203.0.113.20/24");
    let site = wan.nat_router("nat", "198.51.100.2/24", "192.168.30.1/24");
    let dev = site.host("dev", "192.168.30.2/24");

    // The LAN is not routable from outside.
    assert!(server.ping_once("192.168.30.2").is_none());
    dev.ping("203.0.113.20", T).unwrap();

    site.router.drop_udp_from("192.168.30.0/24");
    let hub = WgDevice::wireguard_go(&server, 51820);
    let edge = WgDevice::wireguard_go(&dev, 51820);
    hub.add_peer(&WgPeerConfig {
        public_key: edge.public_key().into(),
        allowed_ips: vec!["10.42.1.1/32".into()],
        ..Default::default()
    });
    edge.add_peer(&WgPeerConfig {
        public_key: hub.public_key().into(),
        allowed_ips: vec!["10.42.0.0/16".into()],
        endpoint: Some("203.0.113.20:51820".into()),
        keepalive: Some(1),
    });
    // ICMP still passes; WireGuard (UDP) never gets through.
    dev.ping("203.0.113.20", T).unwrap();
    let got = poll_until(Duration::from_secs(3), || {
        hub.peer_stat(edge.public_key())
            .filter(|p| p.latest_handshake > 0)
    });
    assert!(
        got.is_none(),
        "a handshake crossed a firewall that drops UDP"
    );
}

#[test]
fn the_file_server_serves_over_https_with_etags_to_another_namespace() {
    require_root!();
    let lab = Lab::new("selftest-https");
    let wan = lab.wan();
    let web = lab.host("web");
    wan.attach(&web, "203.0.113.30/24");
    let site = wan.nat_router("nat", "198.51.100.2/24", "192.168.40.1/24");
    let dev = site.host("dev", "192.168.40.2/24");

    let server = FileServer::start(&web, "203.0.113.30");
    server.publish("manifest", b"signed bytes\n");
    let ca = server.ca().ca_cert.to_string_lossy().into_owned();
    let url = server.https_url("manifest");

    let out = dev.exec(&["curl", "-sS", "--fail", "--cacert", &ca, "-D", "-", &url]);
    assert!(out.success(), "curl failed: {}", out.stderr);
    assert!(out.stdout.ends_with("signed bytes\n"), "{}", out.stdout);
    let etag = out
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("ETag: ")
                .or_else(|| l.strip_prefix("etag: "))
        })
        .expect("an ETag header")
        .trim()
        .to_owned();

    let code = dev.run(&[
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        &ca,
        "-H",
        &format!("If-None-Match: {etag}"),
        &url,
    ]);
    assert_eq!(code, "304");

    // Behind a firewall that lets only TCP 443 out, HTTPS still works; ping does not.
    let corp = wan.nat_router("corp", "192.0.2.3/24", "192.168.50.1/24");
    corp.router.allow_only_tcp_out(&corp.uplink, 443);
    let locked = corp.host("locked", "192.168.50.2/24");
    let out = locked.exec(&["curl", "-sS", "--fail", "--cacert", &ca, &url]);
    assert!(
        out.success(),
        "curl through the firewall failed: {}",
        out.stderr
    );
    assert!(
        locked.ping_once("203.0.113.30").is_none(),
        "ICMP crossed the firewall"
    );
    let http = locked.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "2",
        &server.http_url("manifest"),
    ]);
    assert!(!http.success(), "HTTP on port 80 crossed the firewall");

    // Without the test's CA the certificate is refused.
    assert!(!dev.exec(&["curl", "-sS", "--fail", &url]).success());
    // openssl verifies the chain and the IP in subjectAltName too.
    let verify = dev.exec(&[
        "openssl",
        "s_client",
        "-connect",
        "203.0.113.30:443",
        "-CAfile",
        &ca,
        "-verify_ip",
        "203.0.113.30",
        "-verify_return_error",
        "-brief",
    ]);
    assert!(
        verify.stderr.contains("Verification: OK"),
        "openssl s_client: {}",
        verify.stderr
    );
}

/// A UDP socket on `addr` inside `host`, waiting at most `T` for each datagram.
fn udp(host: &Host, addr: &str) -> UdpSocket {
    in_netns(host, || {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        s.set_read_timeout(Some(T)).unwrap();
        s
    })
}

/// The next datagram on `socket`: (its text, where it came from).
fn recv(socket: &UdpSocket) -> (String, SocketAddr) {
    let mut buf = [0u8; 64];
    let (n, from) = socket
        .recv_from(&mut buf)
        .expect("a datagram within the timeout");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

#[test]
fn a_firewall_admits_only_answers_and_a_public_device_is_reached_by_anyone() {
    require_root!();
    let lab = Lab::new("selftest-nat-kinds");
    let world = HubSites::with_nats(&lab, &[NatKind::Firewall, NatKind::Public]);
    let (fw_dev_addr, public_dev_addr) = ("198.51.100.114:4000", "192.0.2.114:4000");
    let server = udp(&world.hub_host, "203.0.113.10:4000");
    let fw_dev = udp(&world.devs[0], fw_dev_addr);
    let public_dev = udp(&world.devs[1], public_dev_addr);

    server.send_to(b"unsolicited", fw_dev_addr).unwrap();
    server.send_to(b"unsolicited", public_dev_addr).unwrap();
    let (text, from) = recv(&public_dev);
    assert_eq!(
        (text.as_str(), from.to_string().as_str()),
        ("unsolicited", "203.0.113.10:4000"),
        "a public device is reached by anyone, untranslated"
    );

    fw_dev.send_to(b"out", "203.0.113.10:4000").unwrap();
    let (_, seen_as) = recv(&server);
    assert_eq!(
        seen_as.to_string(),
        fw_dev_addr,
        "a firewall translates nothing"
    );
    server.send_to(b"answer", seen_as).unwrap();
    // Had the unsolicited datagram crossed the firewall, it would be read first.
    assert_eq!(
        recv(&fw_dev).0,
        "answer",
        "the firewall admits answers only"
    );
}

#[test]
fn a_rebinding_nat_gives_the_device_a_new_port_and_drops_what_goes_to_the_old_one() {
    require_root!();
    let lab = Lab::new("selftest-rebind");
    let world = HubSites::new(&lab, 1);
    let server = udp(&world.hub_host, "203.0.113.10:4000");
    let dev = udp(&world.devs[0], "192.168.10.2:51820");

    dev.send_to(b"before", "203.0.113.10:4000").unwrap();
    let (_, before) = recv(&server);
    assert_eq!(
        before.to_string(),
        "198.51.100.2:51820",
        "MASQUERADE keeps the port"
    );

    world.sites[0].rebind(51821);
    server.send_to(b"to the old mapping", before).unwrap();
    dev.send_to(b"after", "203.0.113.10:4000").unwrap();
    let (_, after) = recv(&server);
    assert_eq!(
        after.to_string(),
        "198.51.100.2:51821",
        "the flow has a new port"
    );
    server.send_to(b"to the new mapping", after).unwrap();
    // What went to the old port is dropped: the first datagram the device reads is the
    // one sent to the new port.
    assert_eq!(recv(&dev).0, "to the new mapping");
}
