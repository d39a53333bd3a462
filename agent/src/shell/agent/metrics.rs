//! The metrics snapshot: the status report plus what only metrics show.

use crate::metrics::{self, Extra, RelayMetric};

use super::clock;

impl super::Agent<'_> {
    pub(super) fn metrics_text(&self) -> String {
        let report = self.report();
        let relays = self
            .relays
            .iter()
            .map(|r| RelayMetric {
                relay: r.spec.host.clone(),
                transport: r.up.map(|(_, kind)| kind.name().to_string()),
                rtt: self.record.relay_rtt.get(&r.spec.id).copied(),
            })
            .collect();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let rss = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|statm| metrics::rss_bytes(&statm, page.max(1) as u64));
        metrics::render(
            &report,
            &Extra {
                now_unix: clock::unix_now(),
                rss_bytes: rss,
                manifest_last_success_unix: self.record.last_success_unix,
                manifest_failures: Some(&self.record.failures),
                path_switches: Some(&self.record.path_switches),
                relays,
            },
        )
    }
}
