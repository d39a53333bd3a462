//! This node's addresses as the internet sees them (server-reflexive, RFC 8489 Binding),
//! and what they tell about the NAT in front of it.
//!
//! Binding requests leave from the WireGuard socket itself (the node's transmits go out
//! on it), so the mapping learned is the one WireGuard's own datagrams get. With answers
//! from two servers of different addresses the NAT's mapping is classified the RFC 5780
//! way: the same reflexive address toward both is endpoint-independent mapping (a
//! simultaneous open can punch it), different ones are endpoint-dependent ("symmetric").
//!
//! A round asks every server at once, retries unanswered requests twice 500 ms apart,
//! and is judged when every server answered or gave up. Rounds repeat every 5 minutes
//! and at once when the servers or the node's own addresses change. Answers that match
//! no request of ours (wrong server, wrong transaction id, not a success) are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::turn::{Attr, Class, Message, Method, Rng, TransactionId, Writer, attr};

use super::outbox::Outbox;
use super::path::Destination;

/// How often the mapping is checked again. NATs are re-configured, uplinks change (a
/// cellular modem falls back to another carrier); a few 40-byte requests every five
/// minutes notice that without a wakeup that matters on an idle device.
pub const RECHECK: Duration = Duration::from_secs(300);
/// A request unanswered this long is sent again; after `TRIES` sends the server is left
/// out of this round.
const RETRY: Duration = Duration::from_millis(500);
const TRIES: u8 = 3;

/// The NAT's mapping behaviour (RFC 4787 §4.1), as far as the answers tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NatMapping {
    /// Fewer than two servers of different addresses answered.
    Unknown,
    /// The reflexive address is one of our own: no NAT in front of this socket.
    NoNat,
    /// The same mapping toward every destination: a simultaneous open can punch it.
    EndpointIndependent,
    /// A new mapping per destination ("symmetric"): only a relay or the hub reaches it.
    EndpointDependent,
}

impl NatMapping {
    /// The words `status` and the logs show.
    pub fn name(self) -> &'static str {
        match self {
            NatMapping::Unknown => "unknown",
            NatMapping::NoNat => "none",
            NatMapping::EndpointIndependent => "endpoint-independent",
            NatMapping::EndpointDependent => "endpoint-dependent",
        }
    }
}

impl fmt::Display for NatMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// True when `datagram` is a STUN message rather than WireGuard: the first two bits are
/// zero, bytes 4–7 are the magic cookie and the length field (bytes 2–3) counts exactly
/// the bytes after the 20-byte header (RFC 8489 §5). A WireGuard message starts with its
/// type (1–4) and three zero bytes: its "length" would be 0, and no WireGuard message is
/// 20 bytes long, so none ever matches.
pub fn is_stun(datagram: &[u8]) -> bool {
    let Some(header) = datagram.get(..20) else {
        return false;
    };
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    header[0] & 0xc0 == 0
        && header[4..8] == crate::turn::MAGIC_COOKIE.to_be_bytes()
        && datagram.len() == 20 + length
}

#[derive(Clone, Debug)]
struct Pending {
    server: SocketAddr,
    id: TransactionId,
    sent: Instant,
    tries: u8,
}

#[derive(Debug)]
pub struct Reflexive {
    servers: Vec<SocketAddr>,
    /// Our own addresses, to tell "no NAT" from a mapping.
    host: Vec<IpAddr>,
    /// This round's answers: server → the address it saw us at.
    answers: BTreeMap<SocketAddr, SocketAddr>,
    /// The last complete round's answers.
    learned: BTreeMap<SocketAddr, SocketAddr>,
    pending: Vec<Pending>,
    next_round: Option<Instant>,
    mapping: NatMapping,
    rng: Rng,
}

impl Reflexive {
    pub fn new(seed: u64) -> Reflexive {
        Reflexive {
            servers: Vec::new(),
            host: Vec::new(),
            answers: BTreeMap::new(),
            learned: BTreeMap::new(),
            pending: Vec::new(),
            next_round: None,
            mapping: NatMapping::Unknown,
            rng: Rng::new(seed),
        }
    }

