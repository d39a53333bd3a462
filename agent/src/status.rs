//! The status report: what the running agent answers on its Unix socket, and the
//! `edgewire status` client that asks for it and prints it.
//!
//! The socket lives in the state directory (0700), so only the agent's own user (root or
//! the service user) can ask.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::human::{Bytes, Human};

pub const SOCKET_NAME: &str = "edgewire.sock";

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Fields added after the first release carry `#[serde(default)]`, so this `status`
/// still reads an older agent's answer; no field is ever renamed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The agent's `--version` line.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub uptime_secs: u64,
    /// Wall-clock start, seconds since 1970 (1970-ish on a board without an RTC).
    #[serde(default)]
    pub started_unix: u64,
    pub interface: String,
    /// This node's name in the manifest (null until it finds itself there).
    pub name: Option<String>,
    pub public_key: String,
    pub addresses: Vec<String>,
    pub listen_port: u16,
    /// The manifest in force (null before the first good one).
    pub manifest: Option<ManifestInfo>,
    /// What the agent is doing, in a few words (also systemd's STATUS= line).
    pub state: String,
    /// The hub the overlay prefix goes through now (edges only); null while that hub
    /// is down, even though the agent keeps sending to it to find out when it is back.
    pub overlay_via: Option<String>,
    /// The hub the overlay prefix is routed to, with its health, also while it is down.
    #[serde(default)]
    pub overlay_hub: Option<HubReport>,
    #[serde(default)]
    pub manifest_poll: ManifestPoll,
    /// The NAT in front of the WireGuard socket, as STUN told the core: `unknown`,
    /// `none`, `endpoint-independent` or `endpoint-dependent`.
    #[serde(default)]
    pub nat_mapping: String,
    /// This device's addresses as STUN servers saw them.
    #[serde(default)]
    pub reflexive_addresses: Vec<String>,
    pub peers: Vec<PeerReport>,
    pub drops: DropReport,
    /// How packets move now (null from an agent older than this field).
    #[serde(default)]
    pub data_path: Option<DataPath>,
}

/// How the agent moves packets, as it is now: a level the kernel refused at run time
/// (on older kernels, GSO answered with EIO by an egress device without checksum
/// offload) has stepped down for good, and shows here, so a fleet's devices that lost a
/// fast path can be found without reading their logs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DataPath {
    /// `gso` (a run of datagrams to one peer in one `UDP_SEGMENT` message), `sendmmsg`
    /// or `single` (one datagram per system call).
    pub udp_send: String,
    /// `gro` (trains the kernel coalesced), `recvmmsg` or `single`.
    pub udp_receive: String,
    /// Whether the TUN carries virtio-net headers: TCP super-packets from the kernel,
    /// coalesced runs back to it.
    pub tun_offload: bool,
    /// Whether UDP goes the same way (Linux 6.2+): an application's `UDP_SEGMENT` sends
    /// reach the agent whole, and runs of datagrams go back coalesced. Absent from an
    /// older agent's report.
    #[serde(default)]
    pub tun_udp_offload: bool,
}

impl std::fmt::Display for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn name(level: &str) -> &str {
            match level {
                "gso" => "GSO",
                "gro" => "GRO",
                "single" => "one datagram a call",
                other => other,
            }
        }
        let tun = match (self.tun_offload, self.tun_udp_offload) {
            (false, _) => "off",
            (true, false) => "on (TCP only)",
            (true, true) => "on (TCP and UDP)",
        };
        write!(
            f,
            "UDP send {}, receive {}; TUN offload {tun}",
            name(&self.udp_send),
            name(&self.udp_receive),
        )
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HubReport {
    pub name: String,
    /// `up`, `down` or `unknown`, as for a peer.
    pub health: String,
    /// Whether overlay traffic gets through it now (it has a path and is not down).
    pub carrying: bool,
}

