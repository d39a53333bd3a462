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
//! So the share of bulk UDP packets dropped as they are read moves with what the
//! agent's probes time the TUN's queue at (ring_probe.rs), at most once a `STEP`:
//! - up by `RISE` for each probe back that waited `OVERLOAD` or more; held for `LATE`
//!   after it while the next probe is on its way;
//! - else down by `RISE` a step: while the queue waits under `OVERLOAD`, was read
//!   empty, or nothing measures it. Gone within 640 ms once the flood stops.
//!
//! The share thus settles where the loop keeps up, the queue near `OVERLOAD`. There is
//! no band where it holds or falls slower, for a share the flow no longer needs must
//! not stay: a sender under the agent's capacity that stalls for 20 ms now and then
//! (four processes on two cores) raises it a little each time. A first version held
//! the share between CoDel's target and `OVERLOAD`, and a second fell at half speed
//! there: the held share cut `bench --only edgewire`'s row of UDP sent with GSO from
//! 2,783 and 2,426 Mbit/s to 789 and 1,615, and the slow fall to 1,417 and 1,619
//! against 2,667 and 2,671 (its searches lost 5-7 % at 1,680-1,730 Mbit/s, well
//! under what the agent carries).
//!
//! Only UDP: TCP answers CoDel's drops, and its queue never stands this long under them.
//! A UDP flow that does answer losses (QUIC) keeps its queue near CoDel's target too, so
//! the share stays at zero for it but in a slow start's overshoot.
//!
//! Only datagrams that came one to a read (`droppable`), never those split from a UDP
//! GSO super-packet. An entry of the ring holds up to 64 of those, so dropping some
//! shortens the ring no faster, while reading and splitting the entry is paid in full:
//! the share rose to all and stayed there, the flood's datagrams nearly all dropped.
//! With each end on a core of its own (`bench --pin`, as on a device, where the sender
//! shares the agent's core), the row of UDP sent with GSO fell to 865, 1,253 and 1,443
//! Mbit/s in three runs of four (4,016 in the fourth) against 4,262 and 4,290 without
//! BLUE, its full-speed flood arriving at 899-1,500 against 3,279 and 3,301 (92-95 %
//! lost). With runs left alone, two rounds alternating with the build before BLUE: 3,462
//! and 4,026 against 4,351 and 4,190, the floods 2,743 and 3,319 against 2,917 and
//! 3,249. Such a sender is a QUIC stack, which answers losses; senders that ignore them
//! (iperf3, a video stream) send one datagram a call, and the lab's flood below still
//! loses 97,145 datagrams to this against 5,974 to the full ring.
//!
//! Measured in the lab (the aarch64 build under qemu-user on the device, an iperf3 UDP
//! upload at 400 Mbit/s, more than the device carries; tests/tests/queue_control.rs's
//! UDP phase): pings beside it after its first 2 s took 80.2 and 94.1 ms on average
//! before this (two runs), the ring full (77,396 and 117,561 of its tail drops in 8 s);
//! with this 25.2, 25.6, 27.6, 27.7 and 27.3 ms (five runs, at most 70-86), the ring's
//! tail drops 2,604 and 4,039 (two counted), at 277, 296, 308, 283 and 212 Mbit/s
//! arrived against 292 and 235: as noisy as before (qemu beside the native hub).
//!
//! Its cost is the reading of what it drops: a flood ten times what the agent carries
//! (`bench`'s full-speed probes, one datagram a call) arrived at 823 and 856 Mbit/s
//! against 915 and 940 (and, before GSO runs were left alone, at 1,797 and 2,052 with
//! UDP GSO against 2,320 and 2,332; with each end on a core of its own, at a third: see
//! above). Tried and not taken, besides the two above: rising four times as fast held
//! 11-12 ms but carried 204 and 164 Mbit/s, dropping more than the loop needed;
//! dropping every bulk UDP packet while the wait is over `OVERLOAD` held 20-21 ms (at
//! most 38) at 317 and 246 Mbit/s, in bursts of total loss.

use std::time::{Duration, Instant};

use super::ring_probe::bulk_udp;

/// The queue's wait from which its sender is taken for one that ignores CoDel: four
/// times CoDel's target, which a sender that answers losses does not keep.
const OVERLOAD: Duration = Duration::from_millis(20);
/// How often the share moves: the probes' pace, so each step can see a new sample.
const STEP: Duration = Duration::from_millis(10);
/// How long a probe that said "overloaded" holds the share, while the next probe is on
/// its way back; after it, with no newer word, the share falls.
const LATE: Duration = Duration::from_millis(50);
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
    /// When the probe came back that the share last rose for: each probe counts once.
    rose_for: Option<Instant>,
    /// Drops owed: each packet adds the share, and a drop pays `WHOLE`. Spreads the
    /// drops evenly, with no randomness to seed.
    owed: u32,
    /// Packets dropped since the agent began.
    pub dropped: u64,
}

/// Whether BLUE may drop `packet` (see the module's comment): bulk UDP
/// (`ring_probe::bulk_udp`) that came one to a read, not split from a super-packet.
pub fn droppable(packet: &[u8], came_whole: bool) -> bool {
    came_whole && bulk_udp(packet)
}

impl Blue {
    pub fn new() -> Blue {
        Blue::default()
    }

