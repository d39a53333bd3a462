//! Sessions made on demand with edges of other sites, as the node drives them: the first
//! packet toward such an edge through a hub starts the exchange of candidates, messages
//! from the other side are taken before the TUN, and a session that is over goes back to
//! the hub. The rules live in `mesh.rs`, `signal.rs` and `punch.rs`; this is the glue
//! that touches the node's peers, routes and deadlines.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::keys::PublicKey;
use crate::manifest::Role;
use crate::prefix::Prefix;

use super::super::mesh::Ended;
use super::super::packet;
use super::super::peer::{PeerConfig, Punched};
use super::super::punch::Punch;
use super::super::signal::{self, Kind};
use super::{Event, Node, SwitchReason};

impl Node {
    /// The edges of other sites this node may reach directly, made on demand (see
    /// `mesh.rs`): each with its allowed IPs and preshared key for this pair. Sessions
    /// made with edges no longer listed end.
    pub fn set_remote_edges(&mut self, directory: BTreeMap<PublicKey, PeerConfig>, now: Instant) {
        self.mesh.set_directory(directory);
        let gone: Vec<PublicKey> = self
            .punched
            .iter()
            .filter(|k| !self.mesh.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.end_punched(key, Ended::Removed, now);
        }
    }

    /// This node's overlay addresses and WireGuard port: the source of its candidate
    /// messages and the port of its host candidates.
    pub fn set_own_addresses(&mut self, addresses: Vec<Prefix>, listen_port: u16) {
        self.mesh.set_own(addresses, listen_port);
    }

    /// A packet toward an edge of another site is about to go through a hub: the first
    /// one starts the exchange of candidates and a session made for that edge alone.
    pub(super) fn maybe_start_exchange(&mut self, dst: IpAddr, via: PublicKey, now: Instant) {
        if self
            .peers
            .get(&via)
            .is_none_or(|p| p.config.role != Role::Hub)
        {
            return;
        }
        let Some(key) = self.mesh.exchange_wanted(dst, now) else {
            return;
        };
        if self.peers.contains_key(&key) {
            return;
        }
        let Some(config) = self.mesh.config(&key) else {
            return;
        };
        log::info!(
            "peer {}: traffic through the hub; offering candidates for a direct path",
            config.name
        );
        self.add_punched(key, config, now);
        self.offer(key, now);
    }

    /// Sends our offer to `key` (again, while unanswered).
    pub(super) fn offer(&mut self, key: PublicKey, now: Instant) {
        self.send_signal(key, Kind::Offer, now);
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.offered(now);
        }
        self.reschedule(key);
    }

    pub(super) fn add_punched(&mut self, key: PublicKey, config: PeerConfig, now: Instant) {
        self.add_peer(key, config, now);
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.punched = Some(Punched {
                made: now,
                punch: None,
                next_offer: None,
                offers: 0,
                theirs: Vec::new(),
            });
        }
        self.punched.insert(key);
    }

    /// Sends our candidates to `to` through the overlay (the hub that carries it).
    pub(super) fn send_signal(&mut self, to: PublicKey, kind: Kind, now: Instant) {
        let host = self.reflexive.host_addresses().to_vec();
        let relayed: Vec<_> = self
            .turn
            .iter()
            .filter_map(|r| r.link())
            .map(|l| l.2)
            .collect();
        let candidates = self
            .mesh
            .candidates(&host, &self.reflexive.addresses(), &relayed);
        let hub_rtt = self.overlay_via().and_then(|p| p.rtt());
        let from = self.public_key();
        let Some(packet) = self.mesh.message(&to, kind, from, candidates, hub_rtt) else {
            log::debug!("no IPv4 overlay address to send candidates from or to");
            return;
        };
        let Some((_, dst)) = packet::addresses(&packet) else {
            return;
        };
        let Some(via) = self.routes.lookup(dst) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(&via) {
            peer.send_packet(&packet, &mut self.out, now);
        }
        self.reschedule(via);
    }

    /// A candidate message for us, decrypted from `carrier` (a hub that forwarded it).
    pub(super) fn take_signal(
        &mut self,
        carrier: PublicKey,
        src: IpAddr,
        payload: &[u8],
        now: Instant,
    ) {
        let through_hub = self
            .peers
            .get(&carrier)
            .is_some_and(|p| p.config.role == Role::Hub);
        let taken = if through_hub {
            self.mesh.take(src, payload)
        } else {
            Err(signal::SignalError::Malformed("not forwarded by a hub"))
        };
        let message = match taken {
            Ok(m) => m,
            Err(e) => {
                self.drops.bad_signals += 1;
                log::debug!("dropped a candidate message from {src}: {e}");
                return;
            }
        };
        let key = message.sender;
        let their_hub_rtt = message.hub_rtt_ms;
        let open_wait = match message.kind {
            Kind::Offer => {
                if !self.peers.contains_key(&key) {
                    let Some(config) = self.mesh.config(&key) else {
                        return;
                    };
                    self.add_punched(key, config, now);
                }
                self.send_signal(key, Kind::Answer, now);
                let own_rtt = self.overlay_via().and_then(|p| p.rtt());
                Punch::open_wait(own_rtt, their_hub_rtt)
            }
            Kind::Answer => std::time::Duration::ZERO,
            Kind::Close => {
                if self.punched.contains(&key) {
                    self.end_punched(key, Ended::OtherSideClosed, now);
                }
                return;
            }
        };
        let Some(peer) = self.peers.get_mut(&key).filter(|p| p.punched.is_some()) else {
            return;
        };
        if peer.path().is_some() {
            // Already direct: the other side starts over (it restarted, or lost us).
            return;
        }
        log::info!(
            "peer {}: punching toward {} candidate(s)",
            peer.config.name,
            message.candidates.len()
        );
        peer.start_punch(message.candidates, open_wait, now);
        self.reschedule(key);
        // Their datagrams may come through our relays (our relayed candidate).
        self.update_relay_permissions(now);
    }

    /// Drops a session made on demand; its traffic stays with the hub. When its direct
    /// path died, the other side hears it through the hub (so it does not wait for its
    /// own traffic to go unanswered), and both sides learn their NAT's mapping again.
    pub(super) fn end_punched(&mut self, key: PublicKey, why: Ended, now: Instant) {
        if why == Ended::PathDied {
            self.send_signal(key, Kind::Close, now);
        }
        // Either side's NAT may be what changed, and the side whose NAT moved does not
        // always notice first: both learn their mapping again before the next offer.
        if matches!(why, Ended::PathDied | Ended::OtherSideClosed) {
            self.reflexive.recheck(now);
        }
        self.punched.remove(&key);
        if let Some(peer) = self.peers.remove(&key) {
            self.by_index.remove(&peer.index);
            if peer.path().is_some() {
                self.out.events.push_back(Event::PathSwitched {
                    peer: peer.config.name.clone(),
                    why: SwitchReason::BackToHub,
                });
            }
            let level = if why == Ended::Idle {
                log::Level::Debug
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "peer {}: direct session ended ({}); through the hub",
                peer.config.name,
                why.describe()
            );
        }
        self.reschedule(key);
        self.reroute(key);
        self.mesh.ended(key, why, now);
        self.update_relay_permissions(now);
    }
}
