//! Benchmark (not a test): iperf3 TCP throughput between two namespaces joined by a veth,
//! through two edgewire ends (release build), two wireguard-go ends and two boringtun-cli
//! ends, plus raw-veth baselines; each implementation's peak RSS (VmHWM) and CPU time.
//!
//! Run as root: `scripts/bench`, or
//! `cargo run --release -p edgewire-lab --bin bench -- [--seconds N] [--only NAME,…]`
//! with NAME among veth-tcp, veth-udp, edgewire, wireguard-go, boringtun-cli.

use std::fs;
use std::time::Duration;

use edgewire_lab::*;

const LEFT_UNDERLAY: &str = "198.51.100.1";
const RIGHT_UNDERLAY: &str = "198.51.100.2";
const LEFT_OVERLAY: &str = "10.42.0.1";
const RIGHT_OVERLAY: &str = "10.42.0.2";
const SETUP: Duration = Duration::from_secs(20);

const ALL: [&str; 5] = [
    "veth-tcp",
    "veth-udp",
    "edgewire",
    "wireguard-go",
    "boringtun-cli",
];

struct Outcome {
    name: &'static str,
    mbps: Result<f64, String>,
    /// Peak RSS in kB of the left and right ends.
    rss_kb: Option<(u64, u64)>,
    /// CPU seconds used by both ends together during the run.
    cpu_secs: Option<f64>,
}

fn main() {
    if !is_root() {
        eprintln!("bench: needs root to create network namespaces (run scripts/bench)");
        std::process::exit(2);
    }
    Lab::install_panic_cleanup();
    use_edgewire_profile("release");
    let (seconds, only) = parse_args();

    println!("edgewire bench: iperf3 TCP, 1 stream, {seconds} s per run, left -> right");
    println!("(two namespaces joined by a veth; tunnels MTU 1420)\n");
    let mut outcomes = Vec::new();
    for name in ALL.into_iter().filter(|n| only.iter().any(|o| o == n)) {
        eprintln!("bench: running {name} …");
        let outcome = match name {
            "veth-tcp" => raw_veth(seconds, false),
            "veth-udp" => raw_veth(seconds, true),
            "edgewire" => edgewire(seconds),
            "wireguard-go" => wireguard(WgImpl::WireguardGo, seconds),
            "boringtun-cli" => wireguard(WgImpl::BoringtunCli, seconds),
            _ => unreachable!(),
        };
        outcomes.push(outcome);
    }
    report(&outcomes);
}

fn parse_args() -> (u32, Vec<String>) {
    let mut seconds = 10;
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
            _ => {
                eprintln!("usage: bench [--seconds N] [--only {}]", ALL.join(","));
                std::process::exit(2);
            }
        }
    }
    (seconds, only)
}

/// Two hosts joined by one veth.
fn pair(lab: &Lab) -> (Host, Host) {
    let left = lab.host("left");
    let right = lab.host("right");
    lab.link(
        &left,
        &right,
        &format!("{LEFT_UNDERLAY}/24"),
        &format!("{RIGHT_UNDERLAY}/24"),
    );
    (left, right)
}

fn raw_veth(seconds: u32, udp: bool) -> Outcome {
    let lab = Lab::new("bench-veth");
    let (left, right) = pair(&lab);
    Outcome {
        name: if udp { "veth-udp" } else { "veth-tcp" },
        mbps: iperf(&left, &right, RIGHT_UNDERLAY, seconds, udp),
        rss_kb: None,
        cpu_secs: None,
    }
}

