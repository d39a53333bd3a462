//! Benchmark (not a test): an edgewire hub at fleet scale (issue 12). For manifests of
//! 100, 1,000 and 10,000 nodes (3 hubs, edges in sites of 5, real keys), one edgewire hub
//! runs in a namespace with the whole manifest, and this prints its start time, RSS and
//! RSS per peer, idle wakeups and CPU, the CPU per forwarded ping (two real edgewire
//! edges pinging each other through it), the CPU per handshake (16 edges starting at
//! once), the time to apply serial+1 and the longest gap in a 10 ms ping stream through
//! the hub meanwhile (a loop stall), and the same while `wg show` (the control socket's
//! `get=1`) and `edgewire status` are asked for every peer; then wireguard-go given the
//! same peers with `wg setconf`: time to configure and RSS.
//!
//! `--idle-edge SECONDS` instead measures an idle edge with one hub: wakeups per thread.
//!
//! Run as root: `scripts/bench-scale [--sizes 100,1000,10000] [--idle-edge 60]`. The
//! offline peers' public keys are made once with `wg genkey | wg pubkey` and kept in
//! `target/bench-scale-pubkeys.txt`. `EDGEWIRE_BIN` runs another build of edgewire.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgewire_lab::figures::rss_kb;
use edgewire_lab::pingstream::PingStream;
use edgewire_lab::*;

const HUB_UNDERLAY: [&str; 3] = ["203.0.113.10", "203.0.113.11", "203.0.113.12"];
/// Edges pinging each other through the hub.
const PING_EDGES: usize = 2;
/// Edges started at once for the handshake figure.
const HANDSHAKE_EDGES: usize = 16;
const IDLE_WINDOW: Duration = Duration::from_secs(10);
const T: Duration = Duration::from_secs(60);

fn main() {
    if !is_root() {
        eprintln!("bench_scale: needs root to create network namespaces (run scripts/bench-scale)");
        std::process::exit(2);
    }
    Lab::install_panic_cleanup();
    use_edgewire_profile("release");
    if std::env::var_os("EDGEWIRE_LOG").is_none() {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var("EDGEWIRE_LOG", "info") };
    }
    let mut sizes = vec![100, 1_000, 10_000];
    let mut idle_edge = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .expect("--sizes takes a comma-separated list")
                    .split(',')
                    .map(|s| s.parse().expect("a node count"))
                    .collect()
            }
            "--idle-edge" => {
                idle_edge = Some(
                    args.next()
                        .and_then(|s| s.parse().ok())
                        .expect("--idle-edge takes seconds"),
                )
            }
            _ => {
                eprintln!("usage: bench_scale [--sizes 100,1000,10000] [--idle-edge SECONDS]");
                std::process::exit(2);
            }
        }
    }
    println!("edgewire {}", edgewire_bin().display());
    if let Some(seconds) = idle_edge {
        idle_edge_wakeups(Duration::from_secs(seconds));
        return;
    }
    let keys = public_keys(sizes.iter().copied().max().unwrap_or(0));
    let mut rows = Vec::new();
    for &n in &sizes {
        eprintln!("bench_scale: {n} nodes …");
        rows.push((n, hub(n, &keys), wireguard_go(n, &keys)));
    }
    report(&rows);
}

/// What one size measured on the edgewire hub.
#[derive(Default)]
struct HubFigures {
    start: Duration,
    start_lines: usize,
    longest_line: usize,
    rss_kb: u64,
    idle_wakeups: f64,
    idle_cpu: f64,
    ping_us: f64,
    pings: usize,
    handshake_us: f64,
    handshakes: u64,
    apply: Duration,
    apply_kernel: Duration,
    stall: Duration,
    max_rtt: Duration,
    /// The same two while `wg show` is asked for, then `status`, then a metrics scrape.
    show_stall: [Duration; 3],
    show_max_rtt: [Duration; 3],
    show_bytes: usize,
    metrics_bytes: usize,
    rss_end_kb: u64,
}

