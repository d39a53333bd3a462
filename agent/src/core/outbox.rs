//! Output buffers, the transmit queue and the events, kept apart from the peers so a peer
//! can fill them while it is borrowed. Buffers are reused: the hot path allocates nothing.

use std::collections::VecDeque;

use super::node::Event;
use super::path::{Destination, Transmit};

#[derive(Default)]
pub struct Outbox {
    pub transmits: VecDeque<Transmit>,
    /// What happened, for `Node::poll_event`.
    pub events: VecDeque<Event>,
    pool: Vec<Vec<u8>>,
}

/// Enough for any datagram of a 1500-byte path; bigger ones grow their buffer.
const BUFFER_CAPACITY: usize = 2048;
/// Buffers kept for reuse; more than this in flight are simply freed.
const POOL_LIMIT: usize = 256;

impl Outbox {
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL_LIMIT {
            buf.clear();
            self.pool.push(buf);
        }
    }

    pub fn push(&mut self, destination: Destination, payload: Vec<u8>) {
        self.push_with_ttl(destination, payload, None);
    }

    /// A datagram that must leave with this IP TTL (a punch meant to die past our NAT).
    pub fn push_with_ttl(&mut self, destination: Destination, payload: Vec<u8>, ttl: Option<u8>) {
        self.transmits.push_back(Transmit {
            destination,
            payload,
            ttl,
        });
    }
}
