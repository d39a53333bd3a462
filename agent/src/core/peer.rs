//! One peer: its WireGuard session, the path its datagrams take, its counters, and when
//! its timers next need to run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keys::PublicKey;
use crate::manifest::Role;
use crate::prefix::Prefix;

use crate::human::Human;

use super::liveness::{Action, Backoff, Health, Liveness, RETRY_MAX, RETRY_MAX_KEPT};
use super::mesh::Ended;
use super::node::{Event, SwitchReason};
use super::outbox::Outbox;
use super::path::{Path, RelayId, TUN_HEADROOM};
use super::paths::{PathSelector, RelayInfo, Switch};
use super::punch::{PUNCH_FOR, Punch};
use super::session::{HandshakeGate, MessageKind, Received, Session, SessionError};
use super::signal::{Candidate, CandidateKind};

/// While data flows or a handshake is in progress, WireGuard's timers (retransmit after
/// 5 s, passive keepalive after 10 s, new handshake after 15 s of silence, rekey after
/// 120 s) need checking about once a second. boringtun's own loop checks every 250 ms; a
/// second of slack on these timers costs nothing and saves wakeups. The check is due a
/// second after the last one, whatever the traffic: packets never push it later.
const ACTIVE_TICK: Duration = Duration::from_secs(1);
/// Data seen within this window keeps the peer "active": KEEPALIVE (10 s) + REKEY_TIMEOUT
/// (5 s) + 1 s of slack.
const ACTIVE_WINDOW: Duration = Duration::from_secs(16);
/// An idle peer without keepalive still needs its old session keys expired.
const IDLE_TICK: Duration = Duration::from_secs(60);
/// A data message without payload (a keepalive) is exactly this long.
const KEEPALIVE_LEN: usize = 32;
/// The shortest IP packet delivered: an IPv4 header without options.
const IPV4_HEADER: usize = 20;
/// WireGuard's REKEY_AFTER_TIME: an initiator renews its keys this often.
const REKEY_AFTER: Duration = Duration::from_secs(120);
/// A handshake initiation this recent is sent again on a new path rather than replaced:
/// boringtun retransmits after REKEY_TIMEOUT (5 s) anyway.
const RESEND_INIT_WITHIN: Duration = Duration::from_secs(5);

/// What the manifest (after name resolution) says about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub role: Role,
    pub allowed_ips: Vec<Prefix>,
    pub endpoints: Vec<SocketAddr>,
    pub keepalive: Option<u16>,
    pub preshared_key: Option<[u8; 32]>,
}

