//! Whether a peer answers, judged from the data path: we sent, and nothing authenticated
//! came back. A flag from elsewhere (a "Ready" condition, a manifest field) is never
//! trusted for this; squat/kilo#489 is what happens when it is.
//!
//! The rule: data sent and no authenticated answer for a while → send a handshake
//! initiation as a probe; the probes unanswered for long enough → the path failed (the
//! peer moves to its next path, or is down). A peer that is down is probed again with
//! growing pauses; its first authenticated answer brings it back up. Keepalives we send
//! do not count as "sent": WireGuard does not answer them.
//!
//! One lost datagram is never a failure: a path that never answered gets seven handshakes
//! in 1.9 s; a working path gets two when its round trip allows (each new initiation
//! replaces the last, so the second goes out only when the first's answer is overdue).
//! Timeouts follow the handshake round trip measured on the path: a slow path is not a
//! dead one (PROBE_TIMEOUT covers a 2 s round trip while none was measured).
//!
//! "A while" adapts to the traffic. Request/response traffic (a ping, TCP) is answered
//! within a round trip, so 1.5 s (or three round trips) of silence is suspicious. One-way traffic (telemetry) is
//! answered only by the peer's passive keepalive, 10 s after our data: once a probe shows
//! the peer was alive all along, we wait 12 s before the next probe, until traffic is
//! answered promptly again. That keeps one-way flows from costing a handshake every 2 s.

use std::time::{Duration, Instant};

use super::fastmap::mix;

/// How long data may go unanswered before we ask with a handshake, at least. A WireGuard
/// peer that receives data answers with data or, within KEEPALIVE_TIMEOUT (10 s), a
/// keepalive; a ping answers within a round trip. Slower paths get three round trips.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(1500);
/// The patience for one-way traffic: KEEPALIVE_TIMEOUT (10 s) plus 2 s of slack.
pub const SUSPECT_AFTER_ONE_WAY: Duration = Duration::from_secs(12);
/// How long the probes of a working path may go unanswered before it counts as failed,
/// while its round trip is unknown: long enough for a 2 s round trip (a congested
/// cellular or satellite link is slow, not down).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(2500);
/// The same once the round trip is known: three round trips and a quarter second, but at
/// least a second. On a LAN or a good WAN a dead path is found 1 s after the first probe.
const PROBE_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// A path that never answered (a new peer, a path just switched to) gets this long before
/// the next path is tried: 1.9 s keeps a blocked path's relay fallback within 2 s.
pub const FIRST_PROBE_TIMEOUT: Duration = Duration::from_millis(1900);
/// When its handshakes go out, counted from the first. One lost datagram must not send a
/// peer to the relay: with 20 % loss each way a handshake round trip fails 36 % of the
/// time (23 % for the probes, which go out twice), so seven in a row fail once in 18,000
/// starts. Four did once in 220: one run of 20 lossy starts in 12 took the relay.
/// Close together at first, where a lost datagram is most likely the only trouble; wider
/// later, so an answer that takes up to a second still counts (boringtun takes the answer
/// to the last initiation or the one before).
const FIRST_PROBES_AT: [Duration; 7] = [
    Duration::ZERO,
    Duration::from_millis(150),
    Duration::from_millis(300),
    Duration::from_millis(500),
    Duration::from_millis(700),
    Duration::from_millis(900),
    Duration::from_millis(1200),
];
/// Pauses between probes of a peer that is down: 5 s, doubling up to `RETRY_MAX_KEPT`
/// for a peer we must stay connected to (one with a keepalive: a hub, for an edge),
/// which gets its traffic back quickly when it returns; up to `RETRY_MAX` for the rest,
/// so a hub with a thousand offline peers sends about three initiations a second.
const RETRY_FIRST: Duration = Duration::from_secs(5);
pub const RETRY_MAX_KEPT: Duration = Duration::from_secs(30);
pub const RETRY_MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Nothing learned yet (no answer, no failure).
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// What the peer must do after a timer check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Send a handshake initiation now.
    Probe,
}

