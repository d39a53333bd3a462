//! RFC 4787 NATs for the simulated network: a mapping behaviour and a filtering
//! behaviour (each endpoint-independent, address-dependent or address-and-port-
//! dependent), mapping timeouts, and the Linux conntrack quirk the lab found: an inbound
//! datagram that no mapping admits still leaves an entry behind, and an outbound
//! datagram of the same tuple later clashes with it and gets a random port (FACTS.md,
//! "NAT traversal"). `direct_possible` is the oracle: whether two devices behind two such
//! NATs can reach each other directly after exchanging their reflexive addresses.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What a mapping or a filter depends on, besides the internal endpoint (RFC 4787).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependence {
    EndpointIndependent,
    Address,
    AddressAndPort,
}

use Dependence::*;

impl Dependence {
    pub const ALL: [Dependence; 3] = [EndpointIndependent, Address, AddressAndPort];

    /// Every pair of NAT types (mapping × filtering on each side): 81.
    pub fn pairs_of_types() -> impl Iterator<Item = (NatType, NatType)> {
        let types: Vec<NatType> = (Self::ALL.iter())
            .flat_map(|&mapping| {
                (Self::ALL.iter()).map(move |&filtering| NatType { mapping, filtering })
            })
            .collect();
        let pairs: Vec<(NatType, NatType)> = (types.iter())
            .flat_map(|&a| types.iter().map(move |&b| (a, b)))
            .collect();
        pairs.into_iter()
    }

