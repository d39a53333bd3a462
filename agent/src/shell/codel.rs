//! Keeps the queues in front of the loop short when the agent falls behind: CoDel
//! (RFC 8289) on the datagrams it takes from its UDP socket, and on the packets it reads
//! from the TUN (their waits told by sent_wait.rs, or by ring_probe.rs; one `Codel` for
//! each queue).
//!
//! The socket's receive buffer is large (udp.rs: 4 MiB, so that a handshake flood or a
//! burst while the loop is descheduled loses nothing). When the agent decrypts slower
//! than a TCP flow through it sends, that buffer becomes a standing queue that every
//! other packet to the device waits behind, and CUBIC (Linux's default) backs off only
//! when a packet is lost, which a 4 MiB buffer does late. Measured with the agent slowed
//! to a small board's pace (the aarch64 build under qemu-user, both ends, in the
//! benchmark's namespaces; a CUBIC iperf3 for 10 s with a ping every 50 ms beside): the
//! receiving agent's socket held 1.9-3.7 MB and pings took 62-91 ms on average (up to
//! 147 ms); with this, 19-25 ms (up to 58), at the same throughput (median 292 Mbit/s
//! against 294), six rounds each. The cost is to BBR senders, which do not slow down
//! for a loss: the benchmark's BBR stream through the same slow agents, median 238
//! Mbit/s against 287.
//!
//! The kernel stamps each datagram as it arrives (`SO_TIMESTAMP`), so the loop knows
//! how long every one waited. While the wait has stayed above `TARGET` for a whole
//! `INTERVAL` the queue is standing, not a burst draining, and a data datagram is
//! dropped before it costs a decryption; then drops come closer together
//! (`INTERVAL / sqrt(n)`) until the wait falls below `TARGET`. A burst that drains
//! within `INTERVAL` loses nothing. Only WireGuard data datagrams are ever dropped:
//! handshakes, keepalives, cookies and STUN pass whatever the queue. On this machine's
//! own speed the queue at full load stays near the target, and the buffer overflows
//! before an interval passes: a few drops in 10 s.

use std::time::{Duration, Instant};

/// The wait a queue may keep standing (RFC 8289's 5 ms).
const TARGET: Duration = Duration::from_millis(5);
/// How long the wait must stay above `TARGET` before the first drop: longer than a
/// TCP flow's round trip on the paths the agent serves, so a burst is not a queue.
const INTERVAL: Duration = Duration::from_millis(100);

/// CoDel's state for one queue, fed each packet's wait as the loop takes it.
#[derive(Debug, Default)]
pub struct Codel {
    /// When the wait, above `TARGET` since, will have been so for an `INTERVAL`.
    above_until: Option<Instant>,
    /// Whether a standing queue is being drained by drops.
    dropping: bool,
    /// The next drop while `dropping`.
    drop_next: Option<Instant>,
    /// Drops in this dropping spell (and carried into the next if it follows soon).
    count: u32,
    /// `count` when the last spell began.
    last_count: u32,
    /// Datagrams dropped since the agent began.
    pub dropped: u64,
}

impl Codel {
    pub fn new() -> Codel {
        Codel::default()
    }

    /// Whether to drop a packet taken at `now` that waited `waited` in the queue.
    pub fn should_drop(&mut self, now: Instant, waited: Duration) -> bool {
        let ok_to_drop = self.standing(now, waited);
        if self.dropping {
            if !ok_to_drop {
                self.dropping = false;
                return false;
            }
            let due = self.drop_next.is_some_and(|next| now >= next);
            if due {
                self.count = self.count.saturating_add(1);
                self.drop_next = self.drop_next.map(|next| next + control_law(self.count));
                self.dropped += 1;
            }
            return due;
        }
        if !ok_to_drop {
            return false;
        }
        // A new spell. If the last one ended lately, the queue came back: start from
        // near where it left off rather than from one drop per interval (RFC 8289 5.5).
        self.dropping = true;
        let lately = self
            .drop_next
            .is_some_and(|next| now < next + 16 * INTERVAL);
        let delta = self.count.saturating_sub(self.last_count);
        self.count = if lately && delta > 1 { delta } else { 1 };
        self.last_count = self.count;
        self.drop_next = Some(now + control_law(self.count));
        self.dropped += 1;
        true
    }

    /// Whether the wait has been above `TARGET` for an `INTERVAL` by `now`.
    fn standing(&mut self, now: Instant, waited: Duration) -> bool {
        if waited < TARGET {
            self.above_until = None;
            return false;
        }
        match self.above_until {
            None => {
                self.above_until = Some(now + INTERVAL);
                false
            }
            Some(until) => now >= until,
        }
    }
}

