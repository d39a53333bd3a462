//! Metrics in the Prometheus text format (version 0.0.4), rendered from the status
//! report plus the few things only metrics want (failure counts, relay round trips,
//! memory). Names follow Prometheus conventions: `edgewire_` prefix, base units
//! (seconds, bytes), `_total` on counters, and the standard `process_*` names.
//!
//! No I/O here: the shell writes the text to `--metrics-file` (for node_exporter's
//! textfile collector) and serves it on `--metrics-listen`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::status::{PeerReport, Report};

/// What a scrape shows besides the report.
#[derive(Debug, Default)]
pub struct Extra<'a> {
    /// Seconds since 1970, now (for "last handshake" timestamps).
    pub now_unix: u64,
    pub rss_bytes: Option<u64>,
    /// Wall-clock time of the last poll the manifest server answered.
    pub manifest_last_success_unix: Option<u64>,
    /// Failed manifest polls by kind (`connect`, `timeout`, `http_status`, ...).
    pub manifest_failures: Option<&'a BTreeMap<&'static str, u64>>,
    /// Path switches of all peers by reason (`learned`, `punched`, `failed`, ...).
    pub path_switches: Option<&'a BTreeMap<&'static str, u64>>,
    pub relays: Vec<RelayMetric>,
}

#[derive(Debug, Default)]
pub struct RelayMetric {
    /// The relay as the manifest names it (`HOST:PORT`).
    pub relay: String,
    /// `udp`, `tcp` or `tls` while up.
    pub transport: Option<String>,
    pub rtt: Option<Duration>,
}

/// The kinds of path a peer's datagrams may take, as `edgewire_peer_path` labels them:
/// `punched` is a direct path made through both NATs on demand, `hub` a session made on
/// demand whose traffic still goes through the hub, `none` no path yet.
const PATHS: [&str; 5] = ["direct", "punched", "relay", "hub", "none"];

/// The `edgewire_peer_path` label of a peer.
fn path_kind(p: &PeerReport) -> &str {
    match (p.path.as_deref(), p.via.as_deref()) {
        (Some("direct"), Some("punched" | "lan")) => "punched",
        (Some(path), _) => path,
        (None, Some("hub")) => "hub",
        (None, _) => "none",
    }
}

/// The whole text at once (a test, or a node with few peers).
pub fn render(r: &Report, x: &Extra<'_>) -> String {
    let mut paced = Paced::new(r, x);
    while !paced.step(usize::MAX) {}
    paced.finish()
}

/// The text rendered a few peers at a time, so a hub of 10,000 peers (60,000 samples)
/// does not hold its event loop while it is written: [`Paced::step`] renders up to a
/// number of peers' samples and says whether it is done; the caller lets the loop run
/// between steps. Each family's samples stay together, as the format requires.
pub struct Paced<'a> {
    r: &'a Report,
    x: &'a Extra<'a>,
    m: Metrics,
    /// The next per-peer family (`PEER_FAMILIES.len()`: the rest), and the next peer.
    family: usize,
    peer: usize,
    started: bool,
}

