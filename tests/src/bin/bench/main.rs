//! Benchmark (not a test): two namespaces joined by a veth, tunnelled by two edgewire ends
//! (release build), two wireguard-go ends and two boringtun-cli ends, plus raw-veth
//! baselines (TCP: one stream; UDP: the tunnels' UDP search, run with no tunnel). Per
//! implementation (see `suite.rs`): iperf3 TCP with one and four streams, the highest UDP
//! rate with under 1 % loss (with iperf3's default socket buffers, again with 4 MiB ones,
//! and sent in runs with GSO as QUIC stacks send: `gso.rs`), CPU seconds per GB at a fixed
//! 200 Mbit/s (both ends, /proc/PID/stat), ping RTT idle and under load, RSS idle and peak
//! per end, the kB the receiving end wrote per write call with one stream (its TUN writes);
//! each figure with its ratio to wireguard-go's in the same run, the UDP figure also as a
//! share of the bare veth's, whether edgewire's batching and offload were on (its
//! `data path:` log line), and how much of the host's CPU the hypervisor took while each column
//! was measured (`suite::HostSteal`).
//!
//! Run as root: `scripts/bench`, or
//! `cargo run --release -p edgewire-lab --bin bench -- [--seconds N] [--only NAME,…]`
//! with NAME among veth-tcp, veth-udp, edgewire, edgewire-static, wireguard-go,
//! boringtun-cli. edgewire-static is the static musl build (`$EDGEWIRE_STATIC_BIN`).
//! `--runs N` repeats the whole run N times and ends with every figure's and every
//! ratio's min / median / max (`runs.rs`; ratios within one run), the bare veth's UDP and
//! each tunnel's share of it included.
//! `--udp-at 400,600` measures instead only the loss of UDP at those fixed rates (Mbit/s),
//! each for the full `--seconds` (over the bare veth too), with both ends' CPU seconds
//! per GB carried and the datagrams the receiving end wrote per write call (its TUN
//! writes: `syscw` of /proc/PID/io; 1.0 means no coalescing, which went unseen for
//! sessions), and where the lost datagrams were dropped (`losses.rs`: the receiving
//! application's socket, the tunnel's, the sending TUN): for tuning, where the search's
//! steps are too coarse.
//! `--busy N` runs N CPU-bound threads beside the whole run, as a device's own workload
//! would: a change that helps iperf3 on an idle machine can starve the tunnel on a busy
//! one (a `sched_yield` per TUN write did).
//! `--pin` keeps each end on a CPU of its own (the left namespace's processes and
//! threads on the first CPU this process may use, the right's on the second), as two
//! one-core devices run: there a tunnel end shares its core with its own applications,
//! never with the other end. Without it the four busy processes of a UDP run (two
//! iperf3s, two tunnel ends) share the machine's cores as the scheduler places them.

use std::time::Duration;

use edgewire_lab::*;

mod gso;
mod losses;
mod runs;
mod suite;
use runs::Row;
use suite::Figures;

const LEFT_UNDERLAY: &str = "198.51.100.1";
const RIGHT_UNDERLAY: &str = "198.51.100.2";
const LEFT_OVERLAY: &str = "10.42.0.1";
const RIGHT_OVERLAY: &str = "10.42.0.2";
const SETUP: Duration = Duration::from_secs(20);

const ALL: [&str; 6] = [
    "veth-tcp",
    "veth-udp",
    "edgewire",
    "edgewire-static",
    "wireguard-go",
    "boringtun-cli",
];

struct Outcome {
    name: &'static str,
    /// The raw veth's throughput, or why a tunnel could not be measured at all.
    mbps: Result<f64, String>,
    figures: Option<Figures>,
    /// How the implementation moves packets (edgewire's own `data path:` line).
    data_path: String,
}

