//! The TURN client's public API: inputs, mutators, pollers and getters over the
//! exchange state and the TCP/TLS stream buffer. No I/O and no clock: see [`crate::turn`]
//! for the order of calls.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::attr::Attr;
use super::channel::ChannelData;
use super::exchange::{Exchange, State};
use super::framing::{Frame, FrameKind, StreamBuffer};
use super::peers::Peers;
use super::stun::{Class, Method, Writer};
use super::transaction::{Request, Rng};
use super::{Ignored, Reason, Received, SendError, Timer, TurnConfig, TurnEvent};

/// The largest payload a Send indication can carry: the 16-bit length minus the
/// XOR-PEER-ADDRESS (IPv6) and DATA headers.
const MAX_SEND_PAYLOAD: usize = 0xffff - 24 - 4;

/// A TURN client for one server. See [`crate::turn`] for the call order.
pub struct TurnClient {
    x: Exchange,
    stream: StreamBuffer,
}

impl TurnClient {
    /// A client that starts allocating at once: the first Allocate is in `poll_transmit`.
    pub fn new(config: TurnConfig, seed: u64, now: Instant) -> TurnClient {
        let mut x = Exchange {
            config,
            rng: Rng::new(seed),
            state: State::Allocating {
                mismatches: 0,
                retry_at: None,
            },
            auth: None,
            transactions: Vec::new(),
            peers: Peers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rtt: None,
            mapped: None,
        };
        x.start_request(Request::Allocate, now, 0);
        TurnClient {
            x,
            stream: StreamBuffer::new(),
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &TurnConfig {
        &self.x.config
    }

    pub fn is_allocated(&self) -> bool {
        matches!(self.x.state, State::Allocated(_))
    }

    /// The address peers send to (our relayed transport address), once allocated.
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        match &self.x.state {
            State::Allocated(a) => Some(a.relayed),
            _ => None,
        }
    }

    /// Our address as the server sees it (server-reflexive), once allocated.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.x.mapped.filter(|_| self.is_allocated())
    }

    /// The latest round-trip time to the server, from a request answered without
    /// retransmission.
    pub fn rtt(&self) -> Option<Duration> {
        self.x.rtt
    }

    /// Whether `send` to `peer` would succeed now.
    pub fn can_send(&self, peer: SocketAddr) -> bool {
        self.is_allocated()
            && (self.x.peers.bound_channel(&peer).is_some()
                || self.x.peers.has_permission(&peer.ip()))
    }

    // ---- inputs ----

