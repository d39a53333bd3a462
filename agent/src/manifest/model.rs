//! The decoded manifest: the overlay's nodes and relays, as the agent uses them.
//!
//! This is also the postcard payload layout of format version 1. postcard has no schema
//! evolution: never reorder, insert or remove fields or enum variants here. A change of
//! layout is a new format version with its own decoder in `envelope.rs`.

use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;
use crate::prefix::Prefix;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// A name for the overlay, shown to operators.
    pub network: String,
    /// Grows with every published manifest; a lower one is refused (anti-rollback).
    pub serial: u64,
    /// The whole overlay; routed through the preferred hub.
    pub overlay: Prefix,
    /// Unix seconds after which the manifest is refused, when the clock is trusted.
    pub expires: Option<u64>,
    pub nodes: Vec<NodeSpec>,
    /// TURN relays the nodes may use when direct UDP does not work.
    pub relays: Vec<RelaySpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    pub public_key: PublicKey,
    pub role: Role,
    /// Edges of the same site peer directly with each other.
    pub site: Option<String>,
    /// The node's own overlay addresses (on its interface, and allowed from it).
    pub addresses: Vec<Prefix>,
    /// Extra prefixes routed to this node (a pod CIDR, a lab subnet).
    pub allowed_ips: Vec<Prefix>,
    /// `host:port`; the host may be a DNS name.
    pub endpoints: Vec<String>,
    /// Persistent keepalive (seconds) that this node's peers use toward it.
    pub keepalive: Option<u16>,
    /// WireGuard preshared key used on every session with this node.
    pub preshared_key: Option<[u8; 32]>,
}

/// Never reorder: postcard encodes the variant index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Hub,
    Edge,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaySpec {
    /// `turn:HOST:PORT?transport=udp|tcp` or `turns:HOST:PORT`.
    pub url: String,
    pub username: String,
    pub password: String,
}

impl Manifest {
    pub fn node(&self, key: &PublicKey) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| &n.public_key == key)
    }
}
