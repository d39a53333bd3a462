//! Figures for the manifest lifecycle (a benchmark command, not a test), each printed with
//! how it was measured:
//!
//! - a: time from `edgewire run` to the first ping answered over the overlay, booting from
//!   the cache with the manifest server down; and, to compare, with the server up and no
//!   cache;
//! - b: bytes on the wire per poll when the manifest has not changed (iptables counters on
//!   TCP 443 in the device's namespace), at a 1 s interval (ureq keeps the connection)
//!   and at 20 s (longer than ureq's 15 s idle limit: a new connection each poll);
//! - c: how long a continuous ping (10/s) is interrupted when the preferred hub dies
//!   (SIGKILL) or silently black-holes traffic (iptables DROP), and when it comes back.
//!
//! Run as root: `cargo run -p edgewire-lab --bin figures_manifest -- [--release]
//! [--runs N] [--only a,b,c]`. `--release` measures the release build of the agent
//! (`cargo build --release -p edgewire` first); `EDGEWIRE_BIN` overrides both.

use std::fs;
use std::time::{Duration, Instant};

use edgewire_lab::lifecycle::*;
use edgewire_lab::pingstream::{PingRecord, PingStream};
use edgewire_lab::worlds::*;
use edgewire_lab::*;

const T: Duration = Duration::from_secs(30);

struct Args {
    release: bool,
    runs: usize,
    only: Vec<String>,
}

