//! STUN messages (RFC 8489 §5, §14): a checked view over received bytes and a writer that
//! appends messages to a caller's buffer.
//!
//! ```text
//!  0                   1                   2                   3
//! |0 0|     STUN Message Type     |         Message Length        |
//! |                         Magic Cookie                          |
//! |                     Transaction ID (96 bits)                  |
//! |  Type  |  Length  |  Value (padded to 4 bytes)  | ...         |
//! ```
//!
//! [`Message::parse`] walks every attribute header once, so afterwards nothing indexes
//! past the end and no accessor can panic, whatever the peer sent.

use ring::hmac;

use super::attr::{self, Attr};
use super::auth::{FINGERPRINT_XOR, crc32, hmac_sha1};

pub const MAGIC_COOKIE: u32 = 0x2112_a442;
pub const HEADER_LEN: usize = 20;
const INTEGRITY_LEN: usize = 20;

pub type TransactionId = [u8; 12];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// A STUN method (12 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method(pub u16);

impl Method {
    pub const BINDING: Method = Method(0x001);
    pub const ALLOCATE: Method = Method(0x003);
    pub const REFRESH: Method = Method(0x004);
    pub const SEND: Method = Method(0x006);
    pub const DATA: Method = Method(0x007);
    pub const CREATE_PERMISSION: Method = Method(0x008);
    pub const CHANNEL_BIND: Method = Method(0x009);
}

/// The 14-bit message type: the class bits C1 C0 sit at bits 8 and 4, between the
/// method's bits (RFC 8489 §5, figure 3).
pub fn message_type(method: Method, class: Class) -> u16 {
    let m = method.0 & 0x0fff;
    let c = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

fn split_type(t: u16) -> (Method, Class) {
    let m = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0b00 => Class::Request,
        0b01 => Class::Indication,
        0b10 => Class::Success,
        _ => Class::Error,
    };
    (Method(m), class)
}

/// Why received bytes are not a STUN message we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its header or its length field says.
    Truncated,
    /// Leading bits, magic cookie or length alignment are not STUN's.
    NotStun,
    /// An attribute runs past the end, or MESSAGE-INTEGRITY / FINGERPRINT are malformed
    /// or misplaced.
    BadAttribute(u16),
}

/// A received message whose structure has been checked.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    /// Offset of the MESSAGE-INTEGRITY attribute header.
    integrity: Option<usize>,
    /// Offset of the FINGERPRINT attribute header (always the last attribute).
    fingerprint: Option<usize>,
}

impl<'a> Message<'a> {
    /// Checks the header and walks the attribute headers. `bytes` must be exactly one
    /// message (the framing layer or the datagram boundary gives us that).
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        if bytes[0] & 0xc0 != 0
            || be32(&bytes[4..8]) != MAGIC_COOKIE
            || !len.is_multiple_of(4)
            || bytes.len() > HEADER_LEN + len
        {
            return Err(Error::NotStun);
        }
        if bytes.len() < HEADER_LEN + len {
            return Err(Error::Truncated);
        }
        let mut msg = Message {
            bytes,
            integrity: None,
            fingerprint: None,
        };
        let mut offset = HEADER_LEN;
        while offset < bytes.len() {
            if msg.fingerprint.is_some() {
                return Err(Error::BadAttribute(attr::FINGERPRINT)); // must be last
            }
            let (typ, value) = attribute_at(bytes, offset).ok_or(Error::Truncated)?;
            match typ {
                attr::MESSAGE_INTEGRITY if msg.integrity.is_none() => {
                    if value.len() != INTEGRITY_LEN {
                        return Err(Error::BadAttribute(typ));
                    }
                    msg.integrity = Some(offset);
                }
                attr::FINGERPRINT => {
                    if value.len() != 4 {
                        return Err(Error::BadAttribute(typ));
                    }
                    msg.fingerprint = Some(offset);
                }
                _ => {}
            }
            offset += 4 + padded(value.len());
        }
        Ok(msg)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn method(&self) -> Method {
        split_type(u16::from_be_bytes([self.bytes[0], self.bytes[1]])).0
    }