fn main() {
    if !is_root() {
        eprintln!("bench: needs root to create network namespaces (run scripts/bench)");
        std::process::exit(2);
    }
    Lab::install_panic_cleanup();
    use_edgewire_profile("release");
    let Args {
        seconds,
        only,
        busy,
        runs,
    } = parse_args();

    println!("edgewire bench: iperf3 left -> right, {seconds} s per run");
    println!("(two namespaces joined by a veth; tunnels MTU 1420)");
    if let Some([left, right]) = PINNED.get() {
        println!(
            "(each end on a CPU of its own, as two one-core devices: left on CPU {left}, right on CPU {right})"
        );
    }
    if busy > 0 {
        println!("({busy} CPU-bound threads running beside, as a device's own workload)");
        for _ in 0..busy {
            // Ends with the process.
            std::thread::spawn(|| {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            });
        }
    }
    let mut all_runs = Vec::new();
    for run in 1..=runs {
        if runs > 1 {
            println!("\n== run {run} of {runs} ==");
            eprintln!("bench: run {run} of {runs}");
        }
        println!();
        let mut outcomes = Vec::new();
        for name in ALL.into_iter().filter(|n| only.iter().any(|o| o == n)) {
            eprintln!("bench: running {name} …");
            let outcome = match name {
                "veth-tcp" => raw_veth(seconds, false),
                "veth-udp" => raw_veth(seconds, true),
                "edgewire" => edgewire_release(seconds),
                "edgewire-static" => edgewire_static(seconds),
                "wireguard-go" => wireguard(WgImpl::WireguardGo, seconds),
                "boringtun-cli" => wireguard(WgImpl::BoringtunCli, seconds),
                _ => unreachable!(),
            };
            outcomes.push(outcome);
        }
        share_of_bare_veth(&mut outcomes);
        match UDP_AT.get() {
            // Their lines are printed as they come; only what could not run is left to say.
            Some(_) => (outcomes.iter())
                .filter_map(|o| Some((o.name, o.mbps.as_ref().err()?)))
                .filter(|(_, e)| e.as_str() != UDP_AT_ONLY)
                .for_each(|(name, e)| println!("{name:<15} failed: {e}")),
            None => report(&outcomes),
        }
        all_runs.push(outcomes);
    }
    if runs > 1 && UDP_AT.get().is_none() {
        let tunnels: Vec<runs::Run> = (all_runs.iter())
            .map(|outcomes| {
                (outcomes.iter())
                    .filter_map(|o| Some((o.name, o.figures.as_ref()?)))
                    .collect()
            })
            .collect();
        runs::print_summary(&tunnels, &ROWS, &SHARES);
        let veth: Vec<f64> = all_runs.iter().filter_map(|o| bare_veth_udp(o)).collect();
        if !veth.is_empty() {
            let label = "bare veth UDP < 1 % loss, Mbit/s";
            let cell = runs::cell(runs::spread(veth), runs as usize, 0);
            println!("{label:<34} {cell:>30}");
        }
    }
}

/// The bare veth's UDP in this run, if it was measured.
fn bare_veth_udp(outcomes: &[Outcome]) -> Option<f64> {
    (outcomes.iter())
        .find(|o| o.name == "veth-udp")
        .and_then(|o| o.mbps.as_ref().ok().copied())
        .filter(|mbps| *mbps > 0.0)
}

/// Each tunnel's UDP as a share of the bare veth's in the same run: a ratio to a ceiling
/// measured an hour later would mix two hosts' loads.
fn share_of_bare_veth(outcomes: &mut [Outcome]) {
    let Some(ceiling) = bare_veth_udp(outcomes) else {
        return;
    };
    for f in outcomes.iter_mut().filter_map(|o| o.figures.as_mut()) {
        f.udp_of_bare_veth_percent = f.udp_mbps.map(|u| u * 100.0 / ceiling);
    }
}

/// What the command line asked for.
struct Args {
    seconds: u32,
    only: Vec<String>,
    /// `--busy`'s CPU-bound threads.
    busy: usize,
    /// `--runs`: how many times the whole benchmark runs.
    runs: u32,
}

