//! Permissions (per peer IP) and channel bindings (per peer address) on one allocation:
//! which the caller wants, which the server holds, and when each needs asking again.
//!
//! The server keeps a permission 300 s and a channel 600 s, and never says so; we renew
//! them a minute early (240 s, 540 s). A channel number stays tied to its peer address
//! for the binding's lifetime even after the caller drops the peer, because the server
//! refuses to bind that address to another number until it expires (RFC 8656 §12).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::channel::{MAX_CHANNEL, MIN_CHANNEL};
use super::transaction::{Request, Timings, refresh_at};

#[derive(Debug)]
struct Permission {
    /// Held by the server until then.
    installed_until: Option<Instant>,
    /// When to ask (again): refresh or retry time. `None` while a request is in flight.
    next_request: Option<Instant>,
}

#[derive(Debug)]
struct Channel {
    number: u16,
    /// The caller still wants this peer (false after `remove_peer`: kept only until the
    /// binding expires, so the number is not reused early).
    wanted: bool,
    bound_until: Option<Instant>,
    next_request: Option<Instant>,
    /// PeerReady was reported for the current allocation.
    ready_reported: bool,
}

#[derive(Debug)]
pub struct Peers {
    permissions: BTreeMap<IpAddr, Permission>,
    channels: BTreeMap<SocketAddr, Channel>,
    by_number: BTreeMap<u16, SocketAddr>,
    next_number: u16,
}

impl Default for Peers {
    fn default() -> Peers {
        Peers {
            permissions: BTreeMap::new(),
            channels: BTreeMap::new(),
            by_number: BTreeMap::new(),
            next_number: MIN_CHANNEL,
        }
    }
}

impl Peers {
    /// Wants `peer`; its permission and channel are requested at the next `poll_request`.
    /// `false` when all 4096 channel numbers are taken.
    pub fn add(&mut self, peer: SocketAddr, now: Instant) -> bool {
        if let Some(ch) = self.channels.get_mut(&peer) {
            ch.wanted = true;
        } else {
            let Some(number) = self.free_number() else {
                return false;
            };
            self.channels.insert(
                peer,
                Channel {
                    number,
                    wanted: true,
                    bound_until: None,
                    next_request: Some(now),
                    ready_reported: false,
                },
            );
            self.by_number.insert(number, peer);
        }
        self.permissions.entry(peer.ip()).or_insert(Permission {
            installed_until: None,
            next_request: Some(now),
        });
        true
    }

    /// Stops renewing `peer`'s channel, and its permission when no other wanted peer
    /// shares the IP. Both lapse on the server by themselves.
    pub fn remove(&mut self, peer: SocketAddr) {
        if let Some(ch) = self.channels.get_mut(&peer) {
            ch.wanted = false;
            if ch.bound_until.is_none() && ch.next_request.is_some() {
                let number = ch.number;
                self.channels.remove(&peer);
                self.by_number.remove(&number);
            }
        }
        let ip = peer.ip();
        if !self.channels.iter().any(|(a, c)| a.ip() == ip && c.wanted) {
            self.permissions.remove(&ip);
        }
    }

    /// The server forgot everything (new allocation): ask again for all wanted peers.
    pub fn reset(&mut self, now: Instant) {
        self.channels.retain(|_, c| c.wanted);
        self.by_number = self.channels.iter().map(|(a, c)| (c.number, *a)).collect();
        for ch in self.channels.values_mut() {
            (ch.bound_until, ch.next_request, ch.ready_reported) = (None, Some(now), false);
        }
        for perm in self.permissions.values_mut() {
            (perm.installed_until, perm.next_request) = (None, Some(now));
        }
    }

    /// The next permission or channel request due at `now`, marked in flight. Permissions
    /// first: Send indications work as soon as one is installed.
    pub fn poll_request(&mut self, now: Instant) -> Option<Request> {
        for (ip, perm) in &mut self.permissions {
            if perm.next_request.is_some_and(|t| t <= now) {
                perm.next_request = None;
                return Some(Request::CreatePermission(*ip));
            }
        }
        for (peer, ch) in &mut self.channels {
            if ch.wanted && ch.next_request.is_some_and(|t| t <= now) {
                ch.next_request = None;
                return Some(Request::ChannelBind {
                    peer: *peer,
                    channel: ch.number,
                });
            }
        }
        None
    }

