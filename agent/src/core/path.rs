//! How a peer's datagrams are delivered, and where the core's output goes.

use std::fmt;
use std::net::SocketAddr;

/// A way to reach a peer. Relayed paths (through a TURN allocation) come with the relay
/// work; everything that sends goes through this type so they slot in here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Direct(SocketAddr),
}

impl Path {
    /// The peer's address as it sees the datagrams arrive.
    pub fn endpoint(&self) -> SocketAddr {
        match self {
            Path::Direct(addr) => *addr,
        }
    }

    /// The word `status` shows.
    pub fn kind(&self) -> &'static str {
        match self {
            Path::Direct(_) => "direct",
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Direct(addr) => write!(f, "direct {addr}"),
        }
    }
}

/// Where a transmit goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A datagram on the node's UDP socket.
    Udp(SocketAddr),
    /// A decrypted IP packet for the TUN device.
    Tun,
}

impl From<Path> for Destination {
    fn from(path: Path) -> Destination {
        match path {
            Path::Direct(addr) => Destination::Udp(addr),
        }
    }
}

/// Bytes the shell must deliver. The buffer goes back with `Node::recycle` after use.
#[derive(Debug)]
pub struct Transmit {
    pub destination: Destination,
    pub payload: Vec<u8>,
}
