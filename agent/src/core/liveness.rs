//! Whether a peer answers, judged from the data path: we sent, and nothing authenticated
//! came back. A flag from elsewhere (a "Ready" condition, a manifest field) is never
//! trusted for this; squat/kilo#489 is what happens when it is.
//!
//! The rule: data sent and no authenticated answer for a while → send a handshake
//! initiation as a probe; no answer to a handshake within `PROBE_TIMEOUT` → down. A peer
//! that is down is probed again with growing pauses; its first authenticated answer brings
//! it back up. Keepalives we send do not count as "sent": WireGuard does not answer them.
//!
//! "A while" adapts to the traffic. Request/response traffic (a ping, TCP) is answered
//! within a round trip, so 2 s of silence is suspicious. One-way traffic (telemetry) is
//! answered only by the peer's passive keepalive, 10 s after our data: once a probe shows
//! the peer was alive all along, we wait 12 s before the next probe, until traffic is
//! answered promptly again. That keeps one-way flows from costing a handshake every 2 s.

use std::time::{Duration, Instant};

/// How long data may go unanswered before we ask with a handshake. A WireGuard peer that
/// receives data answers with data or, within KEEPALIVE_TIMEOUT (10 s), a keepalive; a
/// ping answers at once. 2 s is long enough for a cellular round trip.
pub const SUSPECT_AFTER: Duration = Duration::from_secs(2);
/// The patience for one-way traffic: KEEPALIVE_TIMEOUT (10 s) plus 2 s of slack.
pub const SUSPECT_AFTER_ONE_WAY: Duration = Duration::from_secs(12);
/// How long a handshake may go unanswered before the path counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for a path that never answered yet (a new peer, a path just switched to):
/// there is nothing to lose by moving on sooner, and the relay fallback must answer
/// within 2 s of start.
pub const FIRST_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pauses between probes of a peer that is down: 5 s, doubling up to 30 s. Cheap (a
/// 148-byte datagram) and fast enough that a returning hub gets its traffic back quickly.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(30);

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
    /// While down: when to probe again, and the pause after that.
    retry_at: Option<Instant>,
    retry_pause: Duration,
    /// How long data may go unanswered: SUSPECT_AFTER or SUSPECT_AFTER_ONE_WAY.
    patience: Duration,
    /// How long the last failure went unanswered, for the log.
    waited: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            health: Health::Unknown,
            unanswered_since: None,
            probe_sent: None,
            retry_at: None,
            retry_pause: RETRY_FIRST,
            patience: SUSPECT_AFTER,
            waited: Duration::ZERO,
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

    /// The peer is now reached another way: nothing is known about that way yet.
    pub fn on_path_changed(&mut self) {
        *self = Liveness {
            patience: self.patience,
            ..Liveness::default()
        };
    }

    fn probe_timeout(&self) -> Duration {
        match self.health {
            Health::Up => PROBE_TIMEOUT,
            Health::Unknown | Health::Down => FIRST_PROBE_TIMEOUT,
        }
    }

    pub fn on_data_sent(&mut self, now: Instant) {
        self.unanswered_since.get_or_insert(now);
    }

    pub fn on_handshake_sent(&mut self, now: Instant) {
        self.probe_sent.get_or_insert(now);
    }

    /// An authenticated packet arrived. Returns true when this brings the peer back up.
    pub fn on_answer(&mut self, now: Instant) -> bool {
        let was_down = self.health == Health::Down;
        let prompt = self
            .unanswered_since
            .is_some_and(|t| now.saturating_duration_since(t) < SUSPECT_AFTER);
        let patience = if prompt {
            SUSPECT_AFTER
        } else if self.probe_sent.is_some() && self.unanswered_since.is_some() {
            // Alive, but our data was not answered: the traffic is one-way.
            SUSPECT_AFTER_ONE_WAY
        } else {
            self.patience
        };
        *self = Liveness {
            health: Health::Up,
            patience,
            ..Liveness::default()
        };
        was_down
    }

    /// Checks the deadlines. Returns the action to take and whether the peer just went
    /// down.
    pub fn on_tick(&mut self, now: Instant) -> (Action, bool) {
        if self.health == Health::Down {
            if self.retry_at.is_some_and(|t| now >= t) {
                self.retry_at = Some(now + self.retry_pause);
                self.retry_pause = (self.retry_pause * 2).min(RETRY_MAX);
                return (Action::Probe, false);
            }
            return (Action::None, false);
        }
        if let Some(sent) = self.probe_sent
            && now.saturating_duration_since(sent) >= self.probe_timeout()
        {
            let since = self.unanswered_since.map_or(sent, |u| u.min(sent));
            self.waited = now.saturating_duration_since(since);
            self.health = Health::Down;
            self.unanswered_since = None;
            self.probe_sent = None;
            self.retry_at = Some(now + RETRY_FIRST);
            self.retry_pause = RETRY_FIRST * 2;
            return (Action::None, true);
        }
        if self.probe_sent.is_none()
            && self
                .unanswered_since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.patience)
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
            (Some(p), _) => Some(p + self.probe_timeout()),
            (None, Some(u)) => Some(u + self.patience),
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
    fn unanswered_data_leads_to_a_probe_after_2s_and_down_2s_later() {
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
        assert_eq!(l.on_tick(t0 + secs(1.9)), (Action::None, false));
        assert_eq!(l.on_tick(t0 + secs(2.0)), (Action::Probe, false));
        l.on_handshake_sent(t0 + secs(2.0));
        assert_eq!(l.on_tick(t0 + secs(3.9)), (Action::None, false));
        assert_eq!(l.on_tick(t0 + secs(4.0)), (Action::None, true));
        assert_eq!(l.health(), Health::Down);
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
    fn an_unanswered_first_handshake_means_down_without_waiting_for_data() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_handshake_sent(t0);
        assert_eq!(l.on_tick(t0 + FIRST_PROBE_TIMEOUT), (Action::None, true));
    }

    #[test]
    fn a_down_peer_is_probed_with_growing_pauses_and_comes_back_on_an_answer() {
        let t0 = Instant::now();
        let mut l = Liveness::default();
        l.on_handshake_sent(t0);
        l.on_tick(t0 + secs(1.0));
        let mut probes = Vec::new();
        let mut t = t0 + secs(1.0);
        while t < t0 + secs(120.0) {
            t += secs(0.5);
            if l.on_tick(t).0 == Action::Probe {
                probes.push((t - t0).as_secs_f64());
            }
        }
        assert_eq!(&probes[..5], &[6.0, 16.0, 36.0, 66.0, 96.0]);
        assert!(l.on_answer(t), "the first answer brings it back");
        assert_eq!(l.health(), Health::Up);
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
