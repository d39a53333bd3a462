//! End-to-end: `edgewire netcheck` allocates on every relay URL of the manifest against
//! real coturns (UDP, TCP and TLS each working on one, each refused on the other, which
//! the manifest gives a wrong password), fails on its own each URL that points at
//! something that is not TURN (nginx on 443, a UDP echo on 3478), and shows the
//! manifest server's certificate, HTTP status and ETag as nginx serves them — all in
//! under ten seconds. And it judges "can join" through the relays too: behind a
//! firewall that lets only TCP 443 out, the hub answers a handshake through the TLS
//! relay and the device can join; with the hub stopped, the relay still allocates but
//! nothing answers through it, and netcheck says so, naming the hub and the relay.
//! With the agent running (relayed over TLS), the agent's word is taken instead.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use edgewire_lab::manifest_server::ManifestServer;
use edgewire_lab::relaylab::{HUB_ADDR, Hub, HubKind, RelayWorld, RelayWorldConfig, TURN_ADDRS};
use edgewire_lab::worlds::SERVER_ADDR;
use edgewire_lab::*;
use serde_json::Value;

/// The relay world's manifest (coturn #0 with a wrong password, #1 right, both with
/// UDP, TCP and TLS) plus two URLs on nginx's host that are not TURN, signed and
/// published on nginx as `/manifest`.
fn publish_with_garbage_relays(world: &RelayWorld, lab: &Lab, server: &ManifestServer) {
    let source = lab.dir().join("manifest.json");
    let mut json: Value = serde_json::from_str(&fs::read_to_string(&source).unwrap()).unwrap();
    for url in [
        format!("turn:{SERVER_ADDR}:3478?transport=udp"),
        format!("turns:{SERVER_ADDR}:443"),
    ] {
        json["relays"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"url": url, "username": "edge", "password": "x"}));
    }
    let with_garbage = lab.dir().join("manifest-garbage.json");
    fs::write(&with_garbage, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let out = lab.dir().join("manifest-garbage");
    let status = Command::new(edgewire_bin())
        .arg("manifest")
        .arg("build")
        .arg(&with_garbage)
        .arg("--key")
        .arg(&world.key.path)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "edgewire manifest build");
    server.publish("manifest", &fs::read(&out).unwrap());
}

fn relay<'a>(report: &'a Value, target: &str, transport: &str) -> &'a Value {
    report["relays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == target && r["transport"] == transport)
        .unwrap_or_else(|| panic!("no relay {target} {transport} in {report:#}"))
}

