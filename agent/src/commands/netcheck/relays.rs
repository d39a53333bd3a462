//! The relays: an allocation on each transport of each relay the manifest lists (UDP,
//! TCP, TLS), made by the agent's own relay code (`shell::probe_relays`), with its
//! round trip; each URL a check of its own, failing alone with the relay, the
//! transport and the reason in its message.
//!
//! Without an agent running, each allocation that succeeds is held a little longer:
//! the relay gets permissions and channels for the hubs' endpoints, and the hubs'
//! handshake (`hubs::Hubs::shake`, the one netcheck does directly) runs through it on
//! a thread of its own. A device whose UDP to the hubs is blocked but whose relay
//! works can still join, and this is how netcheck knows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::RunConfig;
use crate::human::Human;
use crate::manifest::Manifest;
use crate::shell::{RelayHold, RelayLeg, RelayProbe, probe_relays};

use super::hubs::{Carrier, Hubs};
use super::{Check, Outcome};

/// One relay URL in `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayReport {
    /// The host as the manifest names it.
    pub relay: String,
    /// udp, tcp or tls: how the server is reached (the allocation is always UDP).
    pub transport: &'static str,
    /// `HOST:PORT`.
    pub target: String,
    pub ok: bool,
    /// The authenticated Allocate's round trip.
    pub rtt_ms: Option<f64>,
    /// The relayed address the server gave (and took back at once).
    pub relayed: Option<String>,
    pub error: Option<String>,
    pub millis: u64,
}

/// A hub's handshake through one relay URL, in `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViaRelay {
    pub hub: String,
    /// The relay's host as the manifest names it.
    pub relay: String,
    /// udp, tcp or tls: how the relay is reached.
    pub transport: &'static str,
    /// `HOST:PORT` of the relay.
    pub target: String,
    pub ok: bool,
    /// The answered handshake's round trip through the relay.
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
}

/// What the relays gave: a check per URL and per handshake through one.
#[derive(Default)]
pub struct RelayResults {
    pub checks: Vec<Check>,
    pub reports: Vec<RelayReport>,
    pub via: Vec<ViaRelay>,
}

/// Every relay URL of `m`, all at once, allocated within `deadline`; a progress line per
/// verdict. With `hubs`, a handshake with each hub through each allocation, done by
/// `until`.
pub fn check_relays(
    config: &RunConfig,
    m: &Manifest,
    deadline: Duration,
    hubs: Option<&Hubs>,
    until: Instant,
) -> RelayResults {
    let mut progress = |p: &RelayProbe| {
        let verdict = match &p.result {
            Ok(a) => format!("allocated in {}", Human(a.rtt)),
            Err(_) => "failed".into(),
        };
        eprintln!(
            "netcheck: relay {} ({}): {verdict}",
            p.target,
            p.kind.name()
        );
    };
    std::thread::scope(|scope| {
        let mut shakes = Vec::new();
        let mut on_leg = |leg: RelayLeg| {
            if let Some(hubs) = hubs {
                shakes.push(scope.spawn(move || shake_through(hubs, leg, until)));
            }
        };
        let hold = hubs.map(|h| RelayHold {
            peers: h.endpoints(),
            until,
            on_leg: &mut on_leg,
        });
        let probes = probe_relays(
            &m.relays,
            config.ca_file.as_deref(),
            deadline,
            hold,
            &mut progress,
        );
        let (checks, reports) = probes.iter().map(judge).unzip();
        let via: Vec<ViaRelay> = shakes
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        let mut results = RelayResults {
            checks,
            reports,
            via,
        };
        results.checks.extend(results.via.iter().map(via_check));
        results
    })
}

impl Carrier for RelayLeg {
    fn send_to(&mut self, to: SocketAddr, datagram: &[u8]) {
        RelayLeg::send_to(self, to, datagram);
    }

    fn recv_from(&mut self, buf: &mut [u8], until: Instant) -> Option<(usize, SocketAddr)> {
        RelayLeg::recv_from(self, buf, until)
    }

    fn broken(&self) -> Option<String> {
        self.down().map(str::to_string)
    }
}

/// Every hub's handshake through `leg`, once the relay holds permissions for them.
fn shake_through(hubs: &Hubs, mut leg: RelayLeg, until: Instant) -> Vec<ViaRelay> {
    let (relay, transport, target) = (leg.host.clone(), leg.kind.name(), leg.target.clone());
    let via = |hub: &str, rtt: Option<Duration>, error: Option<String>| ViaRelay {
        hub: hub.to_string(),
        relay: relay.clone(),
        transport,
        target: target.clone(),
        ok: rtt.is_some(),
        rtt_ms: rtt.map(|r| r.as_secs_f64() * 1000.0),
        error,
    };
    let shaken = match leg.wait_ready(until) {
        Ok(()) => hubs.shake(&mut leg, &[], until),
        Err(e) => {
            let why = format!("the relay gave no permission for the hub's endpoint: {e}");
            return hubs
                .iter()
                .map(|(_, c)| via(&c.name, None, Some(why.clone())))
                .collect();
        }
    };
    hubs.iter()
        .map(|(k, c)| match shaken.answered.get(k) {
            Some(rtt) => via(&c.name, Some(*rtt), None),
            None => {
                let why = match leg.down() {
                    Some(down) => format!("the relay broke: {down}"),
                    None => format!(
                        "no handshake answer from {} by the deadline though the relay \
                         forwards (hub down, or this device's key not enrolled there)",
                        endpoints(&c.endpoints)
                    ),
                };
                via(&c.name, None, Some(why))
            }
        })
        .collect()
}

