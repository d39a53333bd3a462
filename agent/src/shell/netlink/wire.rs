//! rtnetlink messages, byte by byte: the kinds the agent sends (link, address and route
//! changes, and a query of the link's counters) and the answers it reads back: an
//! acknowledgement, or the link's description. Only what the agent needs; the
//! layouts are those of `linux/netlink.h`, `linux/rtnetlink.h`, `linux/if_addr.h` and
//! `linux/if_link.h`, all in host byte order.

use std::net::IpAddr;

use crate::prefix::Prefix;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

const IFF_UP: u32 = 0x1;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFLA_STATS64: u16 = 23;
/// The attribute type's top bits are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// struct ifinfomsg: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
/// `tx_dropped` is the eighth u64 of struct rtnl_link_stats64 (after rx/tx packets,
/// bytes and errors, and rx_dropped).
const TX_DROPPED_AT: usize = 7 * 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const HEADER_LEN: usize = 16;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Bring the link up with this MTU and a transmit queue of `queue` packets.
    LinkUp {
        index: u32,
        mtu: u32,
        queue: u32,
    },
    AddAddress {
        index: u32,
        address: Prefix,
    },
    DeleteAddress {
        index: u32,
        address: Prefix,
    },
    /// A route to `prefix` out of the interface, with no gateway.
    AddRoute {
        index: u32,
        prefix: Prefix,
    },
    DeleteRoute {
        index: u32,
        prefix: Prefix,
    },
    /// The link's description, counters included; answered by a message, not an
    /// acknowledgement.
    GetLink {
        index: u32,
    },
}

impl Request {
    /// The whole message, sequence number `seq`.
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let mut m = Message::new(seq);
        match *self {
            Request::LinkUp { index, mtu, queue } => {
                m.header(RTM_NEWLINK, NLM_F_ACK);
                // struct ifinfomsg: family, pad, type, index, flags, change.
                m.u8(0).u8(0).u16(0).u32(index).u32(IFF_UP).u32(IFF_UP);
                m.attr(IFLA_MTU, &mtu.to_ne_bytes());
                m.attr(IFLA_TXQLEN, &queue.to_ne_bytes());
            }
            Request::AddAddress { index, address } | Request::DeleteAddress { index, address } => {
                let add = matches!(self, Request::AddAddress { .. });
                let flags = if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 };
                m.header(
                    if add { RTM_NEWADDR } else { RTM_DELADDR },
                    NLM_F_ACK | flags,
                );
                // struct ifaddrmsg: family, prefixlen, flags, scope, index.
                m.u8(family(address.addr()))
                    .u8(address.len())
                    .u8(0)
                    .u8(0)
                    .u32(index);
                let bytes = ip_bytes(address.addr());
                m.attr(IFA_LOCAL, &bytes);
                m.attr(IFA_ADDRESS, &bytes);
            }
            Request::AddRoute { index, prefix } | Request::DeleteRoute { index, prefix } => {
                let add = matches!(self, Request::AddRoute { .. });
                let flags = if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 };
                m.header(
                    if add { RTM_NEWROUTE } else { RTM_DELROUTE },
                    NLM_F_ACK | flags,
                );
                let net = prefix.network();
                // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
                // type, flags.
                m.u8(family(net.addr())).u8(net.len()).u8(0).u8(0);
                m.u8(RT_TABLE_MAIN)
                    .u8(RTPROT_STATIC)
                    .u8(RT_SCOPE_LINK)
                    .u8(RTN_UNICAST);
                m.u32(0);
                m.attr(RTA_DST, &ip_bytes(net.addr()));
                m.attr(RTA_OIF, &index.to_ne_bytes());
            }
            Request::GetLink { index } => {
                // No acknowledgement: the answer is the link's message, or an error.
                m.header(RTM_GETLINK, 0);
                m.u8(0).u8(0).u16(0).u32(index).u32(0).u32(0);
            }
        }
        m.finish()
    }
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

