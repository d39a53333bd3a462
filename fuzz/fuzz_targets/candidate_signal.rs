//! Candidate messages (the edge-to-edge exchange, `core/signal.rs`) as an edge receives
//! them: inside the overlay, from its hub, to its own address on the signal port. The
//! parser is private to the core, so the input takes the real way in: a hub `Node` with
//! an established session to the edge wraps the bytes in IPv4/UDP (source: an edge of
//! another site in the directory), encrypts them, and the edge `Node` decrypts and takes
//! them. The pair is set up once per process (a handshake costs four X25519s); replay
//! state carries over from one input to the next, as it does in a running agent.
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgewire::core::{Node, Overlay, PeerConfig};
use edgewire::keys::PrivateKey;
use edgewire::manifest::Role;
use libfuzzer_sys::fuzz_target;

const HUB_KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const EDGE_KEY: &str = "oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=";
const OTHER_KEY: &str = "cJj8mQ5JNxDz7cXfS1zVvYc7Q2m4VbFqk8m8Yw3yR2k=";
const HUB_ADDR: &str = "203.0.113.10:51820";
const EDGE_ADDR: &str = "198.51.100.2:51820";

fn config(name: &str, role: Role, ips: &[&str], endpoint: Option<&str>) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        role,
        allowed_ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        endpoints: endpoint.map(|e| e.parse().unwrap()).into_iter().collect(),
        keepalive: Some(25),
        preshared_key: None,
    }
}

struct Pair {
    hub: Node,
    edge: Node,
    now: Instant,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let hub_key = PrivateKey::from_base64(HUB_KEY).unwrap();
        let edge_key = PrivateKey::from_base64(EDGE_KEY).unwrap();
        let other = PrivateKey::from_base64(OTHER_KEY).unwrap().public_key();
        let mut hub = Node::new(hub_key.clone(), 1, now);
        hub.apply(
            BTreeMap::from([(
                edge_key.public_key(),
                config("dev-a", Role::Edge, &["10.42.1.1/32"], None),
            )]),
            None,
            now,
        );
        let mut edge = Node::new(edge_key, 2, now);
        edge.apply(
            BTreeMap::from([(
                hub_key.public_key(),
                config("hub-1", Role::Hub, &["10.42.0.1/32"], Some(HUB_ADDR)),
            )]),
            Some(Overlay {
                prefix: "10.42.0.0/16".parse().unwrap(),
                via: vec![hub_key.public_key()],
            }),
            now,
        );
        edge.set_own_addresses(vec!["10.42.1.1/32".parse().unwrap()], 51820);
        // dev-b of site-b, so a message naming it from its address is one the edge expects.
        edge.set_remote_edges(
            BTreeMap::from([(
                other,
                config("dev-b", Role::Edge, &["10.42.2.1/32"], None),
            )]),
            now,
        );
        let mut pair = Pair { hub, edge, now };
        // A packet toward the hub starts the handshake; exchange until quiet.
        pair.edge.handle_tun(&ipv4_udp([10, 42, 1, 1], [10, 42, 0, 1], 9, &[0]), now);
        pair.exchange();
        pair
    }

    /// Delivers every datagram each side has queued to the other, a few rounds.
    fn exchange(&mut self) {
        let (hub_addr, edge_addr): (SocketAddr, SocketAddr) =
            (HUB_ADDR.parse().unwrap(), EDGE_ADDR.parse().unwrap());
        for _ in 0..4 {
            while let Some(t) = self.edge.poll_transmit() {
                self.hub.handle_udp(edge_addr, &t.payload, self.now);
            }
            while let Some(t) = self.hub.poll_transmit() {
                self.edge.handle_udp(hub_addr, &t.payload, self.now);
            }
            while self.edge.poll_event().is_some() {}
            while self.hub.poll_event().is_some() {}
        }
    }
}

/// An IPv4/UDP packet (no UDP checksum, which IPv4 allows).
fn ipv4_udp(src: [u8; 4], dst: [u8; 4], dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let sum = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&51821u16.to_be_bytes());
    p[22..24].copy_from_slice(&dst_port.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

thread_local! {
    static PAIR: RefCell<Option<Pair>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 1200 {
        return;
    }
    PAIR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let pair = cell.get_or_insert_with(Pair::new);
        let packet = ipv4_udp([10, 42, 2, 1], [10, 42, 1, 1], 51821, data);
        pair.hub.handle_tun(&packet, pair.now);
        pair.exchange();
        pair.now += Duration::from_millis(10);
        pair.edge.handle_timeout(pair.now);
        pair.hub.handle_timeout(pair.now);
        pair.exchange();
    });
});