    pub fn class(&self) -> Class {
        split_type(u16::from_be_bytes([self.bytes[0], self.bytes[1]])).1
    }

    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.bytes[8..20]);
        id
    }

    /// The attributes that count: those before MESSAGE-INTEGRITY (RFC 8489 §14.5 says
    /// to ignore what follows it, FINGERPRINT aside), as raw (type, value) pairs.
    pub fn attributes(&self) -> RawAttributes<'a> {
        let end = self
            .integrity
            .or(self.fingerprint)
            .unwrap_or(self.bytes.len());
        RawAttributes {
            bytes: &self.bytes[..end],
            offset: HEADER_LEN,
        }
    }

    /// Every attribute, MESSAGE-INTEGRITY and FINGERPRINT included (for re-encoding).
    pub fn all_attributes(&self) -> RawAttributes<'a> {
        RawAttributes {
            bytes: self.bytes,
            offset: HEADER_LEN,
        }
    }

    /// The first attribute of type `typ` among those that count.
    pub fn attribute(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|(t, _)| *t == typ).map(|(_, v)| v)
    }

    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether MESSAGE-INTEGRITY is present and correct for `key`.
    pub fn check_integrity(&self, key: &hmac::Key) -> bool {
        let Some(at) = self.integrity else {
            return false;
        };
        // The HMAC covers the message up to the attribute, with the header's length
        // field as if MESSAGE-INTEGRITY were the last attribute.
        let header = self.header_with_len(at + 4 + INTEGRITY_LEN - HEADER_LEN);
        let mac = hmac_sha1(key, &[&header, &self.bytes[HEADER_LEN..at]]);
        constant_time_eq(&mac, &self.bytes[at + 4..at + 4 + INTEGRITY_LEN])
    }

    /// `Some(true)` when FINGERPRINT is present and correct, `None` when absent.
    pub fn check_fingerprint(&self) -> Option<bool> {
        let at = self.fingerprint?;
        let header = self.header_with_len(at + 8 - HEADER_LEN);
        let crc = crc32(&[&header, &self.bytes[HEADER_LEN..at]]) ^ FINGERPRINT_XOR;
        Some(crc == be32(&self.bytes[at + 4..at + 8]))
    }

    fn header_with_len(&self, len: usize) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.bytes[..HEADER_LEN]);
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        header
    }
}

/// Iterates over (type, value) pairs of a structurally checked message.
#[derive(Debug, Clone)]
pub struct RawAttributes<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (typ, value) = attribute_at(self.bytes, self.offset)?;
        self.offset += 4 + padded(value.len());
        Some((typ, value))
    }
}

/// The attribute whose header starts at `offset`, if it fits in `bytes`.
fn attribute_at(bytes: &[u8], offset: usize) -> Option<(u16, &[u8])> {
    let header = bytes.get(offset..offset.checked_add(4)?)?;
    let typ = u16::from_be_bytes([header[0], header[1]]);
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let value = bytes.get(offset + 4..offset + 4 + len)?;
    Some((typ, value))
}