    /// One UDP datagram from the server. Relayed data comes back borrowed from
    /// `datagram`; control messages update the state (then drain the pollers).
    pub fn handle_datagram<'a>(&mut self, datagram: &'a [u8], now: Instant) -> Received<'a> {
        debug_assert!(!self.x.config.transport.is_stream());
        match datagram.first().map(|b| b >> 6) {
            // The hot path: a map lookup, no timers, no allocation.
            Some(0b01) => channel_data(&self.x.peers, datagram),
            Some(0b00) => {
                let received = self.x.handle_stun(datagram, now);
                if received == Received::Control {
                    self.drive(now);
                }
                received
            }
            _ => Received::Ignored(Ignored::Malformed),
        }
    }

    /// A chunk of the TCP/TLS byte stream from the server. Then call
    /// [`TurnClient::poll_stream`] until it returns `None`.
    pub fn handle_stream(&mut self, chunk: &[u8]) {
        debug_assert!(self.x.config.transport.is_stream());
        self.stream.push(chunk);
    }

    /// The next frame of the stream: relayed data borrowed from the reassembly buffer
    /// (valid until the next call), or the effect of a control message. After
    /// `Ignored(StreamCorrupt)` the connection must be replaced: reconnect and call
    /// [`TurnClient::handle_connection_lost`].
    pub fn poll_stream(&mut self, now: Instant) -> Option<Received<'_>> {
        let frame = self.stream.next_frame()?;
        let received = match frame {
            Frame::Complete {
                kind: FrameKind::ChannelData,
                bytes,
            } => channel_data(&self.x.peers, bytes),
            Frame::Complete {
                kind: FrameKind::Stun,
                bytes,
            } => {
                // The frame borrows `self.stream`; the exchange is a separate field.
                let received = self.x.handle_stun(bytes, now);
                if received == Received::Control {
                    self.x.drive(now);
                }
                received
            }
            Frame::Skipped => Received::Ignored(Ignored::TooLarge),
            Frame::Corrupt => Received::Ignored(Ignored::StreamCorrupt),
        };
        Some(received)
    }

    /// Either transport, with relayed data turned into owned [`TurnEvent::Data`] events:
    /// simpler than the borrowing calls above, at the cost of a copy per packet.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if !self.x.config.transport.is_stream() {
            if let Received::Data { from, payload } = self.handle_datagram(bytes, now) {
                let payload = payload.to_vec();
                self.x.events.push_back(TurnEvent::Data { from, payload });
            }
            return;
        }
        self.handle_stream(bytes);
        loop {
            let data = match self.poll_stream(now) {
                None => break,
                Some(Received::Data { from, payload }) => Some((from, payload.to_vec())),
                Some(_) => None,
            };
            if let Some((from, payload)) = data {
                self.x.events.push_back(TurnEvent::Data { from, payload });
            }
        }
    }

    /// Timers: retransmissions, transaction deadlines, refreshes and expiries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.x.handle_timeout(now);
        self.drive(now);
    }

    /// The connection to the server was replaced (TCP/TLS reconnected, or a new UDP
    /// socket): everything tied to the old one is gone. Starts a new allocation on the
    /// new one; reports [`TurnEvent::AllocationLost`] if there was one. Also the way to
    /// try again after [`TurnEvent::Failed`].
    pub fn handle_connection_lost(&mut self, now: Instant) {
        if matches!(self.x.state, State::Closed) {
            return;
        }
        self.stream.reset();
        self.x.transmits.clear();
        self.x.auth = None; // coturn's nonces belong to the old connection
        self.x.restart(now, Reason::ConnectionLost);
    }

    // ---- mutators ----

    /// Keeps a permission and a channel for `peer` for as long as it is wanted.
    /// [`TurnEvent::PeerReady`] says when data can flow.
    pub fn add_peer(&mut self, peer: SocketAddr, now: Instant) {
        if !self.x.peers.add(peer, now) {
            self.x.events.push_back(TurnEvent::PeerFailed {
                peer,
                reason: Reason::ChannelsExhausted,
            });
        }
        self.drive(now);
    }

    /// Stops renewing `peer`'s permission and channel; they lapse on the server.
    pub fn remove_peer(&mut self, peer: SocketAddr) {
        self.x.peers.remove(peer);
    }

    /// Sends a Binding request to measure the round-trip time; answered by
    /// [`TurnEvent::Rtt`]. One at a time.
    pub fn probe_rtt(&mut self, now: Instant) {
        if !self
            .x
            .transactions
            .iter()
            .any(|t| t.request == Request::Binding)
        {
            self.start_request(Request::Binding, now, 0);
        }
    }

    /// Frees the allocation on the server (Refresh with lifetime 0). The client is done
    /// afterwards: drain `poll_transmit` once more.
    pub fn close(&mut self, now: Instant) {
        let allocated = self.is_allocated();
        self.x.transactions.clear();
        self.x.state = State::Closed;
        if allocated {
            self.start_request(Request::Refresh { lifetime: Some(0) }, now, 0);
        }
    }

    /// Frames `payload` for `peer` and appends it to `out` (which the caller clears and
    /// reuses: nothing is allocated here once it has grown). ChannelData (4 bytes of
    /// overhead) once the channel is bound, else a Send indication (36 or 48 bytes).
    pub fn send(
        &mut self,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if !self.is_allocated() {
            return Err(SendError::NotAllocated);
        }
        if let Some(number) = self.x.peers.bound_channel(&peer) {
            if payload.len() > u16::MAX as usize {
                return Err(SendError::TooLarge);
            }
            ChannelData::emit(number, payload, self.x.config.transport.is_stream(), out);
            return Ok(());
        }
        if !self.x.peers.has_permission(&peer.ip()) {
            return Err(SendError::NoPermission);
        }
        if payload.len() > MAX_SEND_PAYLOAD {
            return Err(SendError::TooLarge);
        }
        let id = self.x.rng.transaction_id();
        Writer::new(out, Method::SEND, Class::Indication, id)
            .attr(&Attr::XorPeerAddress(peer))
            .attr(&Attr::Data(payload));
        Ok(())
    }

    // ---- outputs ----

    /// The next control message to write to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.x.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.x.events.pop_front()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_timeout_with_reason().map(|(at, _)| at)
    }

    /// The next deadline and what it is for, for logs.
    pub fn poll_timeout_with_reason(&self) -> Option<(Instant, Timer)> {
        let tx = self
            .x
            .transactions
            .iter()
            .map(|t| (t.next_timer(), Timer::Transaction(t.request)))
            .min_by_key(|(at, _)| *at);
        let alloc = match &self.x.state {
            State::Allocated(a) => Some(match a.refresh_at {
                Some(at) => (at, Timer::Refresh),
                None => (a.expires, Timer::Expiry),
            }),
            State::Allocating {
                retry_at: Some(at), ..
            } => Some((*at, Timer::Reallocate)),
            _ => None,
        };
        let peers = match self.x.state {
            State::Allocated(_) => self.x.peers.next_timer().map(|at| (at, Timer::Peers)),
            _ => None,
        };
        [tx, alloc, peers]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    // ---- internals ----

    fn start_request(&mut self, request: Request, now: Instant, stale_nonces: u8) {
        self.x.start_request(request, now, stale_nonces);
    }

    fn drive(&mut self, now: Instant) {
        self.x.drive(now);
    }
}

/// ChannelData from the server: the peer comes from the channel number we bound.
fn channel_data<'a>(peers: &Peers, bytes: &'a [u8]) -> Received<'a> {
    let Some(cd) = ChannelData::parse(bytes) else {
        return Received::Ignored(Ignored::Malformed);
    };
    match peers.peer_of_channel(cd.channel) {
        Some(from) => Received::Data {
            from,
            payload: cd.payload,
        },
        None => Received::Ignored(Ignored::UnknownChannel),
    }
}