/// How the polls of the manifest URL went; times are seconds ago.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ManifestPoll {
    pub interval_secs: u64,
    pub last_poll_secs: Option<u64>,
    /// The last poll the server answered (a new manifest or "not modified"): how old
    /// the agent's knowledge of the manifest is.
    pub last_success_secs: Option<u64>,
    /// The last failed poll and why; kept after a later success, with its time.
    pub last_error: Option<String>,
    pub last_error_secs: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ManifestInfo {
    pub serial: u64,
    pub source: String,
    pub network: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerReport {
    pub name: String,
    pub public_key: String,
    pub role: String,
    /// Where datagrams go now (null until known).
    pub endpoint: Option<String>,
    /// `direct` or `relay`; null while no path is known.
    pub path: Option<String>,
    /// `up`, `down` or `unknown`, judged from whether it answers what we send.
    pub health: String,
    /// On a relayed path: the TURN server (`HOST:PORT`) and how it is reached
    /// (`udp`, `tcp` or `tls`).
    pub relay: Option<String>,
    pub relay_transport: Option<String>,
    pub last_handshake_secs: Option<u64>,
    pub handshakes: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub allowed_ips: Vec<String>,
    /// Persistent keepalive in seconds (null when off).
    #[serde(default)]
    pub keepalive_secs: Option<u16>,
    /// How the peer is reached: on a direct path `manifest` (an endpoint it lists, or
    /// learned from the peer), `punched` (through both NATs, on demand) or `lan` (a host
    /// address of the other side); `hub` for a session made on demand whose traffic
    /// still goes through the hub; null on a relay or without a path.
    #[serde(default)]
    pub via: Option<String>,
    /// On a punched path: the other side's candidate in use, as `KIND ADDRESS`.
    #[serde(default)]
    pub candidate: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DropReport {
    pub no_route: u64,
    pub unknown_datagram: u64,
    pub refused: u64,
    /// Handshakes answered with a cookie reply (the agent was under load).
    #[serde(default)]
    pub cookie_replies: u64,
    /// Handshakes dropped unanswered: under load and past the cookie replies a second
    /// allows (a flood).
    #[serde(default)]
    pub shed_handshakes: u64,
    /// Frames from an offloading TUN that could not be split (bad virtio-net header or
    /// super-packet), and datagrams larger than a receive slot.
    #[serde(default)]
    pub bad_batch: u64,
    /// Data datagrams dropped because a queue stood in front of the agent: it decrypted
    /// slower than they came, and each had waited over 5 ms (CoDel; see codel.rs).
    #[serde(default)]
    pub queue_delay: u64,
    /// Packets applications sent that were dropped because a queue stood in the TUN in
    /// front of the agent: it encrypted slower than they came, and each had waited over
    /// 5 ms, by a TCP segment's own timestamp or the agent's probe through the queue
    /// (CoDel; see sent_wait.rs and ring_probe.rs), or bulk UDP dropped as read once
    /// the queue waited 20 ms or more (BLUE, blue.rs).
    #[serde(default)]
    pub sent_queue_delay: u64,
    /// Packets applications sent to the TUN while its queue was full: faster than the
    /// agent encrypts them (the interface's `tx_dropped`). `None` when the kernel did
    /// not say, or from an older agent.
    #[serde(default)]
    pub tun_queue_full: Option<u64>,
}

impl DropReport {
    /// The reasons with drops, counted, for one line of `status`: empty when none.
    fn nonzero(&self) -> String {
        [
            (self.no_route, "no route"),
            (self.unknown_datagram, "unknown datagram"),
            (self.refused, "refused"),
            (self.shed_handshakes, "handshake flood"),
            (self.bad_batch, "bad batch"),
            (
                self.queue_delay,
                "queue delay (came faster than the agent decrypts)",
            ),
            (
                self.sent_queue_delay,
                "send queue delay (sent faster than the agent encrypts)",
            ),
            (
                self.tun_queue_full.unwrap_or(0),
                "TUN queue full (sent faster than the agent encrypts)",
            ),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Asks the agent whose state directory is `state_dir` and prints its answer.
/// Without `all`, the human report lists only the peers worth a look (see
/// [`PeerReport::is_idle`]) after counts of all of them: a hub has thousands.
pub fn print(state_dir: &Path, json: bool, all: bool) -> anyhow::Result<()> {
    let report = query(state_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report, all));
    }
    Ok(())
}

/// A peer whose last handshake is older than this, or that never had one, is idle:
/// WireGuard's keys expire after 180 s (REJECT_AFTER_TIME), so nothing has moved.
const IDLE_AFTER_SECS: u64 = 180;

impl PeerReport {
    /// No handshake within the last three minutes, and not a hub (hubs are always
    /// shown: the overlay depends on them).
    pub fn is_idle(&self) -> bool {
        self.role != "hub"
            && self
                .last_handshake_secs
                .is_none_or(|t| t >= IDLE_AFTER_SECS)
    }
}

/// One line of counts: how many peers, by health, and how many are not listed.
fn peer_counts(peers: &[PeerReport], hidden: usize) -> String {
    let count = |h: &str| peers.iter().filter(|p| p.health == h).count();
    let mut line = format!(
        "peers:     {} ({} up, {} down, {} unknown)",
        peers.len(),
        count("up"),
        count("down"),
        count("unknown")
    );
    if hidden > 0 {
        line.push_str(&format!(
            "; {hidden} idle not listed (`status --all` lists them)"
        ));
    }
    line
}

pub fn query(state_dir: &Path) -> anyhow::Result<Report> {
    let path = socket_path(state_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| connect_error(state_dir, &path, e))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .with_context(|| format!("reading the status from {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "the agent at {} sent a status this tool cannot read",
            path.display()
        )
    })
}

/// Why `status` cannot ask the agent, and what to do about it.
fn connect_error(state_dir: &Path, path: &Path, e: std::io::Error) -> anyhow::Error {
    let (path, dir) = (path.display(), state_dir.display());
    let advice = match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "the state directory {dir} is open only to the agent's user (it holds the \
             private key): run `edgewire status` as root or as that user"
        ),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "is `edgewire run` running with --state-dir {dir}? (`systemctl status \
             edgewire`)"
        ),
        _ => format!("is `edgewire run` running with --state-dir {dir}?"),
    };
    anyhow::anyhow!("cannot reach the agent at {path} ({e}): {advice}")
}

