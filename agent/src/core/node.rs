//! The node: this device's peers, its routing table, and the inputs and outputs of the
//! core.
//!
//! Drive it like quinn-proto's `Connection`: feed an input (`handle_tun`, `handle_udp`,
//! `handle_timeout`, `apply`), then drain `poll_transmit` until it is empty (handing each
//! buffer back with `recycle`), then ask `poll_timeout` when to call `handle_timeout`.
//! The node never reads the clock: `now` is always an argument.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::keys::{PrivateKey, PublicKey};
use crate::prefix::Prefix;

use super::mesh::{IDLE_TEARDOWN, Mesh};
use super::outbox::Outbox;
use super::packet;
use super::path::{Destination, Path, RelayId, Transmit};
use super::paths::RelayInfo;
use super::peer::{Peer, PeerConfig, Punched};
use super::punch::Punch;
use super::reflexive::{self, NatMapping, Reflexive};
use super::routes::RouteTable;
use super::session::{self, Gate, HandshakeGate, MessageKind};
use super::signal::{self, Kind};

/// Packets the node dropped, by reason. Each one is also logged at debug.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// From the TUN device, to an address no peer's allowed IPs cover.
    pub no_route: u64,
    /// Not a WireGuard message, or naming a session we do not have.
    pub unknown_datagram: u64,
    /// WireGuard refused it (bad MAC, replay, old timestamp, ...).
    pub refused: u64,
    /// Handshake messages answered with a cookie reply: the node was under load and the
    /// sender had not proven its address (MAC2).
    pub cookie_replies: u64,
    /// Candidate messages refused (malformed, replayed, or not from the node they name).
    pub bad_signals: u64,
}

/// The whole overlay prefix and the hubs that may carry it, most preferred first. The
/// first one that answers carries it; see `liveness.rs` for "answers".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    pub prefix: Prefix,
    pub via: Vec<PublicKey>,
}

/// What happened, for logs, `status` and systemd's status line: drain with
/// `Node::poll_event` after each input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The NAT in front of the WireGuard socket was classified (anew).
    NatMapping(NatMapping),
    /// A peer's datagrams take another way now (logged where it happens; this is for
    /// counting).
    PathSwitched { peer: String, why: SwitchReason },
}

/// Why a peer's path changed, as metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SwitchReason {
    /// The first path of a peer that reached us first.
    Learned,
    /// The peer's address moved (NAT rebinding, a moved device).
    Roamed,
    /// A direct probe was answered while relayed.
    Promoted,
    /// A direct path was punched through both NATs.
    Punched,
    /// The path in use went unanswered: the next one was taken.
    Failed,
    /// The relay in use went away.
    RelayLost,
    /// A session made on demand ended: the peer's traffic is back on the hub.
    BackToHub,
}

impl SwitchReason {
    pub fn name(self) -> &'static str {
        match self {
            SwitchReason::Learned => "learned",
            SwitchReason::Roamed => "roamed",
            SwitchReason::Promoted => "promoted",
            SwitchReason::Punched => "punched",
            SwitchReason::Failed => "failed",
            SwitchReason::RelayLost => "relay_lost",
            SwitchReason::BackToHub => "back_to_hub",
        }
    }
}

/// What `apply` changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub updated: Vec<String>,
    /// Peers whose session had to be rebuilt (new preshared key or keepalive).
    pub rekeyed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.updated.is_empty()
            && self.rekeyed.is_empty()
    }
}

pub struct Node {
    key: PrivateKey,
    peers: BTreeMap<PublicKey, Peer>,
    by_index: HashMap<u32, PublicKey>,
    routes: RouteTable,
    overlay: Option<Overlay>,
    /// The hub the overlay prefix is routed to now.
    overlay_via: Option<PublicKey>,
    /// Session indexes are 24 bits; the next one to hand out.
    next_index: u32,
    out: Outbox,
    /// Relays with an allocation, as the shell reports them.
    relays: Vec<RelayInfo>,
    /// MAC1, and MAC2 under load, before any handshake costs an X25519 operation.
    gate: HandshakeGate,
    /// Our reflexive addresses and the NAT's mapping, from STUN on the WireGuard socket.
    reflexive: Reflexive,
    /// Edges of other sites reached directly on demand.
    mesh: Mesh,
    /// The peers `mesh` made (not in the manifest's peer list).
    punched: BTreeSet<PublicKey>,
    /// Every peer's next tick, in time order, so the next deadline and the peers due
    /// are found without looking at every peer (a hub has thousands).
    timers: BTreeSet<(Instant, PublicKey)>,
    scheduled: HashMap<PublicKey, Instant>,
    pub drops: Drops,
}

