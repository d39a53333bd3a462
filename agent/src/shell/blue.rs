//! Keeps the TUN's queue short when a UDP flow sends faster than the agent encrypts and
//! does not slow down for a loss: BLUE (Feng et al., 2002), as CAKE's COBALT pairs it
//! with CoDel.
//!
//! CoDel (codel.rs) drops ever closer together, which is enough for a sender that backs
//! off at a loss, but not for one that ignores losses (a video stream, an iperf3, a
//! flood): its queue stands at the ring's full length whatever CoDel does. The agent
//! can still shorten it, because reading a packet and dropping it costs far less than
//! encrypting and sending it: dropping enough of the flow's packets as they are read
//! lets the loop read the ring faster than the flow fills it.
//!
//! So while the TUN's queue waits `OVERLOAD` or more (as the agent's probes time it,
//! ring_probe.rs), the share of bulk UDP packets dropped as they are read rises by
//! `RISE` each `STEP`; while it waits under CoDel's target, or nothing measures it, the
//! share falls by `RISE` each `STEP`; in between it holds. The share thus settles where
//! the loop keeps up, and goes back to zero within a second once the flood stops.
//!
//! Only UDP: TCP answers CoDel's drops, and its queue never stands this long under them.
//! A UDP flow that does answer losses (QUIC) keeps its queue near CoDel's target too, so
//! the share stays at zero for it but in a slow start's overshoot.
//!
//! Measured in the lab (tests/tests/queue_control.rs, the device's agent the aarch64
//! build under qemu-user, an iperf3 UDP upload at 400 Mbit/s against about 260 the
//! device carries): pings beside it after its first 2 s took 80.2 and 94.1 ms on
//! average before this (two runs), the ring full (77,396 and 117,561 of its drops in
//! 8 s); with this 18.3, 18.5 and 18.8 ms (three runs; at most 67, 79 and 69), the
//! ring's drops 702 and 5,677 (the third not counted), at 295, 205 and 141 Mbit/s
//! arrived against 292 and 235: the flood's own rate may be the cost, and the runs
//! are too few and too noisy (qemu beside the hub) to say how much. Tried once each
//! and not taken: rising four times as fast (1/16 a step, falling 1/64) held pings at
//! 11-12 ms but carried 204 and 164 Mbit/s, dropping more than the loop needed;
//! dropping every bulk UDP packet while the wait is over `OVERLOAD` held 20-21 ms (at
//! most 38) at 317 and 246 Mbit/s, in bursts of total loss.

use std::time::{Duration, Instant};

/// The queue's wait from which its sender is taken for one that ignores CoDel: four
/// times CoDel's target, which a sender that answers losses does not keep.
const OVERLOAD: Duration = Duration::from_millis(20);
/// Below this (CoDel's target) the queue is short: the share falls.
const SHORT: Duration = Duration::from_millis(5);
/// How often the share moves: the probes' pace, so each step can see a new sample.
const STEP: Duration = Duration::from_millis(10);
/// How much the share moves a step, of `WHOLE`: from nothing to half in 320 ms.
const RISE: u32 = WHOLE / 64;
/// The share of packets dropped when all are: the unit of `share`.
const WHOLE: u32 = 1 << 16;

/// The share of bulk UDP packets dropped as they are read from the TUN.
#[derive(Debug, Default)]
pub struct Blue {
    /// Of `WHOLE`.
    share: u32,
    /// When the share last moved or held: it moves at most once a `STEP`.
    stepped: Option<Instant>,
    /// Drops owed: each packet adds the share, and a drop pays `WHOLE`. Spreads the
    /// drops evenly, with no randomness to seed.
    owed: u32,
    /// Packets dropped since the agent began.
    pub dropped: u64,
}

impl Blue {
    pub fn new() -> Blue {
        Blue::default()
    }

    /// Whether to drop a bulk UDP packet read at `now`, the queue's wait being `wait`
    /// as the probes last measured it (none without a recent probe).
    pub fn should_drop(&mut self, now: Instant, wait: Option<Duration>) -> bool {
        self.step(now, wait);
        if self.share == 0 {
            self.owed = 0;
            return false;
        }
        self.owed += self.share;
        if self.owed < WHOLE {
            return false;
        }
        self.owed -= WHOLE;
        self.dropped += 1;
        true
    }

    /// The share dropped now, of one.
    #[cfg(test)]
    fn share(&self) -> f64 {
        f64::from(self.share) / f64::from(WHOLE)
    }

