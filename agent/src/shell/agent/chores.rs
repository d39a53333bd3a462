//! The loop's slow periodic duties, apart from the packets: saving the time for the
//! handshake timestamps after a reboot (`clockfloor`), and a count of the peers that do
//! not answer, so a hub's thousand offline peers are one line every few minutes at
//! most, never a line each.

use std::time::{Duration, Instant};

use crate::core::{Health, Node};

use super::super::clockfloor::{self, ClockFloor};

/// How often the peers are counted; a line only when the counts changed.
const SUMMARY_EVERY: Duration = Duration::from_secs(300);

pub(super) struct Chores {
    clock_floor: ClockFloor,
    next_clock_save: Instant,
    next_summary: Instant,
    /// (up, down, not tried) at the last count.
    last_counts: Option<(usize, usize, usize)>,
}

impl Chores {
    /// Saves the time at once: a device that crashes within minutes still has a floor.
    pub(super) fn start(clock_floor: ClockFloor, now: Instant) -> Chores {
        clock_floor.save();
        Chores {
            clock_floor,
            next_clock_save: now + clockfloor::SAVE_EVERY,
            next_summary: now + SUMMARY_EVERY,
            last_counts: None,
        }
    }

    pub(super) fn next_due(&self) -> Instant {
        self.next_clock_save.min(self.next_summary)
    }

    pub(super) fn run(&mut self, node: &Node, now: Instant) {
        if now >= self.next_clock_save {
            self.clock_floor.save();
            self.next_clock_save = now + clockfloor::SAVE_EVERY;
        }
        if now >= self.next_summary {
            self.summarise(node);
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
}
