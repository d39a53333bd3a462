//! The agent's side of the relays: connections. The core owns the TURN clients and asks
//! for connections (`Event::ConnectRelay`); this races the transports, hands the winner's
//! client to the core, and moves the bytes between the connections and the core on the
//! loop. Only edges use relays: hubs are reachable by definition, and a relay in front
//! of a hub would only add a hop.

use std::io;

use crate::core::{RelayId, RelaySlot};
use crate::manifest::{Manifest, Role};

use super::super::clock;
use super::super::pages::Pages;
use super::super::relay::{self, Raced, Relay};

/// Reads from one connection per wake-up before the loop flushes.
const READS: usize = 64;

impl super::Agent<'_> {
    /// Brings the relays to what the manifest lists. Any change restarts them all, as a
    /// changed relay may have new credentials: the old allocations are freed first.
    pub(super) async fn sync_relays(&mut self, manifest: &Manifest, role: Role) {
        let wanted = if role == Role::Edge {
            relay::group(&manifest.relays)
        } else {
            Vec::new()
        };
        let running: Vec<_> = self.relays.iter().map(|r| r.spec.clone()).collect();
        if wanted != running {
            if !running.is_empty() {
                self.node.set_relays(Vec::new(), clock::now());
                self.flush().await;
            }
            self.relays = wanted.into_iter().map(Relay::new).collect();
            let slots = (self.relays.iter())
                .map(|r| RelaySlot {
                    id: r.spec.id,
                    name: r.spec.host.clone(),
                    transports: r.spec.candidates.len(),
                })
                .collect();
            self.node.set_relays(slots, clock::now());
        }
        self.node.update_relay_permissions(clock::now());
    }

    /// The core wants relay `id` connected, trying its transports in `order`.
    pub(super) fn connect_relay(&mut self, id: RelayId, order: Vec<usize>) {
        let Some(r) = self.relays.iter_mut().find(|r| r.spec.id == id) else {
            return;
        };
        log::info!("relay {}: allocating", r.spec.host);
        let tls = self
            .relay_tls
            .get_or_insert_with(|| relay::client_config(self.config.ca_file.as_deref()))
            .clone();
        r.race(
            self.ex,
            order,
            tls,
            self.resolver.clone(),
            self.relay_tx.clone(),
        );
    }

    pub(super) fn on_raced(&mut self, raced: Raced) {
        let now = clock::now();
        match raced {
            Raced::Connected {
                id,
                index,
                established,
            } => {
                if let Some(r) = self.relays.iter_mut().find(|r| r.spec.id == id) {
                    let client = r.connected(*established);
                    self.node.relay_connected(id, index, client, now);
                }
            }
            Raced::Failed { id, why } => {
                if let Some(r) = self.relays.iter_mut().find(|r| r.spec.id == id) {
                    r.race_failed();
                    self.node.relay_connect_failed(id, &why, now);
                }
            }
        }
    }

    /// Relay number `i`'s connection is ready: reads what the server sent into the core
    /// and writes what waited.
    pub(super) fn pump_relay(&mut self, i: usize) {
        let now = clock::now();
        let id = self.relays[i].spec.id;
        let Some(pump) = self.relays[i].pump.as_mut() else {
            return;
        };
        if self.relay_buf.is_empty() {
            self.relay_buf = Pages::zeroed(super::RECV_BUFFER);
        }
        // Relayed packets are traffic too: the buffers stay while they come.
        self.shed_at = Some(now + super::SHED_AFTER);
        let stream = pump.is_stream();
        let mut broken = pump
            .flush()
            .err()
            .map(|e| format!("sending to the server: {e}"));
        for _ in 0..READS {
            if broken.is_some() {
                break;
            }
            match pump.try_recv(&mut self.relay_buf) {
                Ok(0) if stream => broken = Some("the server closed the connection".into()),
                Ok(n) => self.node.handle_relay_bytes(id, &self.relay_buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The server's host says nothing listens there any more (ICMP port
                // unreachable): the relay is gone, and its peers should move now rather
                // than when their own traffic goes unanswered.
                Err(e) if !stream && e.kind() == io::ErrorKind::ConnectionRefused => {
                    broken = Some("the server's port is closed (the relay is not running)".into())
                }
                // Other ICMP errors from UDP sends surface here; the TURN timers decide.
                Err(e) if !stream => {
                    log::debug!("relay #{id}: {e}");
                    break;
                }
                Err(e) => broken = Some(format!("connection: {e}")),
            }
        }
        if let Some(why) = broken {
            self.relays[i].pump = None;
            self.node.relay_link_lost(id, &why, now);
        }
    }

    /// Sends a message of the core to relay `id`'s server.
    pub(super) fn send_to_relay(&mut self, id: RelayId, message: &[u8]) {
        let Some(r) = self.relays.iter_mut().find(|r| r.spec.id == id) else {
            return;
        };
        let Some(pump) = r.pump.as_mut() else {
            return;
        };
        if let Err(e) = pump.send(message) {
            r.pump = None;
            self.node
                .relay_link_lost(id, &format!("sending to the server: {e}"), clock::now());
        }
    }

    /// Where the relay `id` is connected and how, for `status`.
    pub(super) fn relay_link(&self, id: RelayId) -> Option<(String, &'static str)> {
        let (server, transport, _) = self.node.relay_link(id)?;
        Some((server.to_string(), transport.name()))
    }
}

/// Ready when any relay's connection is: its index.
pub(super) fn poll_relays(
    relays: &[Relay],
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<usize> {
    for (i, r) in relays.iter().enumerate() {
        if let Some(pump) = &r.pump
            && pump.poll_ready(cx).is_ready()
        {
            return std::task::Poll::Ready(i);
        }
    }
    std::task::Poll::Pending
}
