//! The simulated network for whole-node tests: several nodes with real WireGuard sessions on a simulated network
//! and a simulated clock. The network delivers every transmit until nothing is left,
//! within a bounded number of rounds, and can put a node behind a NAT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keys::{PrivateKey, PublicKey};
use crate::manifest::{Manifest, NodeSpec, Role};

use super::super::packet::ipv4_for_test;
use super::super::topology;
use super::super::{Destination, Event, Node, PeerConfig, RelaySlot};
use super::nat::SimNat;
use crate::turn::testserver::{self, Out, TestTurnServer};
use crate::turn::{Timings, Transport, TurnClient, TurnConfig, TurnEvent};

/// Node `i`'s TURN clients send from this port plus `i`.
const TURN_CLIENT_PORT: u16 = 40_000;

/// A TTL this low dies between the sender's NAT and anyone else's.
const LOW_TTL_REACH: u8 = 2;

pub struct SimNode {
    pub node: Node,
    /// The address the node's socket is bound to.
    pub addr: SocketAddr,
    /// The address its datagrams appear from outside (a NAT's mapping), if different.
    pub public: Option<SocketAddr>,
    /// Behind this RFC 4787 NAT of `Sim::nats` (instead of the fixed `public` mapping).
    pub nat: Option<usize>,
    /// Packets the node wrote to its TUN device.
    pub tun: Vec<Vec<u8>>,
    /// A hub's kernel forwards packets for other overlay addresses back into the TUN.
    pub forwards: bool,
    pub own: Vec<[u8; 4]>,
    /// Cut off the network: every datagram to or from it is lost.
    pub cut: bool,
    /// Behind a firewall that lets no UDP through (only its TURN clients' connections,
    /// as TCP 443 would): every datagram of its WireGuard socket is lost.
    pub udp_blocked: bool,
    /// When each handshake initiation it sent left (to the network or a relay).
    pub initiations: Vec<Instant>,
    /// The node's events, when the simulation drains them (it does once TURN servers
    /// exist, acting on `ConnectRelay` as the shell would).
    pub events: Vec<(Instant, Event)>,
}

/// A TURN server of the simulation, spoken to by the nodes' own TURN clients; relay id
/// `n` of every node is `Sim::turn[n]`.
pub struct SimTurn {
    /// Where clients send (over UDP).
    pub addr: SocketAddr,
    pub server: TestTurnServer,
    /// A dead server answers nothing and forwards nothing.
    pub cut: bool,
}

pub struct Sim {
    pub nodes: Vec<SimNode>,
    pub now: Instant,
    /// Datagrams that went nowhere (no node at the address, or a NAT with no mapping).
    pub lost: usize,
    /// Paths that drop everything: (sender's public address, destination), one way.
    pub blocked: Vec<(SocketAddr, SocketAddr)>,
    /// TURN relays: each gives node `i` the relayed address `(ip, 50000 + i)`.
    pub relays: Vec<SimRelay>,
    /// The share of datagrams lost on every link, drawn from a seeded generator.
    pub loss: f64,
    /// Candidate messages (UDP to the signal port) the forwarding hub loses, from now.
    pub drop_signals: u32,
    /// How long every datagram takes from sender to receiver (zero: delivered within
    /// the same `run`).
    pub latency: Duration,
    /// Datagrams on their way: (arrival, from, to, bytes), in sending order.
    in_flight: std::collections::VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    /// NATs that nodes sit behind (`SimNode::nat`).
    pub nats: Vec<SimNat>,
    /// STUN servers: each answers a Binding request with the address it came from.
    pub stun: Vec<SocketAddr>,
    pub turn: Vec<SimTurn>,
    rng: u64,
}

pub struct SimRelay {
    pub ip: std::net::IpAddr,
    /// A dead relay forwards nothing.
    pub cut: bool,
}

