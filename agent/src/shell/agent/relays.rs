//! The agent's side of the relays: starting and stopping them as the manifest says, and
//! passing their news to the core. Only edges use relays: hubs are reachable by
//! definition, and a relay in front of a hub would only add a hop.

use std::time::Duration;

use crate::core::RelayId;
use crate::human::Human;
use crate::manifest::{Manifest, Role};

use super::super::clock;
use super::super::relay::{self, FromRelay, Relay};

impl super::Agent<'_> {
    /// Brings the running relays to what the manifest lists, then tells each which peer
    /// addresses to keep permissions for.
    pub(super) fn sync_relays(&mut self, manifest: &Manifest, role: Role) {
        let wanted = if role == Role::Edge {
            relay::group(&manifest.relays)
        } else {
            Vec::new()
        };
        let running: Vec<_> = self.relays.iter().map(|r| r.spec.clone()).collect();
        if wanted != running {
            let now = clock::now();
            for old in self.relays.drain(..) {
                if old.up.is_some() {
                    self.node.relay_down(old.spec.id, now);
                }
            }
            if !wanted.is_empty() {
                let tls = relay::client_config(self.config.ca_file.as_deref());
                for spec in wanted {
                    log::info!("relay {}: allocating", spec.host);
                    self.relays.push(Relay::start(
                        self.ex,
                        spec,
                        tls.clone(),
                        self.relay_tx.clone(),
                        self.resolver.clone(),
                    ));
                }
            }
        }
        self.update_relay_peers();
    }

    /// The addresses the relays must accept datagrams from: every peer's direct address.
    pub(super) fn update_relay_peers(&self) {
        let peers = self.node.relay_permissions();
        for r in &self.relays {
            r.set_peers(peers.clone());
        }
    }

    pub(super) fn on_relay(&mut self, event: FromRelay) {
        let now = clock::now();
        match event {
            FromRelay::Up {
                id,
                rtt,
                server,
                kind,
                relayed,
            } => {
                if let Some(r) = self.relay_mut(id) {
                    r.up = Some((server, kind));
                }
                log::info!(
                    "relay {server} ({}) is up: relayed address {relayed}, round trip {}",
                    kind.name(),
                    Human(rtt)
                );
                self.node
                    .relay_up(id, rtt.max(Duration::from_micros(1)), now);
            }
            FromRelay::Down { id, reason } => {
                if let Some(r) = self.relay_mut(id) {
                    r.up = None;
                }
                log::warn!("relay #{id} is down: {reason}");
                self.node.relay_down(id, now);
            }
            FromRelay::Data { id, from, payload } => {
                self.node.handle_relay(id, from, &payload, now);
            }
        }
    }

    fn relay_mut(&mut self, id: RelayId) -> Option<&mut Relay> {
        self.relays.iter_mut().find(|r| r.spec.id == id)
    }

    /// Where the relay `id` is connected and how, for `status`.
    pub(super) fn relay_link(&self, id: RelayId) -> Option<(String, &'static str)> {
        let r = self.relays.iter().find(|r| r.spec.id == id)?;
        r.up.map(|(server, kind)| (server.to_string(), kind.name()))
    }

    /// Sends a datagram through relay `id`.
    pub(super) fn send_relayed(&self, id: RelayId, peer: std::net::SocketAddr, payload: Vec<u8>) {
        if let Some(r) = self.relays.iter().find(|r| r.spec.id == id) {
            r.send(peer, payload);
        }
    }
}
