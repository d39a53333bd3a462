//! The metrics snapshot: the status report plus what only metrics show. The loop
//! copies the facts; the text is made from them in a task, a few peers at a time, with
//! the loop let run in between (`pace`), so a 10,000-peer hub's 60,000 samples never
//! hold a packet.

use std::collections::BTreeMap;

use crate::metrics::{self, Extra, RelayMetric};
use crate::status::Report;

use super::super::pace::{self, PEERS_PER_PIECE};
use super::clock;
use super::report::PeerFacts;

/// What one metrics text is made from, copied on the loop's turn.
pub(super) struct MetricsFacts {
    report: Report,
    peers: Vec<PeerFacts>,
    relays: Vec<RelayMetric>,
    rss_bytes: Option<u64>,
    last_success: Option<u64>,
    failures: BTreeMap<&'static str, u64>,
    switches: BTreeMap<&'static str, u64>,
}

impl super::Agent<'_> {
    pub(super) fn metrics_facts(&self) -> MetricsFacts {
        let (report, peers) = self.report_parts();
        let relays = self
            .relays
            .iter()
            .map(|r| RelayMetric {
                relay: r.spec.host.clone(),
                transport: self.relay_link(r.spec.id).map(|(_, kind)| kind.to_string()),
                rtt: self.record.relay_rtt.get(&r.spec.id).copied(),
            })
            .collect();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|statm| metrics::rss_bytes(&statm, page.max(1) as u64));
        MetricsFacts {
            report,
            peers,
            relays,
            rss_bytes,
            last_success: self.record.last_success_unix,
            failures: self.record.failures.clone(),
            switches: self.record.path_switches.clone(),
        }
    }
}

impl MetricsFacts {
    /// The text, made `PEERS_PER_PIECE` peers at a time.
    pub(super) async fn render(self) -> String {
        let MetricsFacts {
            mut report,
            peers,
            relays,
            rss_bytes,
            last_success,
            failures,
            switches,
        } = self;
        report.peers = Vec::with_capacity(peers.len());
        for (i, piece) in peers.chunks(PEERS_PER_PIECE).enumerate() {
            if i > 0 {
                pace::let_the_loop_run().await;
            }
            report.peers.extend(piece.iter().map(PeerFacts::entry));
        }
        let extra = Extra {
            now_unix: clock::unix_now(),
            rss_bytes,
            manifest_last_success_unix: last_success,
            manifest_failures: Some(&failures),
            path_switches: Some(&switches),
            relays,
        };
        let mut paced = metrics::Paced::new(&report, &extra);
        while !paced.step(PEERS_PER_PIECE) {
            pace::let_the_loop_run().await;
        }
        paced.finish()
    }
}
