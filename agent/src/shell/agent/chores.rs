//! The loop's slow periodic duties, apart from the packets: saving the time for the
//! handshake timestamps after a reboot (`clockfloor`), a count of the peers that do
//! not answer, so a hub's thousand offline peers are one line every few minutes at
//! most, never a line each, and a line when the TUN's queue overflowed since the last
//! look (applications sent faster than the agent encrypts), which otherwise shows only
//! in the status and the metrics.

use std::time::{Duration, Instant};

use crate::core::{Health, Node};

use super::super::clockfloor::{self, ClockFloor};

/// How often the peers and the TUN's drops are counted; a line only when the counts
/// changed.
const SUMMARY_EVERY: Duration = Duration::from_secs(300);

pub(super) struct Chores {
    clock_floor: ClockFloor,
    next_clock_save: Instant,
    next_summary: Instant,
    /// (up, down, not tried) at the last count.
    last_counts: Option<(usize, usize, usize)>,
    tun_drops: TunDrops,
}

impl Chores {
    /// Saves the time at once: a device that crashes within minutes still has a floor.
    /// `tun_drops` is the TUN's drop counter now (`None` when unread): a TUN kept across
    /// a restart (`fdstore`) keeps its count, which is not news.
    pub(super) fn start(clock_floor: ClockFloor, tun_drops: Option<u64>, now: Instant) -> Chores {
        clock_floor.save();
        Chores {
            clock_floor,
            next_clock_save: now + clockfloor::SAVE_EVERY,
            next_summary: now + SUMMARY_EVERY,
            last_counts: None,
            tun_drops: TunDrops { last: tun_drops },
        }
    }

    pub(super) fn next_due(&self) -> Instant {
        self.next_clock_save.min(self.next_summary)
    }

    /// `read_tun_drops` reads the TUN's drop counter (a netlink query), only when a
    /// count is due: no wakeup of its own.
    pub(super) fn run(
        &mut self,
        node: &Node,
        read_tun_drops: impl FnOnce() -> Option<u64>,
        now: Instant,
    ) {
        if now >= self.next_clock_save {
            self.clock_floor.save();
            self.next_clock_save = now + clockfloor::SAVE_EVERY;
        }
        if now >= self.next_summary {
            self.summarise(node);
            if let Some(line) = self.tun_drops.line(read_tun_drops()) {
                log::warn!("{line}");
            }
            self.next_summary = now + SUMMARY_EVERY;
        }
    }

    fn summarise(&mut self, node: &Node) {
        let counts = count(node);
        if let Some(line) = summary_line(counts, self.last_counts) {
            log::info!("{line}");
        }
        self.last_counts = Some(counts);
    }
}

/// The TUN's drop counter (its `tx_dropped`) at the last look.
struct TunDrops {
    last: Option<u64>,
}

impl TunDrops {
    /// A line when the counter grew since the last look. A failed read (`None`) says
    /// nothing and keeps the last count, so the next good read reports the whole gap.
    fn line(&mut self, now: Option<u64>) -> Option<String> {
        let now = now?;
        let last = self.last.replace(now);
        // A counter that went back (a new interface of the same name) starts again.
        let grown = now.checked_sub(last.unwrap_or(0)).unwrap_or(now);
        if grown == 0 {
            return None;
        }
        Some(format!(
            "TUN queue full: {grown} packets that applications sent were dropped since the \
             last look (at most {} min ago), {now} since the interface was made: they sent \
             faster than the agent encrypts, or the agent was not scheduled \
             (edgewire_dropped_packets_total{{reason=\"tun_queue_full\"}})",
            SUMMARY_EVERY.as_secs() / 60
        ))
    }
}

fn count(node: &Node) -> (usize, usize, usize) {
    let (mut up, mut down, mut unknown) = (0, 0, 0);
    for p in node.peers() {
        match p.health() {
            Health::Up => up += 1,
            Health::Down => down += 1,
            Health::Unknown => unknown += 1,
        }
    }
    (up, down, unknown)
}

/// A line when some peers do not answer and the counts moved since `last` (or when
/// everyone answers again after some did not).
fn summary_line(
    (up, down, unknown): (usize, usize, usize),
    last: Option<(usize, usize, usize)>,
) -> Option<String> {
    if last == Some((up, down, unknown)) {
        return None;
    }
    let was_down = last.is_some_and(|(_, d, _)| d > 0);
    if down == 0 && !was_down {
        return None;
    }
    Some(format!(
        "peers: {up} answering, {down} not answering (retried with growing pauses, up to \
         5 min apart), {unknown} not tried (no endpoint, or nothing to send yet)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_a_line_only_when_peers_are_down_and_they_moved() {
        assert_eq!(summary_line((3, 0, 10), None), None);
        let line = summary_line((3, 997, 0), None).unwrap_or_default();
        assert!(
            line.starts_with("peers: 3 answering, 997 not answering"),
            "{line}"
        );
        assert_eq!(summary_line((3, 997, 0), Some((3, 997, 0))), None);
        assert!(summary_line((4, 996, 0), Some((3, 997, 0))).is_some());
        // Everyone back: said once, then quiet.
        assert!(summary_line((1000, 0, 0), Some((4, 996, 0))).is_some());
        assert_eq!(summary_line((1000, 0, 0), Some((1000, 0, 0))), None);
    }

    #[test]
    fn tun_drops_are_a_line_only_when_the_counter_grew() {
        // 12 dropped before this start (a TUN kept across a restart): not news.
        let mut drops = TunDrops { last: Some(12) };
        assert_eq!(drops.line(Some(12)), None);
        let line = drops.line(Some(3012)).unwrap_or_default();
        assert!(
            line.starts_with("TUN queue full: 3000 packets") && line.contains("3012 since"),
            "{line}"
        );
        assert_eq!(drops.line(Some(3012)), None);
        // An unread counter says nothing and loses nothing: the next read has the gap.
        assert_eq!(drops.line(None), None);
        let line = drops.line(Some(3020)).unwrap_or_default();
        assert!(line.starts_with("TUN queue full: 8 packets"), "{line}");
        // A counter that went back starts again from zero.
        let line = drops.line(Some(5)).unwrap_or_default();
        assert!(line.starts_with("TUN queue full: 5 packets"), "{line}");
        // Unknown at start: everything counted so far is news.
        let mut drops = TunDrops { last: None };
        assert!(drops.line(Some(7)).is_some());
    }
}
