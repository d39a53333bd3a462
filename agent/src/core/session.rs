//! The WireGuard session with one peer: the only place that touches boringtun's `Tunn`.
//!
//! `Tunn` reads the clock itself (its timers and the handshake timestamp), queues packets
//! while a handshake is in progress, and panics on a short output buffer. This wrapper
//! sizes every buffer, drains the queue, and returns owned byte buffers so the rest of
//! the core never sees a `TunnResult`.

use std::net::IpAddr;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};

use crate::keys::{PrivateKey, PublicKey};

/// WireGuard adds 32 bytes to a data packet; a handshake initiation is 148 bytes.
const OVERHEAD: usize = 32;
const MIN_BUFFER: usize = 148;

/// The kind of a WireGuard message, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    HandshakeInit,
    HandshakeResponse,
    CookieReply,
    Data,
}

impl MessageKind {
    pub fn of(datagram: &[u8]) -> Option<MessageKind> {
        // The type is a little-endian u32 whose upper three bytes are reserved zeros.
        match datagram.get(..4)? {
            [1, 0, 0, 0] => Some(MessageKind::HandshakeInit),
            [2, 0, 0, 0] => Some(MessageKind::HandshakeResponse),
            [3, 0, 0, 0] => Some(MessageKind::CookieReply),
            [4, 0, 0, 0] => Some(MessageKind::Data),
            _ => None,
        }
    }

    /// The receiver index, which names the session (and so the peer) the message is for.
    pub fn receiver_index(datagram: &[u8]) -> Option<u32> {
        match MessageKind::of(datagram)? {
            MessageKind::HandshakeInit => None,
            MessageKind::HandshakeResponse => datagram.get(8..12),
            MessageKind::CookieReply | MessageKind::Data => datagram.get(4..8),
        }
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
    }
}

/// Finds who sent a handshake initiation, by decrypting its static key with ours.
pub fn initiator_of(datagram: &[u8], own: &PrivateKey) -> Option<PublicKey> {
    let Ok(Packet::HandshakeInit(init)) = Tunn::parse_incoming_packet(datagram) else {
        return None;
    };
    let public = boringtun::x25519::PublicKey::from(own.secret());
    parse_handshake_anon(own.secret(), &public, &init)
        .ok()
        .map(|half| PublicKey(half.peer_static_public))
}

/// What came out of a datagram from the peer.
#[derive(Debug)]
pub enum Received {
    /// An IP packet for the TUN device, from this source address.
    Packet(Vec<u8>, IpAddr),
    /// Nothing for the TUN device (a keepalive, a handshake step).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("WireGuard refused the datagram: {0:?}")]
    Refused(WireGuardErrorKind),
    #[error("the handshake gave up after 90 s without an answer")]
    Expired,
}

/// boringtun's error, kept as a plain copyable value for counting and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireGuardErrorKind(&'static str);

fn kind(e: &WireGuardError) -> WireGuardErrorKind {
    WireGuardErrorKind(match e {
        WireGuardError::InvalidMac => "invalid MAC",
        WireGuardError::InvalidAeadTag => "invalid AEAD tag",
        WireGuardError::WrongKey => "wrong key",
        WireGuardError::WrongIndex => "unknown session index",
        WireGuardError::DuplicateCounter | WireGuardError::InvalidCounter => "replayed counter",
        WireGuardError::WrongTai64nTimestamp | WireGuardError::InvalidTai64nTimestamp => {
            "handshake timestamp not newer than the last one"
        }
        WireGuardError::UnderLoad => "under load (cookie needed)",
        WireGuardError::NoCurrentSession => "no current session",
        WireGuardError::UnexpectedPacket | WireGuardError::WrongPacketType => "unexpected message",
        _ => "malformed message",
    })
}

pub struct Session {
    tunn: Tunn,
}

impl Session {
    /// `index` must be unique among this node's sessions: the upper 24 bits of every
    /// receiver index the peer sends us are this value.
    pub fn new(
        own: &PrivateKey,
        peer: PublicKey,
        preshared_key: Option<[u8; 32]>,
        keepalive: Option<u16>,
        index: u32,
    ) -> Self {
        let tunn = Tunn::new(
            own.secret().clone(),
            boringtun::x25519::PublicKey::from(peer.0),
            preshared_key,
            keepalive.filter(|&k| k > 0),
            index,
            None,
        );
        Session { tunn }
    }

