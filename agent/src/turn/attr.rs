//! STUN and TURN attributes (RFC 8489 §14, RFC 8656 §18): typed values parsed from and
//! emitted to attribute bodies. Variable-length values borrow the received bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::stun::{Error, MAGIC_COOKIE, TransactionId};

pub const MAPPED_ADDRESS: u16 = 0x0001;
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000a;
pub const CHANNEL_NUMBER: u16 = 0x000c;
pub const LIFETIME: u16 = 0x000d;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA: u16 = 0x0013;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const EVEN_PORT: u16 = 0x0018;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const DONT_FRAGMENT: u16 = 0x001a;
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001c;
pub const PASSWORD_ALGORITHM: u16 = 0x001d;
pub const USERHASH: u16 = 0x001e;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const RESERVATION_TOKEN: u16 = 0x0022;
pub const SOFTWARE: u16 = 0x8022;
pub const ALTERNATE_SERVER: u16 = 0x8023;
pub const FINGERPRINT: u16 = 0x8028;

/// REQUESTED-TRANSPORT's protocol number for a UDP allocation.
pub const TRANSPORT_UDP: u8 = 17;

/// Comprehension-required attributes (0x0000–0x7FFF) a response may carry that this
/// client understands. Any other one makes the response a failure (RFC 8489 §7.3.3).
pub fn is_understood(typ: u16) -> bool {
    typ >= 0x8000
        || matches!(
            typ,
            MAPPED_ADDRESS
                | USERNAME
                | MESSAGE_INTEGRITY
                | ERROR_CODE
                | UNKNOWN_ATTRIBUTES
                | CHANNEL_NUMBER
                | LIFETIME
                | XOR_PEER_ADDRESS
                | DATA
                | REALM
                | NONCE
                | XOR_RELAYED_ADDRESS
                | REQUESTED_ADDRESS_FAMILY
                | EVEN_PORT
                | REQUESTED_TRANSPORT
                | DONT_FRAGMENT
                | MESSAGE_INTEGRITY_SHA256
                | PASSWORD_ALGORITHM
                | USERHASH
                | XOR_MAPPED_ADDRESS
                | RESERVATION_TOKEN
        )
}