/// `--pin`'s CPUs for the left and the right end, when given.
static PINNED: std::sync::OnceLock<[usize; 2]> = std::sync::OnceLock::new();

/// `--udp-at`'s rates, when given.
static UDP_AT: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
/// What a tunnel measured with `--udp-at` reports instead of its figures.
const UDP_AT_ONLY: &str = "only UDP at fixed rates was measured";

fn parse_args() -> Args {
    let mut seconds = 10;
    let mut busy = 0;
    let mut runs = 1;
    let mut only: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds takes a number")
            }
            "--only" => {
                only = args
                    .next()
                    .expect("--only takes a comma-separated list")
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = only.iter().find(|o| !ALL.contains(&o.as_str())) {
                    eprintln!("bench: unknown run {bad:?}; known: {}", ALL.join(", "));
                    std::process::exit(2);
                }
            }
            "--busy" => {
                busy = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--busy takes a number of threads")
            }
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--runs takes a number above zero")
            }
            "--pin" => match first_two_cpus() {
                Some(cpus) => {
                    let _ = PINNED.set(cpus);
                }
                None => {
                    eprintln!("bench: --pin needs two CPUs this process may run on");
                    std::process::exit(2);
                }
            },
            "--udp-at" => {
                let rates = args
                    .next()
                    .and_then(|list| list.split(',').map(|r| r.parse().ok()).collect())
                    .expect("--udp-at takes a comma-separated list of Mbit/s");
                let _ = UDP_AT.set(rates);
            }
            _ => {
                eprintln!(
                    "usage: bench [--seconds N] [--only {}] [--udp-at MBPS,…] [--busy N] [--pin] \
                     [--runs N]",
                    ALL.join(",")
                );
                std::process::exit(2);
            }
        }
    }
    Args {
        seconds,
        only,
        busy,
        runs,
    }
}

/// The first two CPUs this process may run on.
fn first_two_cpus() -> Option<[usize; 2]> {
    // SAFETY: an all-zero cpu_set_t is an empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a cpu_set_t of the size given; pid 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return None;
    }
    // SAFETY: every `cpu` is below CPU_SETSIZE.
    let mut cpus =
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) });
    Some([cpus.next()?, cpus.next()?])
}

/// Two hosts joined by one veth (each on its CPU with `--pin`).
fn pair(lab: &Lab) -> (Host, Host) {
    let (mut left, mut right) = (lab.host("left"), lab.host("right"));
    if let Some(&[l, r]) = PINNED.get() {
        (left, right) = (left.on_cpu(l), right.on_cpu(r));
    }
    lab.link(
        &left,
        &right,
        &format!("{LEFT_UNDERLAY}/24"),
        &format!("{RIGHT_UNDERLAY}/24"),
    );
    (left, right)
}

/// The veth alone, no tunnel. TCP: one iperf3 stream. UDP: the highest rate under 1 %
/// loss, found by the same search and datagram size as the tunnels' UDP row, so that row
/// can be read against what the machine carries with no tunnel at all (two iperf3s here,
/// against two iperf3s and two tunnel ends on the same two cores there).
fn raw_veth(seconds: u32, udp: bool) -> Outcome {
    let lab = Lab::new("bench-veth");
    let (left, right) = pair(&lab);
    let name = if udp { "veth-udp" } else { "veth-tcp" };
    let mbps = if udp {
        raw_veth_udp(&left, &right, seconds)
    } else {
        suite::iperf(&left, &right, RIGHT_UNDERLAY, seconds, &[])
            .and_then(|j| suite::received_mbps(&j).ok_or("no throughput".into()))
    };
    Outcome {
        name,
        mbps,
        figures: None,
        data_path: String::new(),
    }
}

