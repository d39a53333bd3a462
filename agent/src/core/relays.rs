//! The TURN relays as the core keeps them (DESIGN.md, "Paths"): one sans-IO TURN client
//! per relay server, the permissions its peers need, when to connect again and which
//! transport to try first. The shell only connects (racing the transports in the order
//! asked for here), hands over the client that allocated, and moves bytes between the
//! connection and `Node::handle_relay_bytes` / `Destination::RelayServer`.
//!
//! A relay is "up" for the peers' paths once it has an allocation and, when peers need
//! permissions, the first of them is ready: a peer moved onto it can send at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::human::Human;
use crate::turn::{Transport, TurnClient, TurnEvent};

use super::path::RelayId;

/// A pause after every transport of a relay failed, doubling up to `RETRY_MAX`: a relay
/// that is down is not hammered, and one that comes back is found within a minute.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A relay of the manifest, as the shell names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySlot {
    pub id: RelayId,
    /// The relay's host, for logs.
    pub name: String,
    /// How many transports the manifest lists for it; the shell's race takes them in
    /// the order `Event::ConnectRelay` gives.
    pub transports: usize,
}

/// One relay: its client once connected, else when to connect again.
pub(super) struct Relay {
    pub slot: RelaySlot,
    /// Out of its place only while the node handles the data it delivered (`lend`).
    client: Option<TurnClient>,
    /// The server and how it is reached, while connected (known while the client is
    /// lent out too: the data it delivers may ask for our candidates).
    server: Option<(SocketAddr, Transport)>,
    /// Permissions asked for while the client was lent out, applied when it is back.
    wanted: Option<Vec<SocketAddr>>,
    /// The shell is racing the transports; its answer is awaited.
    connecting: bool,
    /// When to ask the shell to connect, while there is no client.
    connect_at: Option<Instant>,
    /// The transport that worked last: first in the next race.
    preferred: usize,
    pause: Duration,
    /// Offered to the peers' paths (and so owed a "down").
    pub up: bool,
    /// The relayed address and the Allocate's round trip, while allocated.
    allocated: Option<(SocketAddr, Duration)>,
    /// The peer addresses the client keeps permissions and channels for.
    permissions: Vec<SocketAddr>,
}

/// What a relay's news means for the node's peers and for the shell.
pub(super) enum News {
    Up { rtt: Duration },
    Down { reason: String },
}

impl Relay {
    pub fn new(slot: RelaySlot, now: Instant) -> Relay {
        Relay {
            slot,
            client: None,
            server: None,
            wanted: None,
            connecting: false,
            connect_at: Some(now),
            preferred: 0,
            pause: RETRY_FIRST,
            up: false,
            allocated: None,
            permissions: Vec::new(),
        }
    }

    /// Whether the shell should be asked to connect now; marks the request made.
    pub fn take_connect(&mut self, now: Instant) -> Option<Vec<usize>> {
        if self.client.is_some() || self.connecting || self.connect_at.is_none_or(|t| now < t) {
            return None;
        }
        self.connecting = true;
        self.connect_at = None;
        let n = self.slot.transports.max(1);
        Some((0..n).map(|k| (self.preferred + k) % n).collect())
    }

    /// The shell's race allocated over transport `index`; `client` is that allocation.
    pub fn connected(
        &mut self,
        index: usize,
        client: TurnClient,
        permissions: &[SocketAddr],
        now: Instant,
    ) {
        self.connecting = false;
        self.preferred = index;
        self.pause = RETRY_FIRST;
        let rtt = client.rtt().unwrap_or_default();
        self.allocated = client.relayed_address().map(|relayed| (relayed, rtt));
        self.server = Some((client.config().server, client.config().transport));
        self.client = Some(client);
        self.wanted = None;
        self.permissions.clear();
        self.set_permissions(permissions, now);
    }

    /// No transport worked: ask again after a pause that doubles.
    pub fn connect_failed(&mut self, why: &str, now: Instant) {
        self.connecting = false;
        log::warn!(
            "relay {}: no transport works ({why}); retrying in {}",
            self.slot.name,
            Human(self.pause)
        );
        self.connect_at = Some(now + self.pause);
        self.pause = (self.pause * 2).min(RETRY_MAX);
    }

