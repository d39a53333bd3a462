//! Room for coalescing on the way to the TUN. tun-rs's GRO coalesces a flow's packets
//! into the buffer of its first packet, and only where that buffer's capacity already
//! holds the result: it never grows one. The core's buffers are 2 KiB, so until this
//! existed nothing was coalesced but pairs of small packets (measured: one TUN write per
//! datagram at 450 Mbit/s of iperf3's 1400-byte UDP, and per full-sized TCP segment).
//!
//! Before a write, the packets of each flow are planned as tun-rs will coalesce them: a
//! flow's packets go into its first packet's buffer until the next would make an IP
//! packet larger than 64 KiB, and that one starts the next coalesced packet. Each such
//! first packet that will take others moves into a large buffer of ours; after the
//! write, the core's buffer goes back in its place and ours is kept for the next write.
//! So the large buffers are few, made once and reused, and the core's pool never fills
//! with them (growing the core's buffers instead and shrinking them after each write
//! took the receiving end's peak RSS from 7 to 13 MB under TCP).
//!
//! Room for the first 64 KiB of a flow alone is not enough: a write holds up to 128
//! full-sized packets (180 KB). Before the plan, the packets after the first 64 KiB each
//! stayed in a 2 KiB buffer of the core's, tun-rs compared each one with every earlier
//! one of its flow, and each was written alone: 157,000 TUN writes a second for 220,000
//! packets, measured on the receiving end of the benchmark's TCP stream.

use tun_rs::VIRTIO_NET_HDR_LEN;

/// Flows given room per write at most: a flight from the network rarely holds more,
/// and this bounds the large buffers to a few hundred KiB.
const FLOWS: usize = 8;

/// The largest coalesced packet: an IP packet's length field is 16 bits, and tun-rs
/// writes the coalesced length into it unchecked, trusting the buffer's capacity.
const COALESCED_MAX: usize = 65_535;

/// What tun-rs asks of a buffer's capacity besides the coalesced packet: twice the
/// header's room.
const SLACK: usize = 2 * VIRTIO_NET_HDR_LEN;

/// A transport flow: protocol, addresses and ports.
#[derive(PartialEq, Eq, Clone, Copy)]
struct FlowKey([u8; 37]);

/// A flow among the packets of one write: its key, its coalesced packet being planned
/// (an index into `Room::heads`), and whether it was given room.
struct Flow {
    key: FlowKey,
    head: usize,
    lent: bool,
}

/// A planned coalesced packet: its flow (an index into `Room::flows`), the packet it
/// starts from, the length of that packet's IP and transport headers (what coalescing
/// leaves out of all that join it, which must have the same), how many it takes in and
/// its length; the payload size of its packets (the first one's), the TCP sequence
/// number that may follow, and whether nothing may (a shorter packet or a TCP push ended
/// it).
struct Head {
    flow: usize,
    at: usize,
    headers: usize,
    packets: usize,
    len: usize,
    segment: usize,
    next_seq: u32,
    ended: bool,
}

#[derive(Default)]
pub struct Room {
    /// The flows and planned packets of the write being prepared (kept so a write
    /// allocates nothing).
    flows: Vec<Flow>,
    heads: Vec<Head>,
    /// Large buffers not lent out.
    spare: Vec<Vec<u8>>,
    /// The core's buffers our large ones stand in for, with where each large one lives
    /// (tun-rs may move buffers within the batch, never reallocate them).
    lent: Vec<(*const u8, Vec<u8>)>,
}

impl Room {
    /// Frees the spare buffers and the plans kept between writes. Nothing is lent
    /// between writes: `take_back` returns it all.
    pub fn shed(&mut self) {
        self.spare = Vec::new();
        self.flows = Vec::new();
        self.heads = Vec::new();
    }

    /// Moves the first packet of each planned coalesced packet among `bufs` (each
    /// behind room for the virtio header) into a buffer that holds it coalesced.
    pub fn lend(&mut self, bufs: &mut [Vec<u8>]) {
        self.plan(bufs);
        let mut flows_lent = 0;
        for head in self.heads.iter().filter(|h| h.packets > 1) {
            // The first `FLOWS` flows of several packets get room.
            let flow = &mut self.flows[head.flow];
            if !flow.lent {
                if flows_lent == FLOWS {
                    continue;
                }
                flow.lent = true;
                flows_lent += 1;
            }
            let mut large = take_fitting(&mut self.spare, SLACK + head.len);
            large.clear();
            // Exact: a buffer that could hold more than `COALESCED_MAX` would let tun-rs
            // make a packet whose length does not fit its header (a spare kept from an
            // earlier write holds no more than that either).
            large.reserve_exact(SLACK + head.len);
            large.extend_from_slice(&bufs[head.at]);
            let at = large.as_ptr();
            let core = std::mem::replace(&mut bufs[head.at], large);
            self.lent.push((at, core));
        }
    }

