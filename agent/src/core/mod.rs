//! The sans-IO core: every decision of the data plane, with no sockets, no clock reads
//! and no sleeps. Time comes in as an argument, so tests drive it by hand.
//!
//! boringtun's timers run on a clock the core sets to `now` before every call (see
//! `session.rs`); the one clock read left inside it is the wall clock a `Tunn` reads once
//! when it is made, for its handshake timestamps.

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

mod fastmap;
mod liveness;
mod mesh;
mod node;
mod outbox;
mod packet;
mod path;
mod paths;
mod peer;
mod punch;
mod reflexive;
mod relays;
mod routes;
mod session;
mod signal;
pub mod topology;

#[cfg(test)]
mod tests;

pub use liveness::Health;
pub use node::{Changes, Drops, Event, Node, Overlay, SwitchReason};
pub use path::{Destination, Path, RelayId, TUN_HEADROOM, Transmit};
pub use paths::RelayInfo;
pub use peer::{Peer, PeerConfig, PeerStats};
pub use reflexive::{NatMapping, is_stun};
pub use relays::RelaySlot;
pub use session::boringtun_peer;
pub use signal::{Candidate, CandidateKind};