impl Node {
    /// `index_seed` is random in the shell, fixed in tests: session indexes start there.
    pub fn new(key: PrivateKey, index_seed: u32, now: Instant) -> Node {
        Node {
            gate: HandshakeGate::new(&key, now),
            reflexive: Reflexive::new(u64::from(index_seed)),
            mesh: Mesh::new(u64::from(index_seed).rotate_left(32) ^ 0x5eed),
            punched: BTreeSet::new(),
            timers: BTreeSet::new(),
            scheduled: HashMap::new(),
            key,
            peers: BTreeMap::new(),
            by_index: HashMap::new(),
            routes: RouteTable::default(),
            overlay: None,
            overlay_via: None,
            next_index: index_seed & 0x00ff_ffff,
            out: Outbox::default(),
            relays: Vec::new(),
            drops: Drops::default(),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    pub fn peer(&self, key: &PublicKey) -> Option<&Peer> {
        self.peers.get(key)
    }

    /// The hub the overlay prefix goes to now.
    pub fn overlay_via(&self) -> Option<&Peer> {
        self.overlay_via.and_then(|k| self.peers.get(&k))
    }

    /// Brings the peer set to `desired` and the overlay route to `overlay`, changing only
    /// what differs: an unchanged peer keeps its session and endpoint.
    pub fn apply(
        &mut self,
        desired: BTreeMap<PublicKey, PeerConfig>,
        overlay: Option<Overlay>,
        now: Instant,
    ) -> Changes {
        let mut changes = Changes::default();
        let gone: Vec<PublicKey> = self
            .peers
            .keys()
            .filter(|k| !desired.contains_key(k))
            .filter(|k| !(self.punched.contains(k) && self.mesh.contains(k)))
            .copied()
            .collect();
        for key in gone {
            if let Some(peer) = self.peers.remove(&key) {
                self.by_index.remove(&peer.index);
                self.punched.remove(&key);
                changes.removed.push(peer.config.name);
            }
        }
        // A manifest peer now (the edge moved to our site): made anew below.
        self.punched.retain(|k| !desired.contains_key(k));
        for (key, config) in desired {
            match self.peers.get_mut(&key) {
                Some(peer) if peer.config == config => {}
                Some(peer) if !peer.needs_new_session(&config) => {
                    changes.updated.push(config.name.clone());
                    if peer.update(config) {
                        peer.initiate(&mut self.out, now);
                    }
                }
                existing => {
                    let rekey = existing.is_some();
                    let name = config.name.clone();
                    self.add_peer(key, config, now);
                    if rekey {
                        changes.rekeyed.push(name)
                    } else {
                        changes.added.push(name)
                    }
                }
            }
        }
        for peer in self.peers.values_mut() {
            let carries = overlay.as_ref().filter(|o| o.via.contains(&peer.key));
            peer.overlay = carries.map(|o| o.prefix.network());
        }
        self.overlay = overlay;
        self.rebuild_routes();
        self.reschedule_all();
        changes
    }

    /// Replaces every WireGuard session with a new one and handshakes at once, keeping
    /// paths and routes. For when the wall clock jumped: boringtun stamps handshakes from
    /// the wall clock read when a session is made, and peers refuse a stamp older than
    /// the last one they saw (a board that booted in 1970 and then got NTP time).
    pub fn renew_sessions(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            peer.renew_session(&self.key, &self.gate, &mut self.out, now);
        }
        self.reschedule_all();
    }

    /// Files the peer's next tick (or drops it, for a peer that is gone).
    fn reschedule(&mut self, key: PublicKey) {
        let next = self.peers.get(&key).map(Peer::next_tick);
        let old = match next {
            Some(t) => self.scheduled.insert(key, t),
            None => self.scheduled.remove(&key),
        };
        if old == next {
            return;
        }
        if let Some(old) = old {
            self.timers.remove(&(old, key));
        }
        if let Some(t) = next {
            self.timers.insert((t, key));
        }
    }

    /// Tests: every peer's deadline is filed, and nothing else is.
    #[cfg(test)]
    pub(crate) fn check_filed(&self, at: &str) {
        for (k, p) in &self.peers {
            let filed = self.scheduled.get(k);
            assert_eq!(
                filed,
                Some(&p.next_tick()),
                "{at}: {} not filed",
                p.config.name
            );
        }
        for (t, k) in &self.timers {
            assert_eq!(self.scheduled.get(k), Some(t), "{at}: a stale deadline");
            assert!(
                self.peers.contains_key(k),
                "{at}: the deadline of a peer that is gone"
            );
        }
    }

    fn reschedule_all(&mut self) {
        let keys: Vec<PublicKey> = self
            .peers
            .keys()
            .chain(self.scheduled.keys())
            .copied()
            .collect();
        for key in keys {
            self.reschedule(key);
        }
    }

    /// The edges of other sites this node may reach directly, made on demand (see
    /// `mesh.rs`): each with its allowed IPs and preshared key for this pair. Sessions
    /// made with edges no longer listed end.
    pub fn set_remote_edges(&mut self, directory: BTreeMap<PublicKey, PeerConfig>, now: Instant) {
        self.mesh.set_directory(directory);
        let gone: Vec<PublicKey> = self
            .punched
            .iter()
            .filter(|k| !self.mesh.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.end_punched(key, "removed from the manifest", now);
        }
    }

    /// This node's overlay addresses and WireGuard port: the source of its candidate
    /// messages and the port of its host candidates.
    pub fn set_own_addresses(&mut self, addresses: Vec<Prefix>, listen_port: u16) {
        self.mesh.set_own(addresses, listen_port);
    }

    /// A packet toward an edge of another site is about to go through a hub: the first
    /// one starts the exchange of candidates and a session made for that edge alone.
    fn maybe_start_exchange(&mut self, dst: IpAddr, via: PublicKey, now: Instant) {
        if self
            .peers
            .get(&via)
            .is_none_or(|p| p.config.role != crate::manifest::Role::Hub)
        {
            return;
        }
        let Some(key) = self.mesh.exchange_wanted(dst, now) else {
            return;
        };
        if self.peers.contains_key(&key) {
            return;
        }
        let Some(config) = self.mesh.config(&key) else {
            return;
        };
        log::info!(
            "peer {}: traffic through the hub; offering candidates for a direct path",
            config.name
        );
        self.add_punched(key, config, now);
        self.send_signal(key, Kind::Offer, now);
    }

    fn add_punched(&mut self, key: PublicKey, config: PeerConfig, now: Instant) {
        self.add_peer(key, config, now);
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.punched = Some(Punched {
                made: now,
                punch: None,
                through: None,
            });
        }
        self.punched.insert(key);
    }

