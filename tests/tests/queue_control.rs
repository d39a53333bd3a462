//! End-to-end: a device that encrypts and decrypts slower than a TCP flow through it
//! sends keeps the queues in front of it short by dropping from them (CoDel: on the UDP
//! socket's queue, agent/src/shell/codel.rs, and on the TUN's, timed by each segment's
//! timestamp, sent_wait.rs, or by the agent's own probes, ring_probe.rs), instead of
//! letting the flow stand its whole window there. The device runs the aarch64 build
//! under qemu-user, this machine's only way to a small board's pace (about 400 Mbit/s,
//! against several Gbit/s for the native hub); `scripts/test` builds it before the tests
//! (scripts/check-packaging).
//!
//! How short the queues get is a benchmark's figure, not asserted here (the machine is
//! shared); the test prints the pings and asserts that real kernel TCP, through a real
//! TUN and real sockets, is what the agent measured and dropped from.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgewire_lab::pingstream::{PingRecord, PingStream};
use edgewire_lab::worlds::{HubSites, hub_and_devs};
use edgewire_lab::*;

/// Long enough for an agent under qemu-user to start and shake hands.
const T: Duration = Duration::from_secs(60);
/// How long each transfer runs: the agent trusts a flow's timestamps after 1 s, and
/// CoDel drops only after a queue has stood 100 ms.
const SECONDS: &str = "8";

/// The static aarch64 build, where `scripts/build-arm` puts it.
fn aarch64_bin() -> PathBuf {
    let bin = target_dir().join("aarch64-unknown-linux-musl/release/edgewire");
    assert!(
        bin.is_file(),
        "no aarch64 build at {}: build it first with scripts/build-arm \
         aarch64-unknown-linux-musl (scripts/test does, before the tests)",
        bin.display()
    );
    bin
}

/// A CUBIC iperf3 from `client` to `server` at `dst` (`reverse`: from the server), with
/// a ping from `client` every 50 ms beside it; Mbit/s received and the pings.
fn cubic_with_pings(client: &Host, server: &Host, dst: &str, reverse: bool) -> (f64, PingRecord) {
    let direction: &[&str] = if reverse { &["-R"] } else { &[] };
    let (json, pings) = iperf_with_pings(client, server, dst, &[&["-C", "cubic"], direction]);
    let bits = json["end"]["sum_received"]["bits_per_second"].as_f64();
    (bits.expect("iperf3's received rate") / 1e6, pings)
}

/// A UDP iperf3 from `client` to `server` at `dst` at `rate`, with a ping every 50 ms
/// beside it; Mbit/s received and the pings.
fn udp_with_pings(client: &Host, server: &Host, dst: &str, rate: &str) -> (f64, PingRecord) {
    let udp = ["-u", "-b", rate, "-l", "1350"];
    let (json, pings) = iperf_with_pings(client, server, dst, &[&udp]);
    let sum = &json["end"]["sum"];
    let bits = sum["bits_per_second"].as_f64().expect("iperf3's rate");
    let lost = sum["lost_percent"].as_f64().unwrap_or(0.0);
    (bits * (1.0 - lost / 100.0) / 1e6, pings)
}

/// An iperf3 for `SECONDS` from `client` to a server on `server` at `dst`, with `args`,
/// and a ping from `client` every 50 ms beside it: iperf3's JSON report and the pings.
fn iperf_with_pings(
    client: &Host,
    server: &Host,
    dst: &str,
    args: &[&[&str]],
) -> (serde_json::Value, PingRecord) {
    let iperf = server.spawn("iperf3-server", &["iperf3", "-s", "-1", "-B", dst]);
    wait_for(
        "the iperf3 server to listen",
        Duration::from_secs(10),
        || {
            let out = server.exec(&["ss", "-Hltn", "sport", "=", ":5201"]);
            (!out.stdout.trim().is_empty()).then_some(())
        },
    );
    let pings = PingStream::start(client, dst, Duration::from_millis(50));
    let mut argv = vec!["iperf3", "-c", dst, "-t", SECONDS, "-J"];
    argv.extend(args.concat());
    let out = client.exec(&argv);
    let pings = pings.stop(Duration::from_secs(1));
    iperf.stop();
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 printed no JSON ({e}): {}{}", out.stdout, out.stderr));
    assert!(json["error"].is_null(), "iperf3: {}", json["error"]);
    (json, pings)
}

/// The pings' round trips in the flow's first 2 s (its slow start) and after: "avg /
/// max ms (n)" of each.
fn describe(pings: &PingRecord) -> String {
    let split = pings.started + Duration::from_secs(2);
    let part = |early: bool| {
        let mut rtts: Vec<Duration> = (pings.sent.iter().zip(&pings.answered))
            .filter(|(sent, _)| (**sent < split) == early)
            .filter_map(|(sent, answered)| answered.map(|a| a - *sent))
            .collect();
        rtts.sort();
        let Some(max) = rtts.last() else {
            return "no ping answered".to_string();
        };
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        format!(
            "{:.1} / {:.1} ms ({})",
            avg.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            rtts.len()
        )
    };
    format!(
        "pings avg / max in the first 2 s {}, after {}",
        part(true),
        part(false)
    )
}

