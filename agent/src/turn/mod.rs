//! A sans-IO TURN client (RFC 8656 over RFC 8489 STUN) for relayed paths: one UDP
//! allocation on a server reached over UDP, TCP or TLS, with permissions and channels for
//! the peers that use it. It never touches a socket, never reads the clock (time is an
//! argument) and draws transaction ids from a seeded generator, so tests run it with
//! simulated time. The compiler and clippy hold it to that: `unsafe_code` and
//! `clippy::disallowed_methods` (the clock and `std::fs`, listed in `agent/clippy.toml`)
//! are denied below.
//!
//! # Call order
//!
//! ```text
//! let mut c = TurnClient::new(config, seed, now);     // the first Allocate is queued
//! loop {
//!     // inputs, each followed by draining the outputs:
//!     c.handle_datagram(bytes, now)                   // UDP: Received::Data borrows `bytes`
//!     c.handle_stream(chunk); while let Some(r) = c.poll_stream(now) { .. }   // TCP/TLS
//!     c.handle_timeout(now)                           // when poll_timeout() has passed
//!     c.handle_connection_lost(now)                   // after reconnecting: new allocation
//!     c.add_peer(addr, now) / c.remove_peer(addr) / c.probe_rtt(now) / c.close(now)
//!     // outputs:
//!     while let Some(msg) = c.poll_transmit() { write msg to the server }
//!     while let Some(ev) = c.poll_event() { .. }      // Allocated, PeerReady, ...
//!     sleep until c.poll_timeout()
//! }
//! // hot path, any time after PeerReady(peer):
//! out.clear(); c.send(peer, payload, &mut out)?;      // ChannelData or Send indication
//! ```
//!
//! Control messages (`poll_transmit`) and data (`send`) go to the same socket or stream;
//! over a stream, write each whole, in the order produced.
//!
//! The files: `stun` and `attr` are the STUN wire format, `channel` ChannelData, `framing`
//! the TCP/TLS stream reassembly, `auth` the hashes (with `md5`), `transaction` request
//! timers, `peers` permissions and channels, `client` the state machine.

#![deny(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod attr;
mod auth;
mod channel;
mod client;
mod exchange;
mod framing;
mod md5;
mod peers;
mod stun;
#[cfg(test)]
pub mod testserver;
mod transaction;

// Tests take one `Instant::now()` as the start of simulated time.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod golden;
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use attr::Attr;
pub use auth::{LongTermKey, rest_credentials};
pub use channel::ChannelData;
pub use client::TurnClient;
pub use framing::MAX_FRAME;
pub use stun::{Class, MAGIC_COOKIE, Message, Method, TransactionId, Writer};
pub use transaction::{Request, Rng, Timings};

/// How the client reaches the server. The allocation itself is always UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP with TLS; the shell does the TLS, the client only sees the plaintext stream.
    Tls,
}

impl Transport {
    /// The word logs and `status` show.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Stream transports need framing (padding, reassembly) and no retransmissions.
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// The server's address; informational for the client (the shell connects to it).
    pub server: SocketAddr,
    pub transport: Transport,
    /// Long-term credentials: static ones, or minted with [`rest_credentials`].
    pub username: String,
    pub password: String,
    /// Sent as SOFTWARE in Allocate and Binding requests; empty for none.
    pub software: String,
    pub timings: Timings,
}

/// What the client reports; drain with [`TurnClient::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// The server gave us a relayed address. `rtt` is from the Allocate exchange.
    Allocated {
        relayed: SocketAddr,
        mapped: SocketAddr,
        lifetime: Duration,
        rtt: Duration,
    },
    /// Data can flow to and from this peer through the relay.
    PeerReady(SocketAddr),
    /// The server refused (or did not answer) the permission or channel for this peer;
    /// the client asks again after `Timings::retry_after`.
    PeerFailed { peer: SocketAddr, reason: Reason },
    /// Relayed data, only from [`TurnClient::handle_input`] (the borrowing calls return
    /// it instead).
    Data { from: SocketAddr, payload: Vec<u8> },
    /// The answer to [`TurnClient::probe_rtt`].
    Rtt(Duration),
    /// No allocation can be had from this server; the client stays idle until
    /// [`TurnClient::handle_connection_lost`] starts over.
    Failed { reason: Reason },
    /// The allocation we had is gone (expired, refused on refresh, connection lost).
    /// Peers that used it must be re-routed; the client is already allocating anew.
    AllocationLost { reason: Reason },
}