fn wireguard(implementation: WgImpl, seconds: u32) -> Outcome {
    let name = implementation.name();
    if implementation.binary().is_none() {
        return Outcome {
            name,
            mbps: Err(format!(
                "{name} is not installed (scripts/bench installs it)"
            )),
            rss_kb: None,
            cpu_secs: None,
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
    measure(
        name,
        &left,
        &right,
        seconds,
        [l.proc().pid(), r.proc().pid()],
    )
}

fn edgewire(seconds: u32) -> Outcome {
    if let Err(e) = find_edgewire_bin("release") {
        return Outcome {
            name: "edgewire",
            mbps: Err(e),
            rss_kb: None,
            cpu_secs: None,
        };
    }
    let lab = Lab::new("bench-edgewire");
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
    measure(
        "edgewire",
        &left,
        &right,
        seconds,
        [l.proc().pid(), r.proc().pid()],
    )
}

/// Waits for the tunnel, runs iperf3 over it, and reads both ends' peak RSS and CPU.
fn measure(name: &'static str, left: &Host, right: &Host, seconds: u32, pids: [u32; 2]) -> Outcome {
    let mbps = left
        .ping(RIGHT_OVERLAY, SETUP)
        .and_then(|_| iperf(left, right, RIGHT_OVERLAY, seconds, false));
    let rss_kb = peak_rss_kb(pids[0]).zip(peak_rss_kb(pids[1]));
    let cpu_secs = cpu_secs(pids[0]).zip(cpu_secs(pids[1])).map(|(a, b)| a + b);
    Outcome {
        name,
        mbps,
        rss_kb,
        cpu_secs,
    }
}

/// iperf3 from `left` to a one-off server on `right` at `dst`; Mbit/s received.
fn iperf(left: &Host, right: &Host, dst: &str, seconds: u32, udp: bool) -> Result<f64, String> {
    let server = right.spawn("iperf3-server", &["iperf3", "-s", "-1", "-B", dst]);
    poll_until(Duration::from_secs(10), || {
        let out = right.exec(&["ss", "-Hltn", "sport", "=", ":5201"]);
        (!out.stdout.trim().is_empty()).then_some(())
    })
    .ok_or_else(|| format!("iperf3 server did not start: {}", server.log()))?;
    let secs = seconds.to_string();
    let mut argv = vec!["iperf3", "-c", dst, "-t", &secs, "-J"];
    if udp {
        argv.extend(["-u", "-b", "0", "-l", "1400"]);
    }
    let out = left.exec(&argv);
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("iperf3 printed no JSON ({e}): {}{}", out.stdout, out.stderr))?;
    if let Some(err) = json["error"].as_str() {
        return Err(format!("iperf3: {err}"));
    }
    // The receiver's figure: for UDP the sender's counts datagrams lost on the way.
    let bps = json["end"]["sum_received"]["bits_per_second"].as_f64();
    bps.map(|b| b / 1e6)
        .ok_or_else(|| format!("no throughput in iperf3's JSON: {}", out.stdout))
}

/// User + system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

fn report(outcomes: &[Outcome]) {
    let edgewire = outcomes
        .iter()
        .find(|o| o.name == "edgewire")
        .and_then(|o| o.mbps.as_ref().ok().copied());
    println!(
        "{:<14} {:>10} {:>12} {:>22} {:>10}",
        "run", "Mbit/s", "÷ edgewire", "peak RSS left/right", "CPU s"
    );
    for o in outcomes {
        match &o.mbps {
            Ok(mbps) => {
                let ratio = edgewire
                    .map(|e| format!("{:.2}", mbps / e))
                    .unwrap_or_else(|| "-".into());
                let rss = o
                    .rss_kb
                    .map(|(l, r)| format!("{:.1} / {:.1} MB", l as f64 / 1024.0, r as f64 / 1024.0))
                    .unwrap_or_else(|| "-".into());
                let cpu = o
                    .cpu_secs
                    .map(|c| format!("{c:.1}"))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<14} {:>10.1} {:>12} {:>22} {:>10}",
                    o.name, mbps, ratio, rss, cpu
                );
            }
            Err(e) => println!("{:<14} failed: {e}", o.name),
        }
    }
    println!(
        "\n÷ edgewire: the run's throughput divided by edgewire's (above 1: faster than edgewire)."
    );
}