    /// Plans the coalesced packets of `bufs` as tun-rs will make them: a packet joins
    /// its flow's current one where tun-rs would append it, and starts the next where
    /// not (see `joins`).
    fn plan(&mut self, bufs: &[Vec<u8>]) {
        self.flows.clear();
        self.heads.clear();
        for (i, buf) in bufs.iter().enumerate() {
            let packet = &buf[VIRTIO_NET_HDR_LEN..];
            let Some((key, headers)) = flow_key(packet) else {
                continue;
            };
            let Some(payload) = packet.len().checked_sub(headers).filter(|&n| n > 0) else {
                // tun-rs leaves a packet with no payload alone (a pure TCP ack).
                continue;
            };
            let flow = match self.flows.iter().position(|f| f.key == key) {
                Some(f) => f,
                None => {
                    self.flows.push(Flow {
                        key,
                        head: usize::MAX,
                        lent: false,
                    });
                    self.flows.len() - 1
                }
            };
            let current = self.flows[flow].head;
            if let Some(head) = self.heads.get_mut(current)
                && headers == head.headers
                && joins(head, &bufs[head.at][VIRTIO_NET_HDR_LEN..], packet)
            {
                head.len += payload;
                head.packets += 1;
                head.ended = payload < head.segment || pushed(packet);
                head.next_seq = head.next_seq.wrapping_add(payload as u32);
                continue;
            }
            self.flows[flow].head = self.heads.len();
            self.heads.push(Head {
                flow,
                at: i,
                headers,
                packets: 1,
                len: packet.len(),
                segment: payload,
                next_seq: tcp_seq(packet).wrapping_add(payload as u32),
                ended: pushed(packet),
            });
        }
    }

    /// After the write: the core's buffers back where ours were, ours kept.
    pub fn take_back(&mut self, bufs: &mut [Vec<u8>]) {
        if self.lent.is_empty() {
            return;
        }
        for buf in bufs.iter_mut() {
            if let Some(i) = self.lent.iter().position(|(at, _)| *at == buf.as_ptr()) {
                let (_, core) = self.lent.swap_remove(i);
                self.spare.push(std::mem::replace(buf, core));
            }
        }
        debug_assert!(self.lent.is_empty(), "a lent buffer left the batch");
        self.lent.clear();
    }
}

/// The smallest of `spare` that holds `want` bytes, else the largest (to be grown), else
/// a new one: so a write like the last one takes the same buffers and allocates nothing.
fn take_fitting(spare: &mut Vec<Vec<u8>>, want: usize) -> Vec<u8> {
    let fits = (spare.iter().enumerate())
        .filter(|(_, b)| b.capacity() >= want)
        .min_by_key(|(_, b)| b.capacity());
    let pick = fits.or_else(|| spare.iter().enumerate().max_by_key(|(_, b)| b.capacity()));
    match pick.map(|(i, _)| i) {
        Some(i) => spare.swap_remove(i),
        None => Vec::new(),
    }
}

/// Whether tun-rs appends `packet` (of the head's flow, with the head's header length)
/// to the coalesced packet `head` that starts with `first`: it fits in one IP
/// packet, comes next in sequence, is no larger than the first and follows no shorter one
/// or push, and its IP fields and TCP options are the first's. A packet tun-rs would
/// leave alone anyway (flags other than ack and push) is planned as one that starts anew.
fn joins(head: &Head, first: &[u8], packet: &[u8]) -> bool {
    const TCP: u8 = 6;
    let headers = head.headers;
    let payload = packet.len() - headers;
    if head.ended || payload > head.segment || head.len + payload > COALESCED_MAX {
        return false;
    }
    let same_ip = match packet[0] >> 4 {
        4 => packet[1] == first[1] && packet[6] >> 5 == first[6] >> 5 && packet[8] == first[8],
        _ => packet[..2] == first[..2] && packet[7] == first[7],
    };
    let (proto, transport) = transport(packet);
    if !same_ip || proto != TCP {
        return same_ip;
    }
    let flags = packet[transport + 13];
    flags & !PSH == ACK
        && tcp_seq(packet) == head.next_seq
        && packet[transport + 20..headers] == first[transport + 20..headers]
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// The transport protocol of a packet `flow_key` took, and where its header starts.
fn transport(packet: &[u8]) -> (u8, usize) {
    if packet[0] >> 4 == 4 {
        (packet[9], 20)
    } else {
        (packet[6], 40)
    }
}

/// A TCP packet's sequence number; 0 for a UDP one (which has none to follow).
fn tcp_seq(packet: &[u8]) -> u32 {
    match transport(packet) {
        (6, at) => u32::from_be_bytes(packet[at + 4..at + 8].try_into().unwrap()),
        _ => 0,
    }
}

/// Whether a TCP packet has the push flag, after which tun-rs appends nothing.
fn pushed(packet: &[u8]) -> bool {
    matches!(transport(packet), (6, at) if packet[at + 13] & PSH != 0)
}

/// The flow an IP packet belongs to, with the length of its IP and transport headers,
/// for TCP and UDP over IPv4 without options (what tun-rs coalesces) and IPv6; none for
/// anything else.
fn flow_key(packet: &[u8]) -> Option<(FlowKey, usize)> {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    let (proto, src, dst, ports) = match packet.first()? {
        0x45 => (*packet.get(9)?, 12..16, 16..20, 20..24),
        b if b >> 4 == 6 => (*packet.get(6)?, 8..24, 24..40, 40..44),
        _ => return None,
    };
    let transport = ports.start;
    let headers = match proto {
        // A TCP header shorter than 20 bytes is not one tun-rs coalesces.
        TCP => transport + usize::from(packet.get(transport + 12)? >> 4).max(5) * 4,
        UDP => transport + 8,
        _ => return None,
    };
    let mut key = [0u8; 37];
    key[0] = proto;
    key[1..1 + src.len()].copy_from_slice(packet.get(src.clone())?);
    key[17..17 + dst.len()].copy_from_slice(packet.get(dst)?);
    key[33..37].copy_from_slice(packet.get(ports)?);
    Some((FlowKey(key), headers))
}

#[cfg(test)]
#[path = "tun_room_tests.rs"]
mod tests;