    /// Sends our candidates to `to` through the overlay (the hub that carries it).
    fn send_signal(&mut self, to: PublicKey, kind: Kind, now: Instant) {
        let host = self.reflexive.host_addresses().to_vec();
        let candidates = self.mesh.candidates(&host, &self.reflexive.addresses());
        let hub_rtt = self.overlay_via().and_then(|p| p.rtt());
        let from = self.public_key();
        let Some(packet) = self.mesh.message(&to, kind, from, candidates, hub_rtt) else {
            log::debug!("no IPv4 overlay address to send candidates from or to");
            return;
        };
        let Some((_, dst)) = packet::addresses(&packet) else {
            return;
        };
        let Some(via) = self.routes.lookup(dst) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(&via) {
            peer.send_packet(&packet, &mut self.out, now);
        }
        self.reschedule(via);
    }

    /// A candidate message for us, decrypted from `carrier` (a hub that forwarded it).
    fn take_signal(&mut self, carrier: PublicKey, src: IpAddr, payload: &[u8], now: Instant) {
        let through_hub = self
            .peers
            .get(&carrier)
            .is_some_and(|p| p.config.role == crate::manifest::Role::Hub);
        let taken = if through_hub {
            self.mesh.take(src, payload)
        } else {
            Err(signal::SignalError::Malformed("not forwarded by a hub"))
        };
        let message = match taken {
            Ok(m) => m,
            Err(e) => {
                self.drops.bad_signals += 1;
                log::debug!("dropped a candidate message from {src}: {e}");
                return;
            }
        };
        let key = message.sender;
        let their_hub_rtt = message.hub_rtt_ms;
        let open_wait = match message.kind {
            Kind::Offer => {
                if !self.peers.contains_key(&key) {
                    let Some(config) = self.mesh.config(&key) else {
                        return;
                    };
                    self.add_punched(key, config, now);
                }
                self.send_signal(key, Kind::Answer, now);
                let own_rtt = self.overlay_via().and_then(|p| p.rtt());
                Punch::open_wait(own_rtt, their_hub_rtt)
            }
            Kind::Answer => std::time::Duration::ZERO,
            Kind::Close => {
                if self.punched.contains(&key) {
                    self.end_punched(key, "the other side lost the direct path", now);
                    self.rebuild_routes();
                }
                return;
            }
        };
        let Some(peer) = self.peers.get_mut(&key).filter(|p| p.punched.is_some()) else {
            return;
        };
        if peer.path().is_some() {
            // Already direct: the other side starts over (it restarted, or lost us).
            return;
        }
        log::info!(
            "peer {}: punching toward {} candidate(s)",
            peer.config.name,
            message.candidates.len()
        );
        peer.start_punch(message.candidates, open_wait, now);
        self.reschedule(key);
    }

