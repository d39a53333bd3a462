//! `edgewire netcheck`: can this device join its overlay, and if not, what is in the
//! way. Each check has its own deadline and fails on its own; the whole run stays
//! under ten seconds. Progress goes to stderr, the table (or `--json`) to stdout; the
//! exit status is 0 when the device can join, 1 when it cannot.
//!
//! While `edgewire run` runs, the hubs are judged from what the agent already knows
//! (its status socket): a second handshake with the same key from another port would
//! move the hub's idea of this device's endpoint away from the agent. Without an agent,
//! netcheck shakes hands with each hub itself, through the core, from its own socket.
//!
//! The NAT's mapping comes from the same socket and core: STUN Binding to the relays'
//! UDP ports (two of different addresses are needed), classified by `core::reflexive`.
//! With an agent running it is not asked: the agent's loop does not feed the core's
//! STUN yet, so it has no answer to give, and netcheck does not compete with it.
//!
//! Not checked yet: relay allocations per transport, and the manifest server's DNS /
//! TCP / TLS steps, certificate and ETag one by one (the fetcher reports one result).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{ManifestFormat, RunConfig};
use crate::core::topology;
use crate::core::{Destination, Event, NatMapping, Node};
use crate::fetch::{FetchConfig, Fetched, Fetcher};
use crate::human::Human;
use crate::manifest::{self, Envelope, Manifest, Role};
use crate::status;

// Deadlines, chosen so the worst case (every step timing out) stays under 10 s:
// DNS 1.5 + TCP 1.5 + fetch 3 + handshakes and STUN 3 = 9 s.
const DNS_DEADLINE: Duration = Duration::from_millis(1500);
const TCP_DEADLINE: Duration = Duration::from_millis(1500);
const FETCH_CONNECT: Duration = Duration::from_secs(2);
const FETCH_TOTAL: Duration = Duration::from_secs(3);
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    pub millis: u64,
}

#[derive(Debug, Serialize)]
pub struct NetcheckReport {
    pub checks: Vec<Check>,
    pub can_join: bool,
    pub not_checked: Vec<&'static str>,
}

pub fn run(config: &RunConfig, json: bool) -> anyhow::Result<bool> {
    let report = netcheck(config);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(report.can_join)
}

