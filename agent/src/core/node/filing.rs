//! The node's bookkeeping of its peers: every peer's next deadline filed in time order
//! (so the next deadline and the peers due are found without looking at every peer), and
//! the routes, changed one peer at a time. Test builds check both after every input.

use crate::keys::PublicKey;
use crate::prefix::Prefix;

use super::super::peer::Peer;
#[cfg(test)]
use super::super::routes::RouteTable;
use super::Node;

impl Node {
    /// Files the peer's next tick (or drops it, for a peer that is gone).
    pub(super) fn reschedule(&mut self, key: PublicKey) {
        let next = self.peers.get(&key).and_then(Peer::next_tick);
        let old = match next {
            Some(t) => self.scheduled.insert(key, t),
            None => self.scheduled.remove(&key),
        };
        if old == next {
            return;
        }
        if let Some(old) = old {
            self.timers.remove(&(old, key));
        }
        if let Some(t) = next {
            self.timers.insert((t, key));
        }
    }

    /// Tests: every peer's deadline is filed, and nothing else is; the routes are those
    /// of the peers that are routable now. Checked in worlds of up to 200 peers: checking
    /// every peer at every event makes the large worlds' tests (rates over half an hour
    /// of 1,000 peers) quadratic.
    #[cfg(test)]
    pub(crate) fn check_filed(&self, at: &str) {
        if self.peers.len() > 200 {
            return;
        }
        for (k, p) in &self.peers {
            let filed = self.scheduled.get(k);
            assert_eq!(
                filed,
                p.next_tick().as_ref(),
                "{at}: {} not filed",
                p.config.name
            );
        }
        for (t, k) in &self.timers {
            assert_eq!(self.scheduled.get(k), Some(t), "{at}: a stale deadline");
            assert!(
                self.peers.contains_key(k),
                "{at}: the deadline of a peer that is gone"
            );
        }
        // Routes changed one peer at a time are the routes made from scratch.
        let mut fresh = RouteTable::default();
        for (k, p) in self.peers.iter().filter(|(_, p)| p.is_routable()) {
            for prefix in &p.config.allowed_ips {
                fresh.insert(*prefix, *k);
            }
        }
        if let (Some(o), Some(via)) = (&self.overlay, self.overlay_via) {
            fresh.insert(o.prefix, via);
        }
        assert_eq!(fresh, self.routes, "{at}: the routes drifted");
    }

    pub(super) fn reschedule_all(&mut self) {
        let keys: Vec<PublicKey> = self
            .peers
            .keys()
            .chain(self.scheduled.keys())
            .copied()
            .collect();
        for key in keys {
            self.reschedule(key);
        }
    }

    /// One peer's routability changed (or it is gone): only its prefixes move, and the
    /// overlay if it is a hub.
    pub(super) fn reroute(&mut self, key: PublicKey) {
        self.file_routes(key);
        if self.overlay.as_ref().is_some_and(|o| o.via.contains(&key)) {
            self.route_overlay();
        }
    }

    /// Routes the peer's prefixes to it, or none of them when it has no path or is down,
    /// so its traffic falls back to a shorter prefix (the overlay, through a hub).
    pub(super) fn file_routes(&mut self, key: PublicKey) {
        let want: Vec<Prefix> = self
            .peers
            .get(&key)
            .filter(|p| p.is_routable())
            .map(|p| p.config.allowed_ips.clone())
            .unwrap_or_default();
        for old in self.routed.remove(&key).unwrap_or_default() {
            if !want.contains(&old) {
                self.routes.remove(old, key);
            }
        }
        for prefix in &want {
            self.routes.insert(*prefix, key);
        }
        if !want.is_empty() {
            self.routed.insert(key, want);
        }
    }

    /// The overlay prefix to the first hub that is routable.
    pub(super) fn route_overlay(&mut self) {
        let Some(overlay) = &self.overlay else {
            self.overlay_via = None;
            return;
        };
        let hubs = || overlay.via.iter().filter(|k| self.peers.contains_key(k));
        // With every hub down, keep sending to the preferred one: that is what retries.
        let via = hubs()
            .find(|k| self.peers[k].is_routable())
            .or_else(|| hubs().next())
            .copied();
        if via != self.overlay_via {
            let name = |k: Option<PublicKey>| {
                k.and_then(|k| self.peers.get(&k))
                    .map_or("nobody".to_string(), |p| p.config.name.clone())
            };
            if self.overlay_via.is_some() {
                log::info!(
                    "overlay {} now via {} (was {})",
                    overlay.prefix,
                    name(via),
                    name(self.overlay_via)
                );
            }
            self.overlay_via = via;
        }
        match via {
            Some(via) => self.routes.insert(overlay.prefix, via),
            None => {
                let prefix = overlay.prefix;
                for hub in overlay.via.clone() {
                    self.routes.remove(prefix, hub);
                }
            }
        }
    }
}
