//! Benchmark (not a test): a flood of forged WireGuard handshake initiations from an
//! attacker on the wan against a hub, while an edgewire edge behind NAT pings the hub
//! through the overlay. Prints the pings lost during the flood, the hub's CPU and its
//! RSS before and after, for an edgewire hub and for a boringtun-cli hub in one run.
//!
//! Two kinds of forgery: 148 random bytes behind the type-1 header (MAC1 wrong: dropped
//! for a BLAKE2s), or `--valid-mac1`: real initiations from 10,000 strangers who know the
//! hub's public key, from 64 source ports, cycled (MAC1 right: under load the hub must
//! ask for cookies, and it must keep no state per unknown sender).
//!
//! Run as root: `cargo run --release -p edgewire-lab --bin flood -- [--rate N]
//! [--seconds N] [--valid-mac1] [--profile release|debug] [--only edgewire,boringtun-cli]`.
//! The edgewire binary of the chosen cargo profile must be built
//! (`cargo build --release -p edgewire`).

use std::fs;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgewire_lab::figures::rss_kb;
use edgewire_lab::netns::spawn_in_netns;
use edgewire_lab::pingstream::PingStream;
use edgewire_lab::worlds::{HUB_ADDR, HUB_OVERLAY, HubSites, hub_and_dev_a};
use edgewire_lab::*;

const ATTACKER: &str = "192.0.2.66";
const T: Duration = Duration::from_secs(30);
/// 100 pings a second: a 1 % loss is 30 pings in 30 s, well above noise.
const PING_EVERY: Duration = Duration::from_millis(10);

struct Args {
    rate: u64,
    seconds: u64,
    valid_mac1: bool,
    profile: &'static str,
    only: Vec<String>,
}

struct Outcome {
    hub: &'static str,
    sent_flood: u64,
    pings_sent: usize,
    pings_lost: usize,
    /// The longest time between two answered pings.
    longest_silence: Duration,
    hub_cpu_percent: f64,
    rss_before_kb: u64,
    rss_after_kb: u64,
    receive_drops: u64,
}