fn netcheck(config: &RunConfig) -> NetcheckReport {
    let mut checks = Vec::new();
    let mut timed = |name: &str, f: &mut dyn FnMut() -> (Outcome, String)| {
        let start = Instant::now();
        let (outcome, detail) = f();
        checks.push(Check {
            name: name.to_string(),
            outcome,
            detail,
            millis: start.elapsed().as_millis() as u64,
        });
        outcome
    };
    let tun = timed("/dev/net/tun", &mut check_tun);
    let cap = timed("CAP_NET_ADMIN", &mut || {
        check_cap(&read("/proc/self/status"))
    });
    timed("clock", &mut || {
        let trust = crate::shell::clocktrust::detect();
        if trust.is_synchronised() {
            (Outcome::Ok, trust.reason().to_string())
        } else {
            (
                Outcome::Warn,
                format!("{}; manifest expiry is not enforced", trust.reason()),
            )
        }
    });
    let mut agent = None;
    timed("agent", &mut || match status::query(&config.state_dir) {
        Ok(r) => {
            let detail = format!("running: {}", r.state);
            agent = Some(r);
            (Outcome::Ok, detail)
        }
        Err(e) => {
            let e = format!("{e:#}");
            let gone = e.contains("No such file") || e.contains("Connection refused");
            let socket = status::socket_path(&config.state_dir);
            match gone {
                true => (
                    Outcome::Skip,
                    format!("not running (nothing answers on {})", socket.display()),
                ),
                false => (Outcome::Warn, e),
            }
        }
    });
    let mut cached = None;
    timed("cached manifest", &mut || {
        let (outcome, detail, m) = check_cache(&config.state_dir, config.manifest_format);
        cached = m;
        (outcome, detail)
    });
    let mut fetched = None;
    // An http(s) server: name and TCP first, so a failure says which step failed.
    let mut reachable = true;
    if let Some((host, port)) = server_of(&config.manifest_url) {
        eprintln!(
            "netcheck: resolving {host} (up to {} ms)",
            DNS_DEADLINE.as_millis()
        );
        let mut addrs = Vec::new();
        reachable = timed("manifest DNS", &mut || {
            let (outcome, detail, found) = check_dns(&host, port);
            addrs = found;
            (outcome, detail)
        }) == Outcome::Ok;
        if reachable {
            reachable = timed("manifest TCP", &mut || check_tcp(&addrs)) == Outcome::Ok;
        }
    }
    let fetch_ok = if reachable {
        eprintln!(
            "netcheck: fetching {} (up to {} s)",
            config.manifest_url,
            FETCH_TOTAL.as_secs()
        );
        timed("manifest URL", &mut || {
            let (outcome, detail, m) = check_fetch(config);
            fetched = m;
            (outcome, detail)
        })
    } else {
        Outcome::Fail
    };
    let manifest = fetched.or(cached);
    let mut hub_up = false;
    match (&agent, &manifest) {
        (Some(r), _) => {
            for p in r.peers.iter().filter(|p| p.role == "hub") {
                let outcome = match p.health.as_str() {
                    "up" => Outcome::Ok,
                    "down" => Outcome::Fail,
                    _ => Outcome::Warn,
                };
                hub_up |= outcome == Outcome::Ok;
                let detail = format!(
                    "{} per the running agent, at {}{}",
                    p.health,
                    p.endpoint.as_deref().unwrap_or("no endpoint"),
                    p.last_handshake_secs.map_or(String::new(), |s| format!(
                        ", last handshake {} ago",
                        Human(Duration::from_secs(s))
                    ))
                );
                checks.push(Check {
                    name: format!("hub {}", p.name),
                    outcome,
                    detail,
                    millis: 0,
                });
            }
        }
        (None, Some(m)) => {
            eprintln!(
                "netcheck: shaking hands with the hubs (up to {} s)",
                HANDSHAKE_DEADLINE.as_secs()
            );
            for check in check_hubs(config, m) {
                hub_up |= check.outcome == Outcome::Ok;
                checks.push(check);
            }
        }
        (None, None) => checks.push(Check {
            name: "hubs".into(),
            outcome: Outcome::Skip,
            detail: "no manifest (neither fetched nor cached) names them".into(),
            millis: 0,
        }),
    }
    let have_manifest = fetch_ok == Outcome::Ok
        || checks
            .iter()
            .any(|c| c.name == "cached manifest" && c.outcome == Outcome::Ok);
    NetcheckReport {
        can_join: tun == Outcome::Ok && cap == Outcome::Ok && have_manifest && hub_up,
        checks,
        not_checked: vec![
            "relay allocations per transport",
            "manifest server DNS/TCP/TLS steps and certificate",
        ],
    }
}

/// The host and port of an `http(s)://` URL (user info and path left out).
fn server_of(url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = match url.split_once("://")? {
        ("https", rest) => (rest, 443),
        ("http", rest) => (rest, 80),
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((hostport.to_string(), default_port)),
    }
}

/// Name resolution on a helper thread, so a resolver that hangs costs only the deadline.
fn check_dns(host: &str, port: u16) -> (Outcome, String, Vec<SocketAddr>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    let _ = std::thread::Builder::new()
        .name("netcheck-dns".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        });
    match rx.recv_timeout(DNS_DEADLINE) {
        Ok(Ok(addrs)) if !addrs.is_empty() => {
            let list = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>();
            (Outcome::Ok, format!("{host}: {}", list.join(", ")), addrs)
        }
        Ok(Ok(_)) => (Outcome::Fail, format!("{host}: no addresses"), Vec::new()),
        Ok(Err(e)) => (Outcome::Fail, format!("{host}: {e}"), Vec::new()),
        Err(_) => (
            Outcome::Fail,
            format!(
                "{host}: no answer within {} ms; check /etc/resolv.conf",
                DNS_DEADLINE.as_millis()
            ),
            Vec::new(),
        ),
    }
}