/// Why something failed, in words a log line can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Timeout,
    /// 401 with the realm and nonce we had used: wrong username or password.
    Unauthorized,
    /// 486: the server's per-user allocation quota is used up.
    QuotaReached,
    /// 437: the server holds another allocation for our address and port.
    AllocationMismatch,
    /// 300: the server redirects us.
    TryAlternate(SocketAddr),
    /// The server kept answering 438 Stale Nonce.
    StaleNonceLoop,
    /// The response carried a comprehension-required attribute we do not know.
    UnknownAttribute(u16),
    Malformed(&'static str),
    Server {
        code: u16,
        reason: String,
    },
    /// An error (400) to an Allocate that carried our credentials: most likely a wrong
    /// username or password, from a server that does not say so with 401 (pion).
    CredentialsRefused {
        code: u16,
        reason: String,
    },
    Expired,
    ConnectionLost,
    /// All 4096 channel numbers are in use.
    ChannelsExhausted,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Timeout => write!(f, "no answer from the TURN server"),
            Reason::Unauthorized => write!(
                f,
                "the TURN server refused the credentials (401): check the relay's username and password"
            ),
            Reason::QuotaReached => write!(
                f,
                "the TURN server's allocation quota for this user is reached (486)"
            ),
            Reason::AllocationMismatch => write!(
                f,
                "the TURN server holds another allocation for this address and port (437)"
            ),
            Reason::TryAlternate(a) => write!(f, "the TURN server redirects to {a} (300)"),
            Reason::StaleNonceLoop => write!(f, "the TURN server keeps rejecting nonces (438)"),
            Reason::UnknownAttribute(t) => {
                write!(
                    f,
                    "the TURN server sent an unknown required attribute {t:#06x}"
                )
            }
            Reason::Malformed(what) => write!(f, "malformed answer from the TURN server: {what}"),
            Reason::Server { code, reason } => {
                write!(f, "TURN error {}", ErrorText(*code, reason))
            }
            Reason::CredentialsRefused { code, reason } => write!(
                f,
                "the TURN server refused the allocation with our credentials (TURN error {}): \
                 the username or password is likely wrong; check the relay's credentials in \
                 the manifest (or the secret they are minted from)",
                ErrorText(*code, reason)
            ),
            Reason::Expired => write!(f, "the allocation expired without a successful refresh"),
            Reason::ConnectionLost => write!(f, "the connection to the TURN server was lost"),
            Reason::ChannelsExhausted => write!(f, "all TURN channel numbers are in use"),
        }
    }
}

/// An error code with the server's reason, or the standard phrase when it sent none:
/// never a trailing space.
struct ErrorText<'a>(u16, &'a str);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ErrorText(code, reason) = *self;
        let reason = reason.trim();
        let reason = if reason.is_empty() {
            match code {
                300 => "Try Alternate",
                400 => "Bad Request",
                401 => "Unauthorized",
                403 => "Forbidden",
                420 => "Unknown Attribute",
                437 => "Allocation Mismatch",
                438 => "Stale Nonce",
                440 => "Address Family not Supported",
                441 => "Wrong Credentials",
                442 => "Unsupported Transport Protocol",
                443 => "Peer Address Family Mismatch",
                486 => "Allocation Quota Reached",
                500 => "Server Error",
                508 => "Insufficient Capacity",
                _ => "",
            }
        } else {
            reason
        };
        if reason.is_empty() {
            write!(f, "{code}")
        } else {
            write!(f, "{code} {reason}")
        }
    }
}

/// What one input turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received<'a> {
    /// Relayed application data from `from` (ChannelData or a Data indication).
    Data { from: SocketAddr, payload: &'a [u8] },
    /// A control message, consumed: drain the pollers.
    Control,
    /// Dropped, for a reason worth counting.
    Ignored(Ignored),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    Malformed,
    /// A response to no transaction of ours, or a message class we do not take.
    Unexpected,
    /// ChannelData on a channel we did not bind.
    UnknownChannel,
    /// A response whose MESSAGE-INTEGRITY does not match our key.
    BadIntegrity,
    /// A stream frame larger than [`MAX_FRAME`], skipped.
    TooLarge,
    /// The stream lost its framing: reconnect, then `handle_connection_lost`.
    StreamCorrupt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    NotAllocated,
    /// No permission for the peer's IP yet (`add_peer`, then wait for `PeerReady`).
    NoPermission,
    TooLarge,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotAllocated => "the relay has no allocation",
            SendError::NoPermission => "the relay has no permission for this peer yet",
            SendError::TooLarge => "the payload is too large for TURN framing",
        })
    }
}

impl std::error::Error for SendError {}

/// What the next deadline is for (see [`TurnClient::poll_timeout_with_reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Retransmission or deadline of this request.
    Transaction(Request),
    Refresh,
    Expiry,
    /// Allocate again after freeing a stale allocation (437).
    Reallocate,
    /// A permission or channel to renew, retry or expire.
    Peers,
}