struct WgGoFigures {
    configure: Duration,
    rss_kb: u64,
    rss_later_kb: u64,
}

/// The manifest's nodes: `(name, site, overlay address)`; hubs first.
fn layout(n: usize) -> Vec<(String, Option<String>, String)> {
    let mut nodes: Vec<_> = (0..3)
        .map(|h| (format!("hub-{}", h + 1), None, format!("10.42.0.{}", h + 1)))
        .collect();
    for i in 0..n.saturating_sub(3) {
        nodes.push((
            format!("edge-{i}"),
            Some(format!("site-{}", i / 5)),
            format!("10.42.{}.{}", 1 + i / 250, 1 + i % 250),
        ));
    }
    nodes
}

/// The public address of real edge `j`.
fn edge_underlay(j: usize) -> String {
    format!("198.51.100.{}", 10 + j)
}

/// The node index of real edge `j`: one per site, so they reach each other via the hub.
fn real_edge_slot(j: usize) -> usize {
    3 + 5 * j
}

fn manifest(
    serial: u64,
    nodes: &[(String, Option<String>, String)],
    keys: &[String],
) -> ManifestSource {
    let mut src = ManifestSource::new("bench-scale", serial);
    for (i, (name, site, addr)) in nodes.iter().enumerate() {
        let node = match site {
            None => NodeSource::hub(name, &keys[i], &format!("{addr}/32"))
                .endpoint(&format!("{}:{AGENT_PORT}", HUB_UNDERLAY[i])),
            Some(site) => NodeSource::edge(name, &keys[i], site, &format!("{addr}/32")),
        };
        src = src.node(node);
    }
    src
}

