//! Inbound datagrams on the agent's UDP port, from anyone: a hub `Node` with one edge
//! peer takes each through `handle_udp`, its outputs drained after each. The first byte
//! chooses whether a genuine handshake initiation from the edge comes first (so the
//! datagrams that follow meet an established session) and the sender's port; the rest is
//! cut into datagrams by 2-byte length prefixes.
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use edgewire::core::{Node, PeerConfig};
use edgewire::keys::{PrivateKey, PublicKey};
use edgewire::manifest::Role;
use libfuzzer_sys::fuzz_target;

// Fixed keys: a corpus entry stays meaningful from one run to the next.
const HUB_KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const EDGE_KEY: &str = "oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=";

struct Fixture {
    hub: PrivateKey,
    edge: PublicKey,
    /// A handshake initiation the edge sent the hub, MAC1 and all.
    initiation: Vec<u8>,
}

fn config(name: &str, role: Role, ip: &str, endpoint: Option<&str>) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        role,
        allowed_ips: vec![ip.parse().unwrap()],
        endpoints: endpoint.map(|e| e.parse().unwrap()).into_iter().collect(),
        keepalive: Some(25),
        preshared_key: None,
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let hub = PrivateKey::from_base64(HUB_KEY).unwrap();
        let edge_key = PrivateKey::from_base64(EDGE_KEY).unwrap();
        let now = Instant::now();
        let mut edge = Node::new(edge_key.clone(), 2, now);
        let peers = BTreeMap::from([(
            hub.public_key(),
            config("hub", Role::Hub, "10.42.0.1/32", Some("203.0.113.10:51820")),
        )]);
        edge.apply(peers, None, now);
        // An ICMP echo toward the hub makes the edge start a handshake.
        let mut packet = vec![0u8; 28];
        packet[0] = 0x45;
        packet[3] = 28;
        packet[8] = 64;
        packet[9] = 1;
        packet[12..16].copy_from_slice(&[10, 42, 1, 1]);
        packet[16..20].copy_from_slice(&[10, 42, 0, 1]);
        edge.handle_tun(&packet, now);
        edge.handle_timeout(now);
        let initiation = std::iter::from_fn(|| edge.poll_transmit())
            .map(|t| t.payload)
            .find(|p| p.len() == 148 && p[0] == 1)
            .expect("the edge sends a handshake initiation");
        Fixture {
            hub,
            edge: edge_key.public_key(),
            initiation,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let mut hub = Node::new(f.hub.clone(), 1, now);
    let peers = BTreeMap::from([(f.edge, config("edge", Role::Edge, "10.42.1.1/32", None))]);
    hub.apply(peers, None, now);
    let from: SocketAddr = SocketAddr::from(([198, 51, 100, 2], 51820 + u16::from(mode >> 2)));
    let drain = |hub: &mut Node| {
        while hub.poll_transmit().is_some() {}
        while hub.poll_event().is_some() {}
    };
    if mode & 1 != 0 {
        hub.handle_udp(from, &f.initiation, now);
        drain(&mut hub);
    }
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 2048;
        let datagram = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        hub.handle_udp(from, datagram, now);
        drain(&mut hub);
        if mode & 2 != 0 {
            now += Duration::from_millis(300);
            hub.handle_timeout(now);
            drain(&mut hub);
        }
    }
});