    pub fn mapping(&self) -> NatMapping {
        self.mapping
    }

    /// The node's own interface addresses, as the shell last told.
    pub fn host_addresses(&self) -> &[IpAddr] {
        &self.host
    }

    /// Every distinct reflexive address the last round learned, in server order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = Vec::new();
        for a in self.learned.values() {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        all
    }

    /// The STUN servers to ask (the manifest's `stun` list and its relays). A new list
    /// starts a round now.
    pub fn set_servers(&mut self, mut servers: Vec<SocketAddr>, now: Instant) {
        servers.sort();
        servers.dedup();
        if servers != self.servers {
            self.servers = servers;
            self.restart(now);
        }
    }

    /// The node's own addresses changed (an uplink came or went): the mapping may have
    /// too.
    pub fn set_host_addresses(&mut self, mut host: Vec<IpAddr>, now: Instant) {
        host.sort();
        host.dedup();
        if host != self.host {
            self.host = host;
            self.restart(now);
        }
    }

    /// Something suggests the mapping changed (a punched path died): check now.
    pub fn recheck(&mut self, now: Instant) {
        if self.pending.is_empty() {
            self.restart(now);
        }
    }

    fn restart(&mut self, now: Instant) {
        self.pending.clear();
        self.answers.clear();
        self.next_round = (!self.servers.is_empty()).then_some(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let retries = self.pending.iter().map(|p| p.sent + RETRY);
        retries.chain(self.next_round).min()
    }

    /// Sends what is due: a new round, or retries. Returns the new mapping when a round
    /// ended with a different one.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) -> Option<NatMapping> {
        if self.next_round.is_some_and(|t| now >= t) {
            self.next_round = None;
            self.answers.clear();
            self.pending = self
                .servers
                .iter()
                .map(|&server| Pending {
                    server,
                    id: self.rng.transaction_id(),
                    sent: now,
                    tries: 0,
                })
                .collect();
        }
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.tries > 0 && now < p.sent + RETRY {
                i += 1;
                continue;
            }
            if p.tries >= TRIES {
                self.pending.swap_remove(i);
                continue;
            }
            p.tries += 1;
            p.sent = now;
            let mut buf = out.buffer();
            Writer::new(&mut buf, Method::BINDING, Class::Request, p.id);
            out.push(Destination::Udp(p.server), buf);
            i += 1;
        }
        self.finish_round(now)
    }

    /// A STUN datagram that came to the WireGuard socket. Returns the new mapping when it
    /// completed a round with a different one.
    pub fn handle(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Option<NatMapping> {
        let message = Message::parse(datagram).ok()?;
        if message.method() != Method::BINDING || message.class() != Class::Success {
            return None;
        }
        let id = message.transaction_id();
        let at = self
            .pending
            .iter()
            .position(|p| p.id == id && p.server == from)?;
        let mapped = message.attributes().find_map(|(typ, value)| {
            match Attr::parse(typ, value, &id).ok()? {
                Attr::XorMappedAddress(a) if typ == attr::XOR_MAPPED_ADDRESS => Some(a),
                Attr::MappedAddress(a) => Some(a),
                _ => None,
            }
        })?;
        self.pending.swap_remove(at);
        self.answers.insert(
            from,
            SocketAddr::new(mapped.ip().to_canonical(), mapped.port()),
        );
        self.finish_round(now)
    }

    /// Judges the round once nothing is pending, and schedules the next one.
    fn finish_round(&mut self, now: Instant) -> Option<NatMapping> {
        if !self.pending.is_empty() || self.next_round.is_some() || self.servers.is_empty() {
            return None;
        }
        self.next_round = Some(now + RECHECK);
        self.learned = std::mem::take(&mut self.answers);
        let mapping = self.classify();
        (mapping != self.mapping).then(|| {
            self.mapping = mapping;
            mapping
        })
    }

    fn classify(&self) -> NatMapping {
        let mut answers = self.learned.iter();
        let Some((first_server, first)) = answers.next() else {
            return NatMapping::Unknown;
        };
        if self.host.contains(&first.ip()) {
            return NatMapping::NoNat;
        }
        // Only a server at another IP address tells the mapping: a NAT may map per
        // destination address (RFC 4787 "address-dependent").
        let other = self
            .learned
            .iter()
            .find(|(server, _)| server.ip() != first_server.ip());
        match other {
            None => NatMapping::Unknown,
            Some((_, mapped)) if mapped == first => NatMapping::EndpointIndependent,
            Some(_) => NatMapping::EndpointDependent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A server's success answer to `request`, seeing the client at `mapped`.
    fn answer(request: &[u8], mapped: SocketAddr) -> Vec<u8> {
        let id = Message::parse(request).unwrap().transaction_id();
        let mut buf = Vec::new();
        Writer::new(&mut buf, Method::BINDING, Class::Success, id)
            .attr(&Attr::XorMappedAddress(mapped));
        buf
    }

    /// A symmetric NAT's mapping: its public address, a port that depends on the server.
    fn per_server_port(public: &str, server: SocketAddr) -> SocketAddr {
        let last = match server.ip() {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(_) => 0,
        };
        SocketAddr::new(public.parse().unwrap(), 40000 + u16::from(last))
    }

    /// Runs one round against servers that map the client with `map(server)`.
    fn round(
        r: &mut Reflexive,
        now: Instant,
        map: impl Fn(SocketAddr) -> Option<SocketAddr>,
    ) -> Option<NatMapping> {
        let mut out = Outbox::default();
        let mut learned = r.handle_timeout(now, &mut out);
        while let Some(t) = out.transmits.pop_front() {
            let Destination::Udp(server) = t.destination else {
                panic!("STUN goes on the WireGuard socket");
            };
            assert!(is_stun(&t.payload));
            if let Some(mapped) = map(server) {
                learned = learned.or(r.handle(server, &answer(&t.payload, mapped), now));
            }
        }
        learned
    }

    #[test]
    fn the_same_mapping_toward_two_servers_is_endpoint_independent() {
        let t0 = Instant::now();
        let mut r = Reflexive::new(1);
        r.set_servers(vec![addr("192.0.2.1:3478"), addr("192.0.2.2:3478")], t0);
        let learned = round(&mut r, t0, |_| Some(addr("198.51.100.2:51820")));
        assert_eq!(learned, Some(NatMapping::EndpointIndependent));
        assert_eq!(r.addresses(), [addr("198.51.100.2:51820")]);
        assert_eq!(r.poll_timeout(), Some(t0 + RECHECK));
    }

    #[test]
    fn a_new_port_per_server_is_endpoint_dependent() {
        let t0 = Instant::now();
        let mut r = Reflexive::new(1);
        r.set_servers(vec![addr("192.0.2.1:3478"), addr("192.0.2.2:3478")], t0);
        // MASQUERADE --random-fully: a new port per destination.
        let learned = round(&mut r, t0, |s| Some(per_server_port("198.51.100.2", s)));
        assert_eq!(learned, Some(NatMapping::EndpointDependent));
        assert_eq!(r.addresses().len(), 2);
    }

    #[test]
    fn our_own_address_seen_back_means_no_nat() {
        let t0 = Instant::now();
        let mut r = Reflexive::new(1);
        r.set_host_addresses(vec!["203.0.113.7".parse().unwrap()], t0);
        r.set_servers(vec![addr("192.0.2.1:3478")], t0);
        let learned = round(&mut r, t0, |_| Some(addr("203.0.113.7:51820")));
        assert_eq!(learned, Some(NatMapping::NoNat));
    }

    #[test]
    fn one_server_or_one_address_cannot_tell_the_mapping() {
        let t0 = Instant::now();
        let mut r = Reflexive::new(1);
        // Two ports of one server address: a NAT may still map per address.
        r.set_servers(vec![addr("192.0.2.1:3478"), addr("192.0.2.1:3479")], t0);
        assert_eq!(
            round(&mut r, t0, |_| Some(addr("198.51.100.2:51820"))),
            None
        );
        assert_eq!(r.mapping(), NatMapping::Unknown);
        assert_eq!(r.addresses(), [addr("198.51.100.2:51820")]);
    }

    #[test]
    fn unanswered_requests_are_retried_twice_then_the_round_ends_without_them() {
        let t0 = Instant::now();
        let mut r = Reflexive::new(1);
        let (up, dead) = (addr("192.0.2.1:3478"), addr("192.0.2.2:3478"));
        r.set_servers(vec![up, dead], t0);
        let mut sent_to_dead = 0;
        let mut t = t0;
        let mut learned = None;
        for _ in 0..10 {
            let mut out = Outbox::default();
            learned = learned.or(r.handle_timeout(t, &mut out));
            while let Some(tx) = out.transmits.pop_front() {
                match tx.destination {
                    Destination::Udp(s) if s == dead => sent_to_dead += 1,
                    Destination::Udp(s) => {
                        learned = learned.or(r.handle(
                            s,
                            &answer(&tx.payload, addr("198.51.100.2:51820")),
                            t,
                        ));
                    }
                    _ => unreachable!(),
                }
            }
            t += RETRY;
        }
        assert_eq!(sent_to_dead, TRIES);
        assert_eq!(
            r.mapping(),
            NatMapping::Unknown,
            "one answer cannot classify"
        );
        assert_eq!(r.addresses(), [addr("198.51.100.2:51820")]);
    }

    #[test]
    fn answers_that_match_no_request_of_ours_are_ignored() {
        let t0 = Instant::now();
        let mut r = Reflexive::new(1);
        let server = addr("192.0.2.1:3478");
        r.set_servers(vec![server, addr("192.0.2.2:3478")], t0);
        let mut out = Outbox::default();
        r.handle_timeout(t0, &mut out);
        let request = out.transmits.pop_front().unwrap().payload;
        let forged = answer(&request, addr("198.51.100.66:1"));
        // From another address than the server asked.
        assert_eq!(r.handle(addr("192.0.2.9:3478"), &forged, t0), None);
        // Another transaction id.
        let mut other = Vec::new();
        Writer::new(&mut other, Method::BINDING, Class::Success, [7; 12])
            .attr(&Attr::XorMappedAddress(addr("198.51.100.66:1")));
        assert_eq!(r.handle(server, &other, t0), None);
        // Garbage.
        assert_eq!(r.handle(server, &[0u8; 20], t0), None);
        assert!(r.addresses().is_empty());
    }

    #[test]
    fn a_changed_local_address_starts_a_new_round_at_once() {
        let t0 = Instant::now();
        let mut r = Reflexive::new(1);
        r.set_servers(vec![addr("192.0.2.1:3478"), addr("192.0.2.2:3478")], t0);
        round(&mut r, t0, |_| Some(addr("198.51.100.2:51820")));
        let t1 = t0 + Duration::from_secs(10);
        r.set_host_addresses(vec!["10.0.0.9".parse().unwrap()], t1);
        assert_eq!(r.poll_timeout(), Some(t1));
        let learned = round(&mut r, t1, |s| Some(per_server_port("198.51.100.3", s)));
        assert_eq!(learned, Some(NatMapping::EndpointDependent));
    }

    #[test]
    fn stun_and_wireguard_are_told_apart_by_their_first_bytes() {
        let mut binding = Vec::new();
        Writer::new(&mut binding, Method::BINDING, Class::Request, [1; 12]);
        assert!(is_stun(&binding));
        let mut wg = vec![1, 0, 0, 0];
        wg.resize(148, 0x21);
        wg[4..8].copy_from_slice(&crate::turn::MAGIC_COOKIE.to_be_bytes());
        assert!(
            !is_stun(&wg),
            "even with the cookie's bytes as its sender index"
        );
        assert!(!is_stun(&[0u8; 19]));
        assert!(!is_stun(&[0x40; 40]), "TURN ChannelData");
    }
}
