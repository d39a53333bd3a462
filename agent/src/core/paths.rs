//! Path selection for one peer: direct first, a relay when direct does not answer, and
//! back to direct when it works again (DESIGN.md, "Paths").
//!
//! The selector only decides; `Peer` sends. Failure comes from `liveness.rs` (the active
//! path went unanswered); success is any authenticated packet, and the path it came on.
//! Promotion needs an authenticated answer on the better path, demotion a failure: no
//! flapping on guesses.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::path::{Path, RelayId};

/// While relayed, the direct path is probed this often. Tailscale re-probes every 60 s;
/// 20 s brings a device back to direct within half a minute of the block lifting, for a
/// 148-byte handshake per probe.
pub const DIRECT_PROBE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a direct probe may take to be answered before the relay is used to point the
/// peer back at it. Sent at once, the reminder can overtake the probe's answer in a peer
/// that handles data and handshakes in parallel (wireguard-go), which then answers the
/// probe through the relay and the promotion is missed.
const PROBE_ANSWER_TIME: Duration = Duration::from_secs(1);

/// A relay that has an allocation, and how fast it answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayInfo {
    pub id: RelayId,
    pub rtt: Duration,
}

/// What changed, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// Authenticated traffic came on a direct path while relayed.
    Promoted { from: Path, to: Path },
    /// The peer's address changed (NAT rebinding, a moved device).
    Roamed { from: Path, to: Path },
    /// The first path learned for a peer we could not reach before.
    Learned(Path),
}

#[derive(Clone, Debug, Default)]
pub struct PathSelector {
    /// Direct addresses to try, in order: the manifest's endpoints.
    direct: Vec<SocketAddr>,
    active: Option<Path>,
    /// While relayed: when the direct candidates are probed next.
    next_direct_probe: Option<Instant>,
    /// Paths that failed since the last authenticated packet.
    failed: Vec<Path>,
    /// While a direct probe is out: when its answer is overdue.
    probe_answer_by: Option<Instant>,
}

impl PathSelector {
    pub fn new(endpoints: &[SocketAddr]) -> PathSelector {
        PathSelector {
            direct: endpoints.to_vec(),
            active: endpoints.first().copied().map(Path::Direct),
            ..PathSelector::default()
        }
    }

    pub fn active(&self) -> Option<Path> {
        self.active
    }

    pub fn direct_candidates(&self) -> &[SocketAddr] {
        &self.direct
    }

    /// New manifest endpoints. An address learned from authenticated traffic (or a relay
    /// in use) beats the manifest; a direct manifest endpoint that was dropped is left.
    /// Returns true when the active path moved.
    pub fn set_endpoints(&mut self, endpoints: &[SocketAddr]) -> bool {
        let before = self.active;
        let from_manifest = |p: Path| matches!(p, Path::Direct(a) if self.direct.contains(&a));
        let stale = match self.active {
            None => true,
            Some(p) => from_manifest(p) && !endpoints.contains(&p.endpoint()),
        };
        self.direct = endpoints.to_vec();
        if stale {
            self.active = self
                .direct
                .first()
                .copied()
                .map(Path::Direct)
                .or(self.active);
            self.failed.clear();
        }
        self.active.is_some() && self.active != before
    }

    /// An authenticated packet arrived on `via`.
    pub fn on_authenticated(&mut self, via: Path) -> Option<Switch> {
        self.failed.clear();
        let from = self.active;
        let switch = match (from, via) {
            (None, _) => Some(Switch::Learned(via)),
            (Some(from @ Path::Relayed { .. }), Path::Direct(_)) => {
                Some(Switch::Promoted { from, to: via })
            }
            (Some(from @ Path::Direct(a)), Path::Direct(b)) if a != b => {
                Some(Switch::Roamed { from, to: via })
            }
            // On the path in use, or a relay answering while we are direct (the peer still
            // sends to our old relay address; it follows once our direct packets reach it).
            _ => None,
        };
        if switch.is_some() {
            self.active = Some(via);
            self.next_direct_probe = None;
            self.probe_answer_by = None;
        }
        switch
    }

    /// The active path went unanswered. Returns the next path to try, or `None` when
    /// every path has failed since the last answer (the peer is down; `rotate` keeps
    /// trying them one by one).
    pub fn on_failure(&mut self, relays: &[RelayInfo], now: Instant) -> Option<Path> {
        if let Some(p) = self.active {
            self.failed.push(p);
            // Relayed because direct did not answer: another relay first; the direct
            // probes find direct when it works again.
            if p.relay().is_some() {
                self.failed
                    .extend(self.direct.iter().map(|&a| Path::Direct(a)));
            }
        }
        let next = self
            .candidates(relays)
            .into_iter()
            .find(|p| !self.failed.contains(p));
        match next {
            Some(p) => {
                self.go(p, now);
                Some(p)
            }
            None => {
                self.failed.clear();
                None
            }
        }
    }

