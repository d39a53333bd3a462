//! Figures for relay fallback (a benchmark command, not a test), each printed with
//! how it was measured, in the world of `edgewire_lab::relaylab` (an edge behind a NAT
//! router that is also its firewall, a hub on the wan, coturn 4.6.1 on another address):
//!
//! - a: time from `edgewire run` to the first ping answered over the overlay when direct
//!   UDP to the hub is blocked from the start: relay over UDP; over TLS (every UDP packet
//!   dropped, only TCP 443 out); and, to compare, direct with nothing blocked;
//! - b: the longest gap in a 10/s ping when the direct path dies mid-stream (iptables
//!   DROP of UDP between the edge's LAN and the hub, both ways);
//! - c: the time to return to direct after the block is lifted, at several phases of the
//!   20 s direct probe;
//! - d: iperf3 TCP throughput, edge → edgewire hub, direct vs relayed over UDP vs over TLS;
//! - e: the longest gap in a 10/s ping when the relay in use is killed and a second
//!   relay is there to take over.
//!
//! Targets: first packet through the relay within 2 s of start; at most 5 s of
//! lost pings when a direct path dies; back to direct within 30 s of it working again.
//!
//! Run as root, after `cargo build --release -p edgewire`:
//! `cargo run --release -p edgewire-lab --bin figures_relay -- [--runs N] [--seconds S]
//! [--only a,b,c,d,e]`. It measures the release agent; `EDGEWIRE_BIN` overrides.

use std::time::{Duration, Instant};

use edgewire_lab::pingstream::PingStream;
use edgewire_lab::relaylab::*;
use edgewire_lab::*;

const T: Duration = Duration::from_secs(30);

struct Args {
    runs: usize,
    seconds: u32,
    only: Vec<String>,
}