fn main() {
    if !is_root() {
        eprintln!("figures_manifest: needs root to create network namespaces");
        std::process::exit(2);
    }
    Lab::install_panic_cleanup();
    let args = parse_args();
    if args.release {
        use_edgewire_profile("release");
    }
    let bin = edgewire_bin();
    println!("edgewire manifest figures (issue 3, item 8)");
    println!("agent: {}", bin.display());
    println!("{}", edgewire_lab::figures::host_line());
    println!(
        "lab: network namespaces joined by veths, NAT in a router namespace, nginx 1.22 over TLS\n"
    );
    if args.only.iter().any(|o| o == "a") {
        time_to_first_ping(args.runs);
    }
    if args.only.iter().any(|o| o == "b") {
        bytes_per_poll();
    }
    if args.only.iter().any(|o| o == "c") {
        hub_failover(args.runs.min(3));
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        release: false,
        runs: 5,
        only: vec!["a".into(), "b".into(), "c".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--release" => args.release = true,
            "--runs" => {
                args.runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--runs takes a positive number")
            }
            "--only" => {
                args.only = it
                    .next()
                    .expect("--only takes a comma-separated list of a, b, c")
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            other => {
                eprintln!(
                    "figures_manifest: unknown argument {other:?}\n\
                     usage: figures_manifest [--release] [--runs N] [--only a,b,c]"
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

use edgewire_lab::figures::min_median_max as summary;

// ---------------------------------------------------------------- a: time to first ping

/// Starts dev-a and a 2 ms ping stream at the same instant; the time from the spawn to
/// the first answer from the hub's overlay address.
///
/// Starts are at least 1.2 s apart: WireGuard rate-limits handshakes per peer (boringtun:
/// 10 a second), and a device that restarted faster than that would get a cookie reply
/// and retry only after REKEY_TIMEOUT (5 s) — a lab artefact, not a reboot.
fn one_start(w: &mut OneHub, last_start: &mut Option<Instant>) -> Duration {
    if let Some(last) = *last_start {
        let next = last + Duration::from_millis(1200);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let flags = https_flags(&w.server, "manifest", Some(&w.key.public), 30);
    let stream = PingStream::start(&w.dev_host, HUB_OVERLAY, Duration::from_millis(2));
    let spawned = Instant::now();
    *last_start = Some(spawned);
    w.dev.start_args(&[], &as_strs(&flags));
    wait_for("the first answer over the overlay", T, || {
        stream.snapshot().first_answer_at()
    });
    let first = stream.snapshot().first_answer_at().unwrap();
    drop(stream);
    w.dev.stop();
    first - spawned
}

fn time_to_first_ping(runs: usize) {
    println!("a) time from `edgewire run` to the first ping answered over the overlay");
    println!(
        "   dev-a behind a NAT pings hub-1's overlay address ({HUB_OVERLAY}) every 2 ms from a \
         ping socket in its namespace, started at the same instant as `edgewire run` (sends \
         fail until the route exists); the agent is stopped and started again for each run"
    );
    let lab = Lab::new("fig-first-ping");
    let mut w = OneHub::new(&lab, None);
    let src = w.source(1);
    w.publish(&src);
    w.start_hub(&src);
    // Warm-up: a first run writes the cache.
    let mut last = None;
    one_start(&mut w, &mut last);
    let cache = w.dev.state_dir().join("manifest.cache");
    assert!(cache.is_file(), "no cache after a first run");

    w.server.stop();
    let cached: Vec<Duration> = (0..runs).map(|_| one_start(&mut w, &mut last)).collect();
    let (min, med, max) = summary(cached.clone());
    println!(
        "   with the cache, server down (nginx stopped: connection refused), {runs} runs: \
         min {}, median {}, max {}  [{}]",
        ms(min),
        ms(med),
        ms(max),
        cached.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );

    w.server.restart();
    let fresh: Vec<Duration> = (0..runs)
        .map(|_| {
            for f in ["manifest.cache", "manifest.serial"] {
                let _ = fs::remove_file(w.dev.state_dir().join(f));
            }
            one_start(&mut w, &mut last)
        })
        .collect();
    let (min, med, max) = summary(fresh.clone());
    println!(
        "   no cache, server up (the first fetch: TCP, TLS, GET, verify), {runs} runs: \
         min {}, median {}, max {}  [{}]",
        ms(min),
        ms(med),
        ms(max),
        fresh.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    println!();
}

// ---------------------------------------------------------------- b: bytes per poll

/// The device's TCP 443 counters: (bytes out, packets out, bytes in, packets in, SYNs).
fn counters(host: &Host) -> (u64, u64, u64, u64, u64) {
    let out = host.run(&["iptables", "-w", "-L", "EWFIG", "-v", "-x", "-n"]);
    let mut rows = out
        .lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse::<u64>().unwrap(), f[1].parse::<u64>().unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter();
    let (pkts_out, bytes_out) = rows.next().unwrap();
    let (pkts_in, bytes_in) = rows.next().unwrap();
    let (syns, _) = rows.next().unwrap();
    (bytes_out, pkts_out, bytes_in, pkts_in, syns)
}

/// Waits until the counters have not moved for `quiet` (a poll's packets are all counted).
fn settled(host: &Host, quiet: Duration) -> (u64, u64, u64, u64, u64) {
    let mut last = counters(host);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = counters(host);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
    }
}

fn bytes_per_poll() {
    println!("b) bytes on the wire per poll when nothing changed (HTTPS, ETag → 304)");
    println!(
        "   iptables counters in dev-a's namespace on TCP to/from {SERVER_ADDR}:443 (IP \
         headers included), read when quiet, over N polls counted in nginx's access log; \
         nginx's $connection/$connection_requests say whether a TLS connection was reused"
    );
    for (interval, polls) in [(1u32, 10usize), (20, 3)] {
        let lab = Lab::new(&format!("fig-bytes-{interval}"));
        let mut w = OneHub::new(&lab, None);
        let src = w.source(1);
        let manifest_len = w.publish(&src).len();
        w.start_hub(&src);
        let h = w.dev_host.clone();
        h.iptables(&["-N", "EWFIG"]);
        h.iptables(&[
            "-A",
            "EWFIG",
            "-p",
            "tcp",
            "-d",
            SERVER_ADDR,
            "--dport",
            "443",
        ]);
        h.iptables(&[
            "-A",
            "EWFIG",
            "-p",
            "tcp",
            "-s",
            SERVER_ADDR,
            "--sport",
            "443",
        ]);
        h.iptables(&[
            "-A",
            "EWFIG",
            "-p",
            "tcp",
            "-d",
            SERVER_ADDR,
            "--dport",
            "443",
            "--syn",
        ]);
        h.iptables(&["-I", "OUTPUT", "-j", "EWFIG"]);
        h.iptables(&["-I", "INPUT", "-j", "EWFIG"]);
        let flags = https_flags(&w.server, "manifest", Some(&w.key.public), interval);
        w.dev.start_args(&[], &as_strs(&flags));
        wait_for("the first fetch", T, || {
            (w.server.count("manifest", 200) >= 1).then_some(())
        });
        let full = settled(&h, Duration::from_millis(300));
        // Then a baseline after one 304, so the measured polls are all alike.
        wait_for("a first 304", T * 2, || {
            (w.server.count("manifest", 304) >= 1).then_some(())
        });
        let base = settled(&h, Duration::from_millis(300));
        let started = Instant::now();
        wait_for(
            "N more polls",
            Duration::from_secs(u64::from(interval) * (polls as u64 + 2) * 2),
            || (w.server.count("manifest", 304) > polls).then_some(()),
        );
        let end = settled(&h, Duration::from_millis(300));
        let n = polls as f64;
        let per = |a: u64, b: u64| (b - a) as f64 / n;
        let log = w.server.access_log();
        let measured: Vec<_> = log.iter().filter(|e| e.status == 304).skip(1).collect();
        let connections: std::collections::BTreeSet<u64> =
            measured.iter().map(|e| e.connection).collect();
        let http_bytes: u64 = measured.iter().map(|e| e.bytes_sent).sum();
        println!(
            "   every {interval} s, {polls} polls in {:.0} s: {:.0} B/poll device→server \
             ({:.1} packets), {:.0} B/poll server→device ({:.1} packets), {:.0} B/poll in all; \
             {} new TCP connections (SYNs) for {polls} polls, {} nginx connection(s); the 304 \
             itself is {:.0} B of HTTP",
            started.elapsed().as_secs_f64(),
            per(base.0, end.0),
            per(base.1, end.1),
            per(base.2, end.2),
            per(base.3, end.3),
            per(base.0 + base.2, end.0 + end.2),
            end.4 - base.4,
            connections.len(),
            http_bytes as f64 / n,
        );
        println!(
            "     (for scale: the first fetch, TCP + TLS handshake + the {manifest_len} B \
             signed manifest: {} B out, {} B in)",
            full.0, full.2
        );
    }
    println!();
}

// ---------------------------------------------------------------- c: hub failover

fn hub_failover(rounds: usize) {
    println!("c) interruption of a continuous ping when the preferred hub dies");
    println!(
        "   dev-a → dev-b (two NATed sites, reachable only through a hub) at 10 pings/s from a \
         ping socket; hub-1 (preferred) is SIGKILLed, or black-holed with iptables DROP on all \
         its UDP (the process stays up: squat/kilo#489), then restored; silence = longest time \
         between two answers; lost = unanswered pings sent >1 s before the end"
    );
    for mode in ["killed", "black-holed"] {
        let lab = Lab::new(&format!("fig-failover-{mode}"));
        let mut w = TwoHubs::new(&lab);
        w.start_all();
        w.a_host.ping("10.42.2.1", T).unwrap();
        let via = |agent: &Agent, hub: &str| {
            agent.wait_status(
                &format!("overlay via {hub}"),
                Duration::from_secs(60),
                |s| s.overlay_via.as_deref() == Some(hub),
            );
        };
        for round in 1..=rounds {
            via(&w.dev_a, "hub-1");
            via(&w.dev_b, "hub-1");
            let stream = PingStream::start(&w.a_host, "10.42.2.1", Duration::from_millis(100));
            wait_for("answers before the failure", T, || {
                let s = stream.snapshot();
                (s.answers_after(s.started) >= 20).then_some(())
            });
            let failed = Instant::now();
            let hub1 = w.hubs[0].host().clone();
            if mode == "killed" {
                w.hubs[0].proc().signal(libc::SIGKILL);
            } else {
                hub1.iptables(&["-I", "INPUT", "-p", "udp", "-j", "DROP"]);
                hub1.iptables(&["-I", "OUTPUT", "-p", "udp", "-j", "DROP"]);
            }
            via(&w.dev_a, "hub-2");
            via(&w.dev_b, "hub-2");
            let moved = Instant::now();
            wait_for("answers through hub-2", T, || {
                (stream.snapshot().answers_after(moved) >= 30).then_some(())
            });
            let over = stream.snapshot();
            let restored = Instant::now();
            if mode == "killed" {
                w.restart_hub(0);
            } else {
                hub1.iptables(&["-D", "INPUT", "-p", "udp", "-j", "DROP"]);
                hub1.iptables(&["-D", "OUTPUT", "-p", "udp", "-j", "DROP"]);
            }
            via(&w.dev_a, "hub-1");
            via(&w.dev_b, "hub-1");
            let back = Instant::now();
            wait_for("answers through hub-1 again", T, || {
                (stream.snapshot().answers_after(back) >= 30).then_some(())
            });
            let record = stream.stop(Duration::from_secs(1));
            let end = Instant::now();
            let grace = Duration::from_secs(1);
            let silence_in = |r: &PingRecord, from: Instant, to: Instant| {
                let mut t: Vec<Instant> = r.answered.iter().flatten().copied().collect();
                t.sort();
                t.windows(2)
                    .filter(|w| w[1] > from && w[0] < to)
                    .map(|w| w[1] - w[0])
                    .max()
                    .unwrap_or_default()
            };
            let lost_in = |r: &PingRecord, from: Instant, to: Instant| {
                r.sent
                    .iter()
                    .zip(&r.answered)
                    .filter(|(s, a)| **s >= from && **s < to && **s + grace <= end && a.is_none())
                    .count()
            };
            let start = record.started;
            println!(
                "   {mode}, round {round}: failover silence {} ({} lost), overlay on hub-2 after \
                 {}; restored → overlay back on hub-1 after {}, failback silence {} ({} lost); \
                 {} pings, {} lost in all",
                ms(silence_in(&over, failed, moved)),
                lost_in(&record, start, restored),
                ms(moved - failed),
                ms(back - restored),
                ms(silence_in(&record, restored, end)),
                lost_in(&record, restored, end),
                record.judged(end, grace),
                record.lost(end, grace),
            );
        }
    }
}