    /// Whether to drop a bulk UDP packet read at `now`, `sample` being the last probe's
    /// wait in the queue and when it came back (ring_probe.rs; none without one).
    pub fn should_drop(&mut self, now: Instant, sample: Option<(Duration, Instant)>) -> bool {
        self.step(now, sample);
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

    /// Moves the share, at most once a `STEP` (see the module's doc).
    fn step(&mut self, now: Instant, sample: Option<(Duration, Instant)>) {
        let Some(stepped) = self.stepped else {
            self.stepped = Some(now);
            return;
        };
        // Most packets come within the step: no division for them.
        if now < stepped + STEP {
            return;
        }
        let steps = now.saturating_duration_since(stepped).as_nanos() / STEP.as_nanos();
        self.stepped = Some(now);
        match sample {
            Some((wait, at)) if wait >= OVERLOAD && self.rose_for.is_none_or(|r| at > r) => {
                self.rose_for = Some(at);
                self.share = (self.share + RISE).min(WHOLE);
            }
            Some((wait, at)) if wait >= OVERLOAD && now.saturating_duration_since(at) < LATE => {}
            _ => {
                let steps = u32::try_from(steps).unwrap_or(u32::MAX);
                self.share = self.share.saturating_sub(steps.saturating_mul(RISE));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// A queue the probes time at 30 ms: overloaded.
    const LONG: Option<Duration> = Some(Duration::from_millis(30));

    /// A `Blue` and the simulated time its packets are read at.
    struct Sim {
        blue: Blue,
        start: Instant,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                blue: Blue::new(),
                start: Instant::now(),
            }
        }

        /// A `Sim` whose queue was overloaded for its first `ms`.
        fn flooded(ms: u32) -> Sim {
            let mut sim = Sim::new();
            sim.feed(0, ms, LONG, 10);
            sim
        }

        /// Feeds one packet every 0.1 ms for `span` ms from `from` ms, a probe coming
        /// back every `every` ms having waited `wait` (none: no probe); how many were
        /// dropped.
        fn feed(&mut self, from: u32, span: u32, wait: Option<Duration>, every: u32) -> usize {
            let mut dropped = 0;
            for tenth in from * 10..(from + span) * 10 {
                let back = MS * (tenth / 10 / every * every);
                let sample = wait.map(|wait| (wait, self.start + back));
                let now = self.start + MS * tenth / 10;
                dropped += usize::from(self.blue.should_drop(now, sample));
            }
            dropped
        }

        /// Asserts the share dropped now is `share`.
        fn assert_share(&self, share: f64) {
            let now = self.blue.share();
            assert!((now - share).abs() < 1e-9, "share {now}, not {share}");
        }
    }

    #[test]
    fn a_queue_under_the_overload_drops_nothing() {
        let mut sim = Sim::new();
        for wait in [None, Some(Duration::ZERO), Some(4 * MS), Some(19 * MS)] {
            assert_eq!(sim.feed(0, 2000, wait, 10), 0);
        }
        assert_eq!(sim.blue.dropped, 0);
    }

    #[test]
    fn an_overloaded_queue_drops_a_share_that_rises_a_step_at_a_time() {
        let mut sim = Sim::new();
        // 320 ms: 32 steps of 1/64 each (the first sets the clock), half by the end.
        let rising = sim.feed(0, 320, LONG, 10);
        sim.assert_share(31.0 / 64.0);
        // About a quarter of the 3,200 packets, the share having risen evenly to half.
        assert!((700..=800).contains(&rising), "{rising} dropped");
        // At half, every other packet.
        let half = sim.feed(320, 9, LONG, 10);
        assert!((44..=46).contains(&half), "{half} of 90 dropped");
        assert_eq!(sim.blue.dropped, (rising + half) as u64);
    }

    #[test]
    fn each_probe_raises_the_share_once() {
        let mut sim = Sim::new();
        // A probe back every 40 ms, at 0, 40, .. 400 ms: one rise each, held between
        // (under `LATE`), where a rise a step would have reached 40/64.
        sim.feed(0, 405, LONG, 40);
        sim.assert_share(11.0 / 64.0);
    }

    #[test]
    fn the_share_falls_once_the_queue_waits_under_the_overload() {
        let mut sim = Sim::flooded(2000);
        sim.assert_share(1.0);
        // A wait of 10 ms, over CoDel's target but under the overload, holds nothing:
        // a share the flood no longer needs decays as fast as it rose.
        sim.feed(2000, 320, Some(10 * MS), 10);
        sim.assert_share(0.5);
        // No probe: nothing says the queue is long.
        sim.feed(2320, 400, None, 10);
        sim.assert_share(0.0);
        assert_eq!(sim.feed(2720, 100, None, 10), 0);
    }

    #[test]
    fn a_long_wait_no_newer_probe_confirms_holds_briefly_then_falls() {
        let mut sim = Sim::flooded(320);
        let share = sim.blue.share();
        // The probes stop coming back (the ring dropped them): the last one's word
        // holds the share for `LATE`, then it falls a step each `STEP`.
        let last = LONG.map(|wait| (wait, sim.start + 310 * MS));
        sim.blue.should_drop(sim.start + 350 * MS, last);
        sim.assert_share(share);
        sim.blue.should_drop(sim.start + 400 * MS, last);
        sim.assert_share(share - 5.0 / 64.0);
    }

    #[test]
    fn the_share_falls_for_the_time_no_packet_came_too() {
        let mut sim = Sim::flooded(2000);
        // The flood stopped and the ring emptied; the next UDP packet comes 1 s later.
        let emptied = Some((Duration::ZERO, sim.start + 2010 * MS));
        assert!(!sim.blue.should_drop(sim.start + 3000 * MS, emptied));
        sim.assert_share(0.0);
    }

    #[test]
    fn only_a_bulk_datagram_that_came_alone_is_droppable() {
        let mut datagram = vec![0u8; 1400];
        datagram[0] = 0x45;
        datagram[9] = 17;
        assert!(droppable(&datagram, true));
        assert!(
            !droppable(&datagram, false),
            "split from a super-packet: dropping it shortens the ring no faster"
        );
        datagram[9] = 6;
        assert!(!droppable(&datagram, true), "TCP answers CoDel");
    }
}