    /// Drops a session made on demand; its traffic stays with the hub. When its direct
    /// path died, the other side hears it through the hub (so it does not wait for its
    /// own traffic to go unanswered), and our NAT's mapping is learned again: it may be
    /// what changed.
    fn end_punched(&mut self, key: PublicKey, why: &str, now: Instant) {
        if why == "the direct path stopped answering" {
            self.send_signal(key, Kind::Close, now);
            self.reflexive.recheck(now);
        }
        self.punched.remove(&key);
        if let Some(peer) = self.peers.remove(&key) {
            self.by_index.remove(&peer.index);
            if peer.path().is_some() {
                self.out.events.push_back(Event::PathSwitched {
                    peer: peer.config.name.clone(),
                    why: SwitchReason::BackToHub,
                });
            }
            let level = if why == "idle" {
                log::Level::Debug
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "peer {}: direct session ended ({why}); through the hub",
                peer.config.name
            );
        }
        self.reschedule(key);
        self.mesh.ended(key, why, now);
    }

    fn add_peer(&mut self, key: PublicKey, config: PeerConfig, now: Instant) {
        if let Some(old) = self.peers.remove(&key) {
            self.by_index.remove(&old.index);
        }
        let index = self.allocate_index();
        let mut peer = Peer::new(&self.key, key, config, index, &self.gate, now);
        // Handshake at once with every peer we can reach, so the first packet does not
        // wait for one and `status` shows who answers.
        if peer.path().is_some() {
            peer.initiate_everywhere(&mut self.out, now);
        }
        self.by_index.insert(index, key);
        self.peers.insert(key, peer);
        self.reschedule(key);
    }

    fn allocate_index(&mut self) -> u32 {
        loop {
            let index = self.next_index;
            self.next_index = (self.next_index + 1) & 0x00ff_ffff;
            if !self.by_index.contains_key(&index) {
                return index;
            }
        }
    }

    /// Routes every prefix to its peer, leaving out peers without a path or that are down,
    /// so their traffic falls back to a shorter prefix (the overlay, through a hub); the
    /// overlay goes to the first hub that is routable.
    fn rebuild_routes(&mut self) {
        self.routes.clear();
        for (key, peer) in &self.peers {
            if peer.is_routable() {
                for prefix in &peer.config.allowed_ips {
                    self.routes.insert(*prefix, *key);
                }
            }
        }
        let Some(overlay) = &self.overlay else {
            self.overlay_via = None;
            return;
        };
        let hubs = || overlay.via.iter().filter(|k| self.peers.contains_key(k));
        // With every hub down, keep sending to the preferred one: that is what retries.
        let via = hubs()
            .find(|k| self.peers[k].is_routable())
            .or_else(|| hubs().next())
            .copied();
        if via != self.overlay_via {
            let name = |k: Option<PublicKey>| {
                k.and_then(|k| self.peers.get(&k))
                    .map_or("nobody".to_string(), |p| p.config.name.clone())
            };
            if self.overlay_via.is_some() {
                log::info!(
                    "overlay {} now via {} (was {})",
                    overlay.prefix,
                    name(via),
                    name(self.overlay_via)
                );
            }
            self.overlay_via = via;
        }
        if let Some(via) = via {
            self.routes.insert(overlay.prefix, via);
        }
    }

