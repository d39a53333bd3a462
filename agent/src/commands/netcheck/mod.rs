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
//! Each relay URL (UDP, TCP, TLS) gets an allocation of its own, made by the agent's
//! relay code, on a thread beside the hubs' handshakes so the two deadlines overlap
//! (`relays`). Without an agent, each allocation that works then carries the same
//! handshake with every hub before it is freed: a hub is reachable directly, through
//! a relay, or not at all, and the device can join when one hub is reachable either
//! way (a device behind a UDP-blocking firewall joins through a relay over TLS). The
//! manifest server is taken step by step: DNS, TCP, TLS with the certificate's issuer
//! and expiry, then the fetch with its HTTP status and ETag (`server`); the cached
//! copy gives its serial and age.

mod hubs;
mod relays;
mod server;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::RunConfig;
use crate::human::Human;
use crate::status;

pub use relays::{RelayReport, ViaRelay};

// Deadlines, chosen so the worst case (every step timing out) stays under 10 s:
// DNS 1 + TCP 1 + TLS 1.5 + fetch 2.5 + hubs and relays (side by side) 3.5 = 9.5 s.
const DNS_DEADLINE: Duration = Duration::from_millis(1000);
const TCP_DEADLINE: Duration = Duration::from_millis(1000);
const TLS_DEADLINE: Duration = Duration::from_millis(1500);
const FETCH_CONNECT: Duration = Duration::from_millis(1500);
const FETCH_TOTAL: Duration = Duration::from_millis(2500);
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);
/// DNS, connection, TLS and two Allocate round trips (the first is refused with 401
/// and a nonce, as TURN does).
const RELAY_DEADLINE: Duration = Duration::from_secs(3);
/// The handshakes through the relays end by then, counted from the start of the
/// allocations: an allocation made in tens of milliseconds leaves more than the direct
/// handshake's 3 s, one made at the last moment still half a second (a relay's round
/// trip is under 300 ms on any link a device joins over).
const VIA_RELAY_DEADLINE: Duration = Duration::from_millis(3500);

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
    /// An http(s) manifest URL's server, step by step; `null` for a file.
    pub manifest_server: Option<ServerReport>,
    /// The copy in the state directory; `null` when there is none.
    pub cached_manifest: Option<CacheReport>,
    /// One per relay URL of the manifest.
    pub relays: Vec<RelayReport>,
    /// Per hub, how it is reached: directly, through which relays.
    pub hubs: Vec<HubReach>,
    /// What this version cannot check (empty now; kept for `--json` readers).
    pub not_checked: Vec<&'static str>,
}