    /// While the peer is down: the next path for a retry, round-robin over every
    /// candidate, so a peer that comes back on any path is found.
    pub fn rotate(&mut self, relays: &[RelayInfo], now: Instant) -> Option<Path> {
        let candidates = self.candidates(relays);
        let at = self
            .active
            .and_then(|a| candidates.iter().position(|&p| p == a));
        let next = match at {
            Some(i) => candidates.get((i + 1) % candidates.len()).copied(),
            None => candidates.first().copied(),
        }?;
        self.go(next, now);
        Some(next)
    }

    /// A relay lost its allocation: a peer relayed through it moves at once, to another
    /// relay if there is one (it was relayed because direct did not answer; the direct
    /// probes find direct when it works again), else back to direct.
    pub fn on_relay_lost(
        &mut self,
        relay: RelayId,
        relays: &[RelayInfo],
        now: Instant,
    ) -> Option<Path> {
        if self.active.and_then(|p| p.relay()) != Some(relay) {
            return None;
        }
        self.failed = self.direct.iter().map(|&a| Path::Direct(a)).collect();
        self.on_failure(relays, now)
            .or_else(|| self.rotate(relays, now))
    }

    /// The direct addresses to probe now, if it is time (only while relayed).
    pub fn direct_probe_due(&mut self, now: Instant) -> Option<Vec<SocketAddr>> {
        let due = self.next_direct_probe.filter(|&t| now >= t)?;
        self.next_direct_probe = Some(due.max(now) + DIRECT_PROBE_INTERVAL);
        self.probe_answer_by = Some(now + PROBE_ANSWER_TIME);
        Some(self.direct.clone())
    }