    /// Encrypts an IP packet, or starts a handshake and queues the packet until it is done.
    /// Returns the datagram to send, if any.
    pub fn encapsulate(&mut self, packet: &[u8], mut out: Vec<u8>) -> Option<Vec<u8>> {
        out.resize((packet.len() + OVERHEAD).max(MIN_BUFFER), 0);
        let w = match self.tunn.encapsulate(packet, &mut out) {
            TunnResult::WriteToNetwork(d) => written(d),
            _ => return None,
        };
        keep(&mut out, w);
        Some(out)
    }

    /// Decrypts a datagram from the peer. `replies` receives what must go back to the
    /// peer (a handshake response, a keepalive, packets queued behind the handshake).
    pub fn decapsulate(
        &mut self,
        from: IpAddr,
        datagram: &[u8],
        mut new_buffer: impl FnMut() -> Vec<u8>,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<Received, SessionError> {
        // boringtun panics if the output is shorter than the datagram.
        let mut out = new_buffer();
        out.resize(datagram.len().max(MIN_BUFFER), 0);
        let received = match self.tunn.decapsulate(Some(from), datagram, &mut out) {
            TunnResult::Done => Received::Nothing,
            TunnResult::Err(e) => return Err(SessionError::Refused(kind(&e))),
            TunnResult::WriteToNetwork(d) => {
                let w = written(d);
                keep(&mut out, w);
                replies.push(out);
                self.flush(&mut new_buffer, replies);
                return Ok(Received::Nothing);
            }
            TunnResult::WriteToTunnelV4(d, src) => {
                let w = written(d);
                keep(&mut out, w);
                Received::Packet(out, src.into())
            }
            TunnResult::WriteToTunnelV6(d, src) => {
                let w = written(d);
                keep(&mut out, w);
                Received::Packet(out, src.into())
            }
        };
        Ok(received)
    }

    /// Sends what boringtun queued: after a handshake completes, packets that waited.
    fn flush(&mut self, new_buffer: &mut impl FnMut() -> Vec<u8>, replies: &mut Vec<Vec<u8>>) {
        loop {
            let mut out = new_buffer();
            // Queued packets came from the TUN device; leave room for any MTU it may have.
            // This runs once per handshake, so the size costs nothing that matters.
            out.resize(u16::MAX as usize + OVERHEAD, 0);
            match self.tunn.decapsulate(None, &[], &mut out) {
                TunnResult::WriteToNetwork(d) => {
                    let w = written(d);
                    keep(&mut out, w);
                    replies.push(out);
                }
                _ => return,
            }
        }
    }

    /// Runs WireGuard's timers: retransmits, keepalives, rekeys.
    pub fn update_timers(&mut self, mut out: Vec<u8>) -> Result<Option<Vec<u8>>, SessionError> {
        out.resize(MIN_BUFFER.max(OVERHEAD), 0);
        match self.tunn.update_timers(&mut out) {
            TunnResult::WriteToNetwork(d) => {
                let w = written(d);
                keep(&mut out, w);
                Ok(Some(out))
            }
            TunnResult::Err(WireGuardError::ConnectionExpired) => Err(SessionError::Expired),
            _ => Ok(None),
        }
    }

    /// Starts a new handshake now, even if one is in progress (a path probe, or a
    /// restart after the previous attempt expired).
    pub fn initiate(&mut self, mut out: Vec<u8>) -> Option<Vec<u8>> {
        out.resize(MIN_BUFFER, 0);
        let w = match self.tunn.format_handshake_initiation(&mut out, true) {
            TunnResult::WriteToNetwork(d) => written(d),
            _ => return None,
        };
        keep(&mut out, w);
        Some(out)
    }

    pub fn time_since_last_handshake(&self) -> Option<Duration> {
        self.tunn.time_since_last_handshake()
    }
}

/// Where boringtun wrote its result: (address, length).
fn written(d: &[u8]) -> (usize, usize) {
    (d.as_ptr() as usize, d.len())
}

/// boringtun writes every result at the start of the output buffer, so keeping the
/// result is a truncation.
fn keep(out: &mut Vec<u8>, (at, len): (usize, usize)) {
    debug_assert_eq!(
        at,
        out.as_ptr() as usize,
        "boringtun wrote past the buffer start"
    );
    out.truncate(len);
}
