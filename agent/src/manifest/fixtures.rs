//! Test fixtures shared by the manifest tests: the lab manifest (the same one as
//! `testdata/lab.json`) and the fixed seed of the key that signed `testdata/lab-v1.ewm`.

use super::{Manifest, NodeSpec, RelaySpec, Role};
use crate::keys::PublicKey;

pub const SEED: [u8; 32] = [7; 32];

pub const LAB_JSON: &str = include_str!("testdata/lab.json");

pub fn lab_manifest() -> Manifest {
    let prefixes = |list: &[&str]| list.iter().map(|p| p.parse().unwrap()).collect::<Vec<_>>();
    Manifest {
        network: "lab".into(),
        serial: 1,
        overlay: "10.42.0.0/16".parse().unwrap(),
        expires: Some(1_798_761_600),
        nodes: vec![
            NodeSpec {
                name: "hub-1".into(),
                public_key: PublicKey([0x11; 32]),
                role: Role::Hub,
                site: None,
                addresses: prefixes(&["10.42.0.1/32"]),
                allowed_ips: prefixes(&["10.42.128.0/24"]),
                endpoints: vec!["203.0.113.10:51820".into()],
                keepalive: Some(25),
                preshared_key: None,
            },
            NodeSpec {
                name: "dev-1".into(),
                public_key: PublicKey([0x22; 32]),
                role: Role::Edge,
                site: Some("lab-a".into()),
                addresses: prefixes(&["10.42.1.1/32"]),
                allowed_ips: vec![],
                endpoints: vec![],
                keepalive: None,
                preshared_key: Some([0x33; 32]),
            },
            NodeSpec {
                name: "dev-2".into(),
                public_key: PublicKey([0x44; 32]),
                role: Role::Edge,
                site: Some("lab-a".into()),
                addresses: prefixes(&["10.42.1.2/32"]),
                allowed_ips: prefixes(&["fd42:1::/64"]),
                endpoints: vec![],
                keepalive: Some(0),
                preshared_key: None,
            },
        ],
        relays: vec![RelaySpec {
            url: "turn:198.51.100.1:3478?transport=udp".into(),
            username: "u".into(),
            password: "p".into(),
        }],
        stun: Vec::new(),
    }
}
