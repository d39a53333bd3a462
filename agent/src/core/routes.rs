//! Cryptokey routing: which peer an outbound packet goes to, by longest-prefix match
//! over every peer's allowed IPs.
//!
//! Lookups mask the destination once per distinct prefix length, longest first, so the
//! cost grows with the number of lengths in use (a handful), not with the number of peers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::fastmap::FastMap;
use crate::keys::PublicKey;
use crate::prefix::Prefix;

#[derive(Default, Debug, PartialEq)]
pub struct RouteTable {
    /// Keyed by (is IPv6, prefix length); iterated longest first.
    by_len: BTreeMap<(bool, u8), FastMap<IpAddr, PublicKey>>,
}

impl RouteTable {
    /// Routes `prefix` to `peer`, replacing whatever owned exactly that prefix before.
    pub fn insert(&mut self, prefix: Prefix, peer: PublicKey) {
        let net = prefix.network();
        self.by_len
            .entry((!net.is_ipv4(), net.len()))
            .or_default()
            .insert(net.addr(), peer);
    }

    /// Removes `prefix` if `peer` owns it.
    pub fn remove(&mut self, prefix: Prefix, peer: PublicKey) {
        let net = prefix.network();
        let at = (!net.is_ipv4(), net.len());
        if let Some(nets) = self.by_len.get_mut(&at) {
            if nets.get(&net.addr()) == Some(&peer) {
                nets.remove(&net.addr());
            }
            if nets.is_empty() {
                self.by_len.remove(&at);
            }
        }
    }

    pub fn clear(&mut self) {
        self.by_len.clear();
    }

    pub fn lookup(&self, dst: IpAddr) -> Option<PublicKey> {
        let v6 = dst.is_ipv6();
        self.by_len
            .range((v6, 0)..=(v6, u8::MAX))
            .rev()
            .find_map(|(&(_, len), nets)| {
                let net = Prefix::new(dst, len).ok()?.network().addr();
                nets.get(&net).copied()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    #[test]
    fn longest_prefix_wins_over_the_overlay_route() {
        let mut t = RouteTable::default();
        t.insert("10.42.0.0/16".parse().unwrap(), key(1));
        t.insert("10.42.2.1/32".parse().unwrap(), key(2));
        t.insert("10.42.128.0/24".parse().unwrap(), key(3));
        assert_eq!(t.lookup("10.42.2.1".parse().unwrap()), Some(key(2)));
        assert_eq!(t.lookup("10.42.128.9".parse().unwrap()), Some(key(3)));
        assert_eq!(t.lookup("10.42.9.9".parse().unwrap()), Some(key(1)));
        assert_eq!(t.lookup("10.43.0.1".parse().unwrap()), None);
    }

    #[test]
    fn a_prefix_is_removed_only_by_its_owner() {
        let mut t = RouteTable::default();
        t.insert("10.42.2.1/32".parse().unwrap(), key(2));
        t.remove("10.42.2.1/32".parse().unwrap(), key(3));
        assert_eq!(t.lookup("10.42.2.1".parse().unwrap()), Some(key(2)));
        t.remove("10.42.2.1/32".parse().unwrap(), key(2));
        assert_eq!(t.lookup("10.42.2.1".parse().unwrap()), None);
    }

    #[test]
    fn families_do_not_mix() {
        let mut t = RouteTable::default();
        t.insert("0.0.0.0/0".parse().unwrap(), key(1));
        assert_eq!(t.lookup("fd00::1".parse().unwrap()), None);
        t.insert("::/0".parse().unwrap(), key(2));
        assert_eq!(t.lookup("fd00::1".parse().unwrap()), Some(key(2)));
        assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), Some(key(1)));
    }
}