    /// Whether a datagram toward (or from) `a` and one toward `b` count as the same.
    fn same(self, a: SocketAddr, b: SocketAddr) -> bool {
        match self {
            EndpointIndependent => true,
            Address => a.ip() == b.ip(),
            AddressAndPort => a == b,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatType {
    pub mapping: Dependence,
    pub filtering: Dependence,
}

impl NatType {
    /// Linux MASQUERADE: the source port kept while free (endpoint-independent mapping
    /// in practice), conntrack admits only replies.
    pub const MASQUERADE: NatType = NatType {
        mapping: EndpointIndependent,
        filtering: AddressAndPort,
    };
    /// MASQUERADE --random-fully: a new port per destination.
    pub const SYMMETRIC: NatType = NatType {
        mapping: AddressAndPort,
        filtering: AddressAndPort,
    };
}

/// Whether two devices behind NATs of these types can reach each other directly, each
/// sending to the other's reflexive address (learned from a STUN server at a third
/// address) and answering where the other's datagrams come from. A's datagram reaches B
/// when B's filter admits A's mapping toward B; it is admitted for sure when A's mapping
/// is endpoint-independent (B has sent to exactly that address), and otherwise only by a
/// filter that ignores the port (the address is the same). The answer then needs the
/// same of A's filter.
pub fn direct_possible(a: NatType, b: NatType) -> bool {
    let admits = |filter: &NatType, sender: &NatType| {
        sender.mapping == EndpointIndependent || filter.filtering != AddressAndPort
    };
    // The first datagram through, either way, and its answer back.
    let a_to_b = admits(&b, &a) && admits(&a, &b);
    let b_to_a = admits(&a, &b) && admits(&b, &a);
    // An endpoint-dependent mapping is also a new one toward us, so the datagram lands on
    // a mapping made for the STUN server: only an endpoint-independent filter admits it.
    let lands = |receiver: &NatType| {
        receiver.mapping == EndpointIndependent || receiver.filtering == EndpointIndependent
    };
    (a_to_b && lands(&b)) || (b_to_a && lands(&a))
}

#[derive(Clone, Debug)]
struct Mapping {
    internal: SocketAddr,
    public_port: u16,
    /// The first destination, which an endpoint-dependent mapping is for.
    toward: SocketAddr,
    /// Every destination this mapping sent to (for filtering).
    sent_to: Vec<SocketAddr>,
    last_used: Instant,
}

#[derive(Clone, Debug)]
pub struct SimNat {
    pub public: IpAddr,
    pub kind: NatType,
    pub timeout: Duration,
    /// Linux conntrack's clash: see the module doc.
    pub clash_on_unsolicited: bool,
    /// Keeps the internal port as the public one when it is free (MASQUERADE does);
    /// off, every new mapping gets a new port (a NAT that rebinds).
    pub preserve_port: bool,
    mappings: Vec<Mapping>,
    /// Inbound tuples (remote, public port) no mapping admitted, as conntrack keeps them.
    unsolicited: Vec<(SocketAddr, u16, Instant)>,
    next_random_port: u16,
}

impl SimNat {
    pub fn new(public: &str, kind: NatType) -> SimNat {
        SimNat {
            public: public.parse().unwrap(),
            kind,
            timeout: Duration::from_secs(30),
            clash_on_unsolicited: true,
            preserve_port: true,
            mappings: Vec::new(),
            unsolicited: Vec::new(),
            next_random_port: 40000,
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        self.mappings
            .retain(|m| now.saturating_duration_since(m.last_used) < timeout);
        self.unsolicited
            .retain(|(_, _, at)| now.saturating_duration_since(*at) < timeout);
    }

    /// The public source of a datagram from `internal` to `remote`.
    pub fn outbound(
        &mut self,
        internal: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> SocketAddr {
        self.expire(now);
        let mapping = self.kind.mapping;
        let found = self
            .mappings
            .iter()
            .position(|m| m.internal == internal && mapping.same(m.toward, remote));
        // Conntrack keeps the port per flow: a new flow whose tuple an unsolicited
        // inbound entry already holds gets a port of its own, even when the socket's
        // other flows keep theirs.
        let found = found.filter(|&at| {
            let m = &self.mappings[at];
            m.sent_to.contains(&remote) || !self.clashes(remote, m.public_port)
        });
        let at = match found {
            Some(at) => at,
            None => {
                let port = self.new_port(internal.port(), remote);
                self.mappings.push(Mapping {
                    internal,
                    public_port: port,
                    toward: remote,
                    sent_to: Vec::new(),
                    last_used: now,
                });
                self.mappings.len() - 1
            }
        };
        let m = &mut self.mappings[at];
        m.last_used = now;
        if !m.sent_to.contains(&remote) {
            m.sent_to.push(remote);
        }
        SocketAddr::new(self.public, m.public_port)
    }

    /// Keeps the internal port when it is free (MASQUERADE does), unless an endpoint-
    /// dependent mapping asks for a new one per destination, or conntrack already holds
    /// an unsolicited entry for exactly this tuple (the clash).
    fn new_port(&mut self, wanted: u16, remote: SocketAddr) -> u16 {
        let taken = |p: u16| self.mappings.iter().any(|m| m.public_port == p);
        let clash = self.clashes(remote, wanted);
        let keep = self.preserve_port
            && self.kind.mapping == EndpointIndependent
            && !taken(wanted)
            && !clash;
        if keep {
            return wanted;
        }
        // "Random": a stride through 1024–65535, the same every run.
        loop {
            let offset = (u32::from(self.next_random_port) - 1024 + 7919) % (65536 - 1024);
            self.next_random_port = (offset + 1024) as u16;
            if !taken(self.next_random_port) {
                return self.next_random_port;
            }
        }
    }

    /// Whether conntrack holds an unsolicited entry from `remote` to our `port`, which an
    /// outbound flow of the same tuple would clash with.
    fn clashes(&self, remote: SocketAddr, port: u16) -> bool {
        self.clash_on_unsolicited
            && self
                .unsolicited
                .iter()
                .any(|(r, p, _)| *r == remote && *p == port)
    }

    /// The internal destination of a datagram from `remote` to our `public_port`, if a
    /// mapping admits it.
    pub fn inbound(
        &mut self,
        remote: SocketAddr,
        public_port: u16,
        now: Instant,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let filtering = self.kind.filtering;
        let admitted = self.mappings.iter_mut().find(|m| {
            m.public_port == public_port && m.sent_to.iter().any(|&s| filtering.same(s, remote))
        });
        match admitted {
            Some(m) => {
                m.last_used = now;
                Some(m.internal)
            }
            None => {
                self.unsolicited.push((remote, public_port, now));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn masquerade_keeps_the_port_and_admits_only_replies() {
        let t = Instant::now();
        let mut nat = SimNat::new("198.51.100.2", NatType::MASQUERADE);
        let out = nat.outbound(a("192.168.1.10:51820"), a("192.0.2.1:3478"), t);
        assert_eq!(out, a("198.51.100.2:51820"));
        assert_eq!(
            nat.outbound(a("192.168.1.10:51820"), a("203.0.113.9:51820"), t),
            out,
            "endpoint-independent mapping"
        );
        assert_eq!(
            nat.inbound(a("192.0.2.1:3478"), 51820, t),
            Some(a("192.168.1.10:51820"))
        );
        assert_eq!(
            nat.inbound(a("192.0.2.1:9999"), 51820, t),
            None,
            "other port"
        );
        assert_eq!(
            nat.inbound(a("192.0.2.1:3478"), 51820, t + Duration::from_secs(31)),
            None,
            "expired"
        );
    }

    #[test]
    fn symmetric_nat_maps_each_destination_anew() {
        let t = Instant::now();
        let mut nat = SimNat::new("198.51.100.3", NatType::SYMMETRIC);
        let one = nat.outbound(a("192.168.2.10:51820"), a("192.0.2.1:3478"), t);
        let two = nat.outbound(a("192.168.2.10:51820"), a("192.0.2.2:3478"), t);
        assert_ne!(one, two);
    }

    #[test]
    fn an_unsolicited_datagram_makes_the_later_outbound_one_clash() {
        let t = Instant::now();
        let mut nat = SimNat::new("198.51.100.2", NatType::MASQUERADE);
        assert_eq!(nat.inbound(a("198.51.100.3:51820"), 51820, t), None);
        let out = nat.outbound(a("192.168.1.10:51820"), a("198.51.100.3:51820"), t);
        assert_ne!(out.port(), 51820, "the clash moved it to a random port");
    }

    #[test]
    fn the_oracle_follows_rfc_4787() {
        let t = |m, f| NatType {
            mapping: m,
            filtering: f,
        };
        assert!(direct_possible(NatType::MASQUERADE, NatType::MASQUERADE));
        assert!(!direct_possible(NatType::SYMMETRIC, NatType::SYMMETRIC));
        assert!(!direct_possible(NatType::MASQUERADE, NatType::SYMMETRIC));
        // A full cone admits anything, so even a symmetric peer gets through.
        let full_cone = t(EndpointIndependent, EndpointIndependent);
        assert!(direct_possible(full_cone, NatType::SYMMETRIC));
        // A restricted cone (address-dependent filter) admits a symmetric peer's new port.
        let restricted = t(EndpointIndependent, Address);
        assert!(direct_possible(restricted, NatType::SYMMETRIC));
    }
}