#[derive(Clone, Debug)]
pub struct Liveness {
    health: Health,
    /// The first data sent since the last authenticated answer.
    unanswered_since: Option<Instant>,
    /// The first handshake initiation sent since the last authenticated answer.
    probe_sent: Option<Instant>,
    /// Handshakes sent in this round of probing.
    attempts: u8,
    /// While down: when to probe again, and the pause after that.
    retry_at: Option<Instant>,
    retry_pause: Duration,
    /// Retries since the peer went down, to draw each one's spread afresh.
    retries: u32,
    /// Whether data is answered promptly (request/response) or only by keepalives.
    one_way: bool,
    /// How long the last failure went unanswered, for the log.
    waited: Duration,
    /// The smoothed handshake round trip on this path, once measured.
    rtt: Option<Duration>,
    /// How far apart probes of a down peer get.
    backoff: Backoff,
}

/// The pauses between probes of a down peer: doubling up to `max`, each spread by
/// `spread`. A hub's offline peers all fail at its start; without the spread they would
/// be retried in one burst every five minutes for ever (1,000 initiations at once), and a
/// hub back from a restart would meet all its edges in the same instant.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub max: Duration,
    /// A number fixed per peer (from its key), so the spread is deterministic: the same
    /// peer is retried on the same schedule in the simulation and in the agent. `None`
    /// retries on the exact doubling schedule.
    pub spread: Option<u64>,
}

impl Backoff {
    /// `pause` stretched or shrunk by a fraction drawn afresh for each retry of each
    /// peer: within ±20 % while the pauses grow, so a returning peer is still found
    /// soon; within ±50 % once they reach `max`, so the peers that failed together are
    /// spread over the whole period by the first long pause.
    fn spread(self, pause: Duration, retry: u32) -> Duration {
        let Some(seed) = self.spread else {
            return pause;
        };
        let width: u32 = if pause >= self.max { 500 } else { 200 };
        let draw = mix(seed ^ mix(u64::from(retry))) % u64::from(2 * width + 1);
        let draw = draw as u32;
        pause * (1000 - width + draw) / 1000
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            health: Health::Unknown,
            unanswered_since: None,
            probe_sent: None,
            attempts: 0,
            retry_at: None,
            retry_pause: RETRY_FIRST,
            retries: 0,
            one_way: false,
            waited: Duration::ZERO,
            rtt: None,
            backoff: Backoff {
                max: RETRY_MAX_KEPT,
                spread: None,
            },
        }
    }
}

impl Liveness {
    pub fn health(&self) -> Health {
        self.health
    }

    /// How long the last failure went unanswered.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The smoothed handshake round trip, once one was measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// A liveness check whose probes of a down peer back off as `backoff` says.
    pub fn with_backoff(backoff: Backoff) -> Liveness {
        Liveness {
            backoff,
            ..Liveness::default()
        }
    }

    /// The peer is now reached another way: nothing is known about that way yet.
    pub fn on_path_changed(&mut self) {
        *self = Liveness {
            one_way: self.one_way,
            backoff: self.backoff,
            ..Liveness::default()
        };
    }

