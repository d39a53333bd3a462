//! The relays: an allocation on each transport of each relay the manifest lists (UDP,
//! TCP, TLS), made by the agent's own relay code (`shell::probe_relays`), with its
//! round trip; each URL a check of its own, failing alone with the relay, the
//! transport and the reason in its message.

use std::time::Duration;

use serde::Serialize;

use crate::config::RunConfig;
use crate::human::Human;
use crate::manifest::Manifest;
use crate::shell::{RelayProbe, probe_relays};

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

/// Every relay URL of `m`, all at once within `deadline`; a progress line per verdict.
pub fn check_relays(
    config: &RunConfig,
    m: &Manifest,
    deadline: Duration,
) -> (Vec<Check>, Vec<RelayReport>) {
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
    probe_relays(
        &m.relays,
        config.ca_file.as_deref(),
        deadline,
        &mut progress,
    )
    .iter()
    .map(judge)
    .unzip()
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