fn hub(n: usize, pool: &[String]) -> HubFigures {
    let lab = Lab::new(&format!("scale-{n}"));
    let wan = lab.wan();
    let hub_host = lab.host("hub");
    wan.attach(&hub_host, &format!("{}/24", HUB_UNDERLAY[0]));
    hub_host.enable_forwarding();
    let mut hub = Agent::new(&hub_host, "hub-1");
    let nodes = layout(n);
    let mut keys: Vec<String> = pool[..n].to_vec();
    keys[0] = hub.public_key().to_owned();
    let mut edges = Vec::new();
    for j in 0..PING_EDGES + HANDSHAKE_EDGES {
        let host = lab.host(&format!("e{j}"));
        wan.attach(&host, &format!("{}/24", edge_underlay(j)));
        let slot = real_edge_slot(j);
        let agent = Agent::new(&host, &nodes[slot].0);
        keys[slot] = agent.public_key().to_owned();
        edges.push(agent);
    }
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let path = manifest(1, &nodes, &keys).build(&key, lab.dir(), "manifest");
    let url = path.to_string_lossy().into_owned();
    let mut f = HubFigures::default();

    // Start: until the interface carries its address (the last step of the first apply).
    let started = Instant::now();
    hub.start_args(
        &[],
        &[
            "--manifest-url",
            &url,
            "--manifest-pubkey",
            &key.public,
            "--metrics-listen",
            METRICS_LISTEN,
        ],
    );
    let line = wait_line(&hub, T, |l| {
        l.contains("ew0: address") || l.contains("ew0: added address")
    });
    f.start = started.elapsed();
    let log = hub.log();
    let upto = log.find(&line).map_or(log.len(), |i| i + line.len());
    f.start_lines = log[..upto].lines().count();
    f.longest_line = log[..upto].lines().map(str::len).max().unwrap_or(0);
    let pid = hub.proc().pid();
    std::thread::sleep(Duration::from_secs(3));
    f.rss_kb = rss_kb(pid);

    // Idle: nothing talks to the hub.
    let (w0, c0, t0) = (wakeups(pid), cpu_ns(pid), Instant::now());
    std::thread::sleep(IDLE_WINDOW);
    let idle_secs = t0.elapsed().as_secs_f64();
    f.idle_wakeups = (wakeups(pid) - w0) as f64 / idle_secs;
    let idle_ns_per_s = (cpu_ns(pid) - c0) as f64 / idle_secs;
    f.idle_cpu = idle_ns_per_s / 1e9;

    // Forwarded pings: edge 0 to edge 1 through the hub, every 5 ms for 4 s (every 2 ms
    // saturated a 10,000-peer hub, which then dropped a third of them).
    // Edges of different sites punch a direct path on demand: keep theirs through the
    // hub, the path being measured, by dropping UDP between the two.
    edges[0].host().drop_udp_from(&edge_underlay(1));
    edges[1].host().drop_udp_from(&edge_underlay(0));
    for e in &mut edges[..PING_EDGES] {
        start_edge(e, &url, &key.public);
    }
    let dst = &nodes[real_edge_slot(1)].2;
    if let Err(e) = edges[0].host().ping(dst, T) {
        lab.dump_logs();
        panic!("{e}");
    }
    let (c0, t0) = (cpu_ns(pid), Instant::now());
    let stream = PingStream::start(edges[0].host(), dst, Duration::from_millis(5));
    std::thread::sleep(Duration::from_secs(4));
    let record = stream.stop(Duration::from_millis(500));
    let busy = (cpu_ns(pid) - c0) as f64 - idle_ns_per_s * t0.elapsed().as_secs_f64();
    f.pings = record.answered.iter().flatten().count();
    f.ping_us = busy / f.pings.max(1) as f64 / 1e3;

    // Handshakes: 16 edges at once, until each has one with the hub.
    let (c0, t0) = (cpu_ns(pid), Instant::now());
    for e in &mut edges[PING_EDGES..] {
        start_edge(e, &url, &key.public);
    }
    let mut counts = [0u64; HANDSHAKE_EDGES];
    wait_for("handshakes of the edges with the hub", T, || {
        for (k, e) in edges[PING_EDGES..].iter().enumerate() {
            if counts[k] == 0 {
                counts[k] = e
                    .status()
                    .ok()
                    .and_then(|s| s.peer("hub-1").map(|p| p.handshakes))
                    .unwrap_or(0);
            }
        }
        counts.iter().all(|&c| c > 0).then_some(())
    });
    let busy = (cpu_ns(pid) - c0) as f64 - idle_ns_per_s * t0.elapsed().as_secs_f64();
    f.handshakes = counts.iter().sum();
    f.handshake_us = busy / f.handshakes as f64 / 1e3;

    // Serial+1 with one more node, while a 10 ms ping stream crosses the hub.
    let mut next = manifest(2, &nodes, &keys);
    let extra = nodes.len() - 3;
    let extra_route = format!("10.42.{}.{}/32", 1 + extra / 250, 1 + extra % 250);
    next = next.node(NodeSource::edge(
        &format!("edge-{extra}"),
        &pool[n],
        &format!("site-{}", extra / 5),
        &extra_route,
    ));
    let staged = next.build(&key, lab.dir(), "manifest-2");
    let stream = PingStream::start(edges[0].host(), dst, Duration::from_millis(10));
    std::thread::sleep(Duration::from_secs(1));
    fs::rename(&staged, &path).expect("publishing serial 2");
    let t0 = Instant::now();
    hub.proc().signal(libc::SIGHUP);
    wait_line(&hub, T, |l| l.contains("serial 2 applied"));
    f.apply = t0.elapsed();
    // The kernel's route for the added node comes after the "applied" line.
    wait_line(&hub, T, |l| l.contains("route") && l.contains(&extra_route));
    f.apply_kernel = t0.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let record = stream.stop(Duration::from_millis(500));
    f.stall = record
        .longest_silence()
        .map_or(Duration::ZERO, |(gap, _)| gap);
    f.max_rtt = max_rtt(&record);

    // `wg show` (get=1 on the control socket, as wg sends it), then `edgewire status`,
    // five times each, while a 10 ms ping stream crosses the hub: each answer holds
    // every peer, and the loop must not stall behind it.
    let socket = PathBuf::from(format!(
        "{}-wg/{AGENT_IFACE}.sock",
        hub.state_dir().display()
    ));
    for k in 0..3 {
        let stream = PingStream::start(edges[0].host(), dst, Duration::from_millis(10));
        std::thread::sleep(Duration::from_secs(1));
        for _ in 0..5 {
            match k {
                0 => f.show_bytes = uapi_get(&socket),
                1 => drop(hub.status().expect("the hub's status")),
                _ => f.metrics_bytes = scrape(hub.host()),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let record = stream.stop(Duration::from_millis(500));
        f.show_stall[k] = record
            .longest_silence()
            .map_or(Duration::ZERO, |(gap, _)| gap);
        f.show_max_rtt[k] = max_rtt(&record);
    }
    f.rss_end_kb = rss_kb(pid);
    f
}

fn max_rtt(record: &edgewire_lab::pingstream::PingRecord) -> Duration {
    record
        .sent
        .iter()
        .zip(&record.answered)
        .filter_map(|(s, a)| a.map(|a| a.duration_since(*s)))
        .max()
        .unwrap_or_default()
}

/// Where the hub serves its metrics, inside its namespace.
const METRICS_LISTEN: &str = "127.0.0.1:9586";

/// One scrape of the hub's metrics (curl inside its namespace); the text's length.
fn scrape(host: &Host) -> usize {
    let url = format!("http://{METRICS_LISTEN}/metrics");
    let text = host.run(&["curl", "-sS", "--max-time", "10", &url]);
    assert!(text.contains("edgewire_peer_up"), "a whole scrape");
    text.len()
}

/// What `wg show` reads: the whole `get=1` answer; its length.
fn uapi_get(socket: &std::path::Path) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
    stream.write_all(b"get=1\n\n").expect("asking get=1");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("reading the answer");
    assert!(answer.ends_with(b"errno=0\n\n"), "a whole answer");
    answer.len()
}

fn wireguard_go(n: usize, pool: &[String]) -> Option<WgGoFigures> {
    WgImpl::WireguardGo.binary()?;
    let lab = Lab::new(&format!("scale-wggo-{n}"));
    let host = lab.host("hub");
    let dev = WgDevice::start(&host, WgImpl::WireguardGo, 51820);
    let own = KeyPair::generate();
    let mut conf = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\n",
        own.private
    );
    for (i, (_, _, addr)) in layout(n).iter().enumerate().skip(1) {
        conf.push_str(&format!(
            "\n[Peer]\nPublicKey = {}\nAllowedIPs = {addr}/32\n",
            pool[i]
        ));
        if i < 3 {
            conf.push_str(&format!("Endpoint = {}:51820\n", HUB_UNDERLAY[i]));
        }
    }
    let file = lab.dir().join("wg.conf");
    fs::write(&file, conf).expect("writing wg.conf");
    let t0 = Instant::now();
    host.run(&["wg", "setconf", dev.iface(), &file.to_string_lossy()]);
    let configure = t0.elapsed();
    let pid = dev.proc().pid();
    let rss = rss_kb(pid);
    std::thread::sleep(Duration::from_secs(10));
    Some(WgGoFigures {
        configure,
        rss_kb: rss,
        rss_later_kb: rss_kb(pid),
    })
}