impl Sim {
    pub fn new() -> Sim {
        Sim {
            nodes: Vec::new(),
            now: Instant::now(),
            lost: 0,
            blocked: Vec::new(),
            relays: Vec::new(),
            loss: 0.0,
            latency: Duration::ZERO,
            drop_signals: 0,
            in_flight: std::collections::VecDeque::new(),
            nats: Vec::new(),
            stun: Vec::new(),
            turn: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Seeds the loss generator, so a lossy run is the same every time.
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    }

    /// True for a datagram the lossy network drops (xorshift64*).
    fn lose(&mut self) -> bool {
        if self.loss <= 0.0 {
            return false;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let draw = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (draw as f64 / (1u64 << 53) as f64) < self.loss
    }

    pub fn add(&mut self, key: PrivateKey, addr: &str, own: [u8; 4]) -> usize {
        let seed = self.nodes.len() as u32 * 1000;
        self.nodes.push(SimNode {
            node: Node::new(key, seed, self.now),
            addr: addr.parse().unwrap(),
            public: None,
            nat: None,
            tun: Vec::new(),
            forwards: false,
            own: vec![own],
            cut: false,
            udp_blocked: false,
            initiations: Vec::new(),
            events: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Applies the manifest to every node, as the shell would (endpoints are literal).
    pub fn apply(&mut self, manifest: &Manifest) {
        let now = self.now;
        for n in &mut self.nodes {
            let t = topology::plan(manifest, &n.node.public_key()).unwrap();
            let resolve = |plans: &BTreeMap<PublicKey, topology::PeerPlan>| {
                plans
                    .iter()
                    .map(|(k, p)| (*k, p.resolve(|e| e.parse().into_iter().collect())))
                    .collect::<BTreeMap<PublicKey, PeerConfig>>()
            };
            n.node.set_own_addresses(t.addresses.clone(), n.addr.port());
            n.node.set_host_addresses(vec![n.addr.ip()], now);
            n.node.set_remote_edges(resolve(&t.remote), now);
            n.node.apply(resolve(&t.peers), t.overlay.clone(), now);
        }
    }

    pub fn send_ping(&mut self, from: usize, src: [u8; 4], dst: [u8; 4]) {
        let now = self.now;
        self.nodes[from]
            .node
            .handle_tun(&ipv4_for_test(src, dst, 40), now);
    }

    /// Delivers every transmit until the network is quiet. Returns the rounds taken.
    pub fn run(&mut self) -> usize {
        for round in 0..100 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].node.poll_transmit() {
                    moved = true;
                    let initiation = t.payload.len() == 148 && t.payload[..4] == [1, 0, 0, 0];
                    if initiation && t.destination != Destination::Tun {
                        let now = self.now;
                        self.nodes[i].initiations.push(now);
                    }
                    match t.destination {
                        Destination::Udp(_) if self.nodes[i].cut || self.nodes[i].udp_blocked => {
                            self.lost += 1
                        }
                        Destination::Udp(to) => {
                            let from = self.source_toward(i, to);
                            // Every NAT is one hop from its devices and two from the
                            // other NATs: a low TTL passes the sender's NAT only.
                            let lan = from == self.nodes[i].addr && self.nodes[i].nat.is_some();
                            if !lan && t.ttl.is_some_and(|ttl| ttl <= LOW_TTL_REACH) {
                                self.lost += 1;
                            } else {
                                self.deliver(from, to, &t.payload);
                            }
                        }
                        Destination::Relay { relay, peer } => {
                            let r = &self.relays[usize::from(relay)];
                            if r.cut || self.nodes[i].cut {
                                self.lost += 1;
                            } else {
                                let from = SocketAddr::new(r.ip, 50000 + i as u16);
                                self.deliver(from, peer, &t.payload);
                            }
                        }
                        Destination::RelayServer(id) => self.send_to_turn(i, id, &t.payload),
                        Destination::Tun => {
                            let n = &mut self.nodes[i];
                            let packet = t.bytes();
                            let dst: [u8; 4] = packet[16..20].try_into().unwrap();
                            let signal = packet[9] == 17
                                && packet[22..24]
                                    == super::super::signal::SIGNAL_PORT.to_be_bytes();
                            if n.forwards
                                && !n.own.contains(&dst)
                                && signal
                                && self.drop_signals > 0
                            {
                                self.drop_signals -= 1;
                                self.lost += 1;
                            } else if n.forwards && !n.own.contains(&dst) {
                                let now = self.now;
                                n.node.handle_tun(packet, now);
                            } else {
                                n.tun.push(packet.to_vec());
                            }
                        }
                    }
                    self.nodes[i].node.recycle(t.payload);
                }
                moved |= self.take_events(i);
            }
            if !moved {
                return round;
            }
        }
        panic!("the simulated network did not settle in 100 rounds");
    }

    /// Where a datagram from node `i` to `to` appears from: its NAT's mapping, or its own
    /// address on its LAN (a neighbour behind the same NAT).
    fn source_toward(&mut self, i: usize, to: SocketAddr) -> SocketAddr {
        let node = &self.nodes[i];
        let Some(n) = node.nat else {
            return node.public.unwrap_or(node.addr);
        };
        let lan = self.nodes.iter().any(|o| o.nat == Some(n) && o.addr == to);
        if lan {
            node.addr
        } else {
            let (addr, now) = (node.addr, self.now);
            self.nats[n].outbound(addr, to, now)
        }
    }

    /// Sends a datagram: it arrives now, or after `latency`.
    pub fn deliver(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        if self.latency.is_zero() {
            self.arrive(from, to, payload);
        } else {
            let at = self.now + self.latency;
            self.in_flight.push_back((at, from, to, payload.to_vec()));
        }
    }

    /// Hands over the datagrams in flight that have arrived by now.
    fn land(&mut self) {
        while self.in_flight.front().is_some_and(|f| f.0 <= self.now) {
            let (_, from, to, payload) = self.in_flight.pop_front().unwrap();
            self.arrive(from, to, &payload);
        }
    }

    /// A datagram arrives at `to`: through the NATs, relays and servers on the way.
    fn arrive(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let now = self.now;
        if self.blocked.contains(&(from, to)) || self.lose() {
            self.lost += 1;
            return;
        }

        // Sent to a relayed address: the relay forwards it to its client.
        if let Some(r) = self.relays.iter().position(|r| r.ip == to.ip()) {
            let client = usize::from(to.port() - 50000);
            if self.relays[r].cut || self.nodes[client].cut {
                self.lost += 1;
            } else {
                self.nodes[client]
                    .node
                    .handle_relay(r as u16, from, payload, now);
            }
            return;
        }
        if let Some(id) = self.turn.iter().position(|t| t.server.owns(to)) {
            let turn = &self.turn[id];
            match turn.server.from_peer(from, to, payload) {
                Some(Out::ToClient(client, bytes)) if !turn.cut => {
                    let i = usize::from(client.port() - TURN_CLIENT_PORT);
                    if self.nodes[i].cut {
                        self.lost += 1;
                    } else {
                        self.nodes[i]
                            .node
                            .handle_relay_bytes(id as u16, &bytes, now);
                    }
                }
                _ => self.lost += 1,
            }
            return;
        }
        if self.stun.contains(&to) {
            if let Some(answer) = stun_answer(from, payload) {
                self.deliver(to, from, &answer);
            }
            return;
        }
        // A public address of an RFC 4787 NAT: its mappings and filter decide.
        if let Some(n) = self.nats.iter().position(|nat| nat.public == to.ip()) {
            let inside = self.nats[n].inbound(from, to.port(), now);
            let node = inside.and_then(|internal| {
                self.nodes
                    .iter_mut()
                    .find(|o| !o.cut && !o.udp_blocked && o.nat == Some(n) && o.addr == internal)
            });
            match node {
                Some(o) => o.node.handle_udp(from, payload, now),
                None => self.lost += 1,
            }
            return;
        }
        // A node behind a fixed NAT is reached only at its public mapping; one behind an
        // RFC 4787 NAT at its own address only from its LAN (behind the same NAT).
        let lan = self
            .nodes
            .iter()
            .find(|n| n.addr == from)
            .and_then(|n| n.nat);
        match self.nodes.iter_mut().find(|n| {
            !n.cut
                && !n.udp_blocked
                && n.public.unwrap_or(n.addr) == to
                && (n.nat.is_none() || n.nat == lan)
        }) {
            Some(n) => n.node.handle_udp(from, payload, now),
            None => self.lost += 1,
        }
    }

    /// Moves time forward by `by`, stopping at every deadline a node asked for on the
    /// way (a discrete-event simulation): a punch paced at 20 ms goes out at its time,
    /// not in a burst at the end of the step, so the order of datagrams at the NATs is
    /// the order a real network would see.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        // What a test queued (a ping) leaves now, not at the end of the step.
        self.run();
        self.settle();
        loop {
            let landing = self.in_flight.front().map(|f| f.0);
            let next = (self.nodes.iter())
                .filter_map(|n| n.node.poll_timeout().map(|(t, _)| t))
                .chain(landing)
                .filter(|&t| t > self.now && t < target)
                .min();
            let Some(t) = next else { break };
            self.step_to(t);
            self.settle();
        }
        self.step_to(target);
        // The node files deadlines as they change instead of scanning its peers: the
        // earliest it files must be the earliest of all its peers, every time.
        for n in &self.nodes {
            let scanned = n.node.peers().filter_map(|p| p.next_tick()).min();
            let filed = n.node.poll_timeout().map(|(t, _)| t);
            if let Some(scanned) = scanned {
                let missed: Vec<&str> = n
                    .node
                    .peers()
                    .filter(|p| p.next_tick().is_some_and(|t| filed.is_none_or(|f| t < f)))
                    .map(|p| p.config.name.as_str())
                    .collect();
                assert!(
                    missed.is_empty(),
                    "deadlines not filed: {missed:?} ({scanned:?} / {filed:?})"
                );
            }
        }
    }

    /// Runs the deadlines that are due now, as the shell's timer would at once (a
    /// punch started while a datagram was handled is due at that same instant).
    fn settle(&mut self) {
        for _ in 0..10 {
            let now = self.now;
            let due = (self.nodes.iter())
                .any(|n| n.node.poll_timeout().is_some_and(|(t, _)| t <= now))
                || self.in_flight.front().is_some_and(|f| f.0 <= now);
            if !due {
                return;
            }
            self.step_to(now);
        }
    }

    fn step_to(&mut self, at: Instant) {
        self.now = at;
        self.land();
        self.run();
        for n in &mut self.nodes {
            n.node.handle_timeout(at);
        }
        self.run();
    }

    /// Adds a TURN server at `addr` relaying from `relay_ip`; its relay id is its index.
    pub fn add_turn(&mut self, addr: &str, relay_ip: &str) -> u16 {
        self.turn.push(SimTurn {
            addr: addr.parse().unwrap(),
            server: TestTurnServer::new(relay_ip.parse().unwrap()),
            cut: false,
        });
        (self.turn.len() - 1) as u16
    }

    /// Gives node `i` every TURN server, as a manifest's `relays` would.
    pub fn use_turn(&mut self, i: usize) {
        let slots = (0..self.turn.len())
            .map(|id| RelaySlot {
                id: id as u16,
                name: format!("turn-{id}"),
                transports: 1,
            })
            .collect();
        let now = self.now;
        self.nodes[i].node.set_relays(slots, now);
        self.run();
    }

    /// The address node `i`'s TURN clients send from: a socket of their own, as the
    /// shell's relay connections have (answers to a client's own flow pass any NAT).
    fn turn_client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.nodes[i].addr.ip(), TURN_CLIENT_PORT + i as u16)
    }

    /// Drains node `i`'s events (once TURN servers exist) and connects the relays it
    /// asks for. True when that produced anything.
    fn take_events(&mut self, i: usize) -> bool {
        if self.turn.is_empty() {
            return false;
        }
        let now = self.now;
        let mut moved = false;
        while let Some(event) = self.nodes[i].node.poll_event() {
            if let Event::ConnectRelay { id, .. } = event {
                self.connect_turn(i, id);
                moved = true;
            }
            self.nodes[i].events.push((now, event));
        }
        moved
    }

    /// The shell's race, for one UDP transport: a fresh client allocates, then goes to
    /// the node; a dead server fails it at once.
    fn connect_turn(&mut self, i: usize, id: u16) {
        let now = self.now;
        let from = self.turn_client_addr(i);
        let turn = &mut self.turn[usize::from(id)];
        if turn.cut || self.nodes[i].cut {
            self.nodes[i]
                .node
                .relay_connect_failed(id, "udp: no TURN answer", now);
            return;
        }
        let config = TurnConfig {
            server: turn.addr,
            transport: Transport::Udp,
            username: testserver::USER.into(),
            password: testserver::PASS.into(),
            software: String::new(),
            timings: Timings::default(),
        };
        let mut client = TurnClient::new(config, 42 + i as u64, now);
        for _ in 0..8 {
            while let Some(message) = client.poll_transmit() {
                for out in turn.server.from_client(from, &message) {
                    if let Out::ToClient(_, bytes) = out {
                        client.handle_datagram(&bytes, now);
                    }
                }
            }
            while let Some(event) = client.poll_event() {
                match event {
                    TurnEvent::Allocated { .. } => {
                        self.nodes[i].node.relay_connected(id, 0, client, now);
                        return;
                    }
                    TurnEvent::Failed { reason } => {
                        let why = reason.to_string();
                        self.nodes[i].node.relay_connect_failed(id, &why, now);
                        return;
                    }
                    _ => {}
                }
            }
        }
        panic!("the simulated TURN server did not allocate");
    }

    /// A message of node `i`'s TURN client for server `id`.
    fn send_to_turn(&mut self, i: usize, id: u16, message: &[u8]) {
        let now = self.now;
        let from = self.turn_client_addr(i);
        let turn = &mut self.turn[usize::from(id)];
        if turn.cut || self.nodes[i].cut {
            self.lost += 1;
            return;
        }
        for out in turn.server.from_client(from, message) {
            match out {
                Out::ToClient(_, bytes) => self.nodes[i].node.handle_relay_bytes(id, &bytes, now),
                Out::ToPeer {
                    relayed,
                    peer,
                    payload,
                } => self.deliver(relayed, peer, &payload),
            }
        }
    }

    pub fn handshakes(&self, node: usize, peer: &PublicKey) -> u64 {
        self.nodes[node].node.peer(peer).unwrap().stats.handshakes
    }
}