    /// Every prefix some peer routes, for the kernel's routing table.
    pub fn routed_prefixes(&self) -> Vec<Prefix> {
        let mut all: Vec<Prefix> = self
            .peers
            .values()
            .flat_map(|p| p.config.allowed_ips.iter().map(|a| a.network()))
            .collect();
        all.extend(self.overlay.as_ref().map(|o| o.prefix.network()));
        all.sort();
        all.dedup();
        all
    }

    /// An IP packet read from the TUN device.
    pub fn handle_tun(&mut self, packet: &[u8], now: Instant) {
        let Some((_, dst)) = packet::addresses(packet) else {
            self.drops.unknown_datagram += 1;
            return;
        };
        let Some(via) = self.routes.lookup(dst) else {
            self.drops.no_route += 1;
            log::debug!("no peer routes {dst}: dropped a packet from the TUN device");
            return;
        };
        if Some(via) == self.overlay_via {
            self.maybe_start_exchange(dst, via, now);
        }
        if let Some(peer) = self.peers.get_mut(&via) {
            peer.send_packet(packet, &mut self.out, now);
        }
        self.reschedule(via);
        #[cfg(test)]
        self.check_filed("handle_tun");
    }

    /// A datagram read from the UDP socket: STUN answers to our Binding requests, or
    /// WireGuard.
    pub fn handle_udp(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        if reflexive::is_stun(datagram) {
            if let Some(mapping) = self.reflexive.handle(from, datagram, now) {
                self.out.events.push_back(Event::NatMapping(mapping));
            }
            return;
        }
        self.handle_datagram(Path::Direct(from), datagram, now);
        #[cfg(test)]
        self.check_filed("handle_udp");
    }

    /// The STUN servers to learn our reflexive addresses from: the manifest's `stun`
    /// list and its relays' UDP ports (coturn answers Binding).
    pub fn set_stun_servers(&mut self, servers: Vec<SocketAddr>, now: Instant) {
        self.reflexive.set_servers(servers, now);
    }

    /// The addresses of this device's interfaces (not the overlay's): a change means the
    /// NAT mapping must be learned again.
    pub fn set_host_addresses(&mut self, addresses: Vec<IpAddr>, now: Instant) {
        self.reflexive.set_host_addresses(addresses, now);
    }

    /// The NAT's mapping behaviour, as far as STUN told.
    pub fn nat_mapping(&self) -> NatMapping {
        self.reflexive.mapping()
    }

