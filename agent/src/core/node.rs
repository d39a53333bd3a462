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

use super::fastmap::FastMap;
use super::mesh::{Ended, IDLE_TEARDOWN, Mesh};
use super::outbox::Outbox;
use super::packet;
use super::path::{Destination, Path, RelayId, TUN_HEADROOM, Transmit};
use super::paths::RelayInfo;
use super::peer::{Peer, PeerConfig};
use super::reflexive::{self, NatMapping, Reflexive};
use super::relays::Relay;
use super::routes::RouteTable;
use super::session::{self, Gate, HandshakeGate, MessageKind};
use super::signal;

mod filing;
mod ondemand;
mod relaying;

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
    /// Handshake messages dropped unanswered: under load, without MAC2, and past the
    /// cookie replies a second allows (a flood).
    pub shed: u64,
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
    /// The shell must (re)connect to relay `id`: drop any connection it has, race the
    /// relay's transports in this order (indexes into the manifest's list), and report
    /// with `Node::relay_connected` or `Node::relay_connect_failed`.
    ConnectRelay { id: RelayId, order: Vec<usize> },
    /// Relay `id` carries peers now (logged where it happens).
    RelayUp {
        id: RelayId,
        rtt: std::time::Duration,
    },
    /// Relay `id` no longer does; its peers moved (logged where it happens).
    RelayDown { id: RelayId },
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
    by_index: FastMap<u32, PublicKey>,
    routes: RouteTable,
    /// The prefixes each peer has in `routes` now, so one peer's change is applied alone.
    routed: HashMap<PublicKey, Vec<Prefix>>,
    overlay: Option<Overlay>,
    /// The hub the overlay prefix is routed to now.
    overlay_via: Option<PublicKey>,
    /// Session indexes are 24 bits; the next one to hand out.
    next_index: u32,
    out: Outbox,
    /// Relays with an allocation, as the paths choose among them.
    relays: Vec<RelayInfo>,
    /// The TURN clients, one per relay server (`relaying.rs`).
    turn: Vec<Relay>,
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
    scheduled: FastMap<PublicKey, Instant>,
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
            scheduled: FastMap::default(),
            key,
            peers: BTreeMap::new(),
            by_index: FastMap::default(),
            routes: RouteTable::default(),
            routed: HashMap::new(),
            overlay: None,
            overlay_via: None,
            next_index: index_seed & 0x00ff_ffff,
            out: Outbox::default(),
            relays: Vec::new(),
            turn: Vec::new(),
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
        let gone: Vec<PublicKey> = self
            .peers
            .keys()
            .filter(|k| !desired.contains_key(k))
            .copied()
            .collect();
        self.apply_diff(gone, desired, overlay, now)
    }

    /// [`Node::apply`] given only what changed, as the shell knows it from the previous
    /// manifest: `removed` peers leave, `changed` ones are added or updated (one whose
    /// configuration is the same keeps everything). Peers in neither stay as they are, so
    /// a hub of 10,000 peers applies serial+1 in the time of its diff.
    pub fn apply_diff(
        &mut self,
        removed: Vec<PublicKey>,
        desired: BTreeMap<PublicKey, PeerConfig>,
        overlay: Option<Overlay>,
        now: Instant,
    ) -> Changes {
        let mut changes = Changes::default();
        // An edge that moved to another site stays as a session made on demand.
        let gone: Vec<PublicKey> = removed
            .into_iter()
            .filter(|k| !(self.punched.contains(k) && self.mesh.contains(k)))
            .collect();
        // Only the peers that changed are routed and filed again.
        let mut touched = gone.clone();
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
                Some(peer) if peer.config == config => continue,
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
            touched.push(key);
        }
        if overlay != self.overlay {
            for peer in self.peers.values_mut() {
                let carries = overlay.as_ref().filter(|o| o.via.contains(&peer.key));
                peer.overlay = carries.map(|o| o.prefix.network());
            }
            if let Some(old) = self.overlay.take() {
                for hub in &old.via {
                    self.routes.remove(old.prefix, *hub);
                }
            }
            self.overlay = overlay;
            self.overlay_via = None;
        } else {
            // Peers made anew above: whether they carry the overlay.
            for key in &touched {
                let carries = self.overlay.as_ref().filter(|o| o.via.contains(key));
                if let Some(peer) = self.peers.get_mut(key) {
                    peer.overlay = carries.map(|o| o.prefix.network());
                }
            }
        }
        for key in touched {
            self.file_routes(key);
            self.reschedule(key);
        }
        self.route_overlay();
        #[cfg(test)]
        self.check_filed("apply");
        changes
    }

    /// Replaces every WireGuard session with a new one and handshakes at once, keeping
    /// paths and routes. For when the wall clock jumped: boringtun stamps handshakes from
    /// the wall clock read when a session is made, and peers refuse a stamp older than
    /// the last one they saw (a board that booted in 1970 and then got NTP time).
    pub fn renew_sessions(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            peer.renew_session(&mut self.out, now);
        }
        self.reschedule_all();
    }

    fn add_peer(&mut self, key: PublicKey, config: PeerConfig, now: Instant) {
        if let Some(old) = self.peers.remove(&key) {
            self.by_index.remove(&old.index);
        }
        let index = self.allocate_index();
        let mut peer = Peer::new(key, config, index, &self.gate);
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
    /// The node says so itself for the relays it drives; the simulation, whose relays
    /// are links, says it by hand.
    pub fn relay_up(&mut self, relay: RelayId, rtt: std::time::Duration, now: Instant) {
        self.relays.retain(|r| r.id != relay);
        self.relays.push(RelayInfo { id: relay, rtt });
        let mut changed = Vec::new();
        for peer in self.peers.values_mut() {
            let before = peer.is_routable();
            peer.retry_if_down(&self.relays, &mut self.out, now);
            if peer.is_routable() != before {
                changed.push(peer.key);
            }
        }
        for key in changed {
            self.reroute(key);
        }
        self.reschedule_all();
    }

    /// A relay lost its allocation or its connection: its peers move at once.
    pub fn relay_down(&mut self, relay: RelayId, now: Instant) {
        self.relays.retain(|r| r.id != relay);
        let mut changed = Vec::new();
        for peer in self.peers.values_mut() {
            let before = peer.is_routable();
            peer.on_relay_lost(relay, &self.relays, &mut self.out, now);
            if peer.is_routable() != before {
                changed.push(peer.key);
            }
        }
        // A peer left without a path stops carrying its routes (and the overlay).
        for key in changed {
            self.reroute(key);
        }
        self.reschedule_all();
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
                Gate::Shed => {
                    self.drops.shed += 1;
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
            self.reroute(carrier);
        }
        self.reschedule(carrier);
        if let Some(packet) = packet {
            let mesh = &self.mesh;
            match signal::unwrap_v4(&packet[TUN_HEADROOM..], |a| mesh.is_own(a)) {
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
        let due: Vec<PublicKey> = self
            .timers
            .range(..=(now, PublicKey([0xff; 32])))
            .map(|(_, key)| *key)
            .collect();
        for key in due {
            if let Some(peer) = self.peers.get_mut(&key) {
                let before = peer.is_routable();
                peer.tick(&self.relays, &mut self.out, now);
                if peer.is_routable() != before {
                    self.reroute(key);
                }
            }
            self.reschedule(key);
        }
        let offers: Vec<PublicKey> = (self.punched.iter())
            .filter(|k| self.peers.get(k).is_some_and(|p| p.offer_due(now)))
            .copied()
            .collect();
        for key in offers {
            self.offer(key, now);
        }
        let over: Vec<(PublicKey, Ended)> = self
            .punched
            .iter()
            .filter_map(|k| Some((*k, self.peers.get(k)?.punched_is_over(IDLE_TEARDOWN, now)?)))
            .collect();
        for (key, why) in over {
            self.end_punched(key, why, now);
        }
        self.relay_timers(now);
        self.out.log_not_answering();
        #[cfg(test)]
        self.check_filed("handle_timeout");
    }

    /// Whether transmits or events wait to be drained.
    pub fn has_output(&self) -> bool {
        !self.out.transmits.is_empty() || !self.out.events.is_empty()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let mut t = self.out.transmits.pop_front()?;
            let Destination::Relay { relay, peer } = t.destination else {
                return Some(t);
            };
            match self.frame_relayed(relay, peer, &t.payload) {
                Some(None) => return Some(t),
                Some(Some(framed)) => {
                    let payload = std::mem::replace(&mut t.payload, framed);
                    self.out.recycle(payload);
                    t.destination = Destination::RelayServer(relay);
                    return Some(t);
                }
                None => self.out.recycle(t.payload),
            }
        }
    }

    /// Frees the buffers kept for reuse, for a node whose traffic has stopped.
    pub fn shed_buffers(&mut self) {
        self.out.shed();
    }

    /// Hands a transmitted buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.out.recycle(buf);
    }

    /// When `handle_timeout` must next run, and for what: a peer's name, or "stun" (for
    /// logs and tests).
    pub fn poll_timeout(&self) -> Option<(Instant, &str)> {
        let stun = self.reflexive.poll_timeout().map(|t| (t, "stun"));
        let relay = self.relay_timeout().map(|t| (t, "relay"));
        let peer = self.timers.first().and_then(|(t, key)| {
            let name = self.peers.get(key)?.config.name.as_str();
            Some((*t, name))
        });
        [peer, stun, relay]
            .into_iter()
            .flatten()
            .min_by_key(|(t, _)| *t)
    }
}