fn human(r: &Report, all: bool) -> String {
    use std::fmt::Write;
    let ago = |secs: Option<u64>| {
        secs.map_or("never".to_string(), |t| {
            format!("{} ago", Human(Duration::from_secs(t)))
        })
    };
    let mut s = String::new();
    if !r.version.is_empty() {
        let _ = writeln!(
            s,
            "agent:     {}, up {}",
            r.version,
            Human(Duration::from_secs(r.uptime_secs))
        );
    }
    let _ = writeln!(s, "interface: {}  port {}", r.interface, r.listen_port);
    let _ = writeln!(
        s,
        "node:      {} ({})",
        r.name.as_deref().unwrap_or("-"),
        r.public_key
    );
    let _ = writeln!(s, "addresses: {}", r.addresses.join(", "));
    match &r.manifest {
        Some(m) => {
            let _ = writeln!(
                s,
                "manifest:  {} serial {} from {}",
                m.network, m.serial, m.source
            );
        }
        None => {
            let _ = writeln!(s, "manifest:  none yet");
        }
    }
    let p = &r.manifest_poll;
    if p.interval_secs > 0 {
        let _ = writeln!(
            s,
            "           polled {}, last answer {}, every {}",
            ago(p.last_poll_secs),
            ago(p.last_success_secs),
            Human(Duration::from_secs(p.interval_secs))
        );
    }
    if let Some(error) = &p.last_error {
        let _ = writeln!(
            s,
            "           last error {}: {error}",
            ago(p.last_error_secs)
        );
    }
    let _ = writeln!(s, "state:     {}", r.state);
    if !r.nat_mapping.is_empty() && r.nat_mapping != "unknown" {
        let seen = match r.reflexive_addresses.as_slice() {
            [] => String::new(),
            all => format!(", seen as {}", all.join(", ")),
        };
        let _ = writeln!(s, "nat:       {} mapping{seen}", r.nat_mapping);
    }
    if let Some(path) = &r.data_path {
        let _ = writeln!(s, "data path: {path}");
    }
    let dropped = r.drops.nonzero();
    if !dropped.is_empty() {
        let _ = writeln!(s, "dropped:   {dropped}");
    }
    match (&r.overlay_hub, &r.overlay_via) {
        (Some(hub), _) if hub.carrying => {
            let _ = writeln!(s, "overlay:   via {} ({})", hub.name, hub.health);
        }
        (Some(hub), _) => {
            let _ = writeln!(
                s,
                "overlay:   no hub carries it: {} is {}, retrying",
                hub.name, hub.health
            );
        }
        // An older agent, which does not say whether its hub is up.
        (None, Some(via)) => {
            let _ = writeln!(s, "overlay:   via {via}");
        }
        (None, None) => {}
    }
    let listed: Vec<&PeerReport> = r.peers.iter().filter(|p| all || !p.is_idle()).collect();
    let _ = writeln!(s, "{}", peer_counts(&r.peers, r.peers.len() - listed.len()));
    for p in listed {
        let handshake = p.last_handshake_secs.map_or("never".to_string(), |t| {
            format!("{} ago", Human(Duration::from_secs(t)))
        });
        let _ = writeln!(
            s,
            "\npeer {} ({}, {}, {})\n  endpoint:  {} ({})\n  handshake: {}\n  transfer:  {} received, {} sent",
            p.name,
            p.role,
            p.health,
            p.public_key,
            p.endpoint.as_deref().unwrap_or("unknown"),
            match (&p.relay, &p.relay_transport, &p.via) {
                (Some(relay), Some(t), _) => format!("relay {relay} over {t}"),
                (_, _, Some(via)) if via == "hub" => "through the hub (punching)".into(),
                (_, _, Some(via)) if via == "relayed" => "through the other side's relay".into(),
                (_, _, Some(via)) if via != "manifest" => format!(
                    "direct, {via}{}",
                    p.candidate
                        .as_ref()
                        .map(|c| format!(" to {c}"))
                        .unwrap_or_default()
                ),
                _ => p.path.clone().unwrap_or_else(|| "no path".into()),
            },
            handshake,
            Bytes(p.rx_bytes),
            Bytes(p.tx_bytes),
        );
        if let Some(k) = p.keepalive_secs.filter(|&k| k > 0) {
            let _ = writeln!(s, "  keepalive: every {k} s");
        }
        let _ = writeln!(s, "  allowed:   {}", p.allowed_ips.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_says_whose_directory_it_is_and_what_to_do() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let dir = Path::new("/var/lib/edgewire");
        let text = connect_error(dir, &socket_path(dir), e).to_string();
        assert!(
            text.contains("/var/lib/edgewire is open only to the agent's user")
                && text.contains("run `edgewire status` as root"),
            "{text}"
        );
        assert!(!text.contains("is `edgewire run` running"), "{text}");
    }

    fn report() -> Report {
        Report {
            version: "edgewire 0.1.0 (commit abc, aarch64-unknown-linux-musl)".into(),
            uptime_secs: 3 * 3600 + 125,
            interface: "ew0".into(),
            listen_port: 51820,
            name: Some("dev-1".into()),
            state: "up".into(),
            overlay_via: Some("hub-1".into()),
            overlay_hub: Some(HubReport {
                name: "hub-1".into(),
                health: "up".into(),
                carrying: true,
            }),
            nat_mapping: "endpoint-dependent".into(),
            reflexive_addresses: vec!["198.51.100.2:40000".into()],
            manifest_poll: ManifestPoll {
                interval_secs: 30,
                last_poll_secs: Some(12),
                last_success_secs: Some(12),
                last_error: Some("cannot reach the manifest server x".into()),
                last_error_secs: Some(300),
            },
            peers: vec![PeerReport {
                name: "hub-1".into(),
                role: "hub".into(),
                health: "up".into(),
                rx_bytes: 1536,
                tx_bytes: 230 * 1024 * 1024,
                keepalive_secs: Some(25),
                last_handshake_secs: Some(200),
                ..PeerReport::default()
            }],
            data_path: Some(DataPath {
                udp_send: "sendmmsg".into(),
                udp_receive: "gro".into(),
                tun_offload: true,
                tun_udp_offload: false,
            }),
            drops: DropReport {
                no_route: 4,
                tun_queue_full: Some(3000),
                queue_delay: 211,
                sent_queue_delay: 17,
                ..DropReport::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn the_human_report_scales_bytes_and_times_and_says_version_uptime_and_polls() {
        let text = human(&report(), false);
        for want in [
            "agent:     edgewire 0.1.0 (commit abc, aarch64-unknown-linux-musl), up 3 h 2 min",
            "polled 12 s ago, last answer 12 s ago, every 30 s",
            "last error 5 min ago: cannot reach the manifest server x",
            "nat:       endpoint-dependent mapping, seen as 198.51.100.2:40000",
            "overlay:   via hub-1 (up)",
            "transfer:  1.5 KiB received, 230 MiB sent",
            "data path: UDP send sendmmsg, receive GRO; TUN offload on (TCP only)",
            "handshake: 3 min 20 s ago",
            "keepalive: every 25 s",
            "dropped:   4 no route, 211 queue delay (came faster than the agent decrypts), \
             17 send queue delay (sent faster than the agent encrypts), \
             3000 TUN queue full (sent faster than the agent encrypts)",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let mut quiet = report();
        quiet.drops = DropReport::default();
        assert!(!human(&quiet, false).contains("dropped:"));
    }

    #[test]
    fn a_dead_hub_is_never_shown_as_via() {
        let mut r = report();
        r.overlay_via = None;
        r.overlay_hub = Some(HubReport {
            name: "hub-1".into(),
            health: "down".into(),
            carrying: false,
        });
        let text = human(&r, false);
        assert!(!text.contains("via hub-1"), "{text}");
        assert!(
            text.contains("overlay:   no hub carries it: hub-1 is down, retrying"),
            "{text}"
        );
    }

    #[test]
    fn json_keeps_the_old_field_names_and_reads_an_older_agents_report() {
        let json = serde_json::to_value(report()).unwrap();
        for old in [
            "interface",
            "name",
            "public_key",
            "addresses",
            "listen_port",
            "manifest",
            "state",
            "overlay_via",
            "peers",
            "drops",
        ] {
            assert!(json.get(old).is_some(), "{old}");
        }
        for new in [
            "version",
            "uptime_secs",
            "overlay_hub",
            "manifest_poll",
            "nat_mapping",
            "reflexive_addresses",
            "data_path",
        ] {
            assert!(json.get(new).is_some(), "{new}");
        }
        let peer = &json["peers"][0];
        for old in [
            "name",
            "public_key",
            "role",
            "endpoint",
            "path",
            "health",
            "relay",
            "relay_transport",
            "last_handshake_secs",
            "handshakes",
            "rx_bytes",
            "tx_bytes",
            "allowed_ips",
            "keepalive_secs",
            "via",
            "candidate",
        ] {
            assert!(peer.get(old).is_some(), "peer {old}");
        }
        let older = r#"{"interface":"ew0","name":null,"public_key":"k","addresses":[],
            "listen_port":51820,"manifest":null,"state":"starting","overlay_via":"hub-1",
            "peers":[],"drops":{"no_route":0,"unknown_datagram":0,"refused":0}}"#;
        let r: Report = serde_json::from_str(older).unwrap();
        let text = human(&r, false);
        assert!(text.contains("overlay:   via hub-1"), "{text}");
        assert!(
            !text.contains("data path:"),
            "an older agent says nothing of it: {text}"
        );
    }

    #[test]
    fn a_hub_of_thousands_lists_counts_and_only_the_peers_not_idle_unless_all() {
        let mut r = report();
        let edge = |i: usize, handshake: Option<u64>, health: &str| PeerReport {
            name: format!("dev-{i}"),
            role: "edge".into(),
            health: health.into(),
            last_handshake_secs: handshake,
            ..PeerReport::default()
        };
        r.peers.push(edge(0, Some(30), "up"));
        r.peers.push(edge(1, Some(600), "unknown"));
        r.peers
            .extend((2..5000).map(|i| edge(i, None, if i % 2 == 0 { "unknown" } else { "down" })));
        let text = human(&r, false);
        assert!(
            text.contains(
                "peers:     5001 (2 up, 2499 down, 2500 unknown); 4999 idle not listed \
                 (`status --all` lists them)"
            ),
            "{text}"
        );
        assert!(
            text.contains("peer hub-1 ") && text.contains("peer dev-0 "),
            "{text}"
        );
        assert!(!text.contains("peer dev-1 "), "{text}");
        assert!(text.lines().count() < 40, "{} lines", text.lines().count());
        let all = human(&r, true);
        assert!(all.contains("peer dev-4999 ") && all.contains("peer dev-1 "));
        assert!(!all.contains("not listed"), "nothing hidden with --all");
    }

    #[test]
    fn no_socket_asks_whether_the_agent_runs_with_that_state_dir() {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        let dir = Path::new("/tmp/s");
        let text = connect_error(dir, &socket_path(dir), e).to_string();
        assert!(text.contains("running with --state-dir /tmp/s"), "{text}");
    }
}