fn main() {
    if !is_root() {
        eprintln!("figures_relay: needs root to create network namespaces");
        std::process::exit(2);
    }
    // Debug logs cost time on every packet: measure what a device runs. The agents read
    // this when they start; set now, while this process has one thread.
    if std::env::var_os("EDGEWIRE_LOG").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("EDGEWIRE_LOG", "info") };
    }
    Lab::install_panic_cleanup();
    let args = parse_args();
    use_edgewire_profile("release");
    let bin = edgewire_bin();
    println!("edgewire relay figures (issue 4, item 7)");
    println!("agent: {}", bin.display());
    println!("{}", edgewire_lab::figures::host_line());
    println!(
        "lab: network namespaces joined by veths; the edge behind a MASQUERADE router whose \
         FORWARD chain blocks; coturn 4.6.1 (UDP/TCP 3478, TLS 443); a new lab per run\n"
    );
    let only = |k: &str| args.only.iter().any(|o| o == k);
    if only("a") {
        first_ping(args.runs);
    }
    if only("b") {
        direct_dies(args.runs.min(5));
    }
    if only("c") {
        back_to_direct(args.runs.min(4));
    }
    if only("d") {
        throughput(args.seconds);
    }
    if only("e") {
        relay_dies(args.runs.min(5));
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 5,
        seconds: 10,
        only: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
    };
    let mut it = std::env::args().skip(1);
    let positive = |v: Option<String>, flag: &str| -> usize {
        v.and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{flag} takes a positive number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = positive(it.next(), "--runs"),
            "--seconds" => args.seconds = positive(it.next(), "--seconds") as u32,
            "--only" => {
                args.only = it
                    .next()
                    .expect("--only takes a comma-separated list of a, b, c, d, e")
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            other => {
                eprintln!(
                    "figures_relay: unknown argument {other:?}\n\
                     usage: figures_relay [--runs N] [--seconds S] [--only a,b,c,d,e]"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// "min …, median …, max …" of some durations, formatted with `f`.
fn summary(v: Vec<Duration>, f: fn(Duration) -> String) -> String {
    let runs = v.len();
    let (min, median, max) = edgewire_lab::figures::min_median_max(v);
    format!(
        "min {}, median {}, max {} ({runs} runs)",
        f(min),
        f(median),
        f(max)
    )
}

// ---------------------------------------------------------------- a: first ping

#[derive(Clone, Copy, PartialEq)]
enum Block {
    None,
    UdpToHub,
    OnlyTcp443,
}

fn first_ping(runs: usize) {
    println!(
        "a. time from spawning `edgewire run` on the edge to the first answer from the hub's \
         overlay address (a ping every 10 ms, started just before the spawn); a new lab, hub \
         and coturn per run, the hub already up"
    );
    let cases = [
        ("direct, nothing blocked", Block::None, "direct", None),
        (
            "relay over UDP, UDP to the hub dropped",
            Block::UdpToHub,
            "relay",
            Some("udp"),
        ),
        (
            "relay over TLS, only TCP 443 out",
            Block::OnlyTcp443,
            "relay",
            Some("tls"),
        ),
    ];
    for (label, block, path, transport) in cases {
        let mut times = Vec::new();
        for run in 0..runs {
            let lab = Lab::new("fig-a");
            let mut w = RelayWorld::new(&lab, RelayWorldConfig::new(HubKind::Edgewire));
            match block {
                Block::None => {}
                Block::UdpToHub => w.block_udp_to_hub(),
                Block::OnlyTcp443 => w.allow_only_tcp_443(),
            }
            let stream = PingStream::start(&w.dev_host, HUB_OVERLAY, Duration::from_millis(10));
            let spawned = Instant::now();
            w.start_dev();
            let first = wait_for("the first answer over the overlay", T, || {
                stream.snapshot().first_answer_at()
            });
            let p = w.wait_dev_path(path, transport, T);
            let took = first.duration_since(spawned);
            println!(
                "   {label}, run {}: {} (status: path {}, relay {})",
                run + 1,
                ms(took),
                p.path.as_deref().unwrap_or("-"),
                p.relay.as_deref().unwrap_or("-")
            );
            times.push(took);
        }
        println!("   {label}: {}", summary(times, ms));
    }
    println!("   target: first packet through the relay within 2 s of start\n");
}

// ---------------------------------------------------------------- b: direct dies

fn direct_dies(runs: usize) {
    println!(
        "b. a ping every 100 ms on the direct path; then UDP between the edge's LAN and the \
         hub is dropped (both ways, at the NAT router); silence = the longest time between \
         two answers in a row; lost = unanswered pings sent more than 1 s before the end; \
         the edge moves to the relay over UDP"
    );
    for hub in [HubKind::Edgewire, HubKind::WireguardGo] {
        let mut gaps = Vec::new();
        for run in 0..runs {
            let lab = Lab::new("fig-b");
            let mut w = RelayWorld::new(&lab, RelayWorldConfig::new(hub).tls(false));
            w.start_dev();
            w.wait_dev_path("direct", None, T);
            w.dev_host.ping(HUB_OVERLAY, T).unwrap();
            let stream = PingStream::start(&w.dev_host, HUB_OVERLAY, Duration::from_millis(100));
            let t0 = Instant::now();
            wait_for("20 answers on the direct path", T, || {
                (stream.snapshot().answers_after(t0) >= 20).then_some(())
            });
            w.block_udp_to_hub();
            let blocked = Instant::now();
            w.wait_dev_path("relay", Some("udp"), T);
            wait_for("30 answers over the relay", T, || {
                (stream.snapshot().answers_after(blocked) >= 30).then_some(())
            });
            let record = stream.stop(Duration::from_millis(500));
            let gap = record.longest_silence().map(|g| g.0).unwrap_or_default();
            let end = Instant::now();
            println!(
                "   {}, run {}: silence {}, {} of {} pings lost",
                w.hub.describe(),
                run + 1,
                ms(gap),
                record.lost(end, Duration::from_secs(1)),
                record.judged(end, Duration::from_secs(1)),
            );
            gaps.push(gap);
        }
        let name = match hub {
            HubKind::Edgewire => "edgewire hub",
            HubKind::WireguardGo => "wireguard-go hub",
        };
        println!("   {name}: silence {}", summary(gaps, ms));
    }
    println!("   target: at most 5 s of lost pings when a direct path dies\n");
}

// ---------------------------------------------------------------- c: back to direct

fn back_to_direct(runs: usize) {
    println!(
        "c. the edge relayed over UDP (UDP to the hub dropped from the start); the block is \
         lifted at a different point of the 20 s direct-probe cycle each run (0, 5, 10, 15 s \
         after the edge went to the relay, by a deliberate sleep); measured from the lift to \
         the edge's status showing path=direct, and to the hub sending to the NAT's address \
         again (edgewire hub's own status)"
    );
    let mut edge_times = Vec::new();
    for run in 0..runs {
        let lab = Lab::new("fig-c");
        let mut w = RelayWorld::new(&lab, RelayWorldConfig::new(HubKind::Edgewire).tls(false));
        w.block_udp_to_hub();
        w.start_dev();
        w.wait_dev_path("relay", Some("udp"), T);
        let relayed = Instant::now();
        // The probe phase is what this figure varies: sleeping is the measurement design.
        let offset = Duration::from_secs(20) * run as u32 / runs as u32;
        std::thread::sleep(offset.saturating_sub(relayed.elapsed()));
        w.lift_blocks();
        let lifted = Instant::now();
        w.wait_dev_path("direct", None, Duration::from_secs(40));
        let edge = lifted.elapsed();
        let hub = w
            .wait_hub_sees(&format!("{NAT_PUBLIC}:"), T)
            .map(|_| secs(lifted.elapsed()))
            .unwrap_or_else(|e| e);
        println!(
            "   lifted {} after the switch to the relay: edge direct after {}, hub after {}",
            secs(offset),
            secs(edge),
            hub
        );
        edge_times.push(edge);
    }
    println!("   edge back to direct: {}", summary(edge_times, secs));
    println!("   target: back to direct within 30 s of it working again\n");
}

// ---------------------------------------------------------------- d: throughput

fn throughput(seconds: u32) {
    println!(
        "d. iperf3 TCP, 1 stream, {seconds} s, edge → edgewire hub over the overlay \
         (receiver's figure); the relay is coturn on a third host"
    );
    let cases = [
        ("direct", Block::None, "direct", None),
        ("relay over UDP", Block::UdpToHub, "relay", Some("udp")),
        ("relay over TLS", Block::OnlyTcp443, "relay", Some("tls")),
    ];
    for (label, block, path, transport) in cases {
        let lab = Lab::new("fig-d");
        let mut w = RelayWorld::new(&lab, RelayWorldConfig::new(HubKind::Edgewire));
        match block {
            Block::None => {}
            Block::UdpToHub => w.block_udp_to_hub(),
            Block::OnlyTcp443 => w.allow_only_tcp_443(),
        }
        w.start_dev();
        w.dev_host.ping(HUB_OVERLAY, T).unwrap();
        w.wait_dev_path(path, transport, T);
        let result = iperf(&w.dev_host, &w.hub_host, HUB_OVERLAY, seconds);
        let p = w.dev_hub().expect("hub-1 in status");
        let still = if p.path.as_deref() == Some(path)
            && transport.is_none_or(|t| p.relay_transport.as_deref() == Some(t))
        {
            String::new()
        } else {
            format!(" (path changed during the run: {p:?})")
        };
        match result {
            Ok(mbps) => println!("   {label:<16} {mbps:>7.1} Mbit/s{still}"),
            Err(e) => println!("   {label:<16} failed: {e}"),
        }
    }
    println!();
}

/// iperf3 from `client` to a one-off server on `server` at `dst`; Mbit/s received.
fn iperf(client: &Host, server: &Host, dst: &str, seconds: u32) -> Result<f64, String> {
    let proc = server.spawn("iperf3-server", &["iperf3", "-s", "-1", "-B", dst]);
    poll_until(Duration::from_secs(10), || {
        let out = server.exec(&["ss", "-Hltn", "sport", "=", ":5201"]);
        (!out.stdout.trim().is_empty()).then_some(())
    })
    .ok_or_else(|| format!("iperf3 server did not start: {}", proc.log()))?;
    let secs = seconds.to_string();
    let out = client.exec(&["iperf3", "-c", dst, "-t", &secs, "-J"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("iperf3 printed no JSON ({e}): {}{}", out.stdout, out.stderr))?;
    if let Some(err) = json["error"].as_str() {
        return Err(format!("iperf3: {err}"));
    }
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e6)
        .ok_or_else(|| format!("no throughput in iperf3's JSON: {}", out.stdout))
}

// ---------------------------------------------------------------- e: relay dies

fn relay_dies(runs: usize) {
    println!(
        "e. UDP to the hub dropped, two coturns; a ping every 100 ms over the relay in use; \
         that coturn is killed (SIGKILL); silence as in b; the edge moves to the other relay"
    );
    let mut gaps = Vec::new();
    for run in 0..runs {
        let lab = Lab::new("fig-e");
        let config = RelayWorldConfig::new(HubKind::Edgewire)
            .relays(2)
            .tls(false);
        let mut w = RelayWorld::new(&lab, config);
        w.block_udp_to_hub();
        w.start_dev();
        let p = w.wait_dev_path("relay", Some("udp"), T);
        let used = p
            .relay
            .as_deref()
            .and_then(RelayWorld::relay_index)
            .expect("status names a known relay");
        w.dev_host.ping(HUB_OVERLAY, T).unwrap();
        let stream = PingStream::start(&w.dev_host, HUB_OVERLAY, Duration::from_millis(100));
        let t0 = Instant::now();
        wait_for("20 answers over the first relay", T, || {
            (stream.snapshot().answers_after(t0) >= 20).then_some(())
        });
        let switches_before = w.dev.log().matches("path switched to").count();
        w.kill_relay(used);
        let killed = Instant::now();
        wait_for("30 answers over the other relay", T, || {
            (stream.snapshot().answers_after(killed) >= 30).then_some(())
        });
        let record = stream.stop(Duration::from_millis(500));
        let gap = record.longest_silence().map(|g| g.0).unwrap_or_default();
        let end = Instant::now();
        let log = w.dev.log();
        let route: Vec<String> = log
            .lines()
            .filter(|l| l.contains("path switched to"))
            .skip(switches_before)
            .map(|l| {
                let to = l.split("path switched to ").nth(1).unwrap_or(l);
                to.split(": ").next().unwrap_or(to).to_owned()
            })
            .collect();
        println!(
            "   run {}: relay #{used} killed: silence {}, {} of {} pings lost; switches: {}",
            run + 1,
            ms(gap),
            record.lost(end, Duration::from_secs(1)),
            record.judged(end, Duration::from_secs(1)),
            route.join(" → ")
        );
        gaps.push(gap);
    }
    println!("   relay killed: silence {}\n", summary(gaps, ms));
}
