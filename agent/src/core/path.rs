//! How a peer's datagrams are delivered, and where the core's output goes.

use std::fmt;
use std::net::SocketAddr;

/// Names one TURN relay of the manifest (its index there), as the shell knows it.
pub type RelayId = u16;

/// A way to reach a peer: straight to its address, or through our allocation on a TURN
/// relay, which forwards to the peer's address from the relay's own address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    Direct(SocketAddr),
    Relayed { relay: RelayId, peer: SocketAddr },
}

impl Path {
    /// The peer's address: where the datagrams end up.
    pub fn endpoint(&self) -> SocketAddr {
        match self {
            Path::Direct(addr) | Path::Relayed { peer: addr, .. } => *addr,
        }
    }

    pub fn relay(&self) -> Option<RelayId> {
        match self {
            Path::Direct(_) => None,
            Path::Relayed { relay, .. } => Some(*relay),
        }
    }

    /// The word `status` shows: `direct` or `relay`.
    pub fn kind(&self) -> &'static str {
        match self {
            Path::Direct(_) => "direct",
            Path::Relayed { .. } => "relay",
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Direct(addr) => write!(f, "direct {addr}"),
            Path::Relayed { relay, peer } => write!(f, "{peer} through relay #{relay}"),
        }
    }
}

/// Where a transmit goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A datagram on the node's UDP socket.
    Udp(SocketAddr),
    /// A datagram for the TURN relay to forward to `peer`. The node frames it for the
    /// relays it drives (`RelayServer`); only the simulation's relays see this.
    Relay { relay: RelayId, peer: SocketAddr },
    /// A message for relay `id`'s server: a datagram on its UDP connection, or bytes
    /// to write whole, in order, on its TCP or TLS stream.
    RelayServer(RelayId),
    /// A decrypted IP packet for the TUN device, `TUN_HEADROOM` bytes into its buffer.
    Tun,
}

/// Where a packet for the TUN device starts in its buffer: WireGuard decrypts it this far
/// in, and the shell fills the room in front with the device's virtio-net header, so the
/// packet goes to the kernel without being copied.
pub const TUN_HEADROOM: usize = 10;

impl From<Path> for Destination {
    fn from(path: Path) -> Destination {
        match path {
            Path::Direct(addr) => Destination::Udp(addr),
            Path::Relayed { relay, peer } => Destination::Relay { relay, peer },
        }
    }
}

/// Bytes the shell must deliver. The buffer goes back with `Node::recycle` after use.
#[derive(Debug)]
pub struct Transmit {
    pub destination: Destination,
    /// The bytes, behind `TUN_HEADROOM` bytes of room for `Destination::Tun` (see
    /// `bytes`).
    pub payload: Vec<u8>,
    /// The IP TTL (hop limit) to send with, when not the system's default.
    pub ttl: Option<u8>,
}

impl Transmit {
    /// The bytes to deliver: the datagram, or the IP packet without the room before it.
    pub fn bytes(&self) -> &[u8] {
        match self.destination {
            Destination::Tun => &self.payload[TUN_HEADROOM..],
            _ => &self.payload,
        }
    }
}
