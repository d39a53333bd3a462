//! A relay's connection as the event loop drives it, never waiting: the core's messages
//! for the server go out as far as the socket takes them, the rest waits in a bounded
//! buffer (streams only), and what the server sends is read until the socket is empty.
//! Over TCP and TLS a message is queued whole or dropped whole, so the stream's framing
//! holds; a full buffer drops datagrams as a full UDP socket would.

use std::io;
use std::task::{Context, Poll};

use super::link::Link;

/// Bytes a stream may hold back before more are dropped: about 170 full-size datagrams,
/// a few hundred milliseconds of a slow uplink.
const PENDING_LIMIT: usize = 256 * 1024;

pub struct Pump {
    link: Link,
    /// Stream bytes the socket did not take yet.
    pending: Vec<u8>,
}

impl Pump {
    pub fn new(link: Link) -> Pump {
        Pump {
            link,
            pending: Vec::new(),
        }
    }

    pub fn is_stream(&self) -> bool {
        !matches!(self.link, Link::Udp(_))
    }

    /// Sends one message for the server. An error means the connection is broken.
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        if !self.is_stream() {
            return self.link.try_send_datagram(message);
        }
        if self.pending.len() + message.len() > PENDING_LIMIT {
            log::debug!(
                "relay stream backed up: dropped a {}-byte message",
                message.len()
            );
            return Ok(());
        }
        self.pending.extend_from_slice(message);
        self.link.try_send(&mut self.pending)
    }

    /// Writes what waits, once the socket takes more.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.is_stream() {
            self.link.try_send(&mut self.pending)
        } else {
            Ok(())
        }
    }

    /// Ready when there is something to read, or room for what waits.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let readable = self.link.poll_readable(cx).is_ready();
        let backlog = !self.pending.is_empty() || self.link.tls_backlog();
        if readable || (backlog && self.link.poll_writable(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// A datagram, or the next chunk of the stream: `WouldBlock` when there is none,
    /// `Ok(0)` when a stream was closed.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.link.try_recv(buf)
    }
}