    /// True once, when the last direct probe went unanswered: time to remind the peer,
    /// through the relay, where we are (see `Peer::probe_direct`).
    pub fn probe_unanswered(&mut self, now: Instant) -> bool {
        match self.probe_answer_by {
            Some(t) if now >= t => {
                self.probe_answer_by = None;
                self.active.is_some_and(|p| p.relay().is_some())
            }
            _ => false,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        [self.next_direct_probe, self.probe_answer_by]
            .into_iter()
            .flatten()
            .min()
    }

    fn go(&mut self, path: Path, now: Instant) {
        self.active = Some(path);
        self.next_direct_probe = match path {
            Path::Relayed { .. } => Some(now + DIRECT_PROBE_INTERVAL),
            Path::Direct(_) => None,
        };
    }

    /// Every way to reach the peer, best first: its direct addresses, then each relay
    /// (fastest first) toward its first address.
    fn candidates(&self, relays: &[RelayInfo]) -> Vec<Path> {
        let mut relays = relays.to_vec();
        relays.sort_by_key(|r| (r.rtt, r.id));
        let target = self
            .direct
            .first()
            .copied()
            .or(self.active.map(|p| p.endpoint()));
        let direct = self.direct.iter().map(|&a| Path::Direct(a));
        let relayed = target.into_iter().flat_map(|peer| {
            relays
                .iter()
                .map(move |r| Path::Relayed { relay: r.id, peer })
        });
        direct.chain(relayed).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn relays() -> Vec<RelayInfo> {
        vec![
            RelayInfo {
                id: 0,
                rtt: Duration::from_millis(40),
            },
            RelayInfo {
                id: 1,
                rtt: Duration::from_millis(10),
            },
        ]
    }

    #[test]
    fn starts_direct_and_falls_back_to_the_fastest_relay() {
        let t0 = Instant::now();
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        assert_eq!(p.active(), Some(Path::Direct(hub)));
        assert_eq!(
            p.on_failure(&relays(), t0),
            Some(Path::Relayed {
                relay: 1,
                peer: hub
            })
        );
        assert_eq!(
            p.on_failure(&relays(), t0),
            Some(Path::Relayed {
                relay: 0,
                peer: hub
            })
        );
        assert_eq!(
            p.on_failure(&relays(), t0),
            None,
            "every way failed: the peer is down"
        );
    }

    #[test]
    fn tries_every_direct_endpoint_before_a_relay() {
        let t0 = Instant::now();
        let (a, b) = (addr("203.0.113.10:51820"), addr("[2001:db8::10]:51820"));
        let mut p = PathSelector::new(&[a, b]);
        assert_eq!(p.on_failure(&relays(), t0), Some(Path::Direct(b)));
        assert_eq!(
            p.on_failure(&relays(), t0),
            Some(Path::Relayed { relay: 1, peer: a })
        );
    }

    #[test]
    fn a_direct_answer_while_relayed_promotes_direct() {
        let t0 = Instant::now();
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        p.on_failure(&relays(), t0);
        let relayed = p.active().unwrap();
        assert_eq!(
            p.on_authenticated(relayed),
            None,
            "answers on the path in use change nothing"
        );
        let to = Path::Direct(hub);
        assert_eq!(
            p.on_authenticated(to),
            Some(Switch::Promoted { from: relayed, to })
        );
        assert_eq!(p.deadline(), None, "no more direct probes once direct");
    }

    #[test]
    fn while_relayed_direct_is_probed_every_20s() {
        let t0 = Instant::now();
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        p.on_failure(&relays(), t0);
        assert_eq!(p.direct_probe_due(t0 + Duration::from_secs(19)), None);
        assert_eq!(
            p.direct_probe_due(t0 + DIRECT_PROBE_INTERVAL),
            Some(vec![hub])
        );
        // The probe gets a second to be answered before the relay reminds the peer.
        let answer_by = t0 + DIRECT_PROBE_INTERVAL + PROBE_ANSWER_TIME;
        assert_eq!(p.deadline(), Some(answer_by));
        assert!(!p.probe_unanswered(answer_by - Duration::from_millis(1)));
        assert!(p.probe_unanswered(answer_by));
        assert!(!p.probe_unanswered(answer_by), "once");
        assert_eq!(p.deadline(), Some(t0 + DIRECT_PROBE_INTERVAL * 2));
    }

    #[test]
    fn an_answered_probe_needs_no_reminder() {
        let t0 = Instant::now();
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        p.on_failure(&relays(), t0);
        p.direct_probe_due(t0 + DIRECT_PROBE_INTERVAL);
        p.on_authenticated(Path::Direct(hub));
        assert!(!p.probe_unanswered(t0 + DIRECT_PROBE_INTERVAL * 2));
    }

    #[test]
    fn a_relayed_path_that_fails_moves_to_the_next_relay_before_direct() {
        let t0 = Instant::now();
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        p.on_failure(&relays(), t0); // direct failed: relay 1 (fastest)
        p.on_authenticated(Path::Relayed {
            relay: 1,
            peer: hub,
        }); // it worked a while
        let next = p.on_failure(&relays(), t0);
        assert_eq!(
            next,
            Some(Path::Relayed {
                relay: 0,
                peer: hub
            })
        );
    }

    #[test]
    fn a_relay_answer_while_direct_does_not_demote() {
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        assert_eq!(
            p.on_authenticated(Path::Relayed {
                relay: 0,
                peer: hub
            }),
            None
        );
        assert_eq!(p.active(), Some(Path::Direct(hub)));
    }

    #[test]
    fn a_lost_relay_moves_its_peers_to_the_next_relay() {
        let t0 = Instant::now();
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        p.on_failure(&relays(), t0);
        assert_eq!(
            p.active(),
            Some(Path::Relayed {
                relay: 1,
                peer: hub
            })
        );
        let left = [relays()[0]];
        assert_eq!(
            p.on_relay_lost(1, &left, t0),
            Some(Path::Relayed {
                relay: 0,
                peer: hub
            })
        );
        assert_eq!(
            p.on_relay_lost(1, &left, t0),
            None,
            "not on that relay any more"
        );
    }

    #[test]
    fn a_down_peer_is_retried_on_each_path_in_turn() {
        let t0 = Instant::now();
        let hub = addr("203.0.113.10:51820");
        let mut p = PathSelector::new(&[hub]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(p.rotate(&relays(), t0).unwrap());
        }
        assert_eq!(
            seen,
            [
                Path::Relayed {
                    relay: 1,
                    peer: hub
                },
                Path::Relayed {
                    relay: 0,
                    peer: hub
                },
                Path::Direct(hub),
                Path::Relayed {
                    relay: 1,
                    peer: hub
                },
            ]
        );
    }

    #[test]
    fn new_manifest_endpoints_replace_a_stale_direct_path_but_not_a_learned_one() {
        let (old, new) = (addr("203.0.113.10:51820"), addr("203.0.113.11:51820"));
        let mut p = PathSelector::new(&[old]);
        assert!(p.set_endpoints(&[new]));
        assert_eq!(p.active(), Some(Path::Direct(new)));
        let nat = addr("198.51.100.7:40000");
        p.on_authenticated(Path::Direct(nat));
        assert!(!p.set_endpoints(&[old]));
        assert_eq!(p.active(), Some(Path::Direct(nat)));
    }
}