/// UDP over the bare veth: the search, or with `--udp-at` the loss at each rate.
fn raw_veth_udp(left: &Host, right: &Host, seconds: u32) -> Result<f64, String> {
    // Where the drops are counted (`losses.rs` reads a namespace through a process in it).
    let anchors = [left, right].map(|h| h.spawn("anchor", &["sleep", "86400"]));
    let pids = [anchors[0].pid(), anchors[1].pid()];
    let Some(rates) = UDP_AT.get() else {
        let mut lost = losses::Losses::default();
        return suite::udp_highest(left, right, RIGHT_UNDERLAY, seconds, pids, &mut lost, &[])
            .ok_or_else(|| "no rate passed, or an iperf3 run failed (said above)".into());
    };
    for &rate in rates {
        let watch = losses::LossWatch::start(pids[0], pids[1]);
        let run = suite::udp_loss_at(left, right, RIGHT_UNDERLAY, seconds, rate);
        let losses = watch.finish();
        print_udp_at("veth-udp", rate, run, &losses, |_| " (no tunnel)".into());
    }
    Err(UDP_AT_ONLY.into())
}

fn wireguard(implementation: WgImpl, seconds: u32) -> Outcome {
    let name = implementation.name();
    if implementation.binary().is_none() {
        return Outcome {
            name,
            mbps: Err(format!(
                "{name} is not installed (scripts/bench installs it)"
            )),
            figures: None,
            data_path: String::new(),
        };
    }
    let lab = Lab::new(&format!("bench-{name}"));
    let (left, right) = pair(&lab);
    let l = WgDevice::start(&left, implementation, 51820);
    let r = WgDevice::start(&right, implementation, 51820);
    l.address(&format!("{LEFT_OVERLAY}/24"));
    r.address(&format!("{RIGHT_OVERLAY}/24"));
    for (dev, peer, peer_overlay, peer_underlay) in [
        (&l, &r, RIGHT_OVERLAY, RIGHT_UNDERLAY),
        (&r, &l, LEFT_OVERLAY, LEFT_UNDERLAY),
    ] {
        dev.add_peer(&WgPeerConfig {
            public_key: peer.public_key().into(),
            allowed_ips: vec![format!("{peer_overlay}/32")],
            endpoint: Some(format!("{peer_underlay}:51820")),
            keepalive: None,
        });
    }
    // Debian's wireguard-go 0.0.20220316 predates wireguard-go's offload work (2023);
    // boringtun-cli has none.
    measure(
        name,
        &left,
        &right,
        seconds,
        [l.proc().pid(), r.proc().pid()],
        "one packet per system call".into(),
    )
}

/// The static musl build for this machine's architecture (`$EDGEWIRE_STATIC_BIN`, which
/// scripts/bench builds): what a device runs. It has no shared C library mapped, so its
/// RSS is the figure a device sees.
fn edgewire_static(seconds: u32) -> Outcome {
    let bin = std::env::var_os("EDGEWIRE_STATIC_BIN").map(std::path::PathBuf::from);
    let Some(bin) = bin.filter(|b| b.is_file()) else {
        return Outcome {
            name: "edgewire-static",
            mbps: Err(
                "no static build: EDGEWIRE_STATIC_BIN is unset or not a file \
                       (scripts/bench builds one)"
                    .into(),
            ),
            figures: None,
            data_path: String::new(),
        };
    };
    use_edgewire_bin(Some(bin));
    let outcome = edgewire("edgewire-static", seconds);
    use_edgewire_bin(None);
    outcome
}

/// The release build of this workspace.
fn edgewire_release(seconds: u32) -> Outcome {
    match find_edgewire_bin("release") {
        Ok(_) => edgewire("edgewire", seconds),
        Err(e) => Outcome {
            name: "edgewire",
            mbps: Err(e),
            figures: None,
            data_path: String::new(),
        },
    }
}

