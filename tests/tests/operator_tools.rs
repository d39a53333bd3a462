//! End-to-end: the tools an operator already has work on an edgewire agent. `wg show`
//! and `wg showconf` (wireguard-tools, the real binary) read the agent's control socket
//! and print what they print for the wireguard-go hub on the other end; `wg set` is
//! refused; clients that misbehave on the socket never hold up the data plane.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);

/// Every lab agent names its interface ew0, and `wg` only looks in
/// /var/run/wireguard: the agent puts its socket in the test's own directory
/// (`--control-dir`), and `wg` runs in a mount namespace where that directory is
/// /var/run/wireguard. Nothing of the machine's /var/run/wireguard is touched.
fn wg(control_dir: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /var/run/wireguard && exec wg \"$@\"")
        .arg(control_dir)
        .args(args)
        .output()
        .expect("running unshare and wg")
}

fn wg_ok(control_dir: &Path, args: &[&str]) -> String {
    let out = wg(control_dir, args);
    assert!(
        out.status.success(),
        "wg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct World {
    _lab: Lab,
    a_host: Host,
    hub: WgDevice,
    dev_a: Agent,
    control_dir: PathBuf,
    /// The agent's manifest flags, for commands that take `run`'s settings.
    manifest_args: Vec<String>,
}

/// An edge on the WAN and a wireguard-go hub, with traffic between them; `extra` are
/// more flags for the agent.
fn world(name: &str, extra: &[&str]) -> World {
    world_with(name, extra, true)
}

fn world_with(name: &str, extra: &[&str], start: bool) -> World {
    let lab = Lab::new(name);
    let wan = lab.wan();
    let hub_host = lab.host("hub");
    wan.attach(&hub_host, "203.0.113.10/24");
    let a_host = lab.host("dev-a");
    wan.attach(&a_host, "198.51.100.20/24");
    let hub = WgDevice::wireguard_go(&hub_host, 51820);
    hub.address("10.42.0.1/16");
    let mut dev_a = Agent::new(&a_host, "dev-a");
    hub.add_peer(&WgPeerConfig {
        public_key: dev_a.public_key().into(),
        allowed_ips: vec!["10.42.1.1/32".into()],
        ..Default::default()
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
        .build(&key, lab.dir(), "manifest");
    let control_dir = lab.dir().join("run-wireguard");
    let manifest = manifest.to_string_lossy().into_owned();
    let control = control_dir.to_string_lossy().into_owned();
    let mut args = vec![
        "--manifest-url",
        &manifest,
        "--manifest-pubkey",
        &key.public,
        "--control-dir",
        &control,
    ];
    args.extend_from_slice(extra);
    if start {
        dev_a.start_args(&[], &args);
        a_host.ping("10.42.0.1", T).unwrap();
    }
    World {
        manifest_args: args.iter().map(|a| a.to_string()).collect(),
        _lab: lab,
        a_host,
        hub,
        dev_a,
        control_dir,
    }
}

#[test]
fn wg_show_and_showconf_print_the_agents_peer_as_the_wireguard_go_hub_sees_the_agent() {
    require_root!();
    let w = world("ops-wg-show", &[]);
    let socket = w.control_dir.join(format!("{AGENT_IFACE}.sock"));
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "as wireguard-go's"
    );
    let dir_mode = std::fs::metadata(&w.control_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o755);

    let ours = wait_for("a handshake in wg show dump", T, || {
        let dump = wg_ok(&w.control_dir, &["show", AGENT_IFACE, "dump"]);
        let lines: Vec<String> = dump.lines().map(str::to_owned).collect();
        let handshake = lines.get(1)?.split('\t').nth(4)?.parse::<u64>().ok()?;
        (handshake > 0).then_some(lines)
    });
    // The interface line: no private key is ever given out, so wg knows no public one.
    assert_eq!(ours[0], "(none)\t(none)\t51820\toff", "{ours:?}");
    let peer: Vec<&str> = ours[1].split('\t').collect();
    assert_eq!(peer[0], w.hub.public_key());
    assert_eq!(peer[1], "(none)", "no preshared key is given out either");
    assert_eq!(peer[2], "203.0.113.10:51820");
    assert_eq!(
        peer[3], "10.42.0.1/32,10.42.0.0/16",
        "the hub carries the overlay"
    );
    assert_eq!(peer[7], "25");
    let (our_rx, our_tx): (u64, u64) = (peer[5].parse().unwrap(), peer[6].parse().unwrap());
    assert!(our_rx > 0 && our_tx > 0, "{peer:?}");

    // The hub's wireguard-go counts the same datagrams from its side.
    let theirs = w.hub.peer_stat(w.dev_a.public_key()).unwrap();
    let close = |a: u64, b: u64| a.abs_diff(b) <= 256 + a / 10;
    assert!(
        close(our_tx, theirs.rx_bytes) && close(our_rx, theirs.tx_bytes),
        "ours rx {our_rx} tx {our_tx}, hub's rx {} tx {}",
        theirs.rx_bytes,
        theirs.tx_bytes
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let handshake: u64 = peer[4].parse().unwrap();
    assert!(
        handshake <= now && now - handshake < 60,
        "{handshake} vs {now}"
    );

    let show = wg_ok(&w.control_dir, &["show", AGENT_IFACE]);
    eprintln!("wg show {AGENT_IFACE}:\n{show}");
    assert!(
        show.contains("interface: ew0\n  listening port: 51820"),
        "{show}"
    );
    assert!(!show.contains("private key"), "{show}");
    assert!(
        show.contains("persistent keepalive: every 25 seconds"),
        "{show}"
    );

    let conf = wg_ok(&w.control_dir, &["showconf", AGENT_IFACE]);
    let expected_peer = format!(
        "[Peer]\nPublicKey = {}\nAllowedIPs = 10.42.0.1/32, 10.42.0.0/16\n\
         Endpoint = 203.0.113.10:51820\nPersistentKeepalive = 25\n",
        w.hub.public_key()
    );
    assert_eq!(
        conf,
        format!("[Interface]\nListenPort = 51820\n\n{expected_peer}"),
        "{conf}"
    );
}

#[test]
fn wg_set_is_refused_and_bad_clients_are_dropped_without_stalling_the_agent() {
    require_root!();
    let w = world("ops-wg-set", &[]);
    let out = wg(&w.control_dir, &["set", AGENT_IFACE, "listen-port", "4242"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    w.dev_a
        .wait_log("the signed manifest is the source of truth", T)
        .expect("the refusal is logged");
    assert!(wg_ok(&w.control_dir, &["show", AGENT_IFACE, "listen-port"]).contains("51820"));

    let socket = w.control_dir.join(format!("{AGENT_IFACE}.sock"));
    // One that never sends, one that asks and never reads, one with garbage, one with a
    // line far past any request.
    let _silent = UnixStream::connect(&socket).unwrap();
    let mut deaf = UnixStream::connect(&socket).unwrap();
    deaf.write_all(b"get=1\n\n").unwrap();
    let mut garbage = UnixStream::connect(&socket).unwrap();
    garbage
        .write_all(b"\x00\xffGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut huge = UnixStream::connect(&socket).unwrap();
    huge.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let line = vec![b'a'; 256 * 1024];
    let _ = huge
        .write_all(b"set=1\n")
        .and_then(|_| huge.write_all(&line));

    // Meanwhile the data plane and the socket go on.
    w.a_host.ping("10.42.0.1", T).unwrap();
    assert!(wg_ok(&w.control_dir, &["show", AGENT_IFACE]).contains("peer: "));
    for (name, stream) in [("garbage", &mut garbage), ("huge", &mut huge)] {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{name}: closed without an answer");
    }
    assert!(w.dev_a.is_running());
}

/// `name{labels} value` lines of a scrape, by their whole series name.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_metrics_file_and_endpoint_count_the_traffic_a_ping_caused() {
    require_root!();
    let dir = std::env::temp_dir().join(format!("ew-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("edgewire.prom");
    let file_arg = file.to_string_lossy().into_owned();
    let w = world(
        "ops-metrics",
        &[
            "--metrics-file",
            &file_arg,
            "--metrics-interval",
            "1",
            "--metrics-listen",
            "127.0.0.1:9586",
        ],
    );
    let tx = "edgewire_peer_transmit_bytes_total{peer=\"hub-1\",role=\"hub\"}";
    let rx = "edgewire_peer_receive_bytes_total{peer=\"hub-1\",role=\"hub\"}";
    let scrape = || samples(&std::fs::read_to_string(&file).unwrap_or_default());
    let before = wait_for("a metrics file with hub-1", T, || scrape().get(tx).copied());
    // 20 echo requests of 1000 bytes: each is a WireGuard datagram of more than that.
    w.a_host.run(&[
        "ping",
        "-q",
        "-c",
        "20",
        "-i",
        "0.05",
        "-s",
        "1000",
        "-W",
        "2",
        "10.42.0.1",
    ]);
    let after = wait_for("the ping counted in the metrics file", T, || {
        let s = scrape();
        (s.get(tx).copied()? >= before + 20_000.0).then_some(s)
    });
    assert!(after[rx] >= 20_000.0, "{after:?}");
    // The same datagrams as the wireguard-go hub counts them from its side.
    let hub = w.hub.peer_stat(w.dev_a.public_key()).unwrap();
    let close = |ours: f64, theirs: u64| (ours - theirs as f64).abs() <= 512.0 + ours / 10.0;
    assert!(
        close(after[tx], hub.rx_bytes) && close(after[rx], hub.tx_bytes),
        "ours tx {} rx {}; hub rx {} tx {}",
        after[tx],
        after[rx],
        hub.rx_bytes,
        hub.tx_bytes
    );
    assert_eq!(
        after["edgewire_peer_path{peer=\"hub-1\",path=\"direct\"}"],
        1.0
    );
    assert_eq!(
        after["edgewire_peer_path{peer=\"hub-1\",path=\"relay\"}"],
        0.0
    );
    assert_eq!(after["edgewire_peer_up{peer=\"hub-1\",role=\"hub\"}"], 1.0);
    assert_eq!(after["edgewire_manifest_serial{network=\"lab\"}"], 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let handshake =
        after["edgewire_peer_last_handshake_timestamp_seconds{peer=\"hub-1\",role=\"hub\"}"];
    assert!(now - handshake < 60.0, "{handshake} vs {now}");
    let started = after["process_start_time_seconds"];
    assert!(now - started < 120.0 && started <= now, "{started}");
    let rss = after["process_resident_memory_bytes"];
    assert!(rss > 1e6 && rss < 64e6, "{rss}");
    // How packets move, as `scripts/test` asks in this run (its second pass turns
    // batching and offload off); this kind of machine's kernel (6.2+) offloads UDP on a
    // TUN too.
    let path = if offload_off() {
        "udp_send=\"single\",udp_receive=\"single\",tun_offload=\"off\",tun_udp_offload=\"off\""
    } else {
        "udp_send=\"gso\",udp_receive=\"gro\",tun_offload=\"on\",tun_udp_offload=\"on\""
    };
    assert_eq!(
        after.get(&format!("edgewire_data_path_info{{{path}}}")),
        Some(&1.0),
        "{after:?}"
    );

    // The same text over HTTP, from inside the agent's namespace.
    let http = w.a_host.run(&[
        "bash",
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/9586 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
    ]);
    eprintln!("{http}");
    assert!(http.starts_with("HTTP/1.1 200 OK\r\n"), "{http}");
    assert!(http.contains("text/plain; version=0.0.4"), "{http}");
    assert!(samples(&http).contains_key(tx), "{http}");
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `edgewire status --json` as a JSON value, for the fields the lab's `Status` predates.
fn status_json(agent: &Agent) -> Option<serde_json::Value> {
    let bin = edgewire_bin();
    let state_dir = agent.state_dir().to_string_lossy().into_owned();
    let out = agent.host().exec(&[
        &bin.to_string_lossy(),
        "status",
        "--json",
        "--state-dir",
        &state_dir,
    ]);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

#[test]
fn status_shows_version_uptime_and_polls_and_never_a_dead_hub_as_via() {
    require_root!();
    let w = world("ops-status", &[]);
    let up = wait_for("status with the hub carrying the overlay", T, || {
        status_json(&w.dev_a).filter(|s| s["overlay_via"] == "hub-1")
    });
    assert_eq!(up["overlay_hub"]["carrying"], true, "{up:#}");
    assert!(
        up["version"].as_str().unwrap().starts_with("edgewire "),
        "{up:#}"
    );
    assert!(up["manifest_poll"]["last_poll_secs"].is_u64(), "{up:#}");
    assert_eq!(up["manifest_poll"]["interval_secs"], 30);
    assert_eq!(up["peers"][0]["keepalive_secs"], 25);
    let text = w.dev_a.status_text().unwrap();
    for want in [
        "agent:     edgewire ",
        ", up ",
        "polled ",
        "overlay:   via hub-1 (",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    assert!(
        text.contains(" B received") || text.contains(" KiB received"),
        "{text}"
    );

    // The hub dies; traffic toward it finds out.
    w.hub.proc().stop();
    let down = wait_for("hub-1 judged down", Duration::from_secs(60), || {
        let _ = w.a_host.ping_once("10.42.0.1");
        status_json(&w.dev_a).filter(|s| s["overlay_hub"]["health"] == "down")
    });
    assert_eq!(down["overlay_via"], serde_json::Value::Null, "{down:#}");
    assert_eq!(down["overlay_hub"]["carrying"], false, "{down:#}");
    let text = w.dev_a.status_text().unwrap();
    assert!(!text.contains("via hub-1"), "{text}");
    assert!(
        text.contains("overlay:   no hub carries it: hub-1 is down, retrying"),
        "{text}"
    );
}

/// `edgewire netcheck` on the agent's host, with the agent's settings.
fn netcheck(w: &World, json: bool) -> (bool, String) {
    // The manifest URL and key; not --control-dir, which is run's alone.
    let args: Vec<&str> = w.manifest_args[..4].iter().map(String::as_str).collect();
    netcheck_with(w, &args, json)
}

fn netcheck_with(w: &World, args: &[&str], json: bool) -> (bool, String) {
    let mut argv = args.to_vec();
    if json {
        argv.push("--json");
    }
    let (out, took) = run_netcheck(&w.a_host, w.dev_a.state_dir(), &argv);
    assert!(took < Duration::from_secs(10), "netcheck took {took:?}");
    let ok = out.success();
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    (ok, text)
}

#[test]
fn netcheck_shakes_hands_with_the_hub_itself_and_fails_on_its_own_when_the_hub_is_gone() {
    require_root!();
    let w = world_with("ops-netcheck", &[], false);
    let (ok, out) = netcheck(&w, false);
    assert!(ok, "{out}");
    for want in [
        "ok    /dev/net/tun",
        "ok    CAP_NET_ADMIN",
        "-     agent",
        "ok    manifest URL     ",
        "serial 1",
        "ok    hub hub-1        203.0.113.10:51820: handshake answered in ",
        "result: this device can join its overlay",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }

    w.hub.proc().stop();
    let (ok, json) = netcheck(&w, true);
    assert!(!ok, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["can_join"], false);
    let hub = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hub hub-1")
        .unwrap();
    assert_eq!(hub["outcome"], "fail", "{hub}");
    assert!(
        hub["detail"]
            .as_str()
            .unwrap()
            .contains("no handshake answer within 3 s")
    );
}

#[test]
fn netcheck_asks_a_running_agent_about_its_hubs() {
    require_root!();
    let w = world("ops-netcheck-agent", &[]);
    w.dev_a.wait_status("hub-1 up", T, |s| {
        s.peer("hub-1").is_some_and(|p| p.health == "up")
    });
    let (ok, out) = netcheck(&w, false);
    assert!(ok, "{out}");
    assert!(out.contains("ok    agent            running: "), "{out}");
    assert!(
        out.contains("ok    hub hub-1        up per the running agent"),
        "{out}"
    );
}

/// The cached copy's check and its `--json` entry, from one netcheck run.
fn cached_manifest(w: &World) -> (serde_json::Value, serde_json::Value) {
    let (_, json) = netcheck(w, true);
    let report: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cached manifest")
        .unwrap_or_else(|| panic!("no cached manifest check in {report:#}"))
        .clone();
    (check, report["cached_manifest"].clone())
}

#[test]
fn netcheck_reports_the_cached_manifests_serial_and_age_while_the_agent_runs_and_after() {
    require_root!();
    let test_start = std::time::Instant::now();
    let mut w = world("ops-nc-cache", &[]);
    let cache = w.dev_a.state_dir().join("manifest.cache");
    // The agent caches what it accepted before it says so in status.
    w.dev_a.wait_status("manifest serial 1 in force", T, |s| {
        s.manifest.as_ref().is_some_and(|m| m.serial == 1)
    });
    wait_for("the cached manifest", T, || cache.exists().then_some(()));
    let plausible = |entry: &serde_json::Value| {
        assert_eq!(entry["serial"], 1, "{entry:#}");
        assert_eq!(entry["network"], "lab", "{entry:#}");
        assert_eq!(entry["path"], cache.to_string_lossy().as_ref(), "{entry:#}");
        let age = entry["age_secs"].as_u64().expect("an age");
        // Written during this test, so no older than the test.
        assert!(age <= test_start.elapsed().as_secs(), "{entry:#}");
        age
    };

    let (check, entry) = cached_manifest(&w);
    assert_eq!(check["outcome"], "ok", "{check:#}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .starts_with("network \"lab\" serial 1, "),
        "{check:#}"
    );
    let running_age = plausible(&entry);

    w.dev_a.stop();
    assert!(!w.dev_a.is_running());
    let (check, entry) = cached_manifest(&w);
    assert_eq!(check["outcome"], "ok", "{check:#}");
    let stopped_age = plausible(&entry);
    assert!(stopped_age >= running_age, "{entry:#}");
    // The age counts from the write (the file's mtime), not from the netcheck run: it
    // grows while nothing rewrites the copy.
    wait_for("the cached copy's age to grow by a second", T, || {
        let (_, entry) = cached_manifest(&w);
        Some(plausible(&entry)).filter(|&age| age > running_age)
    });
}

/// An edge behind a NAT of `kind`, a wireguard-go hub and two coturn relays on the WAN;
/// `edgewire netcheck` (no agent running) classifies the NAT from the relays' STUN.
fn netcheck_behind(name: &str, kind: NatKind) -> serde_json::Value {
    let lab = Lab::new(name);
    let wan = lab.wan();
    let hub_host = lab.host("hub");
    wan.attach(&hub_host, "203.0.113.10/24");
    let site = wan.nat_router_with("nat-a", "198.51.100.2/24", "192.168.10.1/24", kind);
    let a_host = site.host("dev-a", "192.168.10.2/24");
    let hub = WgDevice::wireguard_go(&hub_host, 51820);
    hub.address("10.42.0.1/16");
    let dev_a = Agent::new(&a_host, "dev-a");
    hub.add_peer(&WgPeerConfig {
        public_key: dev_a.public_key().into(),
        allowed_ips: vec!["10.42.1.1/32".into()],
        ..Default::default()
    });
    let mut relays = Vec::new();
    for (i, addr) in ["203.0.113.20", "203.0.113.21"].iter().enumerate() {
        let host = lab.host(&format!("turn-{i}"));
        wan.attach(&host, &format!("{addr}/24"));
        relays.push((
            Coturn::start(&host, addr, &CoturnConfig::long_term("u", "p", "lab")),
            host,
        ));
    }
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = ManifestSource::new("lab", 1)
        .node(
            NodeSource::hub("hub-1", hub.public_key(), "10.42.0.1/32")
                .endpoint("203.0.113.10:51820"),
        )
        .node(NodeSource::edge(
            "dev-a",
            dev_a.public_key(),
            "site-a",
            "10.42.1.1/32",
        ))
        .relay("turn:203.0.113.20:3478?transport=udp", "u", "p")
        .relay("turn:203.0.113.21:3478?transport=udp", "u", "p")
        .build(&key, lab.dir(), "manifest");
    let manifest = manifest.to_string_lossy().into_owned();
    let (out, _) = run_netcheck(
        &a_host,
        dev_a.state_dir(),
        &[
            "--manifest-url",
            &manifest,
            "--manifest-pubkey",
            &key.public,
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr));
    assert!(out.success(), "the hub answers: {report:#}");
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "NAT")
        .cloned()
        .unwrap_or_else(|| panic!("no NAT check: {report:#}"))
}

#[test]
fn netcheck_classifies_a_masquerade_nat_as_endpoint_independent() {
    require_root!();
    let nat = netcheck_behind("ops-nat-eim", NatKind::Masquerade);
    assert_eq!(nat["outcome"], "ok", "{nat}");
    let detail = nat["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("endpoint-independent mapping") && detail.contains("198.51.100.2:"),
        "{detail}"
    );
}

#[test]
fn netcheck_classifies_a_random_port_nat_as_endpoint_dependent() {
    require_root!();
    let nat = netcheck_behind("ops-nat-edm", NatKind::RandomFully);
    assert_eq!(nat["outcome"], "warn", "{nat}");
    assert!(
        nat["detail"]
            .as_str()
            .unwrap()
            .starts_with("endpoint-dependent mapping"),
        "{nat}"
    );
}

#[test]
fn netcheck_against_a_dead_manifest_server_names_the_step_that_failed_within_its_deadline() {
    require_root!();
    let w = world_with("ops-netcheck-dead", &[], false);
    let key = w.manifest_args[3].clone();
    let (ok, out) = netcheck_with(
        &w,
        &[
            "--manifest-url",
            "https://203.0.113.99/lab.ewm",
            "--manifest-pubkey",
            &key,
        ],
        false,
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("ok    manifest DNS     203.0.113.99: 203.0.113.99"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  manifest TCP     203.0.113.99:443: "),
        "{out}"
    );
    assert!(
        !out.contains("manifest URL"),
        "no fetch after TCP failed: {out}"
    );
    assert!(
        out.contains("result: this device cannot join its overlay"),
        "{out}"
    );
}

/// SIGHUP polls the manifest at once, every time it is sent (the signal pipe is waited
/// on for readiness and drained, so a second signal must wake the loop again), and the
/// status socket keeps answering between them.
#[test]
fn every_sighup_polls_the_manifest_and_the_status_socket_answers_between() {
    let w = world("ops-sighup", &[]);
    let polls = || w.dev_a.log().matches("SIGHUP: polling").count();
    assert_eq!(polls(), 0, "no SIGHUP sent yet:\n{}", w.dev_a.log());
    for sent in 1..=3 {
        w.dev_a.proc().signal(libc::SIGHUP);
        wait_for(&format!("poll number {sent} after SIGHUP"), T, || {
            (polls() >= sent).then_some(())
        });
        let status = w.dev_a.status().expect("the status socket answers");
        assert!(!status.peers.is_empty(), "after SIGHUP {sent}: {status:?}");
    }
    // Still moving packets: nothing in the loop was left waiting on the wrong thing.
    w.a_host.ping("10.42.0.1", T).unwrap();
}