/// The time to the next drop after `count` drops: closer as the queue resists.
fn control_law(count: u32) -> Duration {
    INTERVAL.div_f64(f64::from(count.max(1)).sqrt())
}

/// Whether a datagram is WireGuard data with a payload (type 4, longer than a
/// keepalive's 32 bytes): the only kind CoDel may drop.
pub fn droppable(datagram: &[u8]) -> bool {
    datagram.len() > 32 && datagram[..4] == [4, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds one datagram every `step` from `from` for `span`, each having waited
    /// `waited`; the times at which one was dropped, from `start`.
    fn feed(
        codel: &mut Codel,
        start: Instant,
        from: Duration,
        span: Duration,
        waited: Duration,
    ) -> Vec<Duration> {
        let step = Duration::from_micros(100);
        let mut drops = Vec::new();
        let mut t = from;
        while t < from + span {
            if codel.should_drop(start + t, waited) {
                drops.push(t);
            }
            t += step;
        }
        drops
    }

    #[test]
    fn a_wait_below_the_target_never_drops() {
        let mut codel = Codel::new();
        let start = Instant::now();
        assert!(feed(&mut codel, start, Duration::ZERO, 2000 * MS, 4 * MS).is_empty());
        assert_eq!(codel.dropped, 0);
    }

    #[test]
    fn a_burst_that_drains_within_the_interval_drops_nothing() {
        let mut codel = Codel::new();
        let start = Instant::now();
        // 90 ms of long waits, a short one, 90 ms more: never a whole interval.
        assert!(feed(&mut codel, start, Duration::ZERO, 90 * MS, 30 * MS).is_empty());
        assert!(!codel.should_drop(start + 90 * MS, MS));
        assert!(feed(&mut codel, start, 91 * MS, 90 * MS, 30 * MS).is_empty());
    }

    #[test]
    fn a_standing_queue_is_dropped_from_after_an_interval_ever_closer() {
        let mut codel = Codel::new();
        let start = Instant::now();
        let drops = feed(&mut codel, start, Duration::ZERO, 400 * MS, 10 * MS);
        assert_eq!(
            drops[0], INTERVAL,
            "the first drop once the wait stood an interval"
        );
        // Then 100 ms / sqrt(n) apart after the nth: 100, 70.7, 57.7 ms ... (to the
        // 0.1 ms step).
        let gaps: Vec<f64> = drops
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
            .collect();
        assert!(gaps.len() >= 4, "{drops:?}");
        for (n, gap) in gaps.iter().enumerate() {
            let law = 100.0 / ((n + 1) as f64).sqrt();
            assert!((gap - law).abs() < 0.2, "gap {n}: {gap} ms against {law}");
        }
        assert_eq!(codel.dropped, drops.len() as u64);
    }

    #[test]
    fn drops_stop_once_the_wait_falls_below_the_target() {
        let mut codel = Codel::new();
        let start = Instant::now();
        assert!(!feed(&mut codel, start, Duration::ZERO, 300 * MS, 10 * MS).is_empty());
        assert!(feed(&mut codel, start, 300 * MS, 1000 * MS, MS).is_empty());
    }

    #[test]
    fn a_queue_that_comes_back_soon_is_dropped_at_the_pace_it_left_off() {
        let mut codel = Codel::new();
        let start = Instant::now();
        let first = feed(&mut codel, start, Duration::ZERO, 600 * MS, 10 * MS);
        assert!(first.len() >= 6, "{first:?}");
        assert!(feed(&mut codel, start, 600 * MS, 50 * MS, MS).is_empty());
        // Back within 16 intervals: the first drop after an interval, the next much
        // sooner than the first spell's (100 ms).
        let again = feed(&mut codel, start, 650 * MS, 300 * MS, 10 * MS);
        assert_eq!(again[0], 750 * MS);
        assert!(again[1] - again[0] < 60 * MS, "{again:?}");
        // After a long calm, it starts again from one drop an interval.
        assert!(feed(&mut codel, start, 950 * MS, 3000 * MS, MS).is_empty());
        let later = feed(&mut codel, start, 3950 * MS, 300 * MS, 10 * MS);
        assert!(later[1] - later[0] > 70 * MS, "{later:?}");
    }

    #[test]
    fn only_data_with_a_payload_may_be_dropped() {
        let mut data = vec![4, 0, 0, 0];
        data.resize(32 + 20, 0);
        assert!(droppable(&data));
        assert!(!droppable(&data[..32]), "a keepalive");
        for kind in [1u8, 2, 3] {
            let mut other = data.clone();
            other[0] = kind;
            assert!(!droppable(&other), "message type {kind}");
        }
        assert!(!droppable(&[4]));
    }
}
