//! The candidate exchange between two edges, carried inside the overlay through whatever
//! hub is there: a UDP datagram from one edge's overlay address to the other's, on
//! `SIGNAL_PORT`. A wireguard-go or Kilo hub forwards it like any other packet; the
//! receiving agent takes it before the TUN device, so it never reaches an application.
//!
//! Its authenticity rests on WireGuard: the hub admits the datagram only from the peer
//! whose allowed IPs hold its source address, and the receiver checks that the source is
//! an address of the node the message names. A punched path is used only after a
//! WireGuard handshake with the key the manifest names for that node.
//!
//! The message (all integers big-endian):
//!
//! ```text
//! "EWCX" | version (1) | kind (1: offer, 2: answer, 3: close) | flags (0) | count (≤ 8)
//! sender public key (32) | run (8) | sequence (4) | hub round trip (ms, 2) | reserved (2)
//! count × candidate: type (1: host, 2: server-reflexive, 3: relayed) | family (4 or 6)
//!                    | address (4 or 16) | port (2)
//! ```
//!
//! `run` is random per agent start and `sequence` grows within a run: the receiver drops
//! a message whose (run, sequence) it has seen or passed (a replay). The hub round trip
//! tells the answering side how long to keep its first punches from reaching the
//! offerer's NAT (see `punch.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::keys::PublicKey;

/// The UDP port on overlay addresses reserved for the candidate exchange.
pub const SIGNAL_PORT: u16 = 51821;
const MAGIC: &[u8; 4] = b"EWCX";
const VERSION: u8 = 1;
/// Candidates per message: host addresses of a few interfaces, one or two reflexive
/// addresses, a relayed one. More is someone filling memory.
pub const MAX_CANDIDATES: usize = 8;
const FIXED: usize = 8 + 32 + 8 + 4 + 2 + 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CandidateKind {
    Host,
    ServerReflexive,
    Relayed,
}

impl CandidateKind {
    /// RFC 8445 type preference: host above server-reflexive above relayed.
    pub fn preference(self) -> u8 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relayed => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "reflexive",
            CandidateKind::Relayed => "relayed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub kind: CandidateKind,
    pub addr: SocketAddr,
}