fn endpoints(list: &[SocketAddr]) -> String {
    match list {
        [] => "the hub (no endpoint resolves)".into(),
        _ => list
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A handshake through a relay as a check line, named for the hub and the relay.
fn via_check(v: &ViaRelay) -> Check {
    let name = format!("hub {} via relay {} {}", v.hub, v.target, v.transport);
    match (v.rtt_ms, &v.error) {
        (Some(ms), _) => Check {
            name,
            outcome: Outcome::Ok,
            detail: format!(
                "handshake answered in {} through relay {} over {}",
                Human(Duration::from_secs_f64(ms / 1000.0)),
                v.target,
                v.transport
            ),
            millis: ms as u64,
        },
        (None, error) => Check {
            name,
            outcome: Outcome::Fail,
            detail: format!(
                "hub {} through relay {} over {}: {}",
                v.hub,
                v.target,
                v.transport,
                error.as_deref().unwrap_or("no answer")
            ),
            millis: 0,
        },
    }
}

/// A probe's check line and its JSON.
fn judge(p: &RelayProbe) -> (Check, RelayReport) {
    let transport = p.kind.name();
    let name = format!("relay {} {transport}", p.target);
    let millis = p.took.as_millis() as u64;
    let (check, ok, rtt, relayed, error) = match &p.result {
        Ok(a) => (
            Check {
                name,
                outcome: Outcome::Ok,
                detail: format!("allocated {} in {} (round trip)", a.relayed, Human(a.rtt)),
                millis,
            },
            true,
            Some(a.rtt.as_secs_f64() * 1000.0),
            Some(a.relayed.to_string()),
            None,
        ),
        Err(e) => (
            Check {
                name,
                outcome: Outcome::Fail,
                detail: format!("relay {} over {transport}: {e}", p.target),
                millis,
            },
            false,
            None,
            None,
            Some(e.clone()),
        ),
    };
    let report = RelayReport {
        relay: p.host.clone(),
        transport,
        target: p.target.clone(),
        ok,
        rtt_ms: rtt,
        relayed,
        error,
        millis,
    };
    (check, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::{RelayAllocation, RelayKind};

    fn probe(kind: RelayKind, result: Result<RelayAllocation, String>) -> RelayProbe {
        RelayProbe {
            host: "198.51.100.7".into(),
            kind,
            port: 3478,
            target: "198.51.100.7:3478".into(),
            result,
            took: Duration::from_millis(42),
        }
    }

    #[test]
    fn an_allocation_is_an_ok_check_with_its_round_trip() {
        let (check, report) = judge(&probe(
            RelayKind::Tcp,
            Ok(RelayAllocation {
                server: "198.51.100.7:3478".parse().unwrap(),
                relayed: "198.51.100.7:49152".parse().unwrap(),
                rtt: Duration::from_micros(2500),
            }),
        ));
        assert_eq!(check.name, "relay 198.51.100.7:3478 tcp");
        assert_eq!(check.outcome, Outcome::Ok);
        assert!(
            check.detail.starts_with("allocated 198.51.100.7:49152 in "),
            "{}",
            check.detail
        );
        assert_eq!(report.transport, "tcp");
        assert!(report.ok);
        assert_eq!(report.rtt_ms, Some(2.5));
        assert_eq!(report.relayed.as_deref(), Some("198.51.100.7:49152"));
        assert_eq!(report.millis, 42);
    }

    #[test]
    fn a_handshake_through_a_relay_is_named_for_the_hub_and_the_relay() {
        let mut v = ViaRelay {
            hub: "hub-1".into(),
            relay: "198.51.100.7".into(),
            transport: "tls",
            target: "198.51.100.7:443".into(),
            ok: true,
            rtt_ms: Some(12.0),
            error: None,
        };
        let ok = via_check(&v);
        assert_eq!(ok.name, "hub hub-1 via relay 198.51.100.7:443 tls");
        assert_eq!(ok.outcome, Outcome::Ok);
        assert!(
            ok.detail.starts_with("handshake answered in 12"),
            "{}",
            ok.detail
        );
        v.ok = false;
        v.rtt_ms = None;
        v.error = Some("no handshake answer".into());
        let failed = via_check(&v);
        assert_eq!(failed.outcome, Outcome::Fail);
        assert_eq!(
            failed.detail,
            "hub hub-1 through relay 198.51.100.7:443 over tls: no handshake answer"
        );
    }

    #[test]
    fn a_refusal_fails_that_check_naming_the_relay_and_transport() {
        let why = "the TURN server refused the credentials (401): check the relay's username \
                   and password";
        let (check, report) = judge(&probe(RelayKind::Udp, Err(why.into())));
        assert_eq!(check.outcome, Outcome::Fail);
        assert_eq!(
            check.detail,
            format!("relay 198.51.100.7:3478 over udp: {why}")
        );
        assert!(!report.ok);
        assert_eq!(report.error.as_deref(), Some(why));
        assert_eq!(report.rtt_ms, None);
    }
}