/// One attribute. `Other` keeps any type this module does not decode, so a message can
/// be re-encoded byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr<'a> {
    MappedAddress(SocketAddr),
    XorMappedAddress(SocketAddr),
    XorRelayedAddress(SocketAddr),
    XorPeerAddress(SocketAddr),
    AlternateServer(SocketAddr),
    Username(&'a [u8]),
    Realm(&'a [u8]),
    Nonce(&'a [u8]),
    Software(&'a [u8]),
    ErrorCode { code: u16, reason: &'a [u8] },
    Lifetime(u32),
    RequestedTransport(u8),
    Data(&'a [u8]),
    ChannelNumber(u16),
    MessageIntegrity([u8; 20]),
    Fingerprint(u32),
    Other { typ: u16, value: &'a [u8] },
}

impl<'a> Attr<'a> {
    /// Decodes the value of an attribute of type `typ`; `id` unmasks XOR addresses.
    pub fn parse(typ: u16, value: &'a [u8], id: &TransactionId) -> Result<Attr<'a>, Error> {
        let bad = Error::BadAttribute(typ);
        let fixed = |n: usize| {
            if value.len() == n {
                Ok(value)
            } else {
                Err(bad)
            }
        };
        Ok(match typ {
            MAPPED_ADDRESS => Attr::MappedAddress(address(value, None).ok_or(bad)?),
            ALTERNATE_SERVER => Attr::AlternateServer(address(value, None).ok_or(bad)?),
            XOR_MAPPED_ADDRESS => Attr::XorMappedAddress(address(value, Some(id)).ok_or(bad)?),
            XOR_RELAYED_ADDRESS => Attr::XorRelayedAddress(address(value, Some(id)).ok_or(bad)?),
            XOR_PEER_ADDRESS => Attr::XorPeerAddress(address(value, Some(id)).ok_or(bad)?),
            USERNAME => Attr::Username(value),
            REALM => Attr::Realm(value),
            NONCE => Attr::Nonce(value),
            SOFTWARE => Attr::Software(value),
            DATA => Attr::Data(value),
            ERROR_CODE => {
                if value.len() < 4 {
                    return Err(bad);
                }
                let class = (value[2] & 0x07) as u16;
                Attr::ErrorCode {
                    code: class * 100 + value[3] as u16,
                    reason: &value[4..],
                }
            }
            LIFETIME => {
                let v = fixed(4)?;
                Attr::Lifetime(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            REQUESTED_TRANSPORT => Attr::RequestedTransport(fixed(4)?[0]),
            CHANNEL_NUMBER => {
                let v = fixed(4)?;
                Attr::ChannelNumber(u16::from_be_bytes([v[0], v[1]]))
            }
            MESSAGE_INTEGRITY => {
                let mut mac = [0u8; 20];
                mac.copy_from_slice(fixed(20)?);
                Attr::MessageIntegrity(mac)
            }
            FINGERPRINT => {
                let v = fixed(4)?;
                Attr::Fingerprint(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            _ => Attr::Other { typ, value },
        })
    }

    pub fn typ(&self) -> u16 {
        match self {
            Attr::MappedAddress(_) => MAPPED_ADDRESS,
            Attr::XorMappedAddress(_) => XOR_MAPPED_ADDRESS,
            Attr::XorRelayedAddress(_) => XOR_RELAYED_ADDRESS,
            Attr::XorPeerAddress(_) => XOR_PEER_ADDRESS,
            Attr::AlternateServer(_) => ALTERNATE_SERVER,
            Attr::Username(_) => USERNAME,
            Attr::Realm(_) => REALM,
            Attr::Nonce(_) => NONCE,
            Attr::Software(_) => SOFTWARE,
            Attr::ErrorCode { .. } => ERROR_CODE,
            Attr::Lifetime(_) => LIFETIME,
            Attr::RequestedTransport(_) => REQUESTED_TRANSPORT,
            Attr::Data(_) => DATA,
            Attr::ChannelNumber(_) => CHANNEL_NUMBER,
            Attr::MessageIntegrity(_) => MESSAGE_INTEGRITY,
            Attr::Fingerprint(_) => FINGERPRINT,
            Attr::Other { typ, .. } => *typ,
        }
    }

    /// Appends the value (without header or padding).
    pub fn emit_value(&self, out: &mut Vec<u8>, id: &TransactionId) {
        match self {
            Attr::MappedAddress(a) | Attr::AlternateServer(a) => emit_address(out, *a, None),
            Attr::XorMappedAddress(a) | Attr::XorRelayedAddress(a) | Attr::XorPeerAddress(a) => {
                emit_address(out, *a, Some(id))
            }
            Attr::Username(v)
            | Attr::Realm(v)
            | Attr::Nonce(v)
            | Attr::Software(v)
            | Attr::Data(v)
            | Attr::Other { value: v, .. } => out.extend_from_slice(v),
            Attr::ErrorCode { code, reason } => {
                out.extend_from_slice(&[0, 0, (code / 100) as u8 & 0x07, (code % 100) as u8]);
                out.extend_from_slice(reason);
            }
            Attr::Lifetime(s) => out.extend_from_slice(&s.to_be_bytes()),
            Attr::RequestedTransport(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Attr::ChannelNumber(n) => {
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attr::MessageIntegrity(mac) => out.extend_from_slice(mac),
            Attr::Fingerprint(crc) => out.extend_from_slice(&crc.to_be_bytes()),
        }
    }
}

/// A (XOR-)address value: reserved byte, family (1 = IPv4, 2 = IPv6), port, address.
/// With `xor`, the port is masked with the cookie's top half and the address with the
/// cookie (IPv4) or cookie and transaction id (IPv6).
fn address(value: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    let mask = xor_mask(xor);
    let port_mask = if xor.is_some() {
        (MAGIC_COOKIE >> 16) as u16
    } else {
        0
    };
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ port_mask;
    let ip = match (value[1], value.len()) {
        (1, 8) => {
            let mut b = [0u8; 4];
            for (i, o) in b.iter_mut().enumerate() {
                *o = value[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (2, 20) => {
            let mut b = [0u8; 16];
            for (i, o) in b.iter_mut().enumerate() {
                *o = value[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn emit_address(out: &mut Vec<u8>, addr: SocketAddr, xor: Option<&TransactionId>) {
    let mask = xor_mask(xor);
    let port_mask = if xor.is_some() {
        (MAGIC_COOKIE >> 16) as u16
    } else {
        0
    };
    let family = if addr.is_ipv4() { 1 } else { 2 };
    out.extend_from_slice(&[0, family]);
    out.extend_from_slice(&(addr.port() ^ port_mask).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
        IpAddr::V6(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
    }
}

/// The magic cookie followed by the transaction id, or zeros for a plain address.
fn xor_mask(xor: Option<&TransactionId>) -> [u8; 16] {
    let mut mask = [0u8; 16];
    if let Some(id) = xor {
        mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        mask[4..].copy_from_slice(id);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    fn round_trip(attr: Attr<'_>) {
        let mut value = Vec::new();
        attr.emit_value(&mut value, &ID);
        assert_eq!(Attr::parse(attr.typ(), &value, &ID), Ok(attr));
    }

    #[test]
    fn every_attribute_survives_emit_then_parse() {
        let v4: SocketAddr = "203.0.113.7:3478".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:51820".parse().unwrap();
        for a in [v4, v6] {
            round_trip(Attr::XorMappedAddress(a));
            round_trip(Attr::XorRelayedAddress(a));
            round_trip(Attr::XorPeerAddress(a));
            round_trip(Attr::MappedAddress(a));
            round_trip(Attr::AlternateServer(a));
        }
        round_trip(Attr::Username(b"alice"));
        round_trip(Attr::Realm(b"edgewire.test"));
        round_trip(Attr::Nonce(b"0123456789abcdef"));
        round_trip(Attr::Software(b"edgewire"));
        round_trip(Attr::ErrorCode {
            code: 438,
            reason: b"Stale Nonce",
        });
        round_trip(Attr::Lifetime(600));
        round_trip(Attr::RequestedTransport(TRANSPORT_UDP));
        round_trip(Attr::Data(b"payload"));
        round_trip(Attr::ChannelNumber(0x4001));
        round_trip(Attr::MessageIntegrity([9; 20]));
        round_trip(Attr::Fingerprint(0xdead_beef));
        round_trip(Attr::Other {
            typ: 0x802b,
            value: b"\x00\x01\x0d\x96\xcb\x00\x71\x0a",
        });
    }

    #[test]
    fn decodes_the_rfc_5769_ipv6_xor_mapped_address() {
        // RFC 5769 §2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
        let value = [
            0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        let want: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        assert_eq!(
            Attr::parse(XOR_MAPPED_ADDRESS, &value, &ID),
            Ok(Attr::XorMappedAddress(want))
        );
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for typ in [
            XOR_MAPPED_ADDRESS,
            XOR_PEER_ADDRESS,
            MAPPED_ADDRESS,
            ERROR_CODE,
            LIFETIME,
            CHANNEL_NUMBER,
            REQUESTED_TRANSPORT,
            MESSAGE_INTEGRITY,
            FINGERPRINT,
        ] {
            for len in 0..3 {
                assert!(Attr::parse(typ, &[1; 3][..len], &ID).is_err(), "{typ:#x}");
            }
        }
        // IPv4 family with an IPv6 length, unknown family.
        assert!(Attr::parse(XOR_PEER_ADDRESS, &[0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8], &ID).is_err());
        assert!(Attr::parse(XOR_PEER_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4], &ID).is_err());
    }

    #[test]
    fn only_known_comprehension_required_attributes_are_understood() {
        assert!(is_understood(XOR_RELAYED_ADDRESS));
        assert!(is_understood(0x802b)); // optional, e.g. RESPONSE-ORIGIN
        assert!(!is_understood(0x0030));
        assert!(!is_understood(0x7fff));
    }
}