impl PeerConfig {
    fn keepalive(&self) -> Option<Duration> {
        self.keepalive
            .filter(|&k| k > 0)
            .map(|k| Duration::from_secs(k.into()))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// WireGuard datagram bytes, as `wg show` counts them.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Handshakes completed with this peer since the session was created.
    pub handshakes: u64,
}

pub struct Peer {
    pub key: PublicKey,
    pub config: PeerConfig,
    /// The upper 24 bits of every receiver index the peer uses with us.
    pub index: u32,
    session: Session,
    paths: PathSelector,
    pub stats: PeerStats,
    /// Set on hubs that may carry the overlay: packets from anywhere in it are accepted.
    pub overlay: Option<Prefix>,
    liveness: Liveness,
    last_sent: Option<Instant>,
    last_data: Option<Instant>,
    /// The first initiation of the handshake in progress.
    handshake_sent: Option<Instant>,
    /// The latest initiation, and when it went out: answered, it gives the round trip;
    /// re-sent on the next path when a new path takes over, so a late answer on the old
    /// one still completes the handshake.
    last_init: Option<(Vec<u8>, Instant)>,
    /// When we answered the peer's initiation: its first data after that gives the round
    /// trip on this side too (the initiator confirms a handshake with a keepalive).
    response_sent: Option<Instant>,
    /// When boringtun's timers must next run; moved earlier by traffic, never later.
    /// `None` while the session has no state (see `session.rs`): nothing to run.
    timers_due: Option<Instant>,
    next_tick: Option<Instant>,
    /// A session made on demand with an edge of another site (see `node.rs`), and the
    /// punching toward its candidates while no path is known.
    pub punched: Option<Punched>,
}

/// An unanswered offer is sent again after 0.5 s, 1 s and 2 s: a lost offer (a datagram
/// through the hub like any other) costs a second, not the 10 s wait for an answer and
/// the pause after it. Four offers all lost is a hub path too poor to punch over.
const OFFER_AGAIN: Duration = Duration::from_millis(500);
const OFFERS: u32 = 4;

/// What a peer made on demand carries besides a manifest peer.
pub struct Punched {
    pub made: Instant,
    pub punch: Option<Punch>,
    /// While our offer is unanswered: when to send it again (it travels through the hub
    /// like any datagram, and may be lost).
    pub next_offer: Option<Instant>,
    /// Offers sent so far.
    pub offers: u32,
    /// The other side's candidates of the punch that found the path, kept when the punch
    /// ends: the path in use is named for the one it ends at (see `punched_through`),
    /// however it came to it (punched, or a later answer straight from their TURN
    /// allocation while we were on our relay).
    pub theirs: Vec<Candidate>,
}

impl Punched {
    fn candidate(&self, addr: SocketAddr) -> Option<Candidate> {
        Candidate::at(&self.theirs, addr)
    }
}

impl Peer {
    /// A peer costs its configuration and path state; its WireGuard session state is
    /// made when it is first needed.
    pub fn new(key: PublicKey, config: PeerConfig, index: u32, gate: &HandshakeGate) -> Peer {
        let c = &config;
        let session = Session::new(key, &c.name, c.preshared_key, c.keepalive, index, gate);
        let paths = PathSelector::new(&config.endpoints);
        // A peer we keep a keepalive toward (an edge's hub) must come back quickly.
        let backoff = Backoff {
            max: if config.keepalive().is_some() {
                RETRY_MAX_KEPT
            } else {
                RETRY_MAX
            },
            spread: Some(u64::from_le_bytes(std::array::from_fn(|i| key.0[i]))),
        };
        Peer {
            key,
            config,
            index,
            session,
            paths,
            stats: PeerStats::default(),
            overlay: None,
            liveness: Liveness::with_backoff(backoff),
            last_sent: None,
            last_data: None,
            handshake_sent: None,
            last_init: None,
            response_sent: None,
            timers_due: None,
            next_tick: None,
            punched: None,
        }
    }

    /// Starts (or starts over) punching toward the other side's candidates.
    pub fn start_punch(&mut self, candidates: Vec<Candidate>, open_wait: Duration, now: Instant) {
        if let Some(p) = &mut self.punched {
            p.punch = Some(Punch::start(candidates, open_wait, now));
            p.next_offer = None;
        }
        self.schedule(now);
    }

    /// Our offer went out (`offers` counts it): the next one is due after a pause that
    /// doubles, unless an answer comes first.
    pub fn offered(&mut self, now: Instant) {
        if let Some(p) = &mut self.punched {
            p.offers += 1;
            p.next_offer = (p.offers < OFFERS).then(|| now + OFFER_AGAIN * (1 << (p.offers - 1)));
        }
        self.schedule(now);
    }

    /// Whether our offer is due again: unanswered, and no path found meanwhile.
    pub fn offer_due(&self, now: Instant) -> bool {
        let unanswered = self
            .punched
            .as_ref()
            .is_some_and(|p| p.punch.is_none() && p.next_offer.is_some_and(|t| now >= t));
        unanswered && self.path().is_none()
    }

    /// A peer made on demand that punching gave up on, that went down, or that has been
    /// idle past `idle`: the node drops it, and its traffic stays with the hub.
    pub fn punched_is_over(&self, idle: Duration, now: Instant) -> Option<Ended> {
        let p = self.punched.as_ref()?;
        if self.path().is_none() {
            match &p.punch {
                Some(punch) if punch.gave_up(now) => return Some(Ended::NoCandidateAnswered),
                // No answer to our offer at all: the other side is not an edgewire agent
                // (a standard WireGuard peer behind the same hub), or not up.
                None if now.saturating_duration_since(p.made) >= PUNCH_FOR => {
                    return Some(Ended::NoAnswer);
                }
                _ => {}
            }
        }
        if self.liveness.health() == Health::Down {
            return Some(Ended::PathDied);
        }
        let last = self.last_data.unwrap_or(p.made).max(p.made);
        (now.saturating_duration_since(last) >= idle).then_some(Ended::Idle)
    }

