//! Direct paths between edges of different sites, made on demand (DESIGN.md, "Direct
//! paths between edges"): the directory of the edges this node may punch toward, the
//! candidate messages it sends and takes (`signal.rs`), and when to try again.
//!
//! The node asks `exchange_wanted` for every packet it routes through a hub; the first
//! one toward a remote edge starts an exchange (an offer through the hub), a session is
//! made for that edge only, and both sides punch (`punch.rs`). Until a handshake
//! completes on a punched path the edge's traffic keeps going through the hub; a pair
//! that cannot be punched (two symmetric NATs) stays there, retried with growing pauses.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::keys::PublicKey;
use crate::prefix::Prefix;

use super::peer::PeerConfig;
use super::routes::RouteTable;
use super::signal::{self, Candidate, CandidateKind, Kind, MAX_CANDIDATES, Signal, SignalError};

/// A session made on demand is dropped after this long without data either way: a
/// 10,000-node overlay must not cost 10,000 sessions, and the next packet makes it again
/// within a second.
pub const IDLE_TEARDOWN: Duration = Duration::from_secs(180);
/// A punched path is kept alive below the NAT UDP timeouts this lab and the field know
/// (Linux conntrack 30 s unreplied / 120 s assured, many home and carrier NATs 30–60 s):
/// 25 s, WireGuard's usual NAT keepalive.
pub const PUNCHED_KEEPALIVE: u16 = 25;
/// Pauses before trying a pair again after a failed punch: 35 s doubling to 10 minutes.
/// A pair that cannot be punched costs one offer and ten seconds of punches per pause.
/// Never shorter than RETRY_AFTER_DOWN, for the same reason.
const RETRY_FIRST: Duration = Duration::from_secs(35);
const RETRY_MAX: Duration = Duration::from_secs(600);
/// A direct path that died (a NAT rebound, an uplink changed) is punched again after
/// the other side's NAT has forgotten us: our packets from the new mapping, dropped by
/// its filtering, left an unreplied conntrack entry there (its address and port to our
/// new one), and its own punch toward our new mapping then clashes with that entry and
/// is sent from another port, which our NAT drops — a deadlock while both keep sending.
/// Linux forgets an unreplied UDP entry after 30 s of silence
/// (`nf_conntrack_udp_timeout`); measured in the lab: retried after 5 s and then every
/// 30 s the pair never punched again, with that entry deleted by hand it did at once.
const RETRY_AFTER_DOWN: Duration = Duration::from_secs(35);

/// Why a session made on demand ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// No data either way for `IDLE_TEARDOWN`.
    Idle,
    /// The punched path stopped answering.
    PathDied,
    /// The other side said its direct path died.
    OtherSideClosed,
    /// Punching gave up: no candidate answered.
    NoCandidateAnswered,
    /// Nobody answered the offer (a standard WireGuard peer, or one that is down).
    NoAnswer,
    /// The edge left the manifest's directory.
    Removed,
}