/// Starts an edge in a mount namespace of its own with an empty /run/wireguard. Every
/// agent's control socket is `/var/run/wireguard/ew0.sock`, shared by all namespaces: an
/// edge starting would connect to the hub's socket to see whether it is live, and the
/// hub renders its whole `wg show` answer (10,000 peers) for each such probe.
fn start_edge(edge: &mut Agent, url: &str, network_key: &str) {
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec \"$@\"",
        "sh",
    ];
    edge.start_args(
        &wrapper,
        &["--manifest-url", url, "--manifest-pubkey", network_key],
    );
}

/// An edge with one hub, idle: its wakeups per thread over `window`.
fn idle_edge_wakeups(window: Duration) {
    let lab = Lab::new("scale-idle-edge");
    let wan = lab.wan();
    let hub_host = lab.host("hub");
    wan.attach(&hub_host, &format!("{}/24", HUB_UNDERLAY[0]));
    let edge_host = lab.host("edge");
    wan.attach(&edge_host, "198.51.100.10/24");
    let mut hub = Agent::new(&hub_host, "hub-1");
    let mut edge = Agent::new(&edge_host, "edge-0");
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let src = ManifestSource::new("bench-scale", 1)
        .node(
            NodeSource::hub("hub-1", hub.public_key(), "10.42.0.1/32")
                .endpoint(&format!("{}:{AGENT_PORT}", HUB_UNDERLAY[0])),
        )
        .node(NodeSource::edge(
            "edge-0",
            edge.public_key(),
            "site-0",
            "10.42.1.1/32",
        ));
    let url = src.build(&key, lab.dir(), "manifest");
    let url = url.to_string_lossy();
    hub.start(&url, &key.public);
    edge.start(&url, &key.public);
    edge.wait_handshakes(&["hub-1"], T);
    std::thread::sleep(Duration::from_secs(5));
    let pid = edge.proc().pid();
    let before = per_thread(pid);
    std::thread::sleep(window);
    let after = per_thread(pid);
    let secs = window.as_secs_f64();
    println!("idle edge with one hub, {} s:", window.as_secs());
    let mut total = 0;
    for (tid, name, n) in &after {
        let was = before.iter().find(|(t, _, _)| t == tid).map_or(0, |b| b.2);
        total += n - was;
        println!("  thread {tid:>7} {name:<16} {:>6} wakeups", n - was);
    }
    for (tid, name, _) in before.iter().filter(|b| !after.iter().any(|a| a.0 == b.0)) {
        println!("  thread {tid:>7} {name:<16} (ended)");
    }
    println!(
        "  all threads: {total} wakeups, {:.2} per second",
        total as f64 / secs
    );
}