    /// Sends the punches that are due.
    fn punch(&mut self, out: &mut Outbox, now: Instant) {
        loop {
            let due = self.punched.as_mut().and_then(|p| p.punch.as_mut());
            let Some(send) = due.and_then(|punch| punch.poll(now)) else {
                return;
            };
            let fresh = if send.new_initiation {
                None
            } else {
                self.last_init.as_ref().map(|(b, _)| b.clone())
            };
            let datagram = match fresh {
                Some(bytes) => bytes,
                None => {
                    let Some(init) = self.session.initiate(out.buffer(), now) else {
                        return;
                    };
                    self.handshake_sent.get_or_insert(now);
                    self.last_init = Some((init.clone(), now));
                    init
                }
            };
            self.send_copy(Path::Direct(send.to), &datagram, send.ttl, out);
            out.recycle(datagram);
        }
    }

    /// True when a change of configuration needs a new session: the key material or the
    /// keepalive boringtun was built with.
    pub fn needs_new_session(&self, new: &PeerConfig) -> bool {
        self.config.preshared_key != new.preshared_key || self.config.keepalive != new.keepalive
    }

    /// Takes a new configuration that keeps the session: allowed IPs and endpoints.
    /// Returns true when the path moved (and a handshake on it is due).
    pub fn update(&mut self, config: PeerConfig) -> bool {
        let moved = self.paths.set_endpoints(&config.endpoints);
        self.session.rename(&config.name);
        self.config = config;
        moved
    }

    /// Where datagrams go now; `None` until an endpoint is known.
    pub fn path(&self) -> Option<Path> {
        self.paths.active()
    }

    pub fn direct_candidates(&self) -> &[SocketAddr] {
        self.paths.direct_candidates()
    }

    /// A relay became available: a peer that is down tries it now rather than at its
    /// next retry.
    pub fn retry_if_down(&mut self, relays: &[RelayInfo], out: &mut Outbox, now: Instant) {
        let relays = self.relays_for_me(relays);
        if self.liveness.health() == Health::Down && self.paths.rotate(relays, now).is_some() {
            self.initiate(out, now);
            self.schedule(now);
        }
    }

    /// The relay this peer's path went through is gone.
    pub fn on_relay_lost(
        &mut self,
        relay: RelayId,
        relays: &[RelayInfo],
        out: &mut Outbox,
        now: Instant,
    ) {
        if let Some(next) = self.paths.on_relay_lost(relay, relays, now) {
            log::info!(
                "peer {}: path switched to {next}: relay #{relay} is gone",
                self.config.name
            );
            self.switched(SwitchReason::RelayLost, out);
            self.liveness.on_path_changed();
            self.initiate(out, now);
            self.schedule(now);
        }
    }

    /// How the peer is reached (for `status`): `punched`, `lan` (punched to a host
    /// candidate), `manifest` on a direct path; `hub` for a session made on demand that
    /// has no path yet (its traffic goes through the hub); `None` otherwise.
    pub fn direct_via(&self) -> Option<&'static str> {
        let Some(path) = self.path() else {
            return self.punched.as_ref().map(|_| "hub");
        };
        if path.relay().is_some() {
            return None;
        }
        Some(match self.punched_through() {
            Some(c) if c.kind == CandidateKind::Host => "lan",
            Some(c) if c.kind == CandidateKind::Relayed => "relayed",
            Some(_) => "punched",
            None if self.punched.is_some() => "punched",
            None => "manifest",
        })
    }

