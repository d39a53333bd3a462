//! Devices behind RFC 4787 NATs of every kind: what STUN on the WireGuard socket tells
//! them about their NAT.

use std::time::Duration;

use crate::keys::PrivateKey;
use crate::manifest::Role;

use super::super::{Event, NatMapping};
use super::nat::{Dependence, NatType, SimNat};
use super::sim::*;

const STUN_1: &str = "192.0.2.1:3478";
const STUN_2: &str = "192.0.2.2:3478";

/// A hub and one edge behind a NAT of type `kind`, with two STUN servers.
fn edge_behind(kind: NatType) -> Sim {
    let keys = [0; 2].map(|_| PrivateKey::generate());
    let mut sim = Sim::new();
    sim.stun = vec![STUN_1.parse().unwrap(), STUN_2.parse().unwrap()];
    sim.add(keys[0].clone(), "203.0.113.10:51820", [10, 42, 0, 1]);
    let edge = sim.add(keys[1].clone(), "192.168.1.10:51820", [10, 42, 1, 1]);
    sim.nats.push(SimNat::new("198.51.100.2", kind));
    sim.nodes[edge].nat = Some(0);
    let mut hub = spec(&keys[0], "hub", Role::Hub, None, "10.42.0.1/32");
    hub.endpoints = vec!["203.0.113.10:51820".into()];
    let dev = spec(&keys[1], "dev", Role::Edge, Some("a"), "10.42.1.1/32");
    sim.apply(&manifest(vec![hub, dev]));
    let (now, stun) = (sim.now, sim.stun.clone());
    sim.nodes[edge].node.set_stun_servers(stun, now);
    sim.advance(Duration::ZERO);
    sim
}

fn learned(sim: &mut Sim, node: usize) -> Vec<NatMapping> {
    std::iter::from_fn(|| sim.nodes[node].node.poll_event())
        .map(|Event::NatMapping(m)| m)
        .collect()
}

#[test]
pub fn every_mapping_behaviour_is_told_from_two_stun_servers() {
    for mapping in Dependence::ALL {
        for filtering in Dependence::ALL {
            let kind = NatType { mapping, filtering };
            let mut sim = edge_behind(kind);
            let want = if mapping == Dependence::EndpointIndependent {
                NatMapping::EndpointIndependent
            } else {
                NatMapping::EndpointDependent
            };
            assert_eq!(learned(&mut sim, 1), [want], "{kind:?}");
            let reflexive = sim.nodes[1].node.reflexive_addresses();
            assert!(
                reflexive
                    .iter()
                    .all(|a| a.ip().to_string() == "198.51.100.2"),
                "{kind:?}: {reflexive:?}"
            );
        }
    }
}

#[test]
pub fn the_mapping_is_checked_again_every_five_minutes_and_a_change_is_reported() {
    let mut sim = edge_behind(NatType::MASQUERADE);
    assert_eq!(learned(&mut sim, 1), [NatMapping::EndpointIndependent]);
    // The router is replaced by one that maps per destination.
    sim.nats[0] = SimNat::new("198.51.100.2", NatType::SYMMETRIC);
    sim.advance(Duration::from_secs(299));
    assert_eq!(learned(&mut sim, 1), []);
    sim.advance(Duration::from_secs(1));
    assert_eq!(learned(&mut sim, 1), [NatMapping::EndpointDependent]);
}