    /// The server installed (or renewed) the permission for `ip`. Returns the peers that
    /// just became reachable.
    pub fn permission_installed(
        &mut self,
        ip: IpAddr,
        now: Instant,
        t: &Timings,
    ) -> Vec<SocketAddr> {
        if let Some(perm) = self.permissions.get_mut(&ip) {
            perm.installed_until = Some(now + t.permission_lifetime);
            perm.next_request = Some(refresh_at(now, t.permission_lifetime));
        }
        self.newly_ready(|a, _| a.ip() == ip)
    }

    /// The server bound the channel; that also installs the permission (RFC 8656 §12.2),
    /// though we keep renewing the permission on its own schedule in case a later
    /// ChannelBind fails.
    pub fn channel_bound(
        &mut self,
        peer: SocketAddr,
        now: Instant,
        t: &Timings,
    ) -> Vec<SocketAddr> {
        if let Some(ch) = self.channels.get_mut(&peer) {
            ch.bound_until = Some(now + t.channel_lifetime);
            ch.next_request = ch.wanted.then(|| refresh_at(now, t.channel_lifetime));
        }
        if let Some(perm) = self.permissions.get_mut(&peer.ip()) {
            let until = now + t.permission_lifetime;
            perm.installed_until = Some(perm.installed_until.map_or(until, |u| u.max(until)));
        }
        self.newly_ready(|a, _| *a == peer)
    }

    /// A permission or channel request failed; try again after `retry_after`.
    pub fn request_failed(&mut self, request: Request, now: Instant, t: &Timings) {
        let retry = Some(now + t.retry_after);
        match request {
            Request::CreatePermission(ip) => {
                if let Some(perm) = self.permissions.get_mut(&ip) {
                    perm.next_request = retry;
                }
            }
            Request::ChannelBind { peer, .. } => {
                if let Some(ch) = self.channels.get_mut(&peer) {
                    ch.next_request = retry;
                }
            }
            _ => {}
        }
    }

    /// Drops what the server no longer holds; forgets unwanted channels once expired.
    pub fn expire(&mut self, now: Instant) {
        for perm in self.permissions.values_mut() {
            if perm.installed_until.is_some_and(|t| t <= now) {
                perm.installed_until = None;
            }
        }
        for ch in self.channels.values_mut() {
            if ch.bound_until.is_some_and(|t| t <= now) {
                ch.bound_until = None;
            }
        }
        let by_number = &mut self.by_number;
        self.channels.retain(|_, c| {
            let keep = c.wanted || c.bound_until.is_some();
            if !keep {
                by_number.remove(&c.number);
            }
            keep
        });
    }

    /// The earliest time something above needs attention.
    pub fn next_timer(&self) -> Option<Instant> {
        let perms = self
            .permissions
            .values()
            .flat_map(|p| [p.next_request, p.installed_until]);
        let chans = self
            .channels
            .values()
            .flat_map(|c| [c.next_request.filter(|_| c.wanted), c.bound_until]);
        perms.chain(chans).flatten().min()
    }

    /// The channel to send to `peer` on, when bound.
    pub fn bound_channel(&self, peer: &SocketAddr) -> Option<u16> {
        self.channels
            .get(peer)
            .filter(|c| c.bound_until.is_some())
            .map(|c| c.number)
    }

    pub fn has_permission(&self, ip: &IpAddr) -> bool {
        self.permissions
            .get(ip)
            .is_some_and(|p| p.installed_until.is_some())
    }

    /// The peer a received ChannelData message came from.
    pub fn peer_of_channel(&self, number: u16) -> Option<SocketAddr> {
        self.by_number.get(&number).copied()
    }

    /// The wanted peers at `ip` (for reporting a failed permission).
    pub fn peers_at(&self, ip: IpAddr) -> Vec<SocketAddr> {
        self.channels
            .iter()
            .filter(|(a, c)| a.ip() == ip && c.wanted)
            .map(|(a, _)| *a)
            .collect()
    }

    fn newly_ready(
        &mut self,
        mut matches: impl FnMut(&SocketAddr, &Channel) -> bool,
    ) -> Vec<SocketAddr> {
        let mut ready = Vec::new();
        for (addr, ch) in &mut self.channels {
            if ch.wanted && !ch.ready_reported && matches(addr, ch) {
                ch.ready_reported = true;
                ready.push(*addr);
            }
        }
        ready
    }

    /// The next channel number not in use, wrapping within 0x4000..=0x4FFF.
    fn free_number(&mut self) -> Option<u16> {
        let span = (MAX_CHANNEL - MIN_CHANNEL + 1) as usize;
        for _ in 0..span {
            let n = self.next_number;
            self.next_number = if n == MAX_CHANNEL { MIN_CHANNEL } else { n + 1 };
            if !self.by_number.contains_key(&n) {
                return Some(n);
            }
        }
        None
    }
}