struct Message {
    bytes: Vec<u8>,
    seq: u32,
}

impl Message {
    fn new(seq: u32) -> Message {
        Message {
            bytes: Vec::with_capacity(64),
            seq,
        }
    }

    /// struct nlmsghdr; the length is filled in by `finish`.
    fn header(&mut self, kind: u16, flags: u16) {
        let seq = self.seq;
        self.u32(0)
            .u16(kind)
            .u16(NLM_F_REQUEST | flags)
            .u32(seq)
            .u32(0);
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_ne_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// struct rtattr and its data, padded to four bytes.
    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.u16((4 + data.len()) as u16).u16(kind);
        self.bytes.extend_from_slice(data);
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes
    }
}

/// The kernel's answer to a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// `Ok(())` for an acknowledgement, `Err(errno)` for a refusal.
    Ack(Result<(), i32>),
    /// A message of this type; the bytes after its header.
    Message(u16, &'a [u8]),
}

/// The kernel's answer to request `seq` in `datagram`, or `None` when it holds none.
pub fn answer(datagram: &[u8], seq: u32) -> Option<Answer<'_>> {
    let mut rest = datagram;
    while rest.len() >= HEADER_LEN {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let this_seq = u32::from_ne_bytes(rest[8..12].try_into().ok()?);
        if len < HEADER_LEN || len > rest.len() {
            return None;
        }
        if this_seq == seq {
            if kind != NLMSG_ERROR {
                return Some(Answer::Message(kind, &rest[HEADER_LEN..len]));
            }
            if len >= HEADER_LEN + 4 {
                let code = i32::from_ne_bytes(rest[16..20].try_into().ok()?);
                return Some(Answer::Ack(if code == 0 { Ok(()) } else { Err(-code) }));
            }
        }
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

/// The `tx_dropped` counter in the body of an RTM_NEWLINK message (`Answer::Message`):
/// on a TUN, what applications sent while its queue was full. `None` if the message
/// carries no 64-bit counters.
pub fn link_tx_dropped(kind: u16, body: &[u8]) -> Option<u64> {
    if kind != RTM_NEWLINK {
        return None;
    }
    let mut rest = body.get(IFINFOMSG_LEN..)?;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let attr = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        if attr == IFLA_STATS64 {
            let counter = rest.get(4 + TX_DROPPED_AT..4 + TX_DROPPED_AT + 8)?;
            return Some(u64::from_ne_bytes(counter.try_into().ok()?));
        }
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_request_matches_what_iproute2_sends() {
        // `ip route add 10.42.0.0/16 dev <index 7>` as strace showed it on x86_64 (44
        // bytes, rtmsg and attributes laid out the same), except for what we choose
        // differently: NLM_F_REPLACE instead of NLM_F_EXCL (re-adding is not an error),
        // protocol static instead of boot, and sequence number 1.
        let bytes = Request::AddRoute {
            index: 7,
            prefix: "10.42.0.0/16".parse().unwrap(),
        }
        .encode(1);
        let expected: [u8; 44] = [
            44, 0, 0, 0, 24, 0, 0x05, 0x05, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
            2, 16, 0, 0, 254, 4, 253, 1, 0, 0, 0, 0, // rtmsg
            8, 0, 1, 0, 10, 42, 0, 0, // RTA_DST
            8, 0, 4, 0, 7, 0, 0, 0, // RTA_OIF
        ];
        if cfg!(target_endian = "little") {
            assert_eq!(bytes, expected);
        }
        assert_eq!(bytes.len(), 44);
    }

    #[test]
    fn a_link_request_matches_what_iproute2_sends() {
        // `ip link set dev <index 7> mtu 1420 txqueuelen 2000 up` as strace showed it
        // (iproute2 6.1; 48 bytes, the same layout), except for the sequence number.
        let bytes = Request::LinkUp {
            index: 7,
            mtu: 1420,
            queue: 2000,
        }
        .encode(1);
        let expected: [u8; 48] = [
            48, 0, 0, 0, 16, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
            0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, // ifinfomsg
            8, 0, 4, 0, 0x8c, 0x05, 0, 0, // IFLA_MTU 1420
            8, 0, 13, 0, 0xd0, 0x07, 0, 0, // IFLA_TXQLEN 2000
        ];
        if cfg!(target_endian = "little") {
            assert_eq!(bytes, expected);
        }
        assert_eq!(bytes.len(), 48);
    }

    #[test]
    fn an_ipv6_address_request_carries_both_address_attributes() {
        let bytes = Request::AddAddress {
            index: 3,
            address: "fd00::1/128".parse().unwrap(),
        }
        .encode(9);
        assert_eq!(bytes.len(), 16 + 8 + 2 * 20);
        assert_eq!(bytes[16], AF_INET6);
        assert_eq!(bytes[17], 128);
    }

    #[test]
    fn acks_and_refusals_are_read_for_the_right_request() {
        let answer_to = |seq: u32, code: i32| {
            let mut b = Vec::new();
            b.extend_from_slice(&36u32.to_ne_bytes());
            b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            b.extend_from_slice(&0u16.to_ne_bytes());
            b.extend_from_slice(&seq.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&code.to_ne_bytes());
            b.extend_from_slice(&[0u8; 16]);
            b
        };
        assert_eq!(answer(&answer_to(5, 0), 5), Some(Answer::Ack(Ok(()))));
        assert_eq!(answer(&answer_to(5, -3), 5), Some(Answer::Ack(Err(3))));
        assert_eq!(answer(&answer_to(4, 0), 5), None);
        assert_eq!(answer(&[1, 2, 3], 5), None);
        let mut bad = answer_to(5, 0);
        bad[0] = 200; // a length past the datagram
        assert_eq!(answer(&bad, 5), None);
    }

    /// An RTM_NEWLINK answer to request `seq`: ifinfomsg, then `attrs` (type, data).
    fn link_message(seq: u32, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = Message::new(seq);
        m.header(RTM_NEWLINK, 0);
        m.u8(0).u8(0).u16(65534).u32(7).u32(IFF_UP).u32(0);
        for (kind, data) in attrs {
            m.attr(*kind, data);
        }
        m.finish()
    }

    #[test]
    fn a_links_tx_dropped_is_the_eighth_64_bit_counter() {
        // rtnl_link_stats64 numbered 1, 2, 3...: tx_dropped is 8.
        let stats: Vec<u8> = (1..=24u64).flat_map(u64::to_ne_bytes).collect();
        let name = b"ew0\0".to_vec();
        // The kernel pads IFLA_STATS64 to eight bytes with an empty IFLA_PAD before it.
        let datagram = link_message(9, &[(3, name), (42, Vec::new()), (IFLA_STATS64, stats)]);
        let Some(Answer::Message(kind, body)) = answer(&datagram, 9) else {
            panic!("no message read")
        };
        assert_eq!(link_tx_dropped(kind, body), Some(8));
    }

    #[test]
    fn a_link_message_without_whole_counters_has_no_tx_dropped() {
        let read = |attrs: &[(u16, Vec<u8>)]| {
            let datagram = link_message(1, attrs);
            match answer(&datagram, 1) {
                Some(Answer::Message(kind, body)) => link_tx_dropped(kind, body),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(read(&[(IFLA_MTU, 1420u32.to_ne_bytes().to_vec())]), None);
        // Cut short: seven counters and a half.
        assert_eq!(read(&[(IFLA_STATS64, vec![0; 60])]), None);
        let mut bad = link_message(1, &[(IFLA_STATS64, vec![0; 192])]);
        bad[HEADER_LEN + IFINFOMSG_LEN] = 255; // an attribute past the message's end
        let Some(Answer::Message(kind, body)) = answer(&bad, 1) else {
            panic!("no message read")
        };
        assert_eq!(link_tx_dropped(kind, body), None);
        assert_eq!(link_tx_dropped(NLMSG_ERROR, body), None);
    }
}
