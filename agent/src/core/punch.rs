//! Punching a direct path to an edge behind another NAT: both sides send WireGuard
//! handshake initiations to each other's candidates at once (a simultaneous open), in
//! RFC 8445 order (host, then server-reflexive, then relayed), paced one datagram every
//! `PACE`, until a handshake completes on one of them or `PUNCH_FOR` has passed.
//!
//! The first datagrams leave with a low TTL: they pass our own NAT, which then holds a
//! mapping toward the other side, and die before the other side's NAT. Sent with a
//! normal TTL, the first datagram to reach a Linux NAT that has no mapping for it yet
//! leaves a conntrack entry that clashes with that NAT's own outbound mapping a moment
//! later, which then gets a random port and the punch fails (FACTS.md, measured in this
//! lab). So normal TTL starts only once the other side has surely opened its NAT: the
//! side that answers the offer waits about one trip through the hubs; the offerer, who
//! starts last, needs only one low-TTL round.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::signal::{Candidate, CandidateKind};

/// One punch datagram every 20 ms: eight candidates are all tried within a sixth of a
/// second, and a NAT never sees a burst.
pub const PACE: Duration = Duration::from_millis(20);
/// How long to keep trying. Most punches succeed within a round trip or two; 10 s covers
/// slow cellular paths without leaving a hopeless pair (two symmetric NATs) punching
/// for long.
pub const PUNCH_FOR: Duration = Duration::from_secs(10);
/// A new handshake initiation this often while punching; in between the same one is
/// sent to the next candidates (the first copy to arrive is answered, later copies are
/// refused as replays).
const NEW_INITIATION_EVERY: Duration = Duration::from_secs(1);
/// The TTL of the first punches: past our own NAT (one hop, or two behind a modem and a
/// router), not as far as the other side's.
pub const LOW_TTL: u8 = 2;
/// Margin over half the hub round trips before the answering side uses a normal TTL.
const OPEN_MARGIN: Duration = Duration::from_millis(50);
/// Relayed candidates (the other side's TURN allocation) are tried only after this: a
/// direct path punched through both NATs is better and usually found sooner, and the
/// other side needs a round trip to its relay to let our datagrams in.
pub const RELAYED_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Punch {
    /// The other side's candidates, best first.
    candidates: Vec<Candidate>,
    started: Instant,
    /// Until then, punches leave with `LOW_TTL`.
    low_ttl_until: Instant,
    next_send: Instant,
    cursor: usize,
    last_initiation: Option<Instant>,
}

/// One punch datagram to send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PunchSend {
    pub to: SocketAddr,
    pub ttl: Option<u8>,
    /// Make a new handshake initiation for this one (else re-send the last).
    pub new_initiation: bool,
}

impl Punch {
    /// Starts punching toward `candidates`. `open_wait` is how long the other side needs
    /// to open its own NAT: zero for the offerer (the answer says the other side has
    /// started), about one trip through the hubs for the side that answers.
    pub fn start(mut candidates: Vec<Candidate>, open_wait: Duration, now: Instant) -> Punch {
        candidates.sort_by_key(|c| std::cmp::Reverse(c.kind.preference()));
        candidates.dedup_by_key(|c| c.addr);
        let round = PACE * candidates.len() as u32;
        Punch {
            candidates,
            started: now,
            low_ttl_until: now + open_wait.max(round),
            next_send: now,
            cursor: 0,
            last_initiation: None,
        }
    }

    /// How long the answering side waits before a normal TTL: half of each side's round
    /// trip to its hub (the answer's trip to the offerer), and a margin.
    pub fn open_wait(own_hub_rtt: Option<Duration>, their_hub_rtt_ms: u16) -> Duration {
        let theirs = Duration::from_millis(their_hub_rtt_ms.into());
        (own_hub_rtt.unwrap_or(theirs) + theirs) / 2 + OPEN_MARGIN
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The candidate an authenticated answer came from, if it is one of theirs.
    pub fn candidate(&self, addr: SocketAddr) -> Option<Candidate> {
        Candidate::at(&self.candidates, addr)
    }

    pub fn gave_up(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) >= PUNCH_FOR
    }

    pub fn deadline(&self) -> Instant {
        self.next_send.min(self.started + PUNCH_FOR)
    }