fn check_tcp(addrs: &[SocketAddr]) -> (Outcome, String) {
    let Some(first) = addrs.first() else {
        return (Outcome::Fail, "no address to connect to".into());
    };
    let start = Instant::now();
    match std::net::TcpStream::connect_timeout(first, TCP_DEADLINE) {
        Ok(_) => (
            Outcome::Ok,
            format!("{first}: connected in {}", Human(start.elapsed())),
        ),
        Err(e) => (
            Outcome::Fail,
            format!("{first}: {e} (firewall, server down, or wrong port)"),
        ),
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn check_tun() -> (Outcome, String) {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => (Outcome::Ok, "opens read-write".into()),
        Err(e) => (
            Outcome::Fail,
            format!(
                "{e}: load the tun module (modprobe tun) or give the service the device \
                 (DeviceAllow=/dev/net/tun rw)"
            ),
        ),
    }
}

/// CAP_NET_ADMIN is bit 12 of the effective set in `/proc/self/status`.
fn check_cap(proc_status: &str) -> (Outcome, String) {
    let eff = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match eff {
        Some(bits) if bits & (1 << 12) != 0 => (Outcome::Ok, "held".into()),
        Some(_) => (
            Outcome::Fail,
            "missing: run as root or with AmbientCapabilities=CAP_NET_ADMIN".into(),
        ),
        None => (
            Outcome::Warn,
            "cannot tell (no CapEff in /proc/self/status)".into(),
        ),
    }
}

fn check_cache(state_dir: &Path, format: ManifestFormat) -> (Outcome, String, Option<Manifest>) {
    let path = crate::state::cache::path(state_dir);
    let raw = match crate::state::cache::load(state_dir) {
        Ok(Some(raw)) => raw,
        Ok(None) => return (Outcome::Skip, format!("none at {}", path.display()), None),
        Err(e) => return (Outcome::Fail, e.to_string(), None),
    };
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or("age unknown".to_string(), |d| format!("{} old", Human(d)));
    if format == ManifestFormat::Wg {
        return (Outcome::Ok, format!("{} bytes, {age}", raw.len()), None);
    }
    // The agent verified it before caching; here only its content is read.
    match Envelope::parse(&raw).and_then(|e| e.decode_unverified()) {
        Ok(m) => (
            Outcome::Ok,
            format!("network {:?} serial {}, {age}", m.network, m.serial),
            Some(m),
        ),
        Err(e) => (Outcome::Fail, format!("{}: {e}", path.display()), None),
    }
}

fn check_fetch(config: &RunConfig) -> (Outcome, String, Option<Manifest>) {
    let fetch_config = FetchConfig {
        connect_timeout: FETCH_CONNECT,
        read_timeout: FETCH_TOTAL,
        ..FetchConfig::from_run(config)
    };
    let mut fetcher = match Fetcher::new(fetch_config) {
        Ok(f) => f,
        Err(e) => return (Outcome::Fail, e.to_string(), None),
    };
    let bytes = match fetcher.fetch() {
        Ok(Fetched::New(bytes)) => bytes,
        Ok(Fetched::NotModified) => {
            return (Outcome::Ok, "answered: not modified".into(), None);
        }
        Err(e) => return (Outcome::Fail, e.to_string(), None),
    };
    match config.manifest_format {
        ManifestFormat::Signed => match manifest::open(&bytes, &config.manifest_pubkeys) {
            Ok(m) => (
                Outcome::Ok,
                format!(
                    "{} bytes, signature valid, network {:?} serial {}",
                    bytes.len(),
                    m.network,
                    m.serial
                ),
                Some(m),
            ),
            Err(e) => (Outcome::Fail, format!("fetched but refused: {e}"), None),
        },
        ManifestFormat::Wg => (
            Outcome::Ok,
            format!("{} bytes (Kilo peer config)", bytes.len()),
            None,
        ),
    }
}

/// One WireGuard handshake per hub, all at once on one ephemeral socket, through the
/// core (the only code that speaks WireGuard), started by one ICMP echo per hub.
fn check_hubs(config: &RunConfig, m: &Manifest) -> Vec<Check> {
    let fail = |name: &str, detail: String| Check {
        name: name.into(),
        outcome: Outcome::Fail,
        detail,
        millis: 0,
    };
    let key = match crate::keys::load(&config.state_dir) {
        Ok(k) => k,
        Err(e) => return vec![fail("hubs", format!("{e:#}"))],
    };
    let own = key.public_key();
    let plan = match topology::plan(m, &own) {
        Ok(p) => p,
        Err(e) => return vec![fail("hubs", e.to_string())],
    };
    let Some(source) = plan.addresses.first().map(|p| p.addr()) else {
        return vec![fail("hubs", "this node has no overlay address".into())];
    };
    let resolve = |e: &str| {
        e.to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let hubs: BTreeMap<_, _> = plan
        .peers
        .iter()
        .filter(|(_, p)| p.role == Role::Hub)
        .map(|(k, p)| (*k, p.resolve(resolve)))
        .collect();
    if hubs.is_empty() {
        return vec![fail(
            "hubs",
            "the manifest lists no hub for this node".into(),
        )];
    }
    let socket = match UdpSocket::bind(("0.0.0.0", 0)) {
        Ok(s) => s,
        Err(e) => return vec![fail("hubs", format!("binding a UDP socket: {e}"))],
    };
    let start = Instant::now();
    let mut node = Node::new(
        key,
        rand_core::RngCore::next_u32(&mut rand_core::OsRng),
        start,
    );
    node.apply(hubs.clone(), None, start);
    // The relays' UDP ports answer STUN Binding (coturn does): two of different
    // addresses classify the NAT's mapping, from this very socket.
    let stun: Vec<SocketAddr> = stun_servers(m);
    node.set_host_addresses(host_addresses(&stun), start);
    node.set_stun_servers(stun.clone(), start);
    let mut mapping = None;
    for config in hubs.values() {
        if let Some(to) = config.allowed_ips.first().map(|p| p.addr()) {
            node.handle_tun(&echo_request(source, to), start);
        }
    }
    let mut answered: BTreeMap<crate::keys::PublicKey, Duration> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    let stun_pending = |mapping: &Option<NatMapping>| stun.len() >= 2 && mapping.is_none();
    while (answered.len() < hubs.len() || stun_pending(&mapping))
        && start.elapsed() < HANDSHAKE_DEADLINE
    {
        while let Some(t) = node.poll_transmit() {
            if let Destination::Udp(to) = t.destination {
                let _ = socket.send_to(&t.payload, to);
            }
            node.recycle(t.payload);
        }
        let now = Instant::now();
        let until = node
            .poll_timeout()
            .map(|(at, _)| at)
            .unwrap_or(now + Duration::from_millis(100))
            .min(start + HANDSHAKE_DEADLINE)
            .max(now + Duration::from_millis(1));
        let _ = socket.set_read_timeout(Some(until - now));
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => node.handle_udp(from, &buf[..n], Instant::now()),
            Err(_) => node.handle_timeout(Instant::now()),
        }
        while let Some(event) = node.poll_event() {
            if let Event::NatMapping(m) = event {
                mapping = Some(m);
            }
        }
        let now = Instant::now();
        for (k, _) in hubs.iter() {
            if !answered.contains_key(k)
                && node.peer(k).and_then(|p| p.last_handshake(now)).is_some()
            {
                answered.insert(*k, now - start);
            }
        }
    }
    let nat = nat_check(&stun, mapping, &node.reflexive_addresses());
    let mut checks: Vec<Check> = hubs
        .iter()
        .map(|(k, c)| {
            let at = c
                .endpoints
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match answered.get(k) {
                Some(rtt) => Check {
                    name: format!("hub {}", c.name),
                    outcome: Outcome::Ok,
                    detail: format!("{at}: handshake answered in {}", Human(*rtt)),
                    millis: rtt.as_millis() as u64,
                },
                None if c.endpoints.is_empty() => {
                    fail(&format!("hub {}", c.name), "no endpoint resolves".into())
                }
                None => fail(
                    &format!("hub {}", c.name),
                    format!(
                        "{at}: no handshake answer within {} s (UDP blocked, hub down, or \
                         this device's key not enrolled there)",
                        HANDSHAKE_DEADLINE.as_secs()
                    ),
                ),
            }
        })
        .collect();
    checks.push(nat);
    checks
}

/// Each relay's UDP port (`turn:` URLs with UDP, resolved).
fn stun_servers(m: &Manifest) -> Vec<SocketAddr> {
    let mut servers: Vec<SocketAddr> = m
        .relays
        .iter()
        .filter_map(|r| manifest::parse_relay_url(&r.url).ok())
        .filter(|u| u.transport == manifest::Transport::Udp)
        .flat_map(|u| {
            let host = match u.host {
                manifest::Host::Ip(ip) => ip.to_string(),
                manifest::Host::Name(name) => name,
            };
            (host.as_str(), u.port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    servers.sort();
    servers.dedup();
    servers
}

/// The local addresses the kernel picks toward each server (a connected UDP socket
/// sends nothing): a reflexive address equal to one of them means no NAT.
fn host_addresses(servers: &[SocketAddr]) -> Vec<IpAddr> {
    let mut own: Vec<IpAddr> = servers
        .iter()
        .filter_map(|s| {
            let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
            socket.connect(s).ok()?;
            socket.local_addr().ok().map(|a| a.ip())
        })
        .collect();
    own.sort();
    own.dedup();
    own
}

fn nat_check(stun: &[SocketAddr], mapping: Option<NatMapping>, seen: &[SocketAddr]) -> Check {
    let seen = seen
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let (outcome, detail) = match mapping {
        _ if stun.len() < 2 => (
            Outcome::Skip,
            format!(
                "needs two STUN servers of different addresses (the manifest's relays with \
                 UDP); it lists {}",
                stun.len()
            ),
        ),
        None | Some(NatMapping::Unknown) => (
            Outcome::Warn,
            "fewer than two STUN servers answered: UDP to the relays may be blocked".into(),
        ),
        Some(NatMapping::NoNat) => (Outcome::Ok, format!("no NAT: seen as {seen}")),
        Some(NatMapping::EndpointIndependent) => (
            Outcome::Ok,
            format!("endpoint-independent mapping (direct paths can be punched); seen as {seen}"),
        ),
        Some(NatMapping::EndpointDependent) => (
            Outcome::Warn,
            format!(
                "endpoint-dependent mapping (\"symmetric\"): other edges are reached through \
                 a hub or a relay, not directly; seen as {seen}"
            ),
        ),
    };
    Check {
        name: "NAT".into(),
        outcome,
        detail,
        millis: 0,
    }
}

/// A minimal IPv4 ICMP echo request, or an IPv6 one without checksum care (the
/// handshake, not the echo, is what is measured).
fn echo_request(from: IpAddr, to: IpAddr) -> Vec<u8> {
    match (from, to) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let mut p = vec![0u8; 28];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&28u16.to_be_bytes());
            p[8] = 64;
            p[9] = 1;
            p[12..16].copy_from_slice(&from.octets());
            p[16..20].copy_from_slice(&to.octets());
            let sum = checksum(&p[..20]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
            p[20] = 8;
            let sum = checksum(&p[20..]);
            p[22..24].copy_from_slice(&sum.to_be_bytes());
            p
        }
        (from, to) => {
            let (IpAddr::V6(from), IpAddr::V6(to)) = (
                match from {
                    IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
                    a => a,
                },
                match to {
                    IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
                    a => a,
                },
            ) else {
                unreachable!("both mapped to IPv6")
            };
            let mut p = vec![0u8; 48];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&8u16.to_be_bytes());
            p[6] = 58;
            p[7] = 64;
            p[8..24].copy_from_slice(&from.octets());
            p[24..40].copy_from_slice(&to.octets());
            p[40] = 128;
            p
        }
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn table(r: &NetcheckReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for c in &r.checks {
        let mark = match c.outcome {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "-",
        };
        let _ = writeln!(s, "{mark:<5} {:<16} {}", c.name, c.detail);
    }
    let _ = writeln!(s, "not checked yet: {}", r.not_checked.join(", "));
    let _ = writeln!(
        s,
        "{}",
        if r.can_join {
            "result: this device can join its overlay"
        } else {
            "result: this device cannot join its overlay (see FAIL above)"
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_net_admin_is_bit_12_of_the_effective_set() {
        let with = "Name:\tedgewire\nCapEff:\t0000000000001000\n";
        assert_eq!(check_cap(with).0, Outcome::Ok);
        let without = "CapEff:\t0000000000000400\n";
        assert_eq!(check_cap(without).0, Outcome::Fail);
        assert_eq!(check_cap("").0, Outcome::Warn);
    }

    #[test]
    fn the_server_of_a_url_is_its_host_and_port() {
        let s = |u: &str| server_of(u).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(
            s("https://m.example/lab.ewm").as_deref(),
            Some("m.example 443")
        );
        assert_eq!(
            s("http://u:pw@192.0.2.1:8080/m?x").as_deref(),
            Some("192.0.2.1 8080")
        );
        assert_eq!(
            s("https://[2001:db8::1]/m").as_deref(),
            Some("2001:db8::1 443")
        );
        assert_eq!(
            s("https://[2001:db8::1]:8443").as_deref(),
            Some("2001:db8::1 8443")
        );
        assert_eq!(s("/etc/edgewire/m"), None);
        assert_eq!(s("file:///etc/edgewire/m"), None);
    }

    #[test]
    fn the_echo_request_has_valid_checksums() {
        let p = echo_request("10.42.1.1".parse().unwrap(), "10.42.0.1".parse().unwrap());
        assert_eq!(checksum(&p[..20]), 0, "IPv4 header");
        assert_eq!(checksum(&p[20..]), 0, "ICMP");
        assert_eq!(&p[16..20], &[10, 42, 0, 1]);
    }
}