    /// The connection broke (or the client gave up on it): drop the client and connect
    /// again at once; its peers move now. `None` when nothing changes for the peers.
    pub fn broken(&mut self, why: &str, now: Instant) -> Option<News> {
        self.client.take()?;
        let transport = self.server.map_or("?", |(_, t)| t.name());
        log::warn!(
            "relay {} ({transport}): {why}; reconnecting",
            self.slot.name
        );
        self.allocated = None;
        self.server = None;
        self.connect_at = Some(now);
        self.take_up(why)
    }

    fn take_up(&mut self, why: &str) -> Option<News> {
        std::mem::take(&mut self.up).then(|| News::Down {
            reason: why.to_string(),
        })
    }

    /// The client, lent to the node while it handles the data the client delivered
    /// (which borrows the client's buffer). Give it back with `put_back`.
    pub fn lend(&mut self) -> Option<TurnClient> {
        self.client.take()
    }

    pub fn put_back(&mut self, client: TurnClient, now: Instant) {
        self.client = Some(client);
        if let Some(wanted) = self.wanted.take() {
            self.set_permissions(&wanted, now);
        }
    }

    pub fn client_mut(&mut self) -> Option<&mut TurnClient> {
        self.client.as_mut()
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// Keeps permissions for exactly `wanted` (once the client is back, if lent out).
    pub fn set_permissions(&mut self, wanted: &[SocketAddr], now: Instant) {
        let Some(client) = self.client.as_mut() else {
            if self.server.is_some() {
                self.wanted = Some(wanted.to_vec());
            }
            return;
        };
        for &gone in self.permissions.iter().filter(|p| !wanted.contains(p)) {
            client.remove_peer(gone);
        }
        for &new in wanted.iter().filter(|p| !self.permissions.contains(p)) {
            client.add_peer(new, now);
        }
        self.permissions = wanted.to_vec();
    }

    /// What the client reported since the last call, as news for the peers; its control
    /// messages go to `transmit`. Also decides "up" for a fresh allocation without peers.
    pub fn drain(&mut self, now: Instant, transmit: &mut dyn FnMut(Vec<u8>)) -> Vec<News> {
        let mut news = Vec::new();
        let Some(client) = self.client.as_mut() else {
            return news;
        };
        while let Some(message) = client.poll_transmit() {
            transmit(message);
        }
        let mut broken = None;
        while let Some(event) = client.poll_event() {
            match event {
                TurnEvent::Allocated { relayed, rtt, .. } => {
                    self.allocated = Some((relayed, rtt));
                }
                TurnEvent::PeerReady(_) | TurnEvent::Rtt(_) | TurnEvent::Data { .. } => {}
                TurnEvent::PeerFailed { peer, reason } => {
                    log::debug!(
                        "relay {}: no permission for {peer}: {reason}",
                        self.slot.name
                    )
                }
                TurnEvent::AllocationLost { reason } => {
                    self.allocated = None;
                    if std::mem::take(&mut self.up) {
                        news.push(News::Down {
                            reason: reason.to_string(),
                        });
                    }
                }
                TurnEvent::Failed { reason } => broken = Some(reason.to_string()),
            }
        }
        if let Some(why) = broken {
            news.extend(self.broken(&why, now));
            return news;
        }
        let ready =
            self.permissions.is_empty() || self.permissions.iter().any(|p| client.can_send(*p));
        if let Some((_, rtt)) = self.allocated.filter(|_| !self.up && ready) {
            self.up = true;
            news.push(News::Up { rtt });
        }
        news
    }

    /// Frees the allocation on the server: the manifest no longer lists the relay.
    pub fn close(&mut self, now: Instant, transmit: &mut dyn FnMut(Vec<u8>)) {
        if let Some(client) = self.client.as_mut() {
            client.close(now);
            while let Some(message) = client.poll_transmit() {
                transmit(message);
            }
        }
    }

    /// The next time anything of this relay must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.client {
            Some(client) => client.poll_timeout(),
            None if self.connecting => None,
            None => self.connect_at,
        }
    }

    /// The server and transport, and the relayed address, while up (for `status`).
    pub fn link(&self) -> Option<(SocketAddr, Transport, SocketAddr)> {
        let (server, transport) = self.server.filter(|_| self.up)?;
        let (relayed, _) = self.allocated?;
        Some((server, transport, relayed))
    }
}