/// One hub, directly and through each relay.
#[derive(Debug, Serialize)]
pub struct HubReach {
    pub name: String,
    /// Whether its handshake was answered directly over UDP (`null` when not tried).
    pub direct: Option<bool>,
    pub direct_detail: String,
    /// Its handshake through each relay URL that allocated (or, with an agent running,
    /// the relay the agent uses for it).
    pub via_relays: Vec<ViaRelay>,
    pub reachable: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct ServerReport {
    /// Credentials in it hidden.
    pub url: String,
    pub addresses: Vec<String>,
    /// `null` for http, or when TCP failed.
    pub tls: Option<TlsReport>,
    /// Of the fetch's answer; `null` when there was none.
    pub http_status: Option<u16>,
    pub etag: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TlsReport {
    pub version: Option<String>,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    /// RFC 3339.
    pub not_after: Option<String>,
    pub expires_in_secs: Option<u64>,
    /// Whether the certificate verified against `--ca-file` (or the system's CAs).
    pub trusted: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CacheReport {
    pub path: String,
    pub bytes: usize,
    pub network: Option<String>,
    pub serial: Option<u64>,
    pub age_secs: Option<u64>,
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
    let mut cache_report = None;
    timed("cached manifest", &mut || {
        let (outcome, detail, m) =
            server::check_cache(&config.state_dir, config.manifest_format, &mut cache_report);
        cached = m;
        (outcome, detail)
    });
    let mut fetched = None;
    let mut server_report = None;
    // An http(s) server: name, TCP and TLS first, so a failure says which step failed.
    let mut reachable = true;
    if let Some((host, port)) = server::server_of(&config.manifest_url) {
        let report = server_report.insert(ServerReport {
            url: crate::fetch::redact_url(&config.manifest_url),
            ..ServerReport::default()
        });
        eprintln!("netcheck: resolving {host} (up to {})", Human(DNS_DEADLINE));
        let mut addrs = Vec::new();
        reachable = timed("manifest DNS", &mut || {
            let (outcome, detail, found) = server::check_dns(&host, port);
            addrs = found;
            (outcome, detail)
        }) == Outcome::Ok;
        report.addresses = addrs.iter().map(ToString::to_string).collect();
        let mut stream = None;
        if reachable {
            reachable = timed("manifest TCP", &mut || {
                let (outcome, detail, tcp) = server::check_tcp(&addrs);
                stream = tcp;
                (outcome, detail)
            }) == Outcome::Ok;
        }
        if let Some(tcp) = stream.filter(|_| config.manifest_url.starts_with("https://")) {
            let mut tcp = Some(tcp);
            eprintln!("netcheck: TLS with {host} (up to {})", Human(TLS_DEADLINE));
            let ca = config.ca_file.as_deref();
            // A refused certificate is reported here; the fetch then says the same in
            // its words, so it still runs.
            timed("manifest TLS", &mut || match tcp.take() {
                Some(tcp) => server::check_tls(tcp, &host, ca, report),
                None => (Outcome::Fail, "checked once already".into()),
            });
        }
    }
    let fetch_ok = if reachable {
        eprintln!(
            "netcheck: fetching {} (up to {})",
            crate::fetch::redact_url(&config.manifest_url),
            Human(FETCH_TOTAL)
        );
        timed("manifest URL", &mut || {
            let (outcome, detail, m) = server::check_fetch(config, &mut server_report);
            fetched = m;
            (outcome, detail)
        })
    } else {
        Outcome::Fail
    };
    let manifest = fetched.or(cached);
    // Without an agent netcheck shakes hands with the hubs itself, directly and through
    // the relays; with one, the agent's word is taken (see the module's doc).
    let hub_set = match (&agent, &manifest) {
        (None, Some(m)) => Some(hubs::Hubs::load(config, m)),
        _ => None,
    };
    let via_hubs = hub_set.as_ref().and_then(|h| h.as_ref().ok());
    // The relays are probed on a thread of their own while the hubs are: the two
    // deadlines overlap instead of adding up.
    let (mut hub_checks, relay_results) = std::thread::scope(|scope| {
        let mut checks = Vec::new();
        let relays = manifest.as_ref().filter(|m| !m.relays.is_empty()).map(|m| {
            let until = Instant::now() + VIA_RELAY_DEADLINE;
            match via_hubs {
                Some(_) => eprintln!(
                    "netcheck: allocating on the relays (up to {}), then shaking hands \
                     with the hubs through them (until {} from now)",
                    Human(RELAY_DEADLINE),
                    Human(VIA_RELAY_DEADLINE)
                ),
                None => eprintln!(
                    "netcheck: allocating on the relays (up to {})",
                    Human(RELAY_DEADLINE)
                ),
            }
            scope.spawn(move || relays::check_relays(config, m, RELAY_DEADLINE, via_hubs, until))
        });
        match (&agent, &manifest) {
            (Some(r), _) => {
                for p in r.peers.iter().filter(|p| p.role == "hub") {
                    let outcome = match p.health.as_str() {
                        "up" => Outcome::Ok,
                        "down" => Outcome::Fail,
                        _ => Outcome::Warn,
                    };
                    let relayed = match (&p.relay, &p.relay_transport) {
                        (Some(relay), Some(t)) if p.path.as_deref() == Some("relay") => {
                            format!(" through relay {relay} over {t}")
                        }
                        _ => String::new(),
                    };
                    let detail = format!(
                        "{} per the running agent, at {}{relayed}{}",
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
                    "netcheck: shaking hands with the hubs (up to {})",
                    Human(HANDSHAKE_DEADLINE)
                );
                let loaded = hub_set.as_ref().map(|h| h.as_ref().map_err(String::as_str));
                checks.extend(hubs::check_hubs(loaded.unwrap_or(Err("no hubs loaded")), m));
            }
            (None, None) => checks.push(Check {
                name: "hubs".into(),
                outcome: Outcome::Skip,
                detail: "no manifest (neither fetched nor cached) names them".into(),
                millis: 0,
            }),
        }
        let relays = relays
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (checks, relays)
    });
    let relays::RelayResults {
        checks: relay_checks,
        reports: relays,
        via,
    } = relay_results;
    let reach = reach(&agent, &mut hub_checks, &via);
    checks.extend(hub_checks);
    if manifest.is_some() && relays.is_empty() {
        checks.push(Check {
            name: "relays".into(),
            outcome: Outcome::Skip,
            detail: "the manifest lists none".into(),
            millis: 0,
        });
    }
    checks.extend(relay_checks);
    let have_manifest = fetch_ok == Outcome::Ok
        || checks
            .iter()
            .any(|c| c.name == "cached manifest" && c.outcome == Outcome::Ok);
    NetcheckReport {
        can_join: tun == Outcome::Ok
            && cap == Outcome::Ok
            && have_manifest
            && reach.iter().any(|h| h.reachable),
        checks,
        manifest_server: server_report,
        cached_manifest: cache_report,
        relays,
        hubs: reach,
        not_checked: Vec::new(),
    }
}

/// Each hub's reach from its check lines (`hub NAME`) and its handshakes through the
/// relays. A hub that fails directly but answers through a relay is a warning, not a
/// failure: the agent joins through the relay.
fn reach(
    agent: &Option<status::Report>,
    hub_checks: &mut [Check],
    via: &[ViaRelay],
) -> Vec<HubReach> {
    let mut reach = Vec::new();
    for check in hub_checks.iter_mut() {
        let Some(name) = check.name.strip_prefix("hub ") else {
            continue;
        };
        let mut through: Vec<ViaRelay> = via.iter().filter(|v| v.hub == name).cloned().collect();
        let ok = check.outcome == Outcome::Ok;
        // A running agent's word: the relay it reaches the hub through, if it does.
        let relayed = agent
            .as_ref()
            .and_then(|r| r.peers.iter().find(|p| p.name == name && p.role == "hub"))
            .filter(|p| p.path.as_deref() == Some("relay"));
        if let Some(p) = relayed {
            let relay = p.relay.clone().unwrap_or_default();
            through.push(ViaRelay {
                hub: name.to_string(),
                relay: relay
                    .rsplit_once(':')
                    .map_or(relay.clone(), |(h, _)| h.into()),
                transport: match p.relay_transport.as_deref() {
                    Some("udp") => "udp",
                    Some("tcp") => "tcp",
                    Some("tls") => "tls",
                    _ => "unknown",
                },
                target: relay,
                ok,
                rtt_ms: None,
                error: (!ok).then(|| check.detail.clone()),
            });
        }
        let direct = match (agent, relayed) {
            (Some(_), Some(_)) => None,
            _ => Some(ok),
        };
        let by_relay = through.iter().any(|v| v.ok);
        if check.outcome == Outcome::Fail && by_relay {
            check.outcome = Outcome::Warn;
            check.detail += "; reachable through a relay (below), which the agent falls back to";
        }
        reach.push(HubReach {
            name: name.to_string(),
            direct,
            direct_detail: check.detail.clone(),
            via_relays: through,
            reachable: ok || by_relay,
        });
    }
    reach
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

fn table(r: &NetcheckReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let width = r
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max(16);
    for c in &r.checks {
        let mark = match c.outcome {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "-",
        };
        let _ = writeln!(s, "{mark:<5} {:<width$} {}", c.name, c.detail);
    }
    if !r.not_checked.is_empty() {
        let _ = writeln!(s, "not checked yet: {}", r.not_checked.join(", "));
    }
    for h in &r.hubs {
        let ways: Vec<String> = h
            .direct
            .filter(|&ok| ok)
            .map(|_| "directly".to_string())
            .into_iter()
            .chain(
                h.via_relays
                    .iter()
                    .filter(|v| v.ok)
                    .map(|v| format!("via relay {} over {}", v.target, v.transport)),
            )
            .collect();
        let _ = match ways.is_empty() {
            true => writeln!(s, "hub {}: not reachable", h.name),
            false => writeln!(s, "hub {}: reachable {}", h.name, ways.join(", ")),
        };
    }
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

    fn hub_check(outcome: Outcome) -> Check {
        Check {
            name: "hub hub-1".into(),
            outcome,
            detail: "203.0.113.10:51820: no handshake answer within 3 s".into(),
            millis: 0,
        }
    }

    fn via_tls(ok: bool) -> ViaRelay {
        ViaRelay {
            hub: "hub-1".into(),
            relay: "203.0.113.30".into(),
            transport: "tls",
            target: "203.0.113.30:443".into(),
            ok,
            rtt_ms: ok.then_some(4.0),
            error: (!ok).then(|| "no handshake answer".into()),
        }
    }

    #[test]
    fn a_hub_silent_directly_but_answering_through_a_relay_is_reachable_with_a_warning() {
        let mut checks = vec![hub_check(Outcome::Fail)];
        let reach = reach(&None, &mut checks, &[via_tls(true)]);
        assert_eq!(reach.len(), 1);
        assert_eq!(reach[0].direct, Some(false));
        assert!(reach[0].reachable);
        assert_eq!(checks[0].outcome, Outcome::Warn);
        assert!(
            checks[0]
                .detail
                .ends_with("reachable through a relay (below), which the agent falls back to")
        );
        let table = table(&NetcheckReport {
            checks,
            can_join: true,
            manifest_server: None,
            cached_manifest: None,
            relays: Vec::new(),
            hubs: reach,
            not_checked: Vec::new(),
        });
        assert!(
            table.contains("hub hub-1: reachable via relay 203.0.113.30:443 over tls\n"),
            "{table}"
        );
        assert!(!table.contains("not checked"), "{table}");
    }

    #[test]
    fn a_hub_silent_every_way_is_not_reachable_and_stays_a_failure() {
        let mut checks = vec![hub_check(Outcome::Fail)];
        let reach = reach(&None, &mut checks, &[via_tls(false)]);
        assert!(!reach[0].reachable);
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert_eq!(reach[0].via_relays.len(), 1);
    }

    #[test]
    fn cap_net_admin_is_bit_12_of_the_effective_set() {
        let with = "Name:\tedgewire\nCapEff:\t0000000000001000\n";
        assert_eq!(check_cap(with).0, Outcome::Ok);
        let without = "CapEff:\t0000000000000400\n";
        assert_eq!(check_cap(without).0, Outcome::Fail);
        assert_eq!(check_cap("").0, Outcome::Warn);
    }
}