/// Two edgewire ends running the binary in use (`edgewire_bin`).
fn edgewire(name: &'static str, seconds: u32) -> Outcome {
    let lab = Lab::new(&format!("bench-{name}"));
    let (left, right) = pair(&lab);
    let mut l = Agent::new(&left, "left");
    let mut r = Agent::new(&right, "right");
    let key = NetworkKey::generate(lab.dir(), "network.key");
    let manifest = ManifestSource::new("bench", 1)
        .node(
            NodeSource::hub("left", l.public_key(), &format!("{LEFT_OVERLAY}/32"))
                .endpoint(&format!("{LEFT_UNDERLAY}:51820")),
        )
        .node(
            NodeSource::edge(
                "right",
                r.public_key(),
                "bench",
                &format!("{RIGHT_OVERLAY}/32"),
            )
            .endpoint(&format!("{RIGHT_UNDERLAY}:51820")),
        )
        .build(&key, lab.dir(), "manifest");
    for agent in [&mut l, &mut r] {
        agent.start(&manifest.to_string_lossy(), &key.public);
    }
    let data_path = l
        .wait_log("data path:", SETUP)
        .and_then(|line| Some(line.split_once("data path:")?.1.trim().to_owned()))
        .unwrap_or_else(|| "unknown (no data path line in the log)".into());
    measure(
        name,
        &left,
        &right,
        seconds,
        [l.proc().pid(), r.proc().pid()],
        data_path,
    )
}

/// Waits for the tunnel, then measures through it (`suite::run_all`).
fn measure(
    name: &'static str,
    left: &Host,
    right: &Host,
    seconds: u32,
    pids: [u32; 2],
    data_path: String,
) -> Outcome {
    if let Err(e) = left.ping(RIGHT_OVERLAY, SETUP) {
        return Outcome {
            name,
            mbps: Err(e),
            figures: None,
            data_path,
        };
    }
    if let Some(rates) = UDP_AT.get() {
        for &rate in rates {
            let cpu = || Some(suite::cpu_secs(pids[0])? + suite::cpu_secs(pids[1])?);
            let before = cpu();
            let writes = figures::write_calls(pids[1]);
            let steal = suite::HostSteal::start();
            let watch = losses::LossWatch::start(pids[0], pids[1]);
            let run = suite::udp_loss_at(left, right, RIGHT_OVERLAY, seconds, rate);
            let losses = watch.finish();
            print_udp_at(name, rate, run, &losses, |got| {
                format!(
                    "; both ends {:.2} CPU s per GB; receiving end {:.1} datagrams per write \
                     call; host CPU stolen {:.1} %",
                    before.zip(cpu()).map_or(f64::NAN, |(b, a)| (a - b)
                        / (got * f64::from(seconds) / 8e3)),
                    suite::datagrams(got, seconds)
                        / (figures::write_calls(pids[1]) - writes).max(1) as f64,
                    steal.percent().unwrap_or(f64::NAN),
                )
            });
        }
        return Outcome {
            name,
            mbps: Err(UDP_AT_ONLY.into()),
            figures: None,
            data_path,
        };
    }
    let figures = suite::run_all(left, right, RIGHT_OVERLAY, seconds, pids);
    Outcome {
        name,
        mbps: figures.tcp1_mbps.ok_or_else(|| "no TCP figure".into()),
        figures: Some(figures),
        data_path,
    }
}

/// One `--udp-at` line pair: what `run` (`suite::udp_loss_at`) measured at `rate`, with
/// `detail` (from the Mbit/s that arrived) after the loss, then where the lost datagrams
/// were dropped.
fn print_udp_at(
    name: &str,
    rate: u32,
    run: Result<(f64, f64, u64), String>,
    losses: &losses::Losses,
    detail: impl FnOnce(f64) -> String,
) {
    match run {
        Ok((got, lost, lost_datagrams)) => println!(
            "{name:<15} UDP at {rate:>5} Mbit/s: {got:>6.0} Mbit/s arrived, {lost:.2} % lost{}\n\
             {:<15} {lost_datagrams} datagrams lost; {}",
            detail(got),
            "",
            losses.places(),
        ),
        Err(e) => println!("{name:<15} UDP at {rate:>5} Mbit/s: {e}"),
    }
}

