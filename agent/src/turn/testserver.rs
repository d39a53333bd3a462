//! A sans-IO TURN server for the simulations (RFC 8656 over UDP, long-term credentials):
//! Allocate with a 401 challenge, Refresh, CreatePermission, ChannelBind, Send and Data
//! indications, ChannelData, Binding. Permissions are checked as a real server checks
//! them (by the peer's IP), so a test fails where coturn would refuse. Lifetimes are not
//! enforced: allocations last until `forget`. Test builds only.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::attr::{self, Attr};
use super::{ChannelData, Class, LongTermKey, Message, Method, Writer};

pub const USER: &str = "sim";
pub const PASS: &str = "sim-pass";
const REALM: &[u8] = b"sim.test";
const NONCE: &[u8] = b"sim-nonce";

/// What the server sends: to a client (on its transport address), or from an
/// allocation's relayed address to a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    ToClient(SocketAddr, Vec<u8>),
    ToPeer {
        relayed: SocketAddr,
        peer: SocketAddr,
        payload: Vec<u8>,
    },
}

#[derive(Default)]
struct Allocation {
    relayed: Option<SocketAddr>,
    permissions: Vec<std::net::IpAddr>,
    channels: BTreeMap<u16, SocketAddr>,
}

pub struct TestTurnServer {
    /// Where relayed addresses are: `(ip, 50000 + n)` for the n-th allocation.
    pub relay_ip: std::net::IpAddr,
    allocations: BTreeMap<SocketAddr, Allocation>,
    next_port: u16,
}

impl TestTurnServer {
    pub fn new(relay_ip: std::net::IpAddr) -> TestTurnServer {
        TestTurnServer {
            relay_ip,
            allocations: BTreeMap::new(),
            next_port: 50_000,
        }
    }

    fn key() -> ring::hmac::Key {
        LongTermKey::new(USER, REALM, PASS).hmac_key()
    }

    /// Whether `relayed` is one of this server's allocations.
    pub fn owns(&self, relayed: SocketAddr) -> bool {
        self.allocations
            .values()
            .any(|a| a.relayed == Some(relayed))
    }

    /// The server lost its state (restarted): every allocation is gone.
    pub fn forget(&mut self) {
        self.allocations.clear();
    }

    /// A datagram from a client's transport address `from`.
    pub fn from_client(&mut self, from: SocketAddr, bytes: &[u8]) -> Vec<Out> {
        if let Some(cd) = ChannelData::parse(bytes) {
            let Some(a) = self.allocations.get(&from) else {
                return Vec::new();
            };
            return match (a.relayed, a.channels.get(&cd.channel)) {
                (Some(relayed), Some(&peer)) => vec![Out::ToPeer {
                    relayed,
                    peer,
                    payload: cd.payload.to_vec(),
                }],
                _ => Vec::new(),
            };
        }
        let Ok(m) = Message::parse(bytes) else {
            return Vec::new();
        };
        let get = |typ| {
            let id = m.transaction_id();
            m.attribute(typ).and_then(|v| Attr::parse(typ, v, &id).ok())
        };
        let peer = match get(attr::XOR_PEER_ADDRESS) {
            Some(Attr::XorPeerAddress(p)) => Some(p),
            _ => None,
        };
        if m.method() == Method::SEND && m.class() == Class::Indication {
            let (Some(peer), Some(Attr::Data(data))) = (peer, get(attr::DATA)) else {
                return Vec::new();
            };
            let Some(a) = self.allocations.get(&from) else {
                return Vec::new();
            };
            return match a.relayed.filter(|_| a.permissions.contains(&peer.ip())) {
                Some(relayed) => vec![Out::ToPeer {
                    relayed,
                    peer,
                    payload: data.to_vec(),
                }],
                None => Vec::new(),
            };
        }
        if m.class() != Class::Request {
            return Vec::new();
        }
        if m.method() == Method::BINDING {
            return vec![self.answer(from, &m, &[Attr::XorMappedAddress(from)], false)];
        }
        if !m.has_integrity() || !m.check_integrity(&Self::key()) {
            let challenge = [
                Attr::ErrorCode {
                    code: 401,
                    reason: b"Unauthorized",
                },
                Attr::Realm(REALM),
                Attr::Nonce(NONCE),
            ];
            return vec![self.answer(from, &m, &challenge, false)];
        }
        let method = m.method();
        if method == Method::ALLOCATE {
            let port = self.next_port;
            self.next_port += 1;
            let relayed = SocketAddr::new(self.relay_ip, port);
            let a = self.allocations.entry(from).or_default();
            let relayed = *a.relayed.get_or_insert(relayed);
            let attrs = [
                Attr::XorRelayedAddress(relayed),
                Attr::XorMappedAddress(from),
                Attr::Lifetime(600),
            ];
            return vec![self.answer(from, &m, &attrs, true)];
        }
        let Some(a) = self.allocations.get_mut(&from) else {
            let refusal = [Attr::ErrorCode {
                code: 437,
                reason: b"Allocation Mismatch",
            }];
            return vec![self.answer(from, &m, &refusal, true)];
        };
        if method == Method::CREATE_PERMISSION {
            a.permissions.extend(peer.map(|p| p.ip()));
        } else if method == Method::CHANNEL_BIND {
            if let (Some(p), Some(Attr::ChannelNumber(n))) = (peer, get(attr::CHANNEL_NUMBER)) {
                a.permissions.push(p.ip());
                a.channels.insert(n, p);
            }
        } else if method == Method::REFRESH
            && matches!(get(attr::LIFETIME), Some(Attr::Lifetime(0)))
        {
            self.allocations.remove(&from);
        }
        vec![self.answer(from, &m, &[Attr::Lifetime(600)], true)]
    }

    /// A datagram from `peer` to the relayed address `to`: relayed to its client when
    /// the client gave `peer`'s IP a permission.
    pub fn from_peer(&self, peer: SocketAddr, to: SocketAddr, payload: &[u8]) -> Option<Out> {
        let (client, a) = (self.allocations.iter()).find(|(_, a)| a.relayed == Some(to))?;
        if !a.permissions.contains(&peer.ip()) {
            return None;
        }
        let mut out = Vec::new();
        match a.channels.iter().find(|(_, p)| **p == peer) {
            Some((&number, _)) => ChannelData::emit(number, payload, false, &mut out),
            None => {
                let id = [7u8; 12];
                Writer::new(&mut out, Method::DATA, Class::Indication, id)
                    .attr(&Attr::XorPeerAddress(peer))
                    .attr(&Attr::Data(payload));
            }
        }
        Some(Out::ToClient(*client, out))
    }

    fn answer(&self, to: SocketAddr, request: &Message<'_>, attrs: &[Attr<'_>], sign: bool) -> Out {
        let class = match attrs.first() {
            Some(Attr::ErrorCode { .. }) => Class::Error,
            _ => Class::Success,
        };
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, request.method(), class, request.transaction_id());
        for a in attrs {
            w.attr(a);
        }
        if sign {
            w.integrity(&Self::key());
        }
        Out::ToClient(to, out)
    }
}
