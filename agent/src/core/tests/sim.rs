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
use super::super::{Destination, Node, PeerConfig};
use super::nat::SimNat;

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
    /// When each handshake initiation it sent left (to the network or a relay).
    pub initiations: Vec<Instant>,
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
    /// NATs that nodes sit behind (`SimNode::nat`).
    pub nats: Vec<SimNat>,
    /// STUN servers: each answers a Binding request with the address it came from.
    pub stun: Vec<SocketAddr>,
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
            nats: Vec::new(),
            stun: Vec::new(),
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
            initiations: Vec::new(),
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
                        Destination::Udp(_) if self.nodes[i].cut => self.lost += 1,
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
                        Destination::RelayServer(_) => {
                            unreachable!("the simulation's relays are links, not TURN servers")
                        }
                        Destination::Tun => {
                            let n = &mut self.nodes[i];
                            let dst: [u8; 4] = t.payload[16..20].try_into().unwrap();
                            if n.forwards && !n.own.contains(&dst) {
                                let now = self.now;
                                n.node.handle_tun(&t.payload, now);
                            } else {
                                n.tun.push(t.payload.clone());
                            }
                        }
                    }
                    self.nodes[i].node.recycle(t.payload);
                }
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

    pub fn deliver(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
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
                    .find(|o| !o.cut && o.nat == Some(n) && o.addr == internal)
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
            !n.cut && n.public.unwrap_or(n.addr) == to && (n.nat.is_none() || n.nat == lan)
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
        self.settle();
        loop {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.node.poll_timeout().map(|(t, _)| t))
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
            let due = self
                .nodes
                .iter()
                .any(|n| n.node.poll_timeout().is_some_and(|(t, _)| t <= now));
            if !due {
                return;
            }
            self.step_to(now);
        }
    }

    fn step_to(&mut self, at: Instant) {
        self.now = at;
        for n in &mut self.nodes {
            n.node.handle_timeout(at);
        }
        self.run();
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