#[test]
fn netcheck_reports_each_relay_transport_and_the_manifest_servers_certificate_and_etag() {
    require_root!();
    let lab = Lab::new("nc-relays");
    let config = RelayWorldConfig::new(HubKind::WireguardGo)
        .relays(2)
        .wrong_password_on_first();
    let world = RelayWorld::new(&lab, config);
    let www = lab.host("www");
    world.wan.attach(&www, &format!("{SERVER_ADDR}/24"));
    let server = ManifestServer::start(&www, SERVER_ADDR, None);
    let _echo = udp_echo_peer(&www, SERVER_ADDR, 3478);
    publish_with_garbage_relays(&world, &lab, &server);
    // netcheck, like the agent, checks the manifest server and the TLS relays against
    // the one --ca-file.
    let cas = lab.dir().join("all-cas.pem");
    let bundle = fs::read_to_string(&world.ca_file).unwrap()
        + &fs::read_to_string(&server.ca().ca_cert).unwrap();
    fs::write(&cas, bundle).unwrap();

    let url = server.https_url("manifest");
    let ca = cas.to_string_lossy().into_owned();
    let (out, took) = run_netcheck(
        &world.dev_host,
        world.dev.state_dir(),
        &[
            "--manifest-url",
            &url,
            "--manifest-pubkey",
            &world.key.public,
            "--ca-file",
            &ca,
            "--json",
        ],
    );
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr));
    assert!(took < Duration::from_secs(10), "netcheck took {took:?}");
    assert!(out.success(), "the hub answers: {report:#}\n{}", out.stderr);
    assert!(
        out.stderr
            .contains("netcheck: allocating on the relays (up to 3 s)"),
        "progress: {}",
        out.stderr
    );

    // Coturn #1, the right password: every transport allocates, with its round trip.
    for (transport, port) in [("udp", 3478), ("tcp", 3478), ("tls", 443)] {
        let r = relay(&report, &format!("{}:{port}", TURN_ADDRS[1]), transport);
        assert_eq!(r["ok"], true, "{r:#}");
        assert!(r["rtt_ms"].as_f64().unwrap() > 0.0, "{r:#}");
        let relayed = r["relayed"].as_str().unwrap();
        assert!(relayed.starts_with(&format!("{}:", TURN_ADDRS[1])), "{r:#}");
    }
    // Coturn #0, a wrong password: each check fails on its own, naming relay and
    // transport and saying what to check.
    for (transport, port) in [("udp", 3478), ("tcp", 3478), ("tls", 443)] {
        let target = format!("{}:{port}", TURN_ADDRS[0]);
        let r = relay(&report, &target, transport);
        assert_eq!(r["ok"], false, "{r:#}");
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == format!("relay {target} {transport}"))
            .unwrap();
        assert_eq!(check["outcome"], "fail");
        let detail = check["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("relay {target} over {transport}: ")),
            "{detail}"
        );
        assert!(
            detail
                .contains("refused the credentials (401): check the relay's username and password"),
            "{detail}"
        );
    }
    // Not TURN at all: nginx's HTTPS port and a UDP echo.
    for (target, transport) in [
        (format!("{SERVER_ADDR}:443"), "tls"),
        (format!("{SERVER_ADDR}:3478"), "udp"),
    ] {
        let r = relay(&report, &target, transport);
        assert_eq!(r["ok"], false, "{r:#}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("with something that is not TURN: check that the relay URL's host"),
            "{error}"
        );
        assert!(!error.contains("no answer"), "it did answer: {error}");
        assert!(r["millis"].as_u64().unwrap() <= 3_600, "{r:#}");
    }

    // The manifest server: its certificate as the lab's CA issued it (valid two days),
    // the status and the ETag nginx computes from the file's mtime and size.
    let s = &report["manifest_server"];
    assert_eq!(s["url"], url.as_str());
    let tls = &s["tls"];
    assert_eq!(tls["issuer"], "CN=edgewire lab CA", "{s:#}");
    assert_eq!(tls["subject"], format!("CN={SERVER_ADDR}"), "{s:#}");
    assert_eq!(tls["trusted"], true, "{s:#}");
    let left = tls["expires_in_secs"].as_u64().unwrap();
    assert!((86_400..=2 * 86_400).contains(&left), "{s:#}");
    assert_eq!(s["http_status"], 200, "{s:#}");
    let published = fs::metadata(server.root().join("manifest")).unwrap();
    let etag = format!("\"{:x}-{:x}\"", published.mtime(), published.len());
    assert_eq!(s["etag"], etag.as_str(), "{s:#}");
    let tls_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "manifest TLS")
        .unwrap();
    assert_eq!(tls_check["outcome"], "ok", "{tls_check:#}");
    assert!(
        tls_check["detail"]
            .as_str()
            .unwrap()
            .contains("issued by CN=edgewire lab CA to CN=203.0.113.20, expires "),
        "{tls_check:#}"
    );
    assert_eq!(report["cached_manifest"], Value::Null);
}

/// `edgewire netcheck --json` on dev-a with the relay world's manifest file; its exit
/// status, report and progress lines. Asserts the ten-second budget.
fn netcheck_on_dev(world: &RelayWorld) -> (bool, Value, String) {
    let manifest = world.manifest.to_string_lossy().into_owned();
    let ca = world.ca_file.to_string_lossy().into_owned();
    let (out, took) = run_netcheck(
        &world.dev_host,
        world.dev.state_dir(),
        &[
            "--manifest-url",
            &manifest,
            "--manifest-pubkey",
            &world.key.public,
            "--ca-file",
            &ca,
            "--json",
        ],
    );
    assert!(took < Duration::from_secs(10), "netcheck took {took:?}");
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr));
    (out.success(), report, out.stderr)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

fn via<'a>(hub: &'a Value, transport: &str) -> &'a Value {
    hub["via_relays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["transport"] == transport)
        .unwrap_or_else(|| panic!("no handshake via {transport} in {hub:#}"))
}

