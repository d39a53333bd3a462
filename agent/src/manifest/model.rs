//! The decoded manifest: the overlay's nodes and relays, as the agent uses them.
//!
//! This is also the postcard payload layout of format version 2; version 1 is the same
//! without `stun` (see `ManifestV1`). postcard has no schema evolution: never reorder,
//! insert or remove fields or enum variants here. A change of layout is a new format
//! version with its own decoder in `envelope.rs`.

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
    /// STUN servers (`host:port`) devices learn their reflexive addresses from, besides
    /// the relays. Format version 2 on; a manifest without any is written as version 1.
    pub stun: Vec<String>,
}

/// The payload layout of format version 1: `Manifest` without `stun`. Frozen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestV1 {
    pub network: String,
    pub serial: u64,
    pub overlay: Prefix,
    pub expires: Option<u64>,
    pub nodes: Vec<NodeSpec>,
    pub relays: Vec<RelaySpec>,
}

impl From<ManifestV1> for Manifest {
    fn from(v1: ManifestV1) -> Manifest {
        Manifest {
            network: v1.network,
            serial: v1.serial,
            overlay: v1.overlay,
            expires: v1.expires,
            nodes: v1.nodes,
            relays: v1.relays,
            stun: Vec::new(),
        }
    }
}

impl Manifest {
    /// The version-1 layout, when nothing of version 2 is used.
    pub fn as_v1(&self) -> Option<ManifestV1> {
        self.stun.is_empty().then(|| ManifestV1 {
            network: self.network.clone(),
            serial: self.serial,
            overlay: self.overlay,
            expires: self.expires,
            nodes: self.nodes.clone(),
            relays: self.relays.clone(),
        })
    }
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
