//! rtnetlink messages, byte by byte: the four kinds the agent sends (link, address and
//! route changes) and the acknowledgement it reads back. Only what the agent needs; the
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
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

const IFF_UP: u32 = 0x1;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
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
}

impl Request {
    /// The whole message, sequence number `seq`.
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let mut m = Message::new(seq);
        match *self {
            Request::LinkUp { index, mtu, queue } => {
                m.header(RTM_NEWLINK, 0);
                // struct ifinfomsg: family, pad, type, index, flags, change.
                m.u8(0).u8(0).u16(0).u32(index).u32(IFF_UP).u32(IFF_UP);
                m.attr(IFLA_MTU, &mtu.to_ne_bytes());
                m.attr(IFLA_TXQLEN, &queue.to_ne_bytes());
            }
            Request::AddAddress { index, address } | Request::DeleteAddress { index, address } => {
                let add = matches!(self, Request::AddAddress { .. });
                let flags = if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 };
                m.header(if add { RTM_NEWADDR } else { RTM_DELADDR }, flags);
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
                m.header(if add { RTM_NEWROUTE } else { RTM_DELROUTE }, flags);
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
            .u16(NLM_F_REQUEST | NLM_F_ACK | flags)
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

/// The kernel's answer to request `seq`: `Ok(())` for an acknowledgement, `Err(errno)`
/// for a refusal, `None` when `datagram` holds no answer to that request.
pub fn ack(datagram: &[u8], seq: u32) -> Option<Result<(), i32>> {
    let mut rest = datagram;
    while rest.len() >= HEADER_LEN {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let this_seq = u32::from_ne_bytes(rest[8..12].try_into().ok()?);
        if len < HEADER_LEN || len > rest.len() {
            return None;
        }
        if kind == NLMSG_ERROR && this_seq == seq && len >= HEADER_LEN + 4 {
            let code = i32::from_ne_bytes(rest[16..20].try_into().ok()?);
            return Some(if code == 0 { Ok(()) } else { Err(-code) });
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
        let answer = |seq: u32, code: i32| {
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
        assert_eq!(ack(&answer(5, 0), 5), Some(Ok(())));
        assert_eq!(ack(&answer(5, -3), 5), Some(Err(3)));
        assert_eq!(ack(&answer(4, 0), 5), None);
        assert_eq!(ack(&[1, 2, 3], 5), None);
        let mut bad = answer(5, 0);
        bad[0] = 200; // a length past the datagram
        assert_eq!(ack(&bad, 5), None);
    }
}