/// The figures shown with their ratio to wireguard-go's.
const ROWS: [Row; 17] = [
    ("TCP 1 stream, Mbit/s", |f| f.tcp1_mbps, 0),
    ("  kB per write, receiving end", |f| f.tcp1_kb_per_write, 1),
    ("TCP 4 streams, Mbit/s", |f| f.tcp4_mbps, 0),
    ("UDP < 1 % loss, Mbit/s", |f| f.udp_mbps, 0),
    ("  with 4 MiB socket buffers", |f| f.udp_big_buffer_mbps, 0),
    ("  sent with GSO, read with GRO", |f| f.udp_gso_mbps, 0),
    ("CPU s per GB at 200 Mbit/s", |f| f.cpu_s_per_gb, 2),
    ("ping idle, ms", |f| f.ping_idle_ms, 3),
    ("ping under TCP load, ms", |f| f.ping_load_ms, 3),
    ("RSS idle left, MB", |f| f.idle_rss_kb.map(|r| mb(r.0)), 2),
    ("RSS idle right, MB", |f| f.idle_rss_kb.map(|r| mb(r.1)), 2),
    (
        "  of it anonymous, left",
        |f| f.idle_anon_kb.map(|r| mb(r.0)),
        2,
    ),
    (
        "  of it anonymous, right",
        |f| f.idle_anon_kb.map(|r| mb(r.1)),
        2,
    ),
    ("RSS peak left, MB", |f| f.peak_rss_kb.map(|r| mb(r.0)), 1),
    ("RSS peak right, MB", |f| f.peak_rss_kb.map(|r| mb(r.1)), 1),
    (
        "RSS idle again 25 s later, left",
        |f| f.idle_again_rss_kb.map(|r| mb(r.0)),
        2,
    ),
    (
        "RSS idle again 25 s later, right",
        |f| f.idle_again_rss_kb.map(|r| mb(r.1)),
        2,
    ),
];

/// Kilobytes (as /proc gives them) in megabytes.
fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Shares, not speeds: summarised over `--runs` without ratios.
const SHARES: [Row; 3] = [
    (
        "UDP loss at the app's socket %",
        |f| f.udp_lost_at_app_percent,
        0,
    ),
    (
        "UDP as % of the bare veth's",
        |f| f.udp_of_bare_veth_percent,
        0,
    ),
    ("host CPU stolen, %", |f| f.stolen_percent, 1),
];