    /// A session made on demand: the other side's candidates being punched, and the
    /// address its path ends at (for our relays' permissions).
    pub fn punch_addresses(&self) -> Vec<SocketAddr> {
        let Some(p) = &self.punched else {
            return Vec::new();
        };
        let punching = p.punch.iter().flat_map(|punch| punch.candidates());
        (punching.map(|c| c.addr))
            .chain(self.path().map(|path| path.endpoint()))
            .collect()
    }

    /// The other side's candidate the path in use ends at.
    pub fn punched_through(&self) -> Option<Candidate> {
        self.punched.as_ref()?.candidate(self.path()?.endpoint())
    }

    /// The smoothed handshake round trip on the active path, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.liveness.rtt()
    }

    /// Whether its prefixes belong in the routing table: it has a path and is not down.
    /// Otherwise its traffic falls to a shorter prefix (the overlay, through a hub), which
    /// is how a device reaches a peer it cannot reach itself (one without an endpoint
    /// that never contacted us, or one whose every path went silent).
    pub fn is_routable(&self) -> bool {
        self.paths.active().is_some() && self.liveness.health() != Health::Down
    }

    /// Whether the peer answers, judged from the data path (see `liveness.rs`).
    pub fn health(&self) -> Health {
        self.liveness.health()
    }

    /// Whether the WireGuard session holds state now (see `session.rs`): false for a
    /// peer that has not talked, or not for a while.
    pub fn has_session_state(&self) -> bool {
        self.session.is_live()
    }

    pub fn last_handshake(&self, now: Instant) -> Option<Duration> {
        self.session.time_since_last_handshake(now)
    }

    /// A new session in place of the old one (see `Node::renew_sessions`).
    pub fn renew_session(&mut self, out: &mut Outbox, now: Instant) {
        self.session.reset();
        self.last_init = None;
        if self.paths.active().is_some() {
            self.initiate(out, now);
        }
        self.schedule(now);
    }

    /// Starts a handshake now, so the session is ready before the first packet needs it.
    pub fn initiate(&mut self, out: &mut Outbox, now: Instant) {
        let buf = out.buffer();
        if let Some(datagram) = self.session.initiate(buf, now) {
            self.send(datagram, out, now);
        }
        self.schedule(now);
    }

    /// A probe of the active path: a new handshake, sent twice, so one lost datagram on
    /// the way out does not count as a silent path.
    fn probe(&mut self, out: &mut Outbox, now: Instant) {
        if let Some(datagram) = self.session.initiate(out.buffer(), now) {
            if let Some(path) = self.paths.active() {
                self.send_on(path, &datagram, out);
            }
            self.send(datagram, out, now);
        }
    }

    /// The path changed: the handshake in flight goes out again on the new path if it is
    /// recent (an answer to it, on either path, completes it), else a new one starts.
    fn resume_on_new_path(&mut self, out: &mut Outbox, now: Instant) {
        let fresh = self
            .last_init
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < RESEND_INIT_WITHIN)
            .map(|(bytes, _)| bytes.clone());
        match fresh {
            Some(bytes) => {
                let mut copy = out.buffer();
                copy.extend_from_slice(&bytes);
                self.send(copy, out, now);
            }
            None => self.initiate(out, now),
        }
    }

    /// The first handshake with a new peer goes to every direct address at once: the
    /// first to answer wins, with no waiting on the ones that do not.
    pub fn initiate_everywhere(&mut self, out: &mut Outbox, now: Instant) {
        let Some(datagram) = self.session.initiate(out.buffer(), now) else {
            return;
        };
        let others: Vec<SocketAddr> = self
            .paths
            .direct_candidates()
            .iter()
            .skip(1)
            .copied()
            .collect();
        for addr in others {
            self.send_on(Path::Direct(addr), &datagram, out);
        }
        self.send(datagram, out, now);
        self.schedule(now);
    }

    /// While relayed: a handshake straight to the direct addresses. Its answer, if any,
    /// promotes direct. Unanswered within a second, it is followed by a keepalive on the
    /// relay (`tick`): a peer that hears the probe but cannot answer it has roamed to the
    /// dead direct address and must be pointed back.
    fn probe_direct(&mut self, targets: &[SocketAddr], out: &mut Outbox, now: Instant) {
        let Some(datagram) = self.session.initiate(out.buffer(), now) else {
            return;
        };
        log::debug!("peer {}: probing the direct path", self.config.name);
        for &addr in targets {
            self.send_on(Path::Direct(addr), &datagram, out);
        }
        out.recycle(datagram);
    }

    /// A copy of `datagram` on a path other than the active one; liveness is not told,
    /// since no answer is owed on the active path.
    fn send_on(&mut self, path: Path, datagram: &[u8], out: &mut Outbox) {
        self.send_copy(path, datagram, None, out);
    }

    /// `send_on` with an IP TTL (a punch).
    fn send_copy(&mut self, path: Path, datagram: &[u8], ttl: Option<u8>, out: &mut Outbox) {
        let mut copy = out.buffer();
        copy.extend_from_slice(datagram);
        self.stats.tx_bytes += copy.len() as u64;
        out.push_with_ttl(path.into(), copy, ttl);
    }

    /// Encrypts a packet from the TUN device.
    pub fn send_packet(&mut self, packet: &[u8], out: &mut Outbox, now: Instant) {
        let buf = out.used_buffer();
        if let Some(datagram) = self.session.encapsulate(packet, buf, now) {
            self.send(datagram, out, now);
        }
        self.last_data = Some(now);
        self.schedule(now);
    }

    /// Handles a datagram that names this peer. Returns the IP packet it carried (behind
    /// `TUN_HEADROOM` bytes of room), if any, at least an IPv4 header long, and from a
    /// source the peer may send from, for the node to place; an error when WireGuard
    /// refused the datagram.
    pub fn receive(
        &mut self,
        via: Path,
        datagram: &[u8],
        out: &mut Outbox,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        let kind = MessageKind::of(datagram);
        let mut replies = Vec::new();
        let received = self.session.decapsulate(
            via.endpoint().ip(),
            datagram,
            || out.used_buffer(),
            &mut replies,
            now,
        )?;
        self.stats.rx_bytes += datagram.len() as u64;
        // Authenticated: WireGuard's roaming follows the sender's address. A cookie reply
        // proves less, so it moves nothing; nor, on a path still being punched, does an
        // initiation: it proves their datagrams reach us, not that ours reach them. A
        // response to ours, or data on a session we answered, proves both ways.
        let proves_path = self.punched.is_none()
            || self.paths.active().is_some()
            || matches!(
                kind,
                Some(MessageKind::HandshakeResponse | MessageKind::Data)
            );
        if kind != Some(MessageKind::CookieReply) && proves_path {
            self.follow(via, out);
            if self.liveness.on_answer(now) {
                log::info!("peer {}: answers again ({via})", self.config.name);
            }
        }
        match kind {
            Some(MessageKind::HandshakeResponse) => {
                if let Some((_, sent)) = self.last_init.take() {
                    self.liveness
                        .on_handshake_rtt(now.saturating_duration_since(sent));
                }
                self.handshake_sent = None;
                self.stats.handshakes += 1;
            }
            Some(MessageKind::HandshakeInit) => {
                self.stats.handshakes += 1;
                self.response_sent = (!replies.is_empty()).then_some(now);
            }
            Some(MessageKind::Data) => {
                if let Some(sent) = self.response_sent.take() {
                    self.liveness
                        .on_handshake_rtt(now.saturating_duration_since(sent));
                }
                if datagram.len() > KEEPALIVE_LEN {
                    self.handshake_sent = None;
                    self.last_data = Some(now);
                }
            }
            _ => {}
        }
        for reply in replies {
            if self.paths.active().is_some() {
                self.send(reply, out, now);
            } else {
                // No path yet (a punch): answer where the initiation came from.
                self.send_copy(via, &reply, None, out);
                out.recycle(reply);
            }
        }
        self.schedule(now);
        let Received::Packet(packet, src) = received else {
            return Ok(None);
        };
        // boringtun cuts an IPv4 packet to the length its header claims, which the
        // sender may make shorter than the header itself (an IPv6 one is never cut
        // below its 40 bytes). No stack takes such a packet, and an empty one made
        // tun-rs refuse the whole write it was in: every peer's packets in it lost.
        let len = packet.len() - TUN_HEADROOM;
        if len < IPV4_HEADER {
            log::debug!(
                "peer {}: dropped a {len}-byte packet, shorter than an IPv4 header",
                self.config.name
            );
            out.recycle(packet);
            return Ok(None);
        }
        let allowed = self
            .config
            .allowed_ips
            .iter()
            .chain(&self.overlay)
            .any(|p| p.contains(src));
        if allowed {
            return Ok(Some(packet));
        }
        log::debug!(
            "peer {}: dropped a packet from {src}, outside its allowed IPs",
            self.config.name
        );
        out.recycle(packet);
        Ok(None)
    }

    fn switched(&self, why: SwitchReason, out: &mut Outbox) {
        out.events.push_back(Event::PathSwitched {
            peer: self.config.name.clone(),
            why,
        });
    }

    /// WireGuard's roaming, with path selection: see `paths.rs`.
    fn follow(&mut self, via: Path, out: &mut Outbox) {
        let switch = self.paths.on_authenticated(via);
        let why = match switch {
            Some(Switch::Promoted { .. }) => SwitchReason::Promoted,
            Some(Switch::Roamed { .. }) => SwitchReason::Roamed,
            Some(Switch::Learned(_)) if self.punched.is_some() => SwitchReason::Punched,
            Some(Switch::Learned(_)) => SwitchReason::Learned,
            None => return,
        };
        self.switched(why, out);
        let name = &self.config.name;
        match switch {
            Some(Switch::Promoted { from, to }) => {
                log::info!("peer {name}: path switched to {to}: a probe was answered (was {from})")
            }
            Some(Switch::Roamed { from, to }) => {
                log::info!(
                    "peer {name}: endpoint moved to {} (was {})",
                    to.endpoint(),
                    from.endpoint()
                )
            }
            Some(Switch::Learned(path)) => match self.punched.as_mut() {
                Some(p) => {
                    if let Some(punch) = p.punch.take() {
                        p.theirs = punch.candidates().to_vec();
                    }
                    let through = p.candidate(path.endpoint());
                    let how = through.map_or("a peer-reflexive address", |c| c.kind.name());
                    log::info!(
                        "peer {name}: path switched to {path}: punched through the NATs ({how}); traffic leaves the hub"
                    )
                }
                None => log::info!("peer {name}: endpoint learned: {path}"),
            },
            None => {}
        }
    }

    /// The relays this peer's traffic may take. None for a session made on demand: its
    /// fallback is the hub, which already carries the other side, while a relay path to
    /// an edge behind a NAT that admits only replies never answers (and our allocation
    /// may be tied to a NAT mapping that just changed). Relayed candidates in the
    /// exchange would change that; until then a dead punched path goes to the hub.
    fn relays_for_me<'r>(&self, relays: &'r [RelayInfo]) -> &'r [RelayInfo] {
        if self.punched.is_some() { &[] } else { relays }
    }

    /// When `tick` must next run; `None` for a peer with nothing to do until a packet
    /// comes either way (a hub's offline edges).
    pub fn next_tick(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Runs the liveness check, path selection and WireGuard's timers when they are due.
    /// Returns true when the peer just went down (no path answers).
    pub fn tick(&mut self, relays: &[RelayInfo], out: &mut Outbox, now: Instant) -> bool {
        if self.next_tick.is_none_or(|t| now < t) {
            return false;
        }
        let relays = self.relays_for_me(relays);
        let answered_before = self.liveness.health() == Health::Up;
        let (action, mut went_down) = self.liveness.on_tick(now);
        if went_down {
            let failed = self.paths.active();
            let why = format!(
                "no answer{} for {}",
                failed.map(|p| format!(" on {p}")).unwrap_or_default(),
                Human(self.liveness.waited())
            );
            match self.paths.on_failure(relays, now) {
                Some(next) => {
                    log::info!("peer {}: path switched to {next}: {why}", self.config.name);
                    self.switched(SwitchReason::Failed, out);
                    self.liveness.on_path_changed();
                    went_down = false;
                    self.resume_on_new_path(out, now);
                }
                // A peer that never answered is not news: it may be slow or not up yet.
                None if !answered_before => {
                    out.not_answering.push((self.config.name.clone(), why));
                }
                None => log::warn!(
                    "peer {}: down: {why}, and no other path answered",
                    self.config.name
                ),
            }
        } else if action == Action::Probe {
            if self.liveness.health() == Health::Down {
                // Retrying a peer that is down: each retry on the next path in turn, one
                // datagram (a hub may have thousands of offline peers).
                self.paths.rotate(relays, now);
                self.initiate(out, now);
            } else {
                self.probe(out, now);
            }
        }
        if let Some(targets) = self.paths.direct_probe_due(now) {
            self.probe_direct(&targets, out, now);
        }
        if self.paths.probe_unanswered(now)
            && let Some(keepalive) = self.session.encapsulate(&[], out.buffer(), now)
        {
            self.send(keepalive, out, now);
        }
        self.punch(out, now);
        if self.timers_due.is_some_and(|t| now >= t) {
            // While down, the liveness check's backed-off probes are the only retries:
            // boringtun would retransmit every 5 s and start over for ever.
            if self.liveness.health() != Health::Down {
                self.run_timers(out, now);
            }
            if self.session.release_if_idle(now) {
                // The handshake in flight went with it.
                self.handshake_sent = None;
                self.last_init = None;
                self.response_sent = None;
            }
            self.timers_due = self.timers_wanted(now);
        }
        self.schedule(now);
        went_down
    }

    /// boringtun's timers: retransmits, keepalives, rekeys, key expiry.
    fn run_timers(&mut self, out: &mut Outbox, now: Instant) {
        match self.session.update_timers(out.buffer(), now) {
            Ok(Some(datagram)) if self.is_probe_retransmit(&datagram, now) => {
                // The retransmit of a direct probe goes where the probe went: sent on the
                // relay it would be answered there, a full handshake every probe. The
                // relay's keys are renewed when they age, like any session's.
                let targets = self.paths.direct_candidates().to_vec();
                for addr in targets {
                    self.send_copy(Path::Direct(addr), &datagram, None, out);
                }
                out.recycle(datagram);
            }
            Ok(Some(datagram)) => self.send(datagram, out, now),
            Ok(None) => {}
            Err(SessionError::Expired) => {
                self.handshake_sent = None;
                // A peer with keepalive is one we must stay connected to (a hub behind
                // which the whole overlay lies): never give up, start over.
                if self.config.keepalive().is_some() && self.paths.active().is_some() {
                    log::info!(
                        "peer {}: no handshake answer for 90 s, trying again",
                        self.config.name
                    );
                    self.initiate(out, now);
                }
            }
            Err(_) => {}
        }
    }

    /// Whether boringtun's retransmitted initiation belongs to a direct probe: we are
    /// relayed and the session's keys are young (a rekey would be due at 120 s).
    fn is_probe_retransmit(&self, datagram: &[u8], now: Instant) -> bool {
        let relayed = self.paths.active().is_some_and(|p| p.relay().is_some());
        let young = self
            .session
            .time_since_last_handshake(now)
            .is_some_and(|age| age < REKEY_AFTER);
        relayed && young && MessageKind::of(datagram) == Some(MessageKind::HandshakeInit)
    }

    /// When boringtun's timers want a look, from what the peer is doing (see
    /// ACTIVE_TICK); never while the session holds no state.
    fn timers_wanted(&self, now: Instant) -> Option<Instant> {
        if !self.session.is_live() {
            return None;
        }
        let active = self.handshake_sent.is_some()
            || self
                .last_data
                .is_some_and(|t| now.saturating_duration_since(t) < ACTIVE_WINDOW);
        Some(if active {
            now + ACTIVE_TICK
        } else if let Some(keepalive) = self.config.keepalive() {
            // boringtun sends the keepalive when `keepalive` has passed since its last one;
            // a few milliseconds late guarantees the check finds it due.
            let due = self.last_sent.unwrap_or(now) + keepalive + Duration::from_millis(10);
            due.max(now + Duration::from_millis(10))
        } else {
            // Key expiry, and letting the session go once it is idle.
            now + IDLE_TICK
        })
    }

    /// Picks the next time `tick` must run. Traffic may bring boringtun's timers closer
    /// (a peer turning active) but never pushes them later: under a steady packet rate
    /// they still run every second, so rekeys and key expiry happen on time.
    fn schedule(&mut self, now: Instant) {
        self.timers_due = [self.timers_due, self.timers_wanted(now)]
            .into_iter()
            .flatten()
            .min();
        let punch = self
            .punched
            .as_ref()
            .and_then(|p| p.punch.as_ref())
            .map(|punch| punch.deadline());
        let offer = self.punched.as_ref().and_then(|p| p.next_offer);
        self.next_tick = [
            self.timers_due,
            self.liveness.deadline(),
            self.paths.deadline(),
            punch,
            offer,
        ]
        .into_iter()
        .flatten()
        .min();
    }

    /// Sends on the active path, telling the liveness check what now awaits an answer.
    fn send(&mut self, datagram: Vec<u8>, out: &mut Outbox, now: Instant) {
        let Some(path) = self.paths.active() else {
            // No endpoint yet: the peer must reach us first.
            out.recycle(datagram);
            return;
        };
        match MessageKind::of(&datagram) {
            Some(MessageKind::HandshakeInit) => {
                self.handshake_sent.get_or_insert(now);
                self.liveness.on_handshake_sent(now);
                let fresh = self.last_init.as_ref().is_none_or(|(b, _)| *b != datagram);
                if fresh {
                    self.last_init = Some((datagram.clone(), now));
                }
            }
            Some(MessageKind::Data) if datagram.len() > KEEPALIVE_LEN => {
                self.liveness.on_data_sent(now)
            }
            _ => {}
        }
        self.last_sent = Some(now);
        self.stats.tx_bytes += datagram.len() as u64;
        out.push(path.into(), datagram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    /// The lab's order between two symmetric NATs: the punch finds the other side at a
    /// peer-reflexive address through our relay; then its answers come straight from
    /// its TURN allocation, one of the candidates it offered. That path is a relay hop
    /// all the same, and `status` must say so (it said "direct", via "punched").
    #[test]
    fn a_switch_to_their_relayed_candidate_after_the_punch_is_named_for_it() {
        let now = Instant::now();
        let gate = HandshakeGate::new(&PrivateKey::generate(), now);
        let config = PeerConfig {
            name: "dev-b".into(),
            role: Role::Edge,
            allowed_ips: Vec::new(),
            endpoints: Vec::new(),
            keepalive: None,
            preshared_key: None,
        };
        let mut peer = Peer::new(PrivateKey::generate().public_key(), config, 1, &gate);
        let candidate = |kind, addr: &str| Candidate {
            kind,
            addr: addr.parse().unwrap(),
        };
        let relayed = candidate(CandidateKind::Relayed, "203.0.113.30:49355");
        let reflexive = candidate(CandidateKind::ServerReflexive, "192.0.2.2:40000");
        let punch = Punch::start(vec![reflexive, relayed], Duration::from_millis(100), now);
        peer.punched = Some(Punched {
            made: now,
            punch: Some(punch),
            next_offer: None,
            offers: 0,
            theirs: Vec::new(),
        });
        let mut out = Outbox::default();
        let peer_reflexive = "192.0.2.2:33309".parse().unwrap();
        peer.follow(
            Path::Relayed {
                relay: 0,
                peer: peer_reflexive,
            },
            &mut out,
        );
        assert_eq!(peer.direct_via(), None, "on our relay");
        peer.follow(Path::Direct(relayed.addr), &mut out);
        assert_eq!(peer.direct_via(), Some("relayed"));
        peer.follow(Path::Direct("198.51.100.9:1000".parse().unwrap()), &mut out);
        assert_eq!(
            peer.direct_via(),
            Some("punched"),
            "roamed off its candidates"
        );
    }
}