    /// A handshake we started was answered after `rtt`.
    pub fn on_handshake_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(match self.rtt {
            Some(old) => (old * 3 + rtt) / 4,
            None => rtt,
        });
    }

    /// How long data may go unanswered before a probe.
    fn patience(&self) -> Duration {
        if self.one_way {
            SUSPECT_AFTER_ONE_WAY
        } else {
            self.round_trip_patience()
        }
    }

    /// How long request/response traffic may take to be answered on this path.
    fn round_trip_patience(&self) -> Duration {
        self.rtt
            .map_or(SUSPECT_AFTER, |r| (r * 3).max(SUSPECT_AFTER))
    }

    /// How long a round of probes may go unanswered.
    fn probe_timeout(&self) -> Duration {
        match (self.health, self.rtt) {
            (Health::Unknown, _) => FIRST_PROBE_TIMEOUT,
            (_, None) => PROBE_TIMEOUT,
            (_, Some(rtt)) => (rtt * 3 + Duration::from_millis(250)).max(PROBE_TIMEOUT_MIN),
        }
    }

    /// When the next handshake of this round is due, counted from the round's first;
    /// `None` once the round has sent all it may.
    fn next_probe_after(&self) -> Option<Duration> {
        let sent = usize::from(self.attempts);
        match (self.health, self.rtt) {
            (Health::Unknown, _) => FIRST_PROBES_AT.get(sent).copied(),
            (_, None) => None,
            (_, Some(rtt)) => {
                // A second handshake replaces the first; only worth it when the first's
                // answer is surely overdue by then.
                let half = self.probe_timeout() / 2;
                (sent < 2 && half > rtt * 2).then_some(half)
            }
        }
    }

    pub fn on_data_sent(&mut self, now: Instant) {
        self.unanswered_since.get_or_insert(now);
    }

    pub fn on_handshake_sent(&mut self, now: Instant) {
        if self.probe_sent.is_none() {
            self.probe_sent = Some(now);
            self.attempts = 1;
        }
    }

    /// An authenticated packet arrived. Returns true when this brings the peer back up.
    pub fn on_answer(&mut self, now: Instant) -> bool {
        let was_down = self.health == Health::Down;
        let prompt = self
            .unanswered_since
            .is_some_and(|t| now.saturating_duration_since(t) < self.round_trip_patience());
        let one_way = if prompt {
            false
        } else if self.probe_sent.is_some() && self.unanswered_since.is_some() {
            // Alive, but our data was not answered: the traffic is one-way.
            true
        } else {
            self.one_way
        };
        *self = Liveness {
            health: Health::Up,
            one_way,
            rtt: self.rtt,
            backoff: self.backoff,
            ..Liveness::default()
        };
        was_down
    }

    /// Checks the deadlines. Returns the action to take and whether the path just failed
    /// (the peer is down unless another path answers).
    pub fn on_tick(&mut self, now: Instant) -> (Action, bool) {
        if self.health == Health::Down {
            if self.retry_at.is_some_and(|t| now >= t) {
                self.retries += 1;
                self.retry_at = Some(now + self.backoff.spread(self.retry_pause, self.retries));
                self.retry_pause = (self.retry_pause * 2).min(self.backoff.max);
                return (Action::Probe, false);
            }
            return (Action::None, false);
        }
        if let Some(sent) = self.probe_sent {
            if now.saturating_duration_since(sent) >= self.probe_timeout() {
                let since = self.unanswered_since.map_or(sent, |u| u.min(sent));
                self.waited = now.saturating_duration_since(since);
                *self = Liveness {
                    health: Health::Down,
                    retry_at: Some(now + self.backoff.spread(RETRY_FIRST, 0)),
                    retry_pause: RETRY_FIRST * 2,
                    one_way: self.one_way,
                    waited: self.waited,
                    rtt: self.rtt,
                    backoff: self.backoff,
                    ..Liveness::default()
                };
                return (Action::None, true);
            }
            if self
                .next_probe_after()
                .is_some_and(|after| now >= sent + after)
            {
                self.attempts += 1;
                return (Action::Probe, false);
            }
            return (Action::None, false);
        }
        if self
            .unanswered_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.patience())
        {
            return (Action::Probe, false);
        }
        (Action::None, false)
    }

    /// The next time `on_tick` has something to decide.
    pub fn deadline(&self) -> Option<Instant> {
        if self.health == Health::Down {
            return self.retry_at;
        }
        match (self.probe_sent, self.unanswered_since) {
            (Some(p), _) => {
                let timeout = p + self.probe_timeout();
                let retry = self.next_probe_after().map(|after| p + after);
                Some(retry.map_or(timeout, |r| r.min(timeout)))
            }
            (None, Some(u)) => Some(u + self.patience()),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn unanswered_data_leads_to_a_probe_after_1_5s_and_a_failure_2_5s_later() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_answer(t0);
        l.on_data_sent(t0);
        l.on_data_sent(t0 + secs(1.0));
        assert_eq!(
            l.deadline(),
            Some(t0 + SUSPECT_AFTER),
            "counted from the first unanswered send"
        );
        assert_eq!(l.on_tick(t0 + secs(1.4)), (Action::None, false));
        assert_eq!(l.on_tick(t0 + secs(1.5)), (Action::Probe, false));
        l.on_handshake_sent(t0 + secs(1.5));
        assert_eq!(l.on_tick(t0 + secs(3.9)), (Action::None, false));
        assert_eq!(l.on_tick(t0 + secs(4.0)), (Action::None, true));
        assert_eq!(l.health(), Health::Down);
    }

    #[test]
    fn a_measured_fast_path_fails_one_second_after_two_unanswered_probes() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_handshake_rtt(secs(0.002));
        l.on_answer(t0);
        l.on_data_sent(t0);
        assert_eq!(l.on_tick(t0 + secs(1.5)), (Action::Probe, false));
        l.on_handshake_sent(t0 + secs(1.5));
        assert_eq!(l.on_tick(t0 + secs(1.9)), (Action::None, false));
        assert_eq!(
            l.on_tick(t0 + secs(2.0)),
            (Action::Probe, false),
            "a second handshake, in case the first was lost"
        );
        assert_eq!(l.on_tick(t0 + secs(2.4)), (Action::None, false));
        assert_eq!(l.on_tick(t0 + secs(2.5)), (Action::None, true));
    }

    #[test]
    fn a_two_second_round_trip_is_slow_not_down() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_handshake_rtt(secs(2.0));
        l.on_answer(t0);
        // A ping every second, each answered two seconds later.
        for k in 0..30 {
            let t = t0 + secs(f64::from(k));
            l.on_data_sent(t);
            let (action, failed) = l.on_tick(t);
            assert!(!failed, "down at {k} s");
            assert_eq!(action, Action::None, "probed at {k} s");
            if k >= 2 {
                l.on_answer(t);
            }
        }
        assert_eq!(l.health(), Health::Up);
    }

    #[test]
    fn an_answer_clears_the_suspicion() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_data_sent(t0);
        assert!(!l.on_answer(t0 + secs(0.1)));
        assert_eq!(l.deadline(), None);
        assert_eq!(l.on_tick(t0 + secs(10.0)), (Action::None, false));
        assert_eq!(l.health(), Health::Up);
    }

    #[test]
    fn a_new_path_gets_seven_handshakes_in_1_9s_before_it_fails() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_handshake_sent(t0);
        let mut probes = Vec::new();
        let mut t = t0;
        let failed_at = loop {
            t += secs(0.05);
            let (action, failed) = l.on_tick(t);
            if action == Action::Probe {
                probes.push((t - t0).as_secs_f64());
                l.on_handshake_sent(t);
            }
            if failed {
                break (t - t0).as_secs_f64();
            }
        };
        let rounded: Vec<f64> = probes.iter().map(|p| (p * 100.0).round() / 100.0).collect();
        assert_eq!(rounded, [0.15, 0.3, 0.5, 0.7, 0.9, 1.2]);
        assert!((failed_at - 1.9).abs() < 0.01, "failed at {failed_at}");
    }

    #[test]
    fn one_answer_among_the_first_handshakes_is_enough() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_handshake_sent(t0);
        assert_eq!(l.on_tick(t0 + secs(0.15)), (Action::Probe, false));
        l.on_handshake_sent(t0 + secs(0.15));
        assert!(!l.on_answer(t0 + secs(0.16)));
        assert_eq!(l.health(), Health::Up);
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn a_down_peer_is_probed_with_growing_pauses_and_comes_back_on_an_answer() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_handshake_sent(t0);
        let mut t = t0;
        while !l.on_tick(t).1 {
            t += secs(0.05);
        }
        let down_at = t;
        let mut probes = Vec::new();
        while t < t0 + secs(120.0) {
            t += secs(0.5);
            if l.on_tick(t).0 == Action::Probe {
                probes.push((t - down_at).as_secs_f64().round());
            }
        }
        assert_eq!(&probes[..5], &[5.0, 15.0, 35.0, 65.0, 95.0]);
        assert!(l.on_answer(t), "the first answer brings it back");
        assert_eq!(l.health(), Health::Up);
    }

    #[test]
    fn a_peer_we_need_not_keep_backs_off_to_five_minutes() {
        let t0 = Instant::now();
        let mut l = Liveness::with_backoff(Backoff {
            max: RETRY_MAX,
            spread: None,
        });
        l.on_handshake_sent(t0);
        let mut t = t0;
        while !l.on_tick(t).1 {
            t += secs(0.05);
        }
        let mut probes = Vec::new();
        let end = t + secs(3600.0);
        while t < end {
            t += secs(1.0);
            if l.on_tick(t).0 == Action::Probe {
                probes.push(t);
            }
        }
        let pauses: Vec<u64> = probes.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(&pauses[..6], &[10, 20, 40, 80, 160, 300]);
        assert!(pauses[6..].iter().all(|&p| p == 300), "{pauses:?}");
    }

    /// Probe times of a peer that never answers, over `hours`, from its first failure.
    fn retries(backoff: Backoff, hours: f64) -> Vec<f64> {
        let t0 = Instant::now();
        let mut l = Liveness::with_backoff(backoff);
        l.on_handshake_sent(t0);
        let mut t = t0;
        while !l.on_tick(t).1 {
            t += secs(0.05);
        }
        let mut probes = Vec::new();
        while t < t0 + secs(hours * 3600.0) {
            t = l.deadline().expect("a down peer is retried");
            if l.on_tick(t).0 == Action::Probe {
                probes.push((t - t0).as_secs_f64());
            }
        }
        probes
    }

    #[test]
    fn retries_of_many_offline_peers_are_spread_not_synchronised() {
        let exact = retries(
            Backoff {
                max: RETRY_MAX,
                spread: None,
            },
            1.0,
        );
        let mut all = Vec::new();
        for seed in 0..1000u64 {
            let spread = retries(
                Backoff {
                    max: RETRY_MAX,
                    spread: Some(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                },
                1.0,
            );
            // Each pause stays within 20 % of the doubling schedule's, 50 % at the longest.
            let pauses = |p: &[f64]| p.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>();
            for (got, want) in pauses(&spread).iter().zip(pauses(&exact)) {
                let width = if want >= RETRY_MAX.as_secs_f64() {
                    0.5
                } else {
                    0.2
                };
                assert!(
                    (want * (1.0 - width) - 0.01..=want * (1.0 + width) + 0.01).contains(got),
                    "seed {seed}: pause {got} s against {want} s"
                );
            }
            all.extend(spread);
        }
        // Past the first 10 minutes the 1,000 peers are retried about 3.3 times a second;
        // no 10 s window holds more than twice its share. Unspread, all 1,000 fall in the
        // same instant every five minutes.
        let mut per_window = std::collections::BTreeMap::<u64, u32>::new();
        for t in all.iter().filter(|&&t| t > 600.0) {
            *per_window.entry(*t as u64 / 10).or_default() += 1;
        }
        let busiest = per_window.values().max().copied().unwrap_or(0);
        assert!(busiest <= 67, "{busiest} retries in one 10 s window");
        let rate = per_window.values().sum::<u32>() as f64 / 3000.0;
        assert!(rate <= 4.0, "{rate:.2} retries a second past 10 minutes");
    }

    #[test]
    fn one_way_traffic_is_probed_once_then_given_the_keepalive_window() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_answer(t0);
        // Data flows out every 100 ms; the peer only ever answers a probe or, 10 s after
        // our data started, with its passive keepalive.
        let mut probes = 0;
        let mut t = t0;
        let mut data_since_answer = t0;
        while t < t0 + secs(120.0) {
            t += secs(0.1);
            l.on_data_sent(t);
            if l.on_tick(t).0 == Action::Probe {
                probes += 1;
                l.on_handshake_sent(t);
                l.on_answer(t + secs(0.05));
                data_since_answer = t;
            } else if t - data_since_answer >= secs(10.0) {
                l.on_answer(t);
                data_since_answer = t;
            }
            assert_eq!(l.health(), Health::Up);
        }
        assert_eq!(probes, 1, "one probe to learn the traffic is one-way");
    }

    #[test]
    fn prompt_answers_bring_back_the_short_patience() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_data_sent(t0);
        l.on_tick(t0 + secs(2.0));
        l.on_handshake_sent(t0 + secs(2.0));
        l.on_answer(t0 + secs(2.1));
        l.on_data_sent(t0 + secs(3.0));
        assert_eq!(l.deadline(), Some(t0 + secs(3.0) + SUSPECT_AFTER_ONE_WAY));
        l.on_answer(t0 + secs(3.2));
        l.on_data_sent(t0 + secs(4.0));
        assert_eq!(l.deadline(), Some(t0 + secs(4.0) + SUSPECT_AFTER));
    }

    #[test]
    fn keepalives_alone_never_make_a_peer_suspect() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_answer(t0);
        // Nothing recorded: keepalives are not reported to the liveness check.
        assert_eq!(l.on_tick(t0 + secs(300.0)), (Action::None, false));
        assert_eq!(l.health(), Health::Up);
    }
}
