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
//! relay code and freed at once, on a thread beside the hubs' handshakes so the two
//! deadlines overlap (`relays`). The manifest server is taken step by step: DNS, TCP,
//! TLS with the certificate's issuer and expiry, then the fetch with its HTTP status
//! and ETag (`server`); the cached copy gives its serial and age.
//!
//! Not checked yet: a handshake with a hub *through* a relay, so a device whose UDP is
//! blocked but whose relay works is still reported as unable to join.

mod hubs;
mod relays;
mod server;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::RunConfig;
use crate::human::Human;
use crate::status;

pub use relays::RelayReport;

// Deadlines, chosen so the worst case (every step timing out) stays under 10 s:
// DNS 1 + TCP 1 + TLS 1.5 + fetch 2.5 + hubs and relays (side by side) 3 = 9 s.
const DNS_DEADLINE: Duration = Duration::from_millis(1000);
const TCP_DEADLINE: Duration = Duration::from_millis(1000);
const TLS_DEADLINE: Duration = Duration::from_millis(1500);
const FETCH_CONNECT: Duration = Duration::from_millis(1500);
const FETCH_TOTAL: Duration = Duration::from_millis(2500);
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);
/// DNS, connection, TLS and two Allocate round trips (the first is refused with 401
/// and a nonce, as TURN does).
const RELAY_DEADLINE: Duration = Duration::from_secs(3);

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
    pub not_checked: Vec<&'static str>,
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
    let mut hub_up = false;
    // The relays are probed on a thread of their own while the hubs are: the two
    // deadlines overlap instead of adding up.
    let (relay_checks, relays) = std::thread::scope(|scope| {
        let relays = manifest.as_ref().filter(|m| !m.relays.is_empty()).map(|m| {
            eprintln!(
                "netcheck: allocating on the relays (up to {})",
                Human(RELAY_DEADLINE)
            );
            scope.spawn(|| relays::check_relays(config, m, RELAY_DEADLINE))
        });
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
                    "netcheck: shaking hands with the hubs (up to {})",
                    Human(HANDSHAKE_DEADLINE)
                );
                for check in hubs::check_hubs(config, m) {
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
        relays
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    });
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
        can_join: tun == Outcome::Ok && cap == Outcome::Ok && have_manifest && hub_up,
        checks,
        manifest_server: server_report,
        cached_manifest: cache_report,
        relays,
        not_checked: vec!["a WireGuard handshake with a hub through a relay"],
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
}