fn report(outcomes: &[Outcome]) {
    for o in outcomes.iter().filter(|o| o.figures.is_none()) {
        match &o.mbps {
            Ok(mbps) if o.name == "veth-udp" => println!(
                "{:<15} {mbps:>10.1} Mbit/s (no tunnel; the highest rate under 1 % loss)",
                o.name
            ),
            Ok(mbps) => println!("{:<15} {mbps:>10.1} Mbit/s (no tunnel)", o.name),
            Err(e) => println!("{:<15} failed: {e}", o.name),
        }
    }
    let veth_udp = bare_veth_udp(outcomes);
    let tunnels: Vec<(&str, &Figures)> = outcomes
        .iter()
        .filter_map(|o| Some((o.name, o.figures.as_ref()?)))
        .collect();
    if tunnels.is_empty() {
        return;
    }
    let wg = tunnels
        .iter()
        .find(|(n, _)| *n == "wireguard-go")
        .map(|(_, f)| *f);
    println!();
    print!("{:<30}", "figure (× wireguard-go)");
    for (name, _) in &tunnels {
        print!(" {name:>22}");
    }
    println!();
    // Idle RSS to 10 kB: the target for it is 4.5 MB, and one decimal could not tell
    // 4.46 from 4.54.
    for (label, pick, digits) in ROWS {
        print!("{label:<30}");
        for (_, f) in &tunnels {
            let cell = match pick(f) {
                Some(v) => {
                    let ratio = wg
                        .and_then(pick)
                        .filter(|w| *w > 0.0)
                        .map(|w| format!(" (×{:.2})", v / w))
                        .unwrap_or_default();
                    format!("{v:.digits$}{ratio}")
                }
                None => "-".into(),
            };
            print!(" {cell:>22}");
        }
        println!();
    }
    // Shares, not speeds: no ratio to wireguard-go's. The share of the bare veth's is
    // there only when the veth was measured in this run.
    for (label, pick, digits) in SHARES {
        if tunnels.iter().all(|(_, f)| pick(f).is_none()) {
            continue;
        }
        print!("{label:<30}");
        for (_, f) in &tunnels {
            let cell = pick(f).map_or("-".into(), |v| format!("{v:.digits$}"));
            print!(" {cell:>22}");
        }
        println!();
    }
    println!();
    for o in outcomes.iter().filter(|o| o.figures.is_some()) {
        println!("{:<15} data path: {}", o.name, o.data_path);
    }
    println!(
        "\n(×: the figure divided by wireguard-go's in this run; for CPU, RTT and RSS lower is better)"
    );
    println!(
        "(UDP loss at the app's socket: of the datagrams the UDP search lost, the share the \
         receiving iperf3's socket dropped; near 100 %, the tunnel kept up and iperf3 did not \
         get a core in time)"
    );
    println!(
        "(with 4 MiB socket buffers: the same UDP search with iperf3 -w 4M on both ends, as \
         an application built for high-rate UDP asks; the row above has iperf3's default \
         buffers, 208 KiB)"
    );
    println!(
        "(sent with GSO, read with GRO: the same search with this program's own sender, runs \
         of 10 datagrams of 1368 bytes per sendmsg (UDP_SEGMENT, as quinn sends), and \
         receiver (UDP_GRO), default buffers: a TUN with UDP offload, Linux 6.2+, takes each \
         run whole)"
    );
    if veth_udp.is_some() {
        println!(
            "(UDP as % of the bare veth's: of the highest rate under 1 % loss that the same \
             search found over the veth with no tunnel, where only the two iperf3s share the \
             cores)"
        );
    }
    println!(
        "(host CPU stolen: time the hypervisor gave other guests during that column's runs; \
         columns measured under very different shares are not comparable; a UDP search's \
         probe under more than 10 % is void and run again, up to three times)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &'static str, mbps: Result<f64, String>, udp: Option<f64>) -> Outcome {
        Outcome {
            name,
            mbps,
            figures: udp.map(|u| Figures {
                udp_mbps: Some(u),
                ..Figures::default()
            }),
            data_path: String::new(),
        }
    }

    fn shares(outcomes: &[Outcome]) -> Vec<Option<f64>> {
        (outcomes.iter())
            .filter_map(|o| Some(o.figures.as_ref()?.udp_of_bare_veth_percent))
            .collect()
    }

    #[test]
    fn a_tunnels_udp_is_a_share_of_the_bare_veths_in_the_same_run_only() {
        let mut run = vec![
            outcome("veth-udp", Ok(2000.0), None),
            outcome("edgewire", Ok(0.0), Some(1500.0)),
            outcome("wireguard-go", Ok(0.0), Some(400.0)),
        ];
        share_of_bare_veth(&mut run);
        assert_eq!(shares(&run), vec![Some(75.0), Some(20.0)]);
        // No veth in the run, or its search failed: no share, not one against zero.
        for veth in [
            None,
            Some(Err("no rate under 1 %".to_string())),
            Some(Ok(0.0)),
        ] {
            let mut run = vec![outcome("edgewire", Ok(0.0), Some(1500.0))];
            run.extend(veth.map(|mbps| outcome("veth-udp", mbps, None)));
            share_of_bare_veth(&mut run);
            assert_eq!(shares(&run), vec![None]);
        }
    }
}
