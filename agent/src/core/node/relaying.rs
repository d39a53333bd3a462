//! The TURN clients, as the node drives them: which relays exist, bytes from their
//! servers, their timers, and what their news means for the peers' paths. The rules of
//! one relay live in `relays.rs`; the shell connects and moves bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::turn::{Ignored, Received, Transport, TurnClient};

use super::super::path::{Destination, Path, RelayId};
use super::super::relays::{News, Relay, RelaySlot};
use super::{Event, Node};

impl Node {
    /// The relays the manifest lists (an edge's; a hub has none). A relay no longer
    /// listed frees its allocation (drain the transmits before closing its connection)
    /// and its peers move at once; a new one is connected (`Event::ConnectRelay`).
    pub fn set_relays(&mut self, slots: Vec<RelaySlot>, now: Instant) {
        let mut kept = Vec::new();
        for mut relay in std::mem::take(&mut self.turn) {
            if slots.contains(&relay.slot) {
                kept.push(relay);
                continue;
            }
            let id = relay.slot.id;
            let out = &mut self.out;
            relay.close(now, &mut |bytes| {
                out.push(Destination::RelayServer(id), bytes)
            });
            if relay.up {
                self.relay_news(
                    id,
                    News::Down {
                        reason: "no longer in the manifest".into(),
                    },
                    now,
                );
            }
        }
        for slot in slots {
            if !kept.iter().any(|r| r.slot == slot) {
                kept.push(Relay::new(slot, now));
            }
        }
        self.turn = kept;
        self.request_connects(now);
    }

    /// The shell's race allocated on relay `id` over its transport number `index`.
    pub fn relay_connected(&mut self, id: RelayId, index: usize, client: TurnClient, now: Instant) {
        let permissions = self.relay_permissions();
        if let Some(relay) = self.turn.iter_mut().find(|r| r.slot.id == id) {
            relay.connected(index, client, &permissions, now);
        }
        self.drain_relay(id, now);
    }

    /// No transport of relay `id` worked (`why` says what each did).
    pub fn relay_connect_failed(&mut self, id: RelayId, why: &str, now: Instant) {
        if let Some(relay) = self.turn.iter_mut().find(|r| r.slot.id == id) {
            relay.connect_failed(why, now);
        }
    }

    /// The connection to relay `id` broke: the shell dropped it. A new one is asked for.
    pub fn relay_link_lost(&mut self, id: RelayId, why: &str, now: Instant) {
        let news = self.relay_mut(id).and_then(|r| r.broken(why, now));
        if let Some(news) = news {
            self.relay_news(id, news, now);
        }
        self.request_connects(now);
    }

    /// Bytes from relay `id`'s server: a datagram over UDP, a piece of the stream over
    /// TCP or TLS. Relayed WireGuard datagrams go to their peers like any other.
    pub fn handle_relay_bytes(&mut self, id: RelayId, bytes: &[u8], now: Instant) {
        // Out of `self` while its data is handled: the payloads borrow its buffer.
        let Some(mut client) = self.relay_mut(id).and_then(Relay::lend) else {
            return;
        };
        let mut corrupt = false;
        if client.config().transport.is_stream() {
            client.handle_stream(bytes);
            while let Some(received) = client.poll_stream(now) {
                match received {
                    Received::Data { from, payload } => self.handle_datagram(
                        Path::Relayed {
                            relay: id,
                            peer: from,
                        },
                        payload,
                        now,
                    ),
                    Received::Ignored(Ignored::StreamCorrupt) => {
                        corrupt = true;
                        break;
                    }
                    Received::Ignored(_) | Received::Control => {}
                }
            }
        } else if let Received::Data { from, payload } = client.handle_datagram(bytes, now) {
            self.handle_datagram(
                Path::Relayed {
                    relay: id,
                    peer: from,
                },
                payload,
                now,
            );
        }
        if let Some(relay) = self.relay_mut(id) {
            relay.put_back(client, now);
        }
        if corrupt {
            self.relay_link_lost(id, "the stream from the server is corrupt", now);
        } else {
            self.drain_relay(id, now);
        }
    }