/// Waits for a log line of the agent; returns it. Polls every 5 ms (`wait_log` polls
/// every 50 ms, too coarse for start and apply times).
fn wait_line(agent: &Agent, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let path = agent.proc().log_path().to_path_buf();
        let text = fs::read_to_string(&path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| matches(l)) {
            return l.to_owned();
        }
        assert!(
            Instant::now() < deadline && agent.is_running(),
            "{}: no such log line within {timeout:?}; running: {}; log:\n{}",
            agent.name(),
            agent.is_running(),
            tail(&text)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(4000)..]
}

/// The offline peers' public keys (`count + 1`, one for the node serial 2 adds), made
/// once with `wg genkey | wg pubkey` in 4 shells at once and kept for later runs.
fn public_keys(count: usize) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-scale-pubkeys.txt");
    let mut keys: Vec<String> = fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let missing = (count + 1).saturating_sub(keys.len());
    if missing > 0 {
        eprintln!("bench_scale: making {missing} public keys (once) …");
        let per = missing.div_ceil(4).to_string();
        let shells: Vec<_> = (0..4)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", r#"i=0; while [ "$i" -lt "$1" ]; do wg genkey | wg pubkey; i=$((i+1)); done"#, "sh", &per])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("running wg genkey | wg pubkey")
            })
            .collect();
        for shell in shells {
            let out = shell
                .wait_with_output()
                .expect("running wg genkey | wg pubkey");
            keys.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_owned),
            );
        }
        fs::write(&path, keys.join("\n") + "\n").expect("caching the public keys");
    }
    keys
}

/// `(tid, name, voluntary + involuntary context switches)` of every thread.
fn per_thread(pid: u32) -> Vec<(u32, String, u64)> {
    let mut threads = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        threads.push((
            tid,
            name,
            field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:"),
        ));
    }
    threads.sort();
    threads
}

fn wakeups(pid: u32) -> u64 {
    per_thread(pid).iter().map(|t| t.2).sum()
}