    /// The next punch, when it is due.
    pub fn poll(&mut self, now: Instant) -> Option<PunchSend> {
        if self.candidates.is_empty() || now < self.next_send || self.gave_up(now) {
            return None;
        }
        let relayed_from = self.started + RELAYED_AFTER;
        let n = self.candidates.len();
        let ready = |c: &Candidate| c.kind != CandidateKind::Relayed || now >= relayed_from;
        let Some(k) = (0..n)
            .map(|k| (self.cursor + k) % n)
            .find(|&k| ready(&self.candidates[k]))
        else {
            self.next_send = relayed_from;
            return None;
        };
        let candidate = self.candidates[k];
        self.cursor = (k + 1) % n;
        self.next_send = now + PACE;
        let new_initiation = self
            .last_initiation
            .is_none_or(|t| now.saturating_duration_since(t) >= NEW_INITIATION_EVERY);
        if new_initiation {
            self.last_initiation = Some(now);
        }
        // A relay is no NAT to keep crossing datagrams out of, and a low TTL would die
        // before it.
        let low = now < self.low_ttl_until && candidate.kind != CandidateKind::Relayed;
        Some(PunchSend {
            to: candidate.addr,
            ttl: low.then_some(LOW_TTL),
            new_initiation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::signal::CandidateKind;
    use super::*;

    fn c(kind: CandidateKind, addr: &str) -> Candidate {
        Candidate {
            kind,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn candidates_are_tried_host_first_paced_and_low_ttl_until_the_other_side_opened() {
        let t0 = Instant::now();
        let cands = vec![
            c(CandidateKind::ServerReflexive, "198.51.100.3:51820"),
            c(CandidateKind::Host, "192.168.2.10:51820"),
        ];
        let mut p = Punch::start(cands, Duration::from_millis(100), t0);
        let first = p.poll(t0).unwrap();
        assert_eq!(first.to.to_string(), "192.168.2.10:51820");
        assert_eq!(first.ttl, Some(LOW_TTL));
        assert!(first.new_initiation);
        assert_eq!(p.poll(t0), None, "paced");
        let second = p.poll(t0 + PACE).unwrap();
        assert_eq!(second.to.to_string(), "198.51.100.3:51820");
        assert!(
            !second.new_initiation,
            "the same initiation to the next candidate"
        );
        let later = p.poll(t0 + Duration::from_millis(100)).unwrap();
        assert_eq!(later.ttl, None, "normal TTL once the other side has opened");
        assert!(p.poll(t0 + PUNCH_FOR).is_none(), "gives up");
        assert!(p.gave_up(t0 + PUNCH_FOR));
    }

    #[test]
    fn the_other_sides_relay_is_tried_only_after_a_second_and_with_a_normal_ttl() {
        let t0 = Instant::now();
        let cands = vec![
            c(CandidateKind::Relayed, "192.0.2.51:50000"),
            c(CandidateKind::ServerReflexive, "198.51.100.3:51820"),
        ];
        let mut p = Punch::start(cands, Duration::from_secs(5), t0);
        let mut t = t0;
        while t < t0 + RELAYED_AFTER {
            if let Some(send) = p.poll(t) {
                assert_eq!(send.to.to_string(), "198.51.100.3:51820", "at {:?}", t - t0);
            }
            t += PACE;
        }
        let sent: Vec<PunchSend> = (0..4).filter_map(|k| p.poll(t + PACE * k)).collect();
        let relayed = sent.iter().find(|s| s.to.to_string() == "192.0.2.51:50000");
        let relayed = relayed.expect("the relayed candidate is tried after a second");
        assert_eq!(relayed.ttl, None, "a low TTL would die before the relay");
        assert!(
            sent.iter().any(|s| s.ttl == Some(LOW_TTL)),
            "the NAT still low"
        );
    }

    #[test]
    fn a_punch_toward_only_a_relay_waits_its_second_without_spinning() {
        let t0 = Instant::now();
        let mut p = Punch::start(
            vec![c(CandidateKind::Relayed, "192.0.2.51:50000")],
            Duration::ZERO,
            t0,
        );
        assert_eq!(p.poll(t0), None);
        assert_eq!(p.deadline(), t0 + RELAYED_AFTER, "woken when it may send");
        assert!(p.poll(t0 + RELAYED_AFTER).is_some());
    }

    #[test]
    fn the_answering_side_waits_half_the_hub_round_trips_and_a_margin() {
        let wait = Punch::open_wait(Some(Duration::from_millis(40)), 60);
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(Punch::open_wait(None, 0), OPEN_MARGIN);
    }
}