/// Appends one message to a buffer, keeping the header's length field up to date.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    id: TransactionId,
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut Vec<u8>, method: Method, class: Class, id: TransactionId) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&id);
        Writer { buf, start, id }
    }

    pub fn attr(&mut self, attr: &Attr<'_>) -> &mut Self {
        let typ = attr.typ();
        let at = self.buf.len();
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        attr.emit_value(self.buf, &self.id);
        let len = self.buf.len() - at - 4;
        self.buf[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
        // Padding is zeros; receivers ignore its value (RFC 8489 §14).
        self.buf.resize(at + 4 + padded(len), 0);
        self.set_len();
        self
    }

    /// Appends MESSAGE-INTEGRITY computed with `key`.
    pub fn integrity(&mut self, key: &hmac::Key) -> &mut Self {
        self.fixup_len(4 + INTEGRITY_LEN);
        let mac = hmac_sha1(key, &[&self.buf[self.start..]]);
        self.attr(&Attr::MessageIntegrity(mac))
    }

    /// Appends FINGERPRINT; it must be the last attribute.
    pub fn fingerprint(&mut self) -> &mut Self {
        self.fixup_len(8);
        let crc = crc32(&[&self.buf[self.start..]]) ^ FINGERPRINT_XOR;
        self.attr(&Attr::Fingerprint(crc))
    }

    /// The bytes of this message so far.
    pub fn message(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn set_len(&mut self) {
        self.fixup_len(0);
    }

    /// Sets the length field to the attributes written plus `extra` bytes to come.
    fn fixup_len(&mut self, extra: usize) {
        let len = self.buf.len() - self.start - HEADER_LEN + extra;
        self.buf[self.start + 2..self.start + 4].copy_from_slice(&(len as u16).to_be_bytes());
    }
}

pub fn padded(len: usize) -> usize {
    (len + 3) & !3
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// RFC 5769 §2.2: a Binding success response with SOFTWARE, XOR-MAPPED-ADDRESS,
    /// MESSAGE-INTEGRITY (short-term key "VOkJxbRl1RmTxUk/WvJxBt") and FINGERPRINT. Its
    /// SOFTWARE padding is a space, not zero: receivers must ignore padding bytes.
    const RFC5769_IPV4_RESPONSE: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    fn rfc5769_key() -> hmac::Key {
        hmac::Key::new(
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            b"VOkJxbRl1RmTxUk/WvJxBt",
        )
    }

    #[test]
    fn message_type_places_class_bits_between_method_bits() {
        assert_eq!(message_type(Method::BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(Method::BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(Method::ALLOCATE, Class::Request), 0x0003);
        assert_eq!(message_type(Method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(message_type(Method::SEND, Class::Indication), 0x0016);
        assert_eq!(message_type(Method::DATA, Class::Indication), 0x0017);
        assert_eq!(message_type(Method::CHANNEL_BIND, Class::Success), 0x0109);
        for t in 0..0x3fffu16 {
            let (m, c) = split_type(t);
            assert_eq!(message_type(m, c), t);
        }
    }

    #[test]
    fn reads_the_rfc_5769_ipv4_response_and_checks_its_integrity_and_fingerprint() {
        let msg = Message::parse(&RFC5769_IPV4_RESPONSE).unwrap();
        assert_eq!(
            (msg.method(), msg.class()),
            (Method::BINDING, Class::Success)
        );
        assert!(msg.check_integrity(&rfc5769_key()));
        assert_eq!(msg.check_fingerprint(), Some(true));
        let mapped = msg.attribute(attr::XOR_MAPPED_ADDRESS).unwrap();
        let mapped = Attr::parse(attr::XOR_MAPPED_ADDRESS, mapped, &msg.transaction_id());
        let want: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        assert_eq!(mapped, Ok(Attr::XorMappedAddress(want)));
        assert_eq!(msg.attribute(attr::SOFTWARE), Some(&b"test vector"[..]));
    }

    #[test]
    fn a_flipped_bit_fails_integrity_and_fingerprint() {
        let mut bytes = RFC5769_IPV4_RESPONSE;
        bytes[45] ^= 1; // inside XOR-MAPPED-ADDRESS
        let msg = Message::parse(&bytes).unwrap();
        assert!(!msg.check_integrity(&rfc5769_key()));
        assert_eq!(msg.check_fingerprint(), Some(false));
    }

    #[test]
    fn the_writer_reproduces_the_rfc_5769_response_up_to_padding() {
        let msg = Message::parse(&RFC5769_IPV4_RESPONSE).unwrap();
        let mut out = Vec::new();
        let mut w = Writer::new(
            &mut out,
            Method::BINDING,
            Class::Success,
            msg.transaction_id(),
        );
        w.attr(&Attr::Software(b"test vector"))
            .attr(&Attr::XorMappedAddress("192.0.2.1:32853".parse().unwrap()))
            .integrity(&rfc5769_key())
            .fingerprint();
        // Our padding is zero where the RFC's is a space, so the MAC and CRC differ
        // there; everything else must match, and both must verify.
        assert_eq!(out.len(), RFC5769_IPV4_RESPONSE.len());
        assert_eq!(out[..35], RFC5769_IPV4_RESPONSE[..35]);
        assert_eq!(out[36..52], RFC5769_IPV4_RESPONSE[36..52]);
        let ours = Message::parse(&out).unwrap();
        assert!(ours.check_integrity(&rfc5769_key()));
        assert_eq!(ours.check_fingerprint(), Some(true));
    }

    #[test]
    fn rejects_what_is_not_a_well_formed_message() {
        let good = RFC5769_IPV4_RESPONSE;
        assert_eq!(Message::parse(&good[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Message::parse(&good[..40]).unwrap_err(), Error::Truncated);
        let mut long = good.to_vec();
        long.extend_from_slice(&[0; 4]);
        assert_eq!(Message::parse(&long).unwrap_err(), Error::NotStun);
        let mut cookie = good;
        cookie[4] = 0;
        assert_eq!(Message::parse(&cookie).unwrap_err(), Error::NotStun);
        let mut overrun = good;
        overrun[23] = 0x40; // SOFTWARE claims 64 bytes
        assert!(Message::parse(&overrun).is_err());
        let mut bad_fingerprint = good;
        bad_fingerprint[48..50].copy_from_slice(&[0x80, 0x28]); // 20 bytes long
        assert_eq!(
            Message::parse(&bad_fingerprint).unwrap_err(),
            Error::BadAttribute(attr::FINGERPRINT)
        );
        let mut not_last = good;
        not_last[48..50].copy_from_slice(&[0x80, 0x28]);
        not_last[50..52].copy_from_slice(&[0, 4]);
        // The 16 bytes left of the old MAC now parse as attributes after FINGERPRINT.
        assert!(Message::parse(&not_last).is_err());
    }

    #[test]
    fn attributes_after_message_integrity_do_not_count() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, Method::REFRESH, Class::Success, [7; 12]);
        w.integrity(&rfc5769_key()).attr(&Attr::Lifetime(0));
        let msg = Message::parse(&out).unwrap();
        assert_eq!(msg.attribute(attr::LIFETIME), None);
        assert_eq!(msg.all_attributes().count(), 2);
        assert!(msg.check_integrity(&rfc5769_key()));
    }
}