/// CPU time of all the process's threads so far, in ns (schedstat: not tick-rounded).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn report(rows: &[(usize, HubFigures, Option<WgGoFigures>)]) {
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "\nedgewire hub (peers = nodes - 1; edges have no endpoints; {HANDSHAKE_EDGES} + {PING_EDGES} real edges)"
    );
    println!(
        "{:>7} {:>9} {:>6} {:>8} {:>9} {:>9} {:>10} {:>9} {:>8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "nodes",
        "start",
        "lines",
        "longest",
        "RSS",
        "KB/peer",
        "wakeups/s",
        "idle CPU",
        "µs/ping",
        "µs/hshake",
        "apply s+1",
        "+routes",
        "stall",
        "max RTT",
        "RSS end"
    );
    for (n, f, _) in rows {
        println!(
            "{:>7} {:>7.0}ms {:>6} {:>8} {:>7.1}MB {:>9.1} {:>10.1} {:>8.1}% {:>8.0} {:>10.0} {:>10.1}ms {:>7.1}ms {:>7.0}ms {:>7.0}ms {:>7.1}MB",
            n,
            f.start.as_secs_f64() * 1e3,
            f.start_lines,
            f.longest_line,
            mb(f.rss_kb),
            f.rss_kb as f64 / (*n - 1) as f64,
            f.idle_wakeups,
            f.idle_cpu * 100.0,
            f.ping_us,
            f.handshake_us,
            f.apply.as_secs_f64() * 1e3,
            f.apply_kernel.as_secs_f64() * 1e3,
            f.stall.as_secs_f64() * 1e3,
            f.max_rtt.as_secs_f64() * 1e3,
            mb(f.rss_end_kb),
        );
    }
    if let [(n0, f0, _), .., (n1, f1, _)] = rows {
        println!(
            "marginal RSS per peer {n0} -> {n1}: {:.1} KB",
            (f1.rss_kb as f64 - f0.rss_kb as f64) / (*n1 - *n0) as f64
        );
    }
    for (n, f, _) in rows {
        println!(
            "{n}: {} pings answered, {} handshakes counted by the edges",
            f.pings, f.handshakes
        );
    }
    for (n, f, _) in rows {
        println!(
            "{n}: while wg show ({} bytes) was asked 5 times: stall {:.0} ms, max RTT {:.0} ms; \
             while status was: stall {:.0} ms, max RTT {:.0} ms; while metrics ({} bytes) \
             were scraped: stall {:.0} ms, max RTT {:.0} ms",
            f.show_bytes,
            f.show_stall[0].as_secs_f64() * 1e3,
            f.show_max_rtt[0].as_secs_f64() * 1e3,
            f.show_stall[1].as_secs_f64() * 1e3,
            f.show_max_rtt[1].as_secs_f64() * 1e3,
            f.metrics_bytes,
            f.show_stall[2].as_secs_f64() * 1e3,
            f.show_max_rtt[2].as_secs_f64() * 1e3
        );
    }
    println!("\nwireguard-go (Debian's) given the same peers with wg setconf");
    println!(
        "{:>7} {:>12} {:>12} {:>14}",
        "nodes", "setconf", "RSS", "RSS 10 s later"
    );
    for (n, _, w) in rows {
        match w {
            Some(w) => println!(
                "{:>7} {:>10.0}ms {:>10.1}MB {:>12.1}MB",
                n,
                w.configure.as_secs_f64() * 1e3,
                mb(w.rss_kb),
                mb(w.rss_later_kb)
            ),
            None => println!("{n:>7} wireguard-go is not installed"),
        }
    }
    println!(
        "\nstart: spawn to the interface address set (end of the first apply); lines: log \
         lines until then (longest in bytes); idle: 10 s with no traffic; µs/ping: hub CPU \
         (all threads, idle CPU subtracted) per answered ping, edge to edge through the hub \
         every 5 ms; µs/hshake: the same per handshake while {HANDSHAKE_EDGES} edges start at \
         once; apply s+1: SIGHUP to the 'serial 2 applied' line (+routes: to the added node's route in the kernel); stall: the longest gap \
         between answers of a 10 ms ping stream through the hub meanwhile."
    );
}
