//! Output buffers, the transmit queue and the events, kept apart from the peers so a peer
//! can fill them while it is borrowed. Buffers are reused: the hot path allocates nothing.

use std::collections::VecDeque;

use crate::human::list_capped;

use super::node::Event;
use super::path::{Destination, Transmit};

#[derive(Default)]
pub struct Outbox {
    pub transmits: VecDeque<Transmit>,
    /// What happened, for `Node::poll_event`.
    pub events: VecDeque<Event>,
    /// Peers that never answered and just ran out of first tries, with why: logged in
    /// one line per timer run (a hub's start would otherwise log a line per peer).
    pub not_answering: Vec<(String, String)>,
    pool: Vec<Vec<u8>>,
}

/// Enough for any datagram of a 1500-byte path; bigger ones grow their buffer.
const BUFFER_CAPACITY: usize = 2048;
/// Buffers kept for reuse; more than this in flight are simply freed.
const POOL_LIMIT: usize = 256;

impl Outbox {
    /// An empty buffer.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.used_buffer();
        buf.clear();
        buf
    }

    /// A buffer still holding what it last held, for a writer that overwrites what it
    /// keeps (WireGuard's encryption and decryption): its bytes need not be zeroed again
    /// before each packet.
    pub fn used_buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    /// Frees the buffers kept for reuse (up to `POOL_LIMIT` after a burst), and the room
    /// a burst grew in the queues: 16-32 KiB of transmit queue stayed after `scripts/bench`.
    pub fn shed(&mut self) {
        self.pool = Vec::new();
        self.transmits.shrink_to_fit();
        self.events.shrink_to_fit();
        self.not_answering.shrink_to_fit();
    }

    pub fn recycle(&mut self, buf: Vec<u8>) {
        // An empty one (the TUN batch's spare before it has its own) is no use to keep.
        if self.pool.len() < POOL_LIMIT && buf.capacity() > 0 {
            self.pool.push(buf);
        }
    }

    /// Logs the peers gathered in `not_answering` since the last call, in one line.
    pub fn log_not_answering(&mut self) {
        if let Some(line) = self.not_answering_line() {
            log::info!("{line}");
        }
        self.not_answering.clear();
    }

    fn not_answering_line(&self) -> Option<String> {
        match self.not_answering.as_slice() {
            [] => None,
            [(name, why)] => Some(format!("peer {name}: not answering yet ({why}); retrying")),
            many => Some(format!(
                "{} peers not answering yet; retrying with growing pauses: {}",
                many.len(),
                list_capped(many.iter().map(|(name, _)| name))
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shedding_gives_back_what_a_burst_grew_and_keeps_what_waits() {
        let mut out = Outbox::default();
        let to = Destination::Udp("192.0.2.1:51820".parse().unwrap());
        for _ in 0..1_000 {
            let buf = out.buffer();
            out.push(to, buf);
        }
        let waiting: Vec<_> = out.transmits.drain(2..).collect();
        for t in waiting {
            out.recycle(t.payload);
        }
        out.shed();
        assert_eq!(out.transmits.len(), 2, "what waits to be sent stays");
        let room = out.transmits.capacity();
        assert!(room < 16, "the queue kept room for {room} after shedding");
        assert_eq!(out.pool.capacity(), 0);
    }

    #[test]
    fn peers_not_answering_are_one_line_however_many() {
        let mut out = Outbox::default();
        assert_eq!(out.not_answering_line(), None);
        out.not_answering
            .push(("edge-1".into(), "no answer for 1.9 s".into()));
        assert_eq!(
            out.not_answering_line().as_deref(),
            Some("peer edge-1: not answering yet (no answer for 1.9 s); retrying")
        );
        for i in 2..=1000 {
            out.not_answering
                .push((format!("edge-{i}"), "no answer for 1.9 s".into()));
        }
        let line = out.not_answering_line().unwrap_or_default();
        assert!(line.starts_with("1000 peers not answering yet"), "{line}");
        assert!(line.ends_with("edge-8 and 992 more"), "{line}");
        out.log_not_answering();
        assert!(out.not_answering.is_empty());
    }
}