impl Candidate {
    /// The one of `candidates` at `addr`, if any.
    pub fn at(candidates: &[Candidate], addr: SocketAddr) -> Option<Candidate> {
        candidates.iter().copied().find(|c| c.addr == addr)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Offer,
    Answer,
    /// The sender's direct path to us died and it went back to the hub: so should we,
    /// now rather than when our own traffic goes unanswered.
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub kind: Kind,
    pub sender: PublicKey,
    pub run: u64,
    pub sequence: u32,
    /// The sender's round trip to its hub, in milliseconds (0: unknown).
    pub hub_rtt_ms: u16,
    pub candidates: Vec<Candidate>,
}

/// Why a message was dropped (counted, and logged once per peer per change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("not a candidate message")]
    NotOurs,
    #[error("candidate message version {0} (this agent speaks {VERSION})")]
    Version(u8),
    #[error("malformed candidate message: {0}")]
    Malformed(&'static str),
}

impl Signal {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let count = self.candidates.len().min(MAX_CANDIDATES);
        out.extend_from_slice(MAGIC);
        let kind = match self.kind {
            Kind::Offer => 1,
            Kind::Answer => 2,
            Kind::Close => 3,
        };
        out.extend_from_slice(&[VERSION, kind, 0, count as u8]);
        out.extend_from_slice(&self.sender.0);
        out.extend_from_slice(&self.run.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.hub_rtt_ms.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for c in &self.candidates[..count] {
            let kind = match c.kind {
                CandidateKind::Host => 1,
                CandidateKind::ServerReflexive => 2,
                CandidateKind::Relayed => 3,
            };
            match c.addr.ip() {
                IpAddr::V4(ip) => {
                    out.extend_from_slice(&[kind, 4]);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.extend_from_slice(&[kind, 6]);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&c.addr.port().to_be_bytes());
        }
    }

    /// Decodes a message; every length is checked before it is read.
    pub fn decode(bytes: &[u8]) -> Result<Signal, SignalError> {
        if bytes.get(..4) != Some(MAGIC.as_slice()) {
            return Err(SignalError::NotOurs);
        }
        let head = bytes
            .get(..FIXED)
            .ok_or(SignalError::Malformed("shorter than its header"))?;
        if head[4] != VERSION {
            return Err(SignalError::Version(head[4]));
        }
        let kind = match head[5] {
            1 => Kind::Offer,
            2 => Kind::Answer,
            3 => Kind::Close,
            _ => return Err(SignalError::Malformed("unknown kind")),
        };
        let count = usize::from(head[7]);
        if count > MAX_CANDIDATES {
            return Err(SignalError::Malformed("too many candidates"));
        }
        let sender = PublicKey(head[8..40].try_into().expect("32 bytes"));
        let run = u64::from_be_bytes(head[40..48].try_into().expect("8 bytes"));
        let sequence = u32::from_be_bytes(head[48..52].try_into().expect("4 bytes"));
        let hub_rtt_ms = u16::from_be_bytes([head[52], head[53]]);
        let mut rest = &bytes[FIXED..];
        let mut candidates = Vec::with_capacity(count);
        for _ in 0..count {
            let (c, tail) = candidate(rest)?;
            candidates.push(c);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(SignalError::Malformed("bytes after the last candidate"));
        }
        Ok(Signal {
            kind,
            sender,
            run,
            sequence,
            hub_rtt_ms,
            candidates,
        })
    }
}

fn candidate(bytes: &[u8]) -> Result<(Candidate, &[u8]), SignalError> {
    let truncated = SignalError::Malformed("a candidate is cut short");
    let (&kind, rest) = bytes.split_first().ok_or(truncated)?;
    let kind = match kind {
        1 => CandidateKind::Host,
        2 => CandidateKind::ServerReflexive,
        3 => CandidateKind::Relayed,
        _ => return Err(SignalError::Malformed("unknown candidate type")),
    };
    let (&family, rest) = rest.split_first().ok_or(truncated)?;
    let (ip, rest): (IpAddr, &[u8]) = match family {
        4 => {
            let b: [u8; 4] = rest.get(..4).ok_or(truncated)?.try_into().expect("4");
            (Ipv4Addr::from(b).into(), &rest[4..])
        }
        6 => {
            let b: [u8; 16] = rest.get(..16).ok_or(truncated)?.try_into().expect("16");
            (Ipv6Addr::from(b).into(), &rest[16..])
        }
        _ => return Err(SignalError::Malformed("unknown address family")),
    };
    let port = rest.get(..2).ok_or(truncated)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    if port == 0 || ip.is_unspecified() || ip.is_multicast() {
        return Err(SignalError::Malformed(
            "a candidate address nobody can send to",
        ));
    }
    let c = Candidate {
        kind,
        addr: SocketAddr::new(ip, port),
    };
    Ok((c, &rest[2..]))
}

/// An IPv4 UDP datagram from `src` to `dst` on `SIGNAL_PORT`, carrying `payload`. The
/// UDP checksum is 0 (allowed over IPv4, and WireGuard already authenticates it).
pub fn wrap_v4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8], out: &mut Vec<u8>) {
    let total = 20 + 8 + payload.len();
    let start = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let sum = checksum(&out[start..start + 20]);
    out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&SIGNAL_PORT.to_be_bytes());
    out.extend_from_slice(&SIGNAL_PORT.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

/// The payload of an IPv4 UDP datagram to `SIGNAL_PORT` on `own` addresses, if `packet`
/// is one: the source address and the payload.
pub fn unwrap_v4(packet: &[u8], own: impl Fn(IpAddr) -> bool) -> Option<(IpAddr, &[u8])> {
    if packet.first()? >> 4 != 4 || packet.get(9)? != &17 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(packet.get(16..20)?).ok()?);
    let udp = packet.get(ihl..total.min(packet.len()))?;
    let port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    if port != SIGNAL_PORT || !own(dst.into()) || ihl < 20 {
        return None;
    }
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[12..16]).ok()?);
    Some((src.into(), udp.get(8..)?))
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Signal {
        Signal {
            kind: Kind::Offer,
            sender: PublicKey([9; 32]),
            run: 0x0102_0304_0506_0708,
            sequence: 3,
            hub_rtt_ms: 42,
            candidates: vec![
                Candidate {
                    kind: CandidateKind::Host,
                    addr: "192.168.1.10:51820".parse().unwrap(),
                },
                Candidate {
                    kind: CandidateKind::ServerReflexive,
                    addr: "[2001:db8::7]:40000".parse().unwrap(),
                },
            ],
        }
    }

    #[test]
    fn a_message_survives_encoding_and_wrapping() {
        let mut payload = Vec::new();
        offer().encode(&mut payload);
        assert_eq!(payload.len(), FIXED + 8 + 20);
        assert_eq!(Signal::decode(&payload), Ok(offer()));
        let (src, dst) = (Ipv4Addr::new(10, 42, 1, 1), Ipv4Addr::new(10, 42, 2, 1));
        let mut packet = Vec::new();
        wrap_v4(src, dst, &payload, &mut packet);
        assert_eq!(checksum(&packet[..20]), 0, "a valid IPv4 header checksum");
        let (from, inner) = unwrap_v4(&packet, |a| a == IpAddr::from(dst)).unwrap();
        assert_eq!(from, IpAddr::from(src));
        assert_eq!(inner, payload.as_slice());
        assert_eq!(
            unwrap_v4(&packet, |_| false),
            None,
            "not to one of our addresses"
        );
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_another_message_never_a_panic() {
        let mut payload = Vec::new();
        offer().encode(&mut payload);
        for len in 0..payload.len() {
            assert!(Signal::decode(&payload[..len]).is_err(), "cut at {len}");
        }
        for at in 0..payload.len() {
            for bit in 0..8 {
                let mut bad = payload.clone();
                bad[at] ^= 1 << bit;
                let _ = Signal::decode(&bad);
            }
        }
        let mut long = payload.clone();
        long.push(0);
        assert!(Signal::decode(&long).is_err(), "trailing bytes");
    }

    #[test]
    fn oversized_counts_and_unknown_versions_are_refused() {
        let mut payload = Vec::new();
        offer().encode(&mut payload);
        let mut many = payload.clone();
        many[7] = 200;
        assert_eq!(
            Signal::decode(&many),
            Err(SignalError::Malformed("too many candidates"))
        );
        let mut v2 = payload;
        v2[4] = 2;
        assert_eq!(Signal::decode(&v2), Err(SignalError::Version(2)));
    }
}
