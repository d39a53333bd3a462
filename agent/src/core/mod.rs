//! The sans-IO core: every decision of the data plane, with no sockets, no clock reads
//! and no sleeps. Time comes in as an argument, so tests drive it by hand.
//!
//! The one exception is inside boringtun: its `Tunn` reads the monotonic clock for its
//! own WireGuard timers and the wall clock for handshake timestamps (see `session.rs`).

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

mod liveness;
mod node;
mod outbox;
mod packet;
mod path;
mod paths;
mod peer;
mod routes;
mod session;
pub mod topology;

#[cfg(test)]
mod tests;

pub use liveness::Health;
pub use node::{Changes, Drops, Node, Overlay};
pub use path::{Destination, Path, RelayId, Transmit};
pub use paths::RelayInfo;
pub use peer::{Peer, PeerConfig, PeerStats};