impl<'a> Paced<'a> {
    pub fn new(r: &'a Report, x: &'a Extra<'a>) -> Paced<'a> {
        Paced {
            r,
            x,
            m: Metrics::default(),
            family: 0,
            peer: 0,
            started: false,
        }
    }

    /// Renders at most `peers` peers' samples (and the parts that are not per peer, once
    /// their turn comes). True once everything is rendered.
    pub fn step(&mut self, peers: usize) -> bool {
        let (r, x) = (self.r, self.x);
        if !self.started {
            head(&mut self.m, r, x);
            self.started = true;
        }
        let mut budget = peers;
        while let Some((name, kind, help, samples)) = PEER_FAMILIES.get(self.family) {
            if self.peer == 0 {
                self.m.family(name, kind, help);
            }
            let end = r.peers.len().min(self.peer.saturating_add(budget));
            for p in &r.peers[self.peer..end] {
                samples(&mut self.m, p, x);
            }
            budget -= end - self.peer;
            self.peer = end;
            if self.peer < r.peers.len() {
                return false;
            }
            self.family += 1;
            self.peer = 0;
            if budget == 0 {
                return false;
            }
        }
        if self.family == PEER_FAMILIES.len() {
            tail(&mut self.m, r, x);
            self.family += 1;
        }
        true
    }

    pub fn finish(self) -> String {
        self.m.0
    }
}

/// Build, process and memory.
fn head(m: &mut Metrics, r: &Report, x: &Extra<'_>) {
    let version = r.version.split_whitespace().nth(1).unwrap_or("");
    m.family(
        "edgewire_build_info",
        "gauge",
        "The running agent's version, commit and target.",
    );
    m.sample(
        "edgewire_build_info",
        &[
            ("version", version),
            ("commit", env!("EDGEWIRE_GIT_COMMIT")),
            ("target", env!("EDGEWIRE_TARGET")),
        ],
        1,
    );
    if let Some(path) = &r.data_path {
        m.family(
            "edgewire_data_path_info",
            "gauge",
            "How packets move now: UDP send and receive levels after any step down \
             (gso, sendmmsg, single; gro, recvmmsg, single) and the TUN's offload.",
        );
        m.sample(
            "edgewire_data_path_info",
            &[
                ("udp_send", &path.udp_send),
                ("udp_receive", &path.udp_receive),
                ("tun_offload", on_off(path.tun_offload)),
                ("tun_udp_offload", on_off(path.tun_udp_offload)),
            ],
            1,
        );
    }
    m.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    m.sample("process_start_time_seconds", &[], r.started_unix);
    if let Some(rss) = x.rss_bytes {
        m.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        m.sample("process_resident_memory_bytes", &[], rss);
    }
}

type PeerSamples = fn(&mut Metrics, &PeerReport, &Extra<'_>);

/// The families with a sample (or several) per peer: name, type, help, samples.
const PEER_FAMILIES: [(&str, &str, &str, PeerSamples); 6] = [
    (
        "edgewire_peer_receive_bytes_total",
        "counter",
        "WireGuard datagram bytes received from the peer.",
        |m, p, _| m.sample("edgewire_peer_receive_bytes_total", &peer(p), p.rx_bytes),
    ),
    (
        "edgewire_peer_transmit_bytes_total",
        "counter",
        "WireGuard datagram bytes sent to the peer.",
        |m, p, _| m.sample("edgewire_peer_transmit_bytes_total", &peer(p), p.tx_bytes),
    ),
    (
        "edgewire_peer_handshakes_total",
        "counter",
        "WireGuard handshakes completed with the peer.",
        |m, p, _| m.sample("edgewire_peer_handshakes_total", &peer(p), p.handshakes),
    ),
    (
        "edgewire_peer_last_handshake_timestamp_seconds",
        "gauge",
        "When the last handshake with the peer completed, since unix epoch; 0 before the first.",
        |m, p, x| {
            let at = p
                .last_handshake_secs
                .map_or(0, |ago| x.now_unix.saturating_sub(ago));
            m.sample(
                "edgewire_peer_last_handshake_timestamp_seconds",
                &peer(p),
                at,
            );
        },
    ),
    (
        "edgewire_peer_up",
        "gauge",
        "1 while the peer answers on its path.",
        |m, p, _| m.sample("edgewire_peer_up", &peer(p), u64::from(p.health == "up")),
    ),
    (
        "edgewire_peer_path",
        "gauge",
        "1 for the kind of path the peer's datagrams take now (direct, punched, relay, hub, none).",
        |m, p, _| {
            let now = path_kind(p);
            for kind in PATHS {
                let labels = [("peer", p.name.as_str()), ("path", kind)];
                m.sample("edgewire_peer_path", &labels, u64::from(now == kind));
            }
        },
    ),
];

/// The overlay, NAT, relays, manifest and drops.
fn tail(m: &mut Metrics, r: &Report, x: &Extra<'_>) {
    if let Some(hub) = &r.overlay_hub {
        m.family(
            "edgewire_overlay_carried",
            "gauge",
            "1 while the hub the overlay prefix is routed to carries traffic.",
        );
        m.sample(
            "edgewire_overlay_carried",
            &[("hub", &hub.name)],
            u64::from(hub.carrying),
        );
    }

    if !r.nat_mapping.is_empty() {
        m.family(
            "edgewire_nat_mapping",
            "gauge",
            "1 for the NAT mapping STUN found in front of the WireGuard socket.",
        );
        for kind in [
            "unknown",
            "none",
            "endpoint-independent",
            "endpoint-dependent",
        ] {
            let labels = [("mapping", kind)];
            m.sample(
                "edgewire_nat_mapping",
                &labels,
                u64::from(r.nat_mapping == kind),
            );
        }
    }
    if !x.relays.is_empty() {
        m.family(
            "edgewire_relay_up",
            "gauge",
            "1 while the relay has an allocation.",
        );
        for relay in &x.relays {
            let transport = relay.transport.as_deref().unwrap_or("");
            let labels = [("relay", relay.relay.as_str()), ("transport", transport)];
            m.sample(
                "edgewire_relay_up",
                &labels,
                u64::from(relay.transport.is_some()),
            );
        }
        m.family(
            "edgewire_relay_rtt_seconds",
            "gauge",
            "Round trip to the relay, measured when its allocation was made.",
        );
        for relay in &x.relays {
            if let Some(rtt) = relay.rtt {
                m.sample_f64(
                    "edgewire_relay_rtt_seconds",
                    &[("relay", &relay.relay)],
                    rtt.as_secs_f64(),
                );
            }
        }
    }

    if let Some(manifest) = &r.manifest {
        m.family(
            "edgewire_manifest_serial",
            "gauge",
            "Serial of the manifest in force.",
        );
        m.sample(
            "edgewire_manifest_serial",
            &[("network", &manifest.network)],
            manifest.serial,
        );
    }
    if let Some(at) = x.manifest_last_success_unix {
        m.family(
            "edgewire_manifest_last_success_timestamp_seconds",
            "gauge",
            "When the manifest server last answered a poll (new manifest or not modified).",
        );
        m.sample("edgewire_manifest_last_success_timestamp_seconds", &[], at);
    }
    m.family(
        "edgewire_manifest_poll_failures_total",
        "counter",
        "Failed polls of the manifest URL, by kind.",
    );
    for (kind, n) in x.manifest_failures.into_iter().flatten() {
        m.sample(
            "edgewire_manifest_poll_failures_total",
            &[("kind", kind)],
            *n,
        );
    }
    m.family(
        "edgewire_path_switches_total",
        "counter",
        "Times a peer's datagrams took another way, by reason (learned, roamed, promoted, punched, failed, relay_lost, back_to_hub).",
    );
    for (reason, n) in x.path_switches.into_iter().flatten() {
        m.sample("edgewire_path_switches_total", &[("reason", reason)], *n);
    }

    m.family(
        "edgewire_dropped_packets_total",
        "counter",
        "Packets and datagrams dropped, by reason (tun_queue_full: sent by applications \
         faster than the agent encrypts them; queue_delay: received faster than it decrypts \
         them, and sent_queue_delay: sent faster than it encrypts them, dropped to keep the \
         queue short).",
    );
    let d = &r.drops;
    for (reason, n) in [
        ("no_route", d.no_route),
        ("unknown_datagram", d.unknown_datagram),
        ("refused", d.refused),
        ("handshake_flood", d.shed_handshakes),
        ("bad_batch", d.bad_batch),
        ("queue_delay", d.queue_delay),
        ("sent_queue_delay", d.sent_queue_delay),
    ] {
        m.sample("edgewire_dropped_packets_total", &[("reason", reason)], n);
    }
    if let Some(n) = d.tun_queue_full {
        let labels = [("reason", "tun_queue_full")];
        m.sample("edgewire_dropped_packets_total", &labels, n);
    }
    m.family(
        "edgewire_cookie_replies_total",
        "counter",
        "Handshakes answered with a cookie reply because the agent was under load.",
    );
    m.sample("edgewire_cookie_replies_total", &[], d.cookie_replies);
}

fn peer(p: &crate::status::PeerReport) -> [(&'static str, &str); 2] {
    [("peer", p.name.as_str()), ("role", p.role.as_str())]
}

#[derive(Default)]
struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {value}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.0.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.0.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            let _ = write!(self.0, "{k}=\"{}\"", escape(v));
        }
        self.0.push('}');
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Label values escape backslash, double quote and newline (exposition format 0.0.4).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident memory from `/proc/self/statm` (its second field, in pages).
pub fn rss_bytes(statm: &str, page_size: u64) -> Option<u64> {
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{DataPath, DropReport, HubReport, ManifestInfo, PeerReport};

    fn report() -> Report {
        Report {
            version: "edgewire 0.1.0 (commit abc, x)".into(),
            started_unix: 1_764_400_000,
            manifest: Some(ManifestInfo {
                serial: 7,
                source: "https://m.example/m".into(),
                network: "lab".into(),
            }),
            nat_mapping: "endpoint-independent".into(),
            overlay_hub: Some(HubReport {
                name: "hub-1".into(),
                health: "up".into(),
                carrying: true,
            }),
            peers: vec![PeerReport {
                name: "hub-1".into(),
                role: "hub".into(),
                health: "up".into(),
                path: Some("relay".into()),
                rx_bytes: 1536,
                tx_bytes: 2048,
                handshakes: 3,
                last_handshake_secs: Some(10),
                ..PeerReport::default()
            }],
            drops: DropReport {
                no_route: 4,
                tun_queue_full: Some(3000),
                queue_delay: 211,
                sent_queue_delay: 17,
                ..DropReport::default()
            },
            data_path: Some(DataPath {
                udp_send: "gso".into(),
                udp_receive: "gro".into(),
                tun_offload: false,
                tun_udp_offload: false,
            }),
            ..Report::default()
        }
    }

    #[test]
    fn rendered_a_few_peers_at_a_time_it_is_the_same_text() {
        let mut r = report();
        let one = r.peers[0].clone();
        r.peers = (0..600)
            .map(|i| PeerReport {
                name: format!("dev-{i}"),
                rx_bytes: i,
                ..one.clone()
            })
            .collect();
        let x = Extra::default();
        let whole = render(&r, &x);
        for piece in [1, 7, 256, 600, 601] {
            let mut paced = Paced::new(&r, &x);
            let mut steps = 1;
            while !paced.step(piece) {
                steps += 1;
            }
            assert_eq!(paced.finish(), whole, "in pieces of {piece}");
            // Six families of 600 peers, a step per `piece` peers, at least one.
            assert!(steps >= (6 * 600) / piece, "{steps} steps of {piece}");
        }
        assert_eq!(whole.matches("# TYPE edgewire_peer_up gauge").count(), 1);
    }

    #[test]
    fn peers_relays_manifest_and_drops_are_rendered_with_their_labels() {
        let failures = BTreeMap::from([("timeout", 2), ("http_status", 1)]);
        let text = render(
            &report(),
            &Extra {
                now_unix: 1_764_400_100,
                rss_bytes: Some(4 << 20),
                manifest_last_success_unix: Some(1_764_400_090),
                manifest_failures: Some(&failures),
                path_switches: Some(&BTreeMap::from([("punched", 2)])),
                relays: vec![RelayMetric {
                    relay: "198.51.100.1:3478".into(),
                    transport: Some("tls".into()),
                    rtt: Some(Duration::from_millis(12)),
                }],
            },
        );
        for line in [
            "edgewire_path_switches_total{reason=\"punched\"} 2",
            "edgewire_peer_receive_bytes_total{peer=\"hub-1\",role=\"hub\"} 1536",
            "edgewire_peer_transmit_bytes_total{peer=\"hub-1\",role=\"hub\"} 2048",
            "edgewire_peer_handshakes_total{peer=\"hub-1\",role=\"hub\"} 3",
            "edgewire_peer_last_handshake_timestamp_seconds{peer=\"hub-1\",role=\"hub\"} 1764400090",
            "edgewire_peer_up{peer=\"hub-1\",role=\"hub\"} 1",
            "edgewire_peer_path{peer=\"hub-1\",path=\"relay\"} 1",
            "edgewire_peer_path{peer=\"hub-1\",path=\"direct\"} 0",
            "edgewire_overlay_carried{hub=\"hub-1\"} 1",
            "edgewire_nat_mapping{mapping=\"endpoint-independent\"} 1",
            "edgewire_nat_mapping{mapping=\"unknown\"} 0",
            "edgewire_relay_up{relay=\"198.51.100.1:3478\",transport=\"tls\"} 1",
            "edgewire_relay_rtt_seconds{relay=\"198.51.100.1:3478\"} 0.012",
            "edgewire_manifest_serial{network=\"lab\"} 7",
            "edgewire_manifest_last_success_timestamp_seconds 1764400090",
            "edgewire_manifest_poll_failures_total{kind=\"timeout\"} 2",
            "edgewire_dropped_packets_total{reason=\"no_route\"} 4",
            "edgewire_dropped_packets_total{reason=\"tun_queue_full\"} 3000",
            "edgewire_dropped_packets_total{reason=\"queue_delay\"} 211",
            "edgewire_dropped_packets_total{reason=\"sent_queue_delay\"} 17",
            "process_start_time_seconds 1764400000",
            "process_resident_memory_bytes 4194304",
            "edgewire_build_info{version=\"0.1.0\",",
            "edgewire_data_path_info{udp_send=\"gso\",udp_receive=\"gro\",tun_offload=\"off\",tun_udp_offload=\"off\"} 1",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn every_sample_belongs_to_a_family_declared_once_before_it() {
        let text = render(&report(), &Extra::default());
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.contains(&name.to_string()), "{name} twice");
                declared.push(name.to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn rss_is_read_from_statm_in_pages() {
        assert_eq!(rss_bytes("2345 1024 300 1 0 400 0\n", 4096), Some(4 << 20));
        assert_eq!(rss_bytes("garbage", 4096), None);
    }
}