fn main() {
    if !is_root() {
        eprintln!("flood: needs root to create network namespaces");
        std::process::exit(2);
    }
    Lab::install_panic_cleanup();
    let args = parse_args();
    use_edgewire_profile(args.profile);
    if let Err(e) = find_edgewire_bin(args.profile) {
        eprintln!("flood: {e}");
        std::process::exit(2);
    }
    println!(
        "edgewire flood: {} forged 148-byte handshake initiations/s for {} s against the \
         hub; an edge pings the hub through the overlay every {PING_EVERY:?} (edgewire {} build)\n",
        args.rate, args.seconds, args.profile
    );
    let mut outcomes = Vec::new();
    for hub in ["edgewire", "boringtun-cli"] {
        if !args.only.iter().any(|o| o == hub) {
            continue;
        }
        if hub == "boringtun-cli" && WgImpl::BoringtunCli.binary().is_none() {
            println!(
                "boringtun-cli: not installed (cargo install boringtun-cli --locked); skipped"
            );
            continue;
        }
        eprintln!("flood: {hub} hub …");
        outcomes.push(run(hub, &args));
    }
    println!(
        "{:<14} {:>12} {:>10} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "hub",
        "flood sent",
        "flood/s",
        "pings",
        "lost",
        "hub CPU",
        "silence",
        "RSS before",
        "RSS after"
    );
    for o in &outcomes {
        println!(
            "{:<14} {:>12} {:>10.0} {:>8} {:>7.2}% {:>8.1}% {:>8.0}ms {:>8}KB {:>8}KB {:>12}",
            o.hub,
            o.sent_flood,
            o.sent_flood as f64 / args.seconds as f64,
            o.pings_sent,
            100.0 * o.pings_lost as f64 / o.pings_sent.max(1) as f64,
            o.hub_cpu_percent,
            o.longest_silence.as_secs_f64() * 1e3,
            o.rss_before_kb,
            o.rss_after_kb,
            o.receive_drops
        );
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        rate: 30_000,
        seconds: 30,
        valid_mac1: false,
        profile: "release",
        only: vec!["edgewire".into(), "boringtun-cli".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} takes a value"));
        match arg.as_str() {
            "--rate" => args.rate = value().parse().expect("--rate takes a number"),
            "--seconds" => args.seconds = value().parse().expect("--seconds takes a number"),
            "--valid-mac1" => args.valid_mac1 = true,
            "--profile" => {
                args.profile = match value().as_str() {
                    "debug" => "debug",
                    "release" => "release",
                    other => panic!("--profile is release or debug, not {other}"),
                }
            }
            "--only" => args.only = value().split(',').map(str::to_owned).collect(),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// The hub process, whichever implementation, kept alive for the run.
enum HubProc {
    Edgewire(Agent),
    Boringtun(WgDevice),
}

impl HubProc {
    fn pid(&self) -> u32 {
        match self {
            HubProc::Edgewire(a) => a.proc().pid(),
            HubProc::Boringtun(w) => w.proc().pid(),
        }
    }
}

fn run(hub_kind: &'static str, args: &Args) -> Outcome {
    let lab = Lab::new(&format!("flood-{hub_kind}"));
    let world = HubSites::new(&lab, 1);
    let (hub_host, dev_host) = (&world.hub_host, &world.devs[0]);
    let attacker = lab.host("attacker");
    world.wan.attach(&attacker, &format!("{ATTACKER}/24"));
    let mut dev = Agent::new(dev_host, "dev-a");
    let key = NetworkKey::generate(lab.dir(), "network.key");

    let (hub, hub_key) = match hub_kind {
        "edgewire" => {
            let agent = Agent::new(hub_host, "hub-1");
            let key = agent.public_key().to_owned();
            (HubProc::Edgewire(agent), key)
        }
        _ => {
            let wg = WgDevice::boringtun(hub_host, 51820);
            wg.address(&format!("{HUB_OVERLAY}/16"));
            wg.add_peer(&WgPeerConfig {
                public_key: dev.public_key().into(),
                allowed_ips: vec!["10.42.1.1/32".into()],
                ..Default::default()
            });
            let key = wg.public_key().to_owned();
            (HubProc::Boringtun(wg), key)
        }
    };
    let manifest = hub_and_dev_a(1, &hub_key, dev.public_key()).build(&key, lab.dir(), "manifest");
    let url = manifest.to_string_lossy().into_owned();
    let mut hub = hub;
    if let HubProc::Edgewire(agent) = &mut hub {
        agent.start(&url, &key.public);
    }
    dev.start(&url, &key.public);
    dev_host
        .ping(HUB_OVERLAY, T)
        .unwrap_or_else(|e| panic!("{hub_kind}: the overlay does not work before the flood: {e}"));

    let forged = if args.valid_mac1 {
        strangers_initiations(&hub_key, 10_000)
    } else {
        Vec::new()
    };
    let pings = PingStream::start(dev_host, HUB_OVERLAY, PING_EVERY);
    let rss_before_kb = rss_kb(hub.pid());
    let drops_before = receive_buffer_drops(hub_host);
    let cpu_before = cpu_ticks(hub.pid());
    let t0 = Instant::now();
    let sent = flood(
        &attacker,
        args.rate,
        Duration::from_secs(args.seconds),
        forged,
    );
    let elapsed = t0.elapsed();
    let cpu_after = cpu_ticks(hub.pid());
    let rss_after_kb = rss_kb(hub.pid());
    let receive_drops = receive_buffer_drops(hub_host).saturating_sub(drops_before);
    let record = pings.stop(Duration::from_secs(2));
    let end = Instant::now();
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (cpu_after.saturating_sub(cpu_before)) as f64 / ticks_per_sec;
    Outcome {
        hub: hub_kind,
        sent_flood: sent,
        pings_sent: record.judged(end, Duration::from_secs(2)),
        pings_lost: record.lost(end, Duration::from_secs(2)),
        longest_silence: record
            .longest_silence()
            .map_or(Duration::ZERO, |(gap, _)| gap),
        hub_cpu_percent: 100.0 * cpu / elapsed.as_secs_f64(),
        rss_before_kb,
        rss_after_kb,
        receive_drops,
    }
}

/// Datagrams the kernel dropped in the hub's namespace because a UDP socket's receive
/// buffer was full (`Udp: RcvbufErrors` of /proc/net/snmp): the hub fell behind.
fn receive_buffer_drops(host: &Host) -> u64 {
    let snmp = host.run(&["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// `count` handshake initiations to the hub whose public key is `hub_key` (base64), each
/// from a stranger of its own: MAC1 is right, the sender is in no manifest.
fn strangers_initiations(hub_key: &str, count: usize) -> Vec<Vec<u8>> {
    use boringtun::noise::{Tunn, TunnResult};
    use boringtun::x25519::{PublicKey, StaticSecret};
    let hub: [u8; 32] = decode_key(hub_key);
    let mut random = fs::File::open("/dev/urandom").expect("opening /dev/urandom");
    (0..count)
        .map(|i| {
            let mut secret = [0u8; 32];
            std::io::Read::read_exact(&mut random, &mut secret).expect("reading /dev/urandom");
            let mut tunn = Tunn::new(
                StaticSecret::from(secret),
                PublicKey::from(hub),
                None,
                None,
                i as u32,
                None,
            );
            let mut out = vec![0u8; 148];
            match tunn.format_handshake_initiation(&mut out, false) {
                TunnResult::WriteToNetwork(d) => d.to_vec(),
                _ => panic!("boringtun made no initiation"),
            }
        })
        .collect()
}

/// A WireGuard key from its base64 text.
fn decode_key(text: &str) -> [u8; 32] {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut have = 0;
    let mut out = Vec::with_capacity(32);
    for c in text.trim().bytes().take_while(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("a base64 key") as u32;
        bits = (bits << 6) | v;
        have += 6;
        if have >= 8 {
            have -= 8;
            out.push((bits >> have) as u8);
        }
    }
    out.try_into().expect("a 32-byte key")
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let get = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// Sends forged initiations from `attacker` to the hub at `rate` per second for `time`,
/// in bursts every millisecond; returns how many left the socket. With `forged` empty,
/// random bytes behind the type-1 header; else those messages in turn, from 64 ports.
fn flood(attacker: &Host, rate: u64, time: Duration, forged: Vec<Vec<u8>>) -> u64 {
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (sent.clone(), stop.clone());
    let thread = spawn_in_netns(attacker, "flood", move || {
        let sockets: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind("0.0.0.0:0").expect("binding a flood socket"))
            .collect();
        let target = format!("{HUB_ADDR}:51820");
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut packet = [0u8; 148];
        let start = Instant::now();
        let mut due = 0u64;
        while start.elapsed() < time && !st.load(Ordering::Relaxed) {
            // Catch up to where the rate says we should be, then wait for the next ms.
            let should = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while due < should {
                for chunk in packet.chunks_mut(8) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let bytes = rng.to_le_bytes();
                    chunk.copy_from_slice(&bytes[..chunk.len()]);
                }
                // Type 1 (handshake initiation) and three reserved zero bytes.
                packet[..4].copy_from_slice(&[1, 0, 0, 0]);
                let i = due as usize;
                let message = match forged.get(i % forged.len().max(1)) {
                    Some(m) => &m[..],
                    None => &packet[..],
                };
                if sockets[i % sockets.len()].send_to(message, &target).is_ok() {
                    s.fetch_add(1, Ordering::Relaxed);
                }
                due += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    thread.join().expect("the flood thread");
    stop.store(true, Ordering::Relaxed);
    sent.load(Ordering::Relaxed)
}