impl Ended {
    pub fn describe(self) -> &'static str {
        match self {
            Ended::Idle => "idle",
            Ended::PathDied => "the direct path stopped answering",
            Ended::OtherSideClosed => "the other side lost the direct path",
            Ended::NoCandidateAnswered => "no candidate answered",
            Ended::NoAnswer => "no answer to the offer",
            Ended::Removed => "removed from the manifest",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Backoff {
    until: Instant,
    pause: Duration,
}

#[derive(Default)]
pub struct Mesh {
    /// Edges of other sites, by key, as the manifest describes them.
    directory: BTreeMap<PublicKey, PeerConfig>,
    /// Their prefixes, for the lookup on every packet routed through a hub.
    routes: RouteTable,
    /// Our own overlay addresses and WireGuard port.
    own: Vec<Prefix>,
    listen_port: u16,
    backoff: BTreeMap<PublicKey, Backoff>,
    /// The last (run, sequence) taken from each sender: older ones are replays.
    seen: BTreeMap<PublicKey, (u64, u32)>,
    run: u64,
    sequence: u32,
}

impl Mesh {
    pub fn new(run: u64) -> Mesh {
        Mesh {
            run,
            ..Mesh::default()
        }
    }

    /// The edges of other sites, from the manifest. Returns the keys no longer in it.
    pub fn set_directory(&mut self, directory: BTreeMap<PublicKey, PeerConfig>) {
        self.routes.clear();
        for (key, config) in &directory {
            for prefix in &config.allowed_ips {
                self.routes.insert(*prefix, *key);
            }
        }
        self.backoff.retain(|k, _| directory.contains_key(k));
        self.seen.retain(|k, _| directory.contains_key(k));
        self.directory = directory;
    }

    pub fn set_own(&mut self, addresses: Vec<Prefix>, listen_port: u16) {
        self.own = addresses;
        self.listen_port = listen_port;
    }

    pub fn is_own(&self, addr: IpAddr) -> bool {
        self.own.iter().any(|p| p.addr() == addr)
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.directory.contains_key(key)
    }

    /// The configuration of a session made on demand with `key`.
    pub fn config(&self, key: &PublicKey) -> Option<PeerConfig> {
        let mut config = self.directory.get(key)?.clone();
        config.endpoints.clear();
        config.keepalive = Some(PUNCHED_KEEPALIVE);
        Some(config)
    }

    /// The remote edge a packet to `dst` (routed through a hub) is for, when an exchange
    /// with it may start now.
    pub fn exchange_wanted(&self, dst: IpAddr, now: Instant) -> Option<PublicKey> {
        if self.directory.is_empty() {
            return None;
        }
        let key = self.routes.lookup(dst)?;
        let waiting = self.backoff.get(&key).is_some_and(|b| now < b.until);
        (!waiting).then_some(key)
    }

    /// A session made on demand ended; `why` decides how long until the next try.
    pub fn ended(&mut self, key: PublicKey, why: Ended, now: Instant) {
        let pause = match why {
            Ended::Idle | Ended::Removed => Duration::ZERO,
            Ended::PathDied | Ended::OtherSideClosed => RETRY_AFTER_DOWN,
            Ended::NoCandidateAnswered | Ended::NoAnswer => {
                let last = self.backoff.get(&key).map(|b| b.pause);
                last.map_or(RETRY_FIRST, |p| (p * 2).clamp(RETRY_FIRST, RETRY_MAX))
            }
        };
        self.backoff.insert(
            key,
            Backoff {
                until: now + pause,
                pause,
            },
        );
    }

    /// Our candidates: host addresses with the WireGuard port, then the reflexive ones,
    /// then our relays' allocations.
    pub fn candidates(
        &self,
        host: &[IpAddr],
        reflexive: &[SocketAddr],
        relayed: &[SocketAddr],
    ) -> Vec<Candidate> {
        let host = host
            .iter()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !self.is_own(**ip))
            .map(|&ip| Candidate {
                kind: CandidateKind::Host,
                addr: SocketAddr::new(ip, self.listen_port),
            });
        let reflexive = reflexive.iter().map(|&addr| Candidate {
            kind: CandidateKind::ServerReflexive,
            addr,
        });
        let relayed = relayed.iter().map(|&addr| Candidate {
            kind: CandidateKind::Relayed,
            addr,
        });
        let mut all: Vec<Candidate> = host.chain(reflexive).chain(relayed).collect();
        all.dedup_by_key(|c| c.addr);
        all.truncate(MAX_CANDIDATES);
        all
    }

    /// An IP packet carrying our candidates to `to`, through the overlay.
    pub fn message(
        &mut self,
        to: &PublicKey,
        kind: Kind,
        from: PublicKey,
        candidates: Vec<Candidate>,
        hub_rtt: Option<Duration>,
    ) -> Option<Vec<u8>> {
        let src = self.own.iter().find_map(|p| match p.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })?;
        let dst = self
            .directory
            .get(to)?
            .allowed_ips
            .iter()
            .find_map(|p| match p.addr() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })?;
        self.sequence += 1;
        let message = Signal {
            kind,
            sender: from,
            run: self.run,
            sequence: self.sequence,
            hub_rtt_ms: hub_rtt.map_or(0, |r| r.as_millis().min(u16::MAX.into()) as u16),
            candidates,
        };
        let mut payload = Vec::with_capacity(64 + 20 * MAX_CANDIDATES);
        message.encode(&mut payload);
        let mut packet = Vec::with_capacity(payload.len() + 28);
        signal::wrap_v4(src, dst, &payload, &mut packet);
        Some(packet)
    }

    /// A candidate message that reached one of our addresses from `src`, through a
    /// hub. Checked before anything is believed: the sender is an edge in the directory,
    /// `src` is one of its addresses, and it is not a replay.
    pub fn take(&mut self, src: IpAddr, payload: &[u8]) -> Result<Signal, SignalError> {
        let message = Signal::decode(payload)?;
        let Some(config) = self.directory.get(&message.sender) else {
            return Err(SignalError::Malformed(
                "from a node that is not an edge of another site",
            ));
        };
        if !config.allowed_ips.iter().any(|p| p.contains(src)) {
            return Err(SignalError::Malformed(
                "from an address that is not the sender's",
            ));
        }
        let stamp = (message.run, message.sequence);
        let replay = self
            .seen
            .get(&message.sender)
            .is_some_and(|&(run, seq)| run == message.run && seq >= message.sequence);
        if replay {
            return Err(SignalError::Malformed("a replay"));
        }
        self.seen.insert(message.sender, stamp);
        // The other side is trying: so do we, whatever our last failure said. (A close
        // is no invitation: the pause after it lets STUN learn the new mappings first.)
        if message.kind != Kind::Close {
            self.backoff.remove(&message.sender);
        }
        Ok(message)
    }
}