#[test]
fn a_device_slower_than_its_flows_drops_from_its_queues_both_ways() {
    require_root!();
    let arm = aarch64_bin();
    let lab = Lab::new("slow-device");
    let world = HubSites::new(&lab, 1);
    let (hub_host, dev_host) = (&world.hub_host, &world.devs[0]);
    let mut hub = Agent::new(hub_host, "hub-1");
    let mut dev = Agent::new(dev_host, "dev-a");
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest =
        hub_and_devs(1, hub.public_key(), &[dev.public_key()]).build(&key, lab.dir(), "manifest");
    let url = manifest.to_string_lossy();
    hub.start(&url, &key.public);
    // The wrapper drops the native binary `start_args` puts after it and runs the
    // aarch64 one in its place, with the same arguments.
    let run_arm = format!("shift; exec qemu-aarch64-static {} \"$@\"", arm.display());
    let wrapper = ["sh", "-c", run_arm.as_str(), "sh"];
    dev.start_args(
        &wrapper,
        &["--manifest-url", &url, "--manifest-pubkey", &key.public],
    );
    let started = Instant::now();
    wait_for("the device under qemu to reach the hub", T, || {
        dev_host.ping("10.42.0.1", Duration::from_secs(2)).ok()
    });
    let idle = dev_host.ping("10.42.0.1", T).unwrap();
    eprintln!(
        "device up {:?} after start; idle ping {idle:?}",
        started.elapsed()
    );

    // An upload from the device: its TCP stands in the device's TUN queue. Twice: the
    // first flow proves the device's TCP clock, so the second is measured from its start.
    let (mbps, pings) = cubic_with_pings(dev_host, hub_host, "10.42.0.1", false);
    eprintln!(
        "first upload {mbps:.0} Mbit/s, {}; dropped {}",
        describe(&pings),
        dev.status().unwrap().drops.sent_queue_delay
    );
    let (mbps, pings) = cubic_with_pings(dev_host, hub_host, "10.42.0.1", false);
    let drops = dev.status().unwrap().drops;
    eprintln!(
        "upload {mbps:.0} Mbit/s, {}; TCP segments dropped from the TUN's queue: {}",
        describe(&pings),
        drops.sent_queue_delay
    );
    assert!(
        drops.sent_queue_delay > 0,
        "the device never dropped from a standing TUN queue ({mbps:.0} Mbit/s, {}):\n{}",
        describe(&pings),
        dev.log()
    );

    // A download to the device: the hub's datagrams stand in the device's UDP socket.
    // Their waits are read from the kernel's receive stamps, on the batched path and on
    // the one without offload (one datagram a call) alike.
    let (mbps, pings) = cubic_with_pings(dev_host, hub_host, "10.42.0.1", true);
    let drops = dev.status().unwrap().drops;
    eprintln!(
        "download {mbps:.0} Mbit/s, {}; data datagrams dropped from the UDP socket's \
         queue: {}",
        describe(&pings),
        drops.queue_delay
    );
    assert!(
        drops.queue_delay > 0,
        "the device never dropped from a standing UDP socket queue ({mbps:.0} Mbit/s, \
         {}):\n{}",
        describe(&pings),
        dev.log()
    );

    // An upload whose TCP carries no timestamps (Windows' default; here the device's
    // namespace turns them off): its wait is timed by the agent's probes through the
    // TUN's queue instead (ring_probe.rs).
    let before = drops.sent_queue_delay;
    dev_host.sysctl("net.ipv4.tcp_timestamps", "0");
    let (mbps, pings) = cubic_with_pings(dev_host, hub_host, "10.42.0.1", false);
    dev_host.sysctl("net.ipv4.tcp_timestamps", "1");
    let drops = dev.status().unwrap().drops;
    eprintln!(
        "upload without timestamps {mbps:.0} Mbit/s, {}; dropped from the TUN's queue: {}",
        describe(&pings),
        drops.sent_queue_delay - before
    );
    assert!(
        drops.sent_queue_delay > before,
        "the device's probes never timed a standing TUN queue of TCP without \
         timestamps ({mbps:.0} Mbit/s, {}):\n{}",
        describe(&pings),
        dev.log()
    );

    // A UDP upload, which carries no clock either. iperf3 does not slow down for a loss:
    // CoDel alone cannot shorten its queue, BLUE (blue.rs) drops a share of it as read.
    // The flood loses what the device cannot carry either way; with BLUE the agent
    // drops it, not the full ring (before BLUE: ring 77,000-118,000 in 8 s, CoDel 1,650).
    let before = drops.sent_queue_delay;
    let ring_before = drops.tun_queue_full.expect("the TUN's tx_dropped");
    let (mbps, pings) = udp_with_pings(dev_host, hub_host, "10.42.0.1", "400M");
    let drops = dev.status().unwrap().drops;
    let (dropped, ring) = (
        drops.sent_queue_delay - before,
        drops.tun_queue_full.unwrap() - ring_before,
    );
    eprintln!(
        "UDP upload at 400 Mbit/s: {mbps:.0} Mbit/s arrived, {}; dropped from the TUN's \
         queue: {dropped}, by the full ring: {ring}",
        describe(&pings),
    );
    assert!(
        dropped >= 10,
        "the device's probes never timed a standing TUN queue of UDP ({dropped} drops):\n{}",
        dev.log()
    );
    assert!(
        ring < dropped,
        "the full ring dropped more of the flood ({ring}) than the agent did ({dropped}): \
         its queue stood full:\n{}",
        dev.log()
    );
    assert_eq!(drops.bad_batch, 0);
}