/// A STUN server's answer to a Binding request from `from`: where it saw it come from.
fn stun_answer(from: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    use crate::turn::{Attr, Class, Message, Method, Writer};
    let message = Message::parse(request).ok()?;
    if message.method() != Method::BINDING || message.class() != Class::Request {
        return None;
    }
    let mut out = Vec::new();
    Writer::new(
        &mut out,
        Method::BINDING,
        Class::Success,
        message.transaction_id(),
    )
    .attr(&Attr::XorMappedAddress(from));
    Some(out)
}

pub fn spec(key: &PrivateKey, name: &str, role: Role, site: Option<&str>, addr: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        public_key: key.public_key(),
        role,
        site: site.map(String::from),
        addresses: vec![addr.parse().unwrap()],
        allowed_ips: vec![],
        endpoints: vec![],
        keepalive: None,
        preshared_key: None,
    }
}

pub fn manifest(nodes: Vec<NodeSpec>) -> Manifest {
    Manifest {
        network: "lab".into(),
        serial: 1,
        overlay: "10.42.0.0/16".parse().unwrap(),
        expires: None,
        nodes,
        relays: vec![],
        stun: Vec::new(),
    }
}

/// A hub on a public address and two edges on different sites, each behind a NAT.
pub fn hub_and_two_nated_edges() -> (Sim, Manifest, [PrivateKey; 3]) {
    let keys = [
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    ];
    let mut sim = Sim::new();
    let hub = sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    sim.nodes[hub].forwards = true;
    let a = sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.nodes[a].public = Some("198.51.100.2:40001".parse().unwrap());
    let b = sim.add(keys[2].clone(), "192.168.2.10:51820", [10, 42, 2, 1]);
    sim.nodes[b].public = Some("198.51.100.3:40002".parse().unwrap());
    let mut hub_spec = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    hub_spec.endpoints = vec!["203.0.113.10:51820".into()];
    let m = manifest(vec![
        hub_spec,
        spec(
            &keys[1],
            "dev-a",
            Role::Edge,
            Some("site-a"),
            "10.42.1.1/32",
        ),
        spec(
            &keys[2],
            "dev-b",
            Role::Edge,
            Some("site-b"),
            "10.42.2.1/32",
        ),
    ]);
    sim.apply(&m);
    sim.run();
    (sim, m, keys)
}