    /// Where relay `id` is connected, how, and its relayed address, while it is up.
    pub fn relay_link(&self, id: RelayId) -> Option<(SocketAddr, Transport, SocketAddr)> {
        self.turn.iter().find(|r| r.slot.id == id)?.link()
    }

    /// Keeps each relay's permissions to what the peers need: after the peers or their
    /// endpoints changed.
    pub fn update_relay_permissions(&mut self, now: Instant) {
        if self.turn.is_empty() {
            return;
        }
        let wanted = self.relay_permissions();
        let ids: Vec<RelayId> = self.turn.iter().map(|r| r.slot.id).collect();
        for relay in &mut self.turn {
            relay.set_permissions(&wanted, now);
        }
        for id in ids {
            self.drain_relay(id, now);
        }
    }

    /// Every address a relay must be allowed to forward from (TURN permissions): the
    /// peers' direct addresses, and for a session made on demand the other side's
    /// candidates and path (it may reach us through our relayed candidate).
    pub fn relay_permissions(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .peers
            .values()
            .flat_map(|p| {
                p.direct_candidates()
                    .iter()
                    .copied()
                    .chain(p.punch_addresses())
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The relays' timers, and the connections due again.
    pub(super) fn relay_timers(&mut self, now: Instant) {
        let due: Vec<RelayId> = (self.turn.iter())
            .filter(|r| r.is_connected() && r.poll_timeout().is_some_and(|t| now >= t))
            .map(|r| r.slot.id)
            .collect();
        for id in due {
            if let Some(client) = self.relay_mut(id).and_then(Relay::client_mut) {
                client.handle_timeout(now);
            }
            self.drain_relay(id, now);
        }
        self.request_connects(now);
    }

    pub(super) fn relay_timeout(&self) -> Option<Instant> {
        self.turn.iter().filter_map(Relay::poll_timeout).min()
    }

    /// Frames a datagram for a peer behind relay `id` into a message for its server.
    /// `None` when the relay cannot carry it now (not allocated, no permission yet): it
    /// is dropped, as a full socket would. A relay the node does not drive (the
    /// simulation's) passes it on as it is.
    pub(super) fn frame_relayed(
        &mut self,
        id: RelayId,
        peer: SocketAddr,
        payload: &[u8],
    ) -> Option<Option<Vec<u8>>> {
        let Some(relay) = self.turn.iter_mut().find(|r| r.slot.id == id) else {
            return Some(None);
        };
        let client = relay.client_mut()?;
        let mut framed = self.out.buffer();
        match client.send(peer, payload, &mut framed) {
            Ok(()) => Some(Some(framed)),
            Err(e) => {
                log::debug!("relay {}: not sent to {peer}: {e:?}", relay.slot.name);
                self.out.recycle(framed);
                None
            }
        }
    }

    fn relay_mut(&mut self, id: RelayId) -> Option<&mut Relay> {
        self.turn.iter_mut().find(|r| r.slot.id == id)
    }

    fn drain_relay(&mut self, id: RelayId, now: Instant) {
        let out = &mut self.out;
        let Some(relay) = self.turn.iter_mut().find(|r| r.slot.id == id) else {
            return;
        };
        let news = relay.drain(now, &mut |bytes| {
            out.push(Destination::RelayServer(id), bytes)
        });
        for news in news {
            self.relay_news(id, news, now);
        }
        self.request_connects(now);
    }

    fn relay_news(&mut self, id: RelayId, news: News, now: Instant) {
        match news {
            News::Up { rtt } => {
                if let Some((server, transport, relayed)) = self.relay_link(id) {
                    log::info!(
                        "relay {server} ({transport}) is up: relayed address {relayed}, round trip {}",
                        crate::human::Human(rtt)
                    );
                }
                self.out.events.push_back(Event::RelayUp { id, rtt });
                self.relay_up(id, rtt.max(Duration::from_micros(1)), now);
            }
            News::Down { reason } => {
                log::warn!("relay #{id} is down: {reason}");
                self.out.events.push_back(Event::RelayDown { id });
                self.relay_down(id, now);
            }
        }
    }

    fn request_connects(&mut self, now: Instant) {
        for relay in &mut self.turn {
            if let Some(order) = relay.take_connect(now) {
                let id = relay.slot.id;
                self.out.events.push_back(Event::ConnectRelay { id, order });
            }
        }
    }
}