#[test]
fn netcheck_joins_through_the_tls_relay_when_only_tcp_443_is_let_out() {
    require_root!();
    let lab = Lab::new("nc-via-tls");
    let world = RelayWorld::new(&lab, RelayWorldConfig::new(HubKind::WireguardGo));
    world.allow_only_tcp_443();

    let (ok, report, stderr) = netcheck_on_dev(&world);
    assert!(
        ok,
        "the hub answers through the TLS relay: {report:#}\n{stderr}"
    );
    assert_eq!(report["can_join"], true);
    assert_eq!(report["not_checked"], serde_json::json!([]), "{report:#}");

    let hub = &report["hubs"][0];
    assert_eq!(hub["name"], "hub-1", "{report:#}");
    assert_eq!(hub["direct"], false, "UDP to the hub is blocked: {hub:#}");
    assert_eq!(hub["reachable"], true, "{hub:#}");
    let tls = via(hub, "tls");
    assert_eq!(tls["ok"], true, "{hub:#}");
    assert_eq!(tls["target"], format!("{}:443", TURN_ADDRS[0]));
    assert!(tls["rtt_ms"].as_f64().unwrap() > 0.0, "{tls:#}");
    // UDP and TCP 3478 are blocked too: those relays never allocate, so nothing is
    // tried through them.
    assert_eq!(hub["via_relays"].as_array().unwrap().len(), 1, "{hub:#}");
    for transport in ["udp", "tcp"] {
        let r = relay(&report, &format!("{}:3478", TURN_ADDRS[0]), transport);
        assert_eq!(r["ok"], false, "{r:#}");
    }

    // The table says the same: the direct failure is a warning, the relay an ok.
    let direct = check(&report, "hub hub-1");
    assert_eq!(direct["outcome"], "warn", "{direct:#}");
    assert!(
        direct["detail"]
            .as_str()
            .unwrap()
            .contains("reachable through a relay"),
        "{direct:#}"
    );
    let through = check(
        &report,
        &format!("hub hub-1 via relay {}:443 tls", TURN_ADDRS[0]),
    );
    assert_eq!(through["outcome"], "ok", "{through:#}");
    assert!(
        stderr.contains("then shaking hands with the hubs through them"),
        "progress: {stderr}"
    );
}

#[test]
fn netcheck_names_the_hub_and_the_relay_when_the_relay_works_but_the_hub_is_stopped() {
    require_root!();
    let lab = Lab::new("nc-via-nohub");
    let mut world = RelayWorld::new(&lab, RelayWorldConfig::new(HubKind::Edgewire));
    // With the hub up, every transport carries its handshake (and the direct path
    // does too).
    let (ok, report, stderr) = netcheck_on_dev(&world);
    assert!(ok, "{report:#}\n{stderr}");
    let hub = &report["hubs"][0];
    assert_eq!(hub["direct"], true, "{hub:#}");
    for transport in ["udp", "tcp", "tls"] {
        assert_eq!(via(hub, transport)["ok"], true, "{hub:#}");
    }

    let Hub::Edgewire(agent) = &mut world.hub else {
        unreachable!("an edgewire hub was asked for")
    };
    agent.stop();
    let (ok, report, stderr) = netcheck_on_dev(&world);
    assert!(!ok, "nothing answers: {report:#}\n{stderr}");
    assert_eq!(report["can_join"], false);
    let hub = &report["hubs"][0];
    assert_eq!(hub["reachable"], false, "{hub:#}");
    for (transport, port) in [("udp", 3478), ("tcp", 3478), ("tls", 443)] {
        // The relay itself works ...
        let target = format!("{}:{port}", TURN_ADDRS[0]);
        assert_eq!(relay(&report, &target, transport)["ok"], true, "{report:#}");
        // ... and the handshake through it fails, naming both.
        let c = check(
            &report,
            &format!("hub hub-1 via relay {target} {transport}"),
        );
        assert_eq!(c["outcome"], "fail", "{c:#}");
        let detail = c["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!(
                "hub hub-1 through relay {target} over {transport}: no handshake answer \
                 from {HUB_ADDR}:51820"
            )),
            "{detail}"
        );
        assert!(detail.contains("though the relay forwards"), "{detail}");
    }
}

#[test]
fn netcheck_with_the_agent_relayed_over_tls_reports_the_hub_reachable_through_that_relay() {
    require_root!();
    let lab = Lab::new("nc-via-agent");
    let mut world = RelayWorld::new(&lab, RelayWorldConfig::new(HubKind::WireguardGo));
    world.allow_only_tcp_443();
    world.start_dev();
    world.wait_dev_path("relay", Some("tls"), Duration::from_secs(20));

    // The agent's word is taken: netcheck shakes no hands of its own, which would move
    // the hub's idea of this device's endpoint away from the agent.
    let (ok, report, stderr) = netcheck_on_dev(&world);
    assert!(ok, "{report:#}\n{stderr}");
    assert!(!stderr.contains("shaking hands"), "{stderr}");
    let hub = &report["hubs"][0];
    assert_eq!(hub["direct"], Value::Null, "not tried: {hub:#}");
    assert_eq!(hub["reachable"], true, "{hub:#}");
    let tls = via(hub, "tls");
    assert_eq!(tls["ok"], true, "{hub:#}");
    assert_eq!(tls["target"], format!("{}:443", TURN_ADDRS[0]), "{hub:#}");
    let c = check(&report, "hub hub-1");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("through relay {}:443 over tls", TURN_ADDRS[0])),
        "{c:#}"
    );
}