    /// Our addresses as STUN servers saw them.
    pub fn reflexive_addresses(&self) -> Vec<SocketAddr> {
        self.reflexive.addresses()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// A datagram a TURN relay forwarded to us from `from`.
    pub fn handle_relay(
        &mut self,
        relay: RelayId,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        self.handle_datagram(Path::Relayed { relay, peer: from }, datagram, now);
    }

    /// A relay has an allocation (again), answering in `rtt`. Peers that are down try it.
    pub fn relay_up(&mut self, relay: RelayId, rtt: std::time::Duration, now: Instant) {
        self.relays.retain(|r| r.id != relay);
        self.relays.push(RelayInfo { id: relay, rtt });
        for peer in self.peers.values_mut() {
            peer.retry_if_down(&self.relays, &mut self.out, now);
        }
        self.reschedule_all();
    }

    /// A relay lost its allocation or its connection: its peers move at once.
    pub fn relay_down(&mut self, relay: RelayId, now: Instant) {
        self.relays.retain(|r| r.id != relay);
        for peer in self.peers.values_mut() {
            peer.on_relay_lost(relay, &self.relays, &mut self.out, now);
        }
        self.reschedule_all();
    }

    /// Every address a relay must be allowed to forward from: the peers' direct
    /// addresses (TURN permissions).
    pub fn relay_permissions(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .peers
            .values()
            .flat_map(|p| p.direct_candidates().iter().copied())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    fn handle_datagram(&mut self, via: Path, datagram: &[u8], now: Instant) {
        let from = via.endpoint();
        let kind = MessageKind::of(datagram);
        if matches!(
            kind,
            Some(MessageKind::HandshakeInit | MessageKind::HandshakeResponse)
        ) {
            match self.gate.check(from.ip(), datagram, now) {
                Gate::Pass => {}
                Gate::Cookie(reply) => {
                    self.drops.cookie_replies += 1;
                    let mut buf = self.out.buffer();
                    buf.extend_from_slice(&reply);
                    self.out.push(via.into(), buf);
                    return;
                }
                Gate::Drop(e) => {
                    self.drops.unknown_datagram += 1;
                    log::debug!("dropped a handshake message from {from}: {e}");
                    return;
                }
            }
        }
        let key = match kind {
            Some(MessageKind::HandshakeInit) => session::initiator_of(datagram, &self.key),
            Some(_) => MessageKind::receiver_index(datagram)
                .and_then(|idx| self.by_index.get(&(idx >> 8)).copied()),
            None => None,
        };
        let Some(peer) = key.and_then(|k| self.peers.get_mut(&k)) else {
            self.drops.unknown_datagram += 1;
            log::debug!(
                "dropped a {}-byte datagram from {from}: no peer of ours",
                datagram.len()
            );
            return;
        };
        let before = peer.is_routable();
        let carrier = peer.key;
        let packet = match peer.receive(via, datagram, &mut self.out, now) {
            Ok(packet) => packet,
            Err(e) => {
                self.drops.refused += 1;
                log::debug!("peer {}: {e} (from {from})", peer.config.name);
                None
            }
        };
        if peer.is_routable() != before {
            self.rebuild_routes();
        }
        self.reschedule(carrier);
        if let Some(packet) = packet {
            let mesh = &self.mesh;
            match signal::unwrap_v4(&packet, |a| mesh.is_own(a)) {
                Some((src, payload)) => {
                    let payload = payload.to_vec();
                    self.take_signal(carrier, src, &payload, now);
                    self.out.recycle(packet);
                }
                None => self.out.push(Destination::Tun, packet),
            }
        }
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.reflexive.poll_timeout().is_some_and(|t| now >= t)
            && let Some(mapping) = self.reflexive.handle_timeout(now, &mut self.out)
        {
            self.out.events.push_back(Event::NatMapping(mapping));
        }
        let mut went_down = false;
        let due: Vec<PublicKey> = self
            .timers
            .range(..=(now, PublicKey([0xff; 32])))
            .map(|(_, key)| *key)
            .collect();
        for key in due {
            if let Some(peer) = self.peers.get_mut(&key) {
                went_down |= peer.tick(&self.relays, &mut self.out, now);
            }
            self.reschedule(key);
        }
        let over: Vec<(PublicKey, &'static str)> = self
            .punched
            .iter()
            .filter_map(|k| Some((*k, self.peers.get(k)?.punched_is_over(IDLE_TEARDOWN, now)?)))
            .collect();
        for (key, why) in &over {
            self.end_punched(*key, why, now);
        }
        if went_down || !over.is_empty() {
            self.rebuild_routes();
        }
        #[cfg(test)]
        self.check_filed("handle_timeout");
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// Hands a transmitted buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.out.recycle(buf);
    }

    /// When `handle_timeout` must next run, and for what: a peer's name, or "stun" (for
    /// logs and tests).
    pub fn poll_timeout(&self) -> Option<(Instant, &str)> {
        let stun = self.reflexive.poll_timeout().map(|t| (t, "stun"));
        let peer = self.timers.first().and_then(|(t, key)| {
            let name = self.peers.get(key)?.config.name.as_str();
            Some((*t, name))
        });
        [peer, stun].into_iter().flatten().min_by_key(|(t, _)| *t)
    }
}