    /// Moves the share by the steps since the last move: up one for a long wait (the
    /// wait says nothing of the steps between), down one for each step that passed for
    /// a short or unknown one.
    fn step(&mut self, now: Instant, wait: Option<Duration>) {
        let Some(stepped) = self.stepped else {
            self.stepped = Some(now);
            return;
        };
        let steps = now.saturating_duration_since(stepped).as_nanos() / STEP.as_nanos();
        if steps == 0 {
            return;
        }
        self.stepped = Some(now);
        match wait {
            Some(wait) if wait >= OVERLOAD => self.share = (self.share + RISE).min(WHOLE),
            Some(wait) if wait >= SHORT => {}
            _ => {
                let fall = u32::try_from(steps)
                    .unwrap_or(u32::MAX)
                    .saturating_mul(RISE);
                self.share = self.share.saturating_sub(fall);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds one packet every 0.1 ms for `span` from `from`, the queue's wait `wait`;
    /// how many were dropped.
    fn feed(
        blue: &mut Blue,
        start: Instant,
        from: Duration,
        span: Duration,
        wait: Option<Duration>,
    ) -> usize {
        let step = Duration::from_micros(100);
        let mut t = from;
        let mut dropped = 0;
        while t < from + span {
            dropped += usize::from(blue.should_drop(start + t, wait));
            t += step;
        }
        dropped
    }

    #[test]
    fn a_queue_under_the_overload_drops_nothing() {
        let mut blue = Blue::new();
        let start = Instant::now();
        for wait in [None, Some(Duration::ZERO), Some(4 * MS), Some(19 * MS)] {
            assert_eq!(feed(&mut blue, start, Duration::ZERO, 2000 * MS, wait), 0);
        }
        assert_eq!(blue.dropped, 0);
    }

    #[test]
    fn an_overloaded_queue_drops_a_share_that_rises_a_step_at_a_time() {
        let mut blue = Blue::new();
        let start = Instant::now();
        // 320 ms: 32 steps of 1/64 each, half the packets by the end.
        let rising = feed(&mut blue, start, Duration::ZERO, 320 * MS, Some(30 * MS));
        assert!(
            (blue.share() - 31.0 / 64.0).abs() < 1e-9,
            "{}",
            blue.share()
        );
        // About a quarter of the 3,200 packets, the share having risen evenly to half.
        assert!((700..=800).contains(&rising), "{rising} dropped");
        // At half, every other packet.
        let half = feed(&mut blue, start, 320 * MS, 9 * MS, Some(30 * MS));
        assert!((44..=46).contains(&half), "{half} of 90 dropped");
        assert_eq!(blue.dropped, (rising + half) as u64);
    }

    #[test]
    fn the_share_holds_between_codels_target_and_the_overload() {
        let mut blue = Blue::new();
        let start = Instant::now();
        feed(&mut blue, start, Duration::ZERO, 200 * MS, Some(30 * MS));
        let share = blue.share();
        assert!(share > 0.25, "{share}");
        feed(&mut blue, start, 200 * MS, 500 * MS, Some(10 * MS));
        assert_eq!(blue.share(), share);
    }

    #[test]
    fn the_share_falls_once_the_queue_is_short_and_is_gone_within_a_second() {
        let mut blue = Blue::new();
        let start = Instant::now();
        feed(&mut blue, start, Duration::ZERO, 2000 * MS, Some(30 * MS));
        assert_eq!(blue.share(), 1.0, "all of a flood that never lets up");
        feed(&mut blue, start, 2000 * MS, 320 * MS, Some(Duration::ZERO));
        assert!((blue.share() - 0.5).abs() < 0.02, "{}", blue.share());
        // No probe: nothing says the queue is long.
        feed(&mut blue, start, 2320 * MS, 400 * MS, None);
        assert_eq!(blue.share(), 0.0);
        assert_eq!(feed(&mut blue, start, 2720 * MS, 100 * MS, None), 0);
    }

    #[test]
    fn the_share_falls_for_the_time_no_packet_came_too() {
        let mut blue = Blue::new();
        let start = Instant::now();
        feed(&mut blue, start, Duration::ZERO, 2000 * MS, Some(30 * MS));
        // The flood stopped and the ring emptied; the next UDP packet comes 1 s later.
        assert!(!blue.should_drop(start + 3000 * MS, Some(Duration::ZERO)));
        assert_eq!(blue.share(), 0.0);
    }
}
