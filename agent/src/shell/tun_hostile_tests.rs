//! What a hostile peer can make the write path do. The packets a peer sends pass
//! WireGuard's authentication and boringtun's one check (an IP length no longer than what
//! was decrypted, the packet cut to it); everything else in them is the peer's choice, and
//! goes through `Room`'s plan and tun-rs's GRO (trusting checksums, as the agent runs it)
//! on the way to the device. A panic there would take the agent down, a hub with it, for
//! every peer; a packet whose IP length no longer matches what is written would be
//! dropped by the kernel, with the packets coalesced into it.
//!
//! Batches are built from a few flows of TCP and UDP over IPv4 and IPv6 whose header
//! fields, lengths and sequence numbers are drawn at random (mostly plausible, so that
//! packets do coalesce and the coalescing code runs), with raw bytes among them.
//!
//! The read side too: on a hub the kernel forwards what peers sent back into the TUN,
//! as super-packets behind a virtio-net header, so `split_frame` gets frames drawn the
//! same way, their headers mostly what the kernel writes and sometimes anything.

use super::*;

/// What the core's buffers hold (its pool's size).
const CORE_CAPACITY: usize = 2048;
/// Found the planning bug `tun_room_tests` keeps (a changing header length) within
/// 5,000 batches from each of eight seeds, and no other in 2,000,000 from ten.
const BATCHES: usize = 3000;

/// xorshift64: the same batches on every run, so a failure can be replayed.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True once in `n` draws.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// A flow the batch's packets are drawn from.
struct Flow {
    v6: bool,
    protocol: u8,
    ports: [u8; 4],
    seq: u32,
    segment: usize,
}

fn flow(draw: &mut Draw) -> Flow {
    Flow {
        v6: draw.one_in(3),
        protocol: match draw.below(8) {
            0..=3 => 6,
            4..=6 => 17,
            _ => draw.byte(),
        },
        ports: [0xc3, 0x50, 0x14, draw.byte() % 4],
        seq: draw.next() as u32,
        segment: [1368, 1348, 536, 1200, 100][draw.below(5)],
    }
}

/// One packet of `flow` as boringtun hands it over: behind room for the virtio header,
/// in a core buffer, its IP length field the packet's length.
fn packet(draw: &mut Draw, flow: &mut Flow) -> Vec<u8> {
    let ip_len = if flow.v6 { 40 } else { 20 };
    // A TCP header of 20 to 60 bytes, mostly 32 (with timestamps).
    let transport_len = match flow.protocol {
        6 if draw.one_in(3) => 4 * (draw.below(11) + 5),
        6 => 32,
        _ => 8,
    };
    let payload = match draw.below(10) {
        0 => 0,
        1 => draw.below(2000),
        2 => draw.below(16),
        3 => draw.below(flow.segment + 1),
        _ => flow.segment,
    };
    let len = ip_len + transport_len + payload;
    let mut buf = Vec::with_capacity(CORE_CAPACITY.max(VIRTIO_NET_HDR_LEN + len));
    buf.resize(VIRTIO_NET_HDR_LEN + len, 0);
    let ip = &mut buf[VIRTIO_NET_HDR_LEN..];
    for b in ip.iter_mut() {
        *b = draw.byte();
    }
    // Fields mostly the flow's own, sometimes anything.
    let mostly = |draw: &mut Draw, usual: u8| if draw.one_in(6) { draw.byte() } else { usual };
    if flow.v6 {
        ip[0] = 0x60;
        ip[1] = mostly(draw, 0);
        ip[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        ip[6] = flow.protocol;
        ip[7] = mostly(draw, 64);
        ip[8..40].copy_from_slice(&[0xfd; 32]);
    } else {
        ip[0] = if draw.one_in(10) {
            0x40 | draw.byte() & 15
        } else {
            0x45
        };
        ip[1] = mostly(draw, 0);
        ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        ip[6] = mostly(draw, 0x40);
        ip[7] = mostly(draw, 0);
        ip[8] = mostly(draw, 64);
        ip[9] = flow.protocol;
        ip[12..20].copy_from_slice(&[10, 42, 0, 1, 10, 42, 0, 2]);
    }
    let transport = &mut ip[ip_len..];
    transport[..4].copy_from_slice(&flow.ports);
    if flow.protocol == 6 {
        let seq = if draw.one_in(8) {
            draw.next() as u32
        } else {
            flow.seq
        };
        transport[4..8].copy_from_slice(&seq.to_be_bytes());
        transport[12] = ((transport_len / 4) as u8) << 4;
        transport[13] = match draw.below(6) {
            0 => draw.byte(),
            1 => 0x18,
            _ => 0x10,
        };
        if transport_len == 32 && !draw.one_in(4) {
            transport[20..24].copy_from_slice(&[1, 1, 8, 10]);
            transport[24..32].fill(7);
        }
        flow.seq = seq.wrapping_add(payload as u32);
    } else if !draw.one_in(5) {
        transport[4..6].copy_from_slice(&((transport_len + payload) as u16).to_be_bytes());
    }
    buf
}

/// What the peer may also send: any bytes at all, cut to the IP length they claim
/// (boringtun refuses bytes shorter than the length they claim: none here).
fn raw(draw: &mut Draw) -> Vec<u8> {
    let mut ip: Vec<u8> = (0..draw.below(200)).map(|_| draw.byte()).collect();
    if let Some(first) = ip.first_mut() {
        *first = [0x45, 0x60, 0x4f][draw.below(3)];
    }
    let claimed = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        Some(6) if ip.len() >= 40 => 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
        _ => 0,
    };
    if claimed > ip.len() {
        return Vec::new();
    }
    ip.truncate(claimed);
    let mut buf = Vec::with_capacity(CORE_CAPACITY);
    buf.resize(VIRTIO_NET_HDR_LEN, 0);
    buf.extend_from_slice(&ip);
    buf
}

fn batch(draw: &mut Draw) -> Vec<Vec<u8>> {
    let mut flows: Vec<Flow> = (0..1 + draw.below(4)).map(|_| flow(draw)).collect();
    (0..1 + draw.below(128))
        .map(|_| {
            if draw.one_in(20) {
                raw(draw)
            } else {
                let f = draw.below(flows.len());
                packet(draw, &mut flows[f])
            }
        })
        .filter(|b| b.len() > VIRTIO_NET_HDR_LEN)
        .collect()
}

/// The IP length a packet claims, where it has one.
fn claimed_len(ip: &[u8]) -> Option<usize> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => Some(usize::from(u16::from_be_bytes([ip[2], ip[3]]))),
        6 if ip.len() >= 40 => Some(40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))),
        _ => None,
    }
}

/// How many of the peer's packets a written one carries, from its virtio header.
fn carried(frame: &[u8]) -> usize {
    let hdr = VirtioNetHdr::decode(frame).expect("a whole header");
    let packet = frame.len() - VIRTIO_NET_HDR_LEN;
    if hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE {
        return 1;
    }
    let (headers, segment) = (usize::from(hdr.hdr_len), usize::from(hdr.gso_size));
    assert!(segment > 0, "a GSO packet with no segment size: {hdr:?}");
    assert!(
        headers < packet,
        "headers {headers} of a {packet}-byte packet"
    );
    let checksum_end = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset) + 2;
    assert!(
        checksum_end <= packet,
        "checksum field past the end: {hdr:?}"
    );
    (packet - headers).div_ceil(segment)
}

#[test]
fn a_peers_packets_whatever_their_headers_reach_the_device_whole_and_counted() {
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let mut room = Room::default();
    let mut gro = GROTable::default();
    gro.trust_checksums();
    let (mut written, mut coalesced) = (0, 0);
    for round in 0..BATCHES {
        let mut bufs = batch(&mut draw);
        let mut core: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        let lengths: Vec<Option<usize>> = (bufs.iter())
            .map(|b| claimed_len(&b[VIRTIO_NET_HDR_LEN..]))
            .collect();
        assert!(
            lengths
                .iter()
                .zip(&bufs)
                .all(|(l, b)| l.is_none_or(|l| l == b.len() - VIRTIO_NET_HDR_LEN))
        );
        let used = bufs.len();
        let udp_from = udp_last(&mut bufs);
        for run in runs(udp_from, used) {
            let run = &mut bufs[run];
            room.lend(run);
            gro.apply_gro(run, VIRTIO_NET_HDR_LEN, true)
                .unwrap_or_else(|e| panic!("batch {round}: tun-rs refused it: {e}"));
            let mut packets = 0;
            for &i in gro.to_write() {
                let frame = &run[i];
                let ip = &frame[VIRTIO_NET_HDR_LEN..];
                if let Some(claimed) = claimed_len(ip) {
                    assert_eq!(claimed, ip.len(), "batch {round}: a written IP length");
                }
                let n = carried(frame);
                coalesced += usize::from(n > 1);
                packets += n;
            }
            written += gro.to_write().len();
            assert_eq!(packets, run.len(), "batch {round}: packets in and out");
            room.take_back(run);
        }
        let mut back: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        core.sort();
        back.sort();
        assert_eq!(
            back, core,
            "batch {round}: the core's buffers are the ones back"
        );
    }
    // The test means something only if much was coalesced.
    assert!(
        coalesced > BATCHES,
        "{coalesced} coalesced packets of {written} written"
    );
}

/// A frame as an offloading TUN hands one over: a super-packet of `flow` (its payload
/// drawn up to 64 KiB) behind a virtio-net header whose fields are mostly what the
/// kernel would write and sometimes anything. On a hub, what the kernel forwards back
/// into the TUN was made from what peers sent.
fn frame(draw: &mut Draw, flow: &mut Flow) -> Vec<u8> {
    let mut buf = packet(draw, flow);
    let ip_len = if flow.v6 { 40 } else { 20 };
    let extra = draw.below(65_535 - (buf.len() - VIRTIO_NET_HDR_LEN));
    buf.extend((0..extra).map(|_| draw.byte()));
    let len = buf.len() - VIRTIO_NET_HDR_LEN;
    let ip = &mut buf[VIRTIO_NET_HDR_LEN..];
    if flow.v6 {
        ip[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }
    let tcp = flow.protocol == 6;
    let hdr = VirtioNetHdr {
        flags: match draw.below(12) {
            0 => draw.byte(),
            1 => 0,
            2 => VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID,
            _ => VIRTIO_NET_HDR_F_NEEDS_CSUM,
        },
        gso_type: match draw.below(12) {
            0 => draw.byte(),
            1 => VIRTIO_NET_HDR_GSO_NONE,
            _ if !tcp => VIRTIO_NET_HDR_GSO_UDP_L4,
            _ if flow.v6 => VIRTIO_NET_HDR_GSO_TCPV6,
            _ => VIRTIO_NET_HDR_GSO_TCPV4,
        },
        hdr_len: draw.below(200) as u16,
        gso_size: match draw.below(12) {
            0 => draw.next() as u16,
            1 => 0,
            _ => flow.segment as u16,
        },
        csum_start: if draw.one_in(12) {
            draw.next() as u16
        } else {
            ip_len
        },
        csum_offset: match draw.below(12) {
            0 => draw.next() as u16,
            _ if tcp => 16,
            _ => 6,
        },
    };
    hdr.encode(&mut buf[..VIRTIO_NET_HDR_LEN]).unwrap();
    buf
}

#[test]
fn super_packets_whatever_their_headers_split_into_whole_packets_or_are_refused() {
    let mut draw = Draw(0x2545_f491_4f6c_dd1d);
    // As the agent has them: segment buffers of the MTU's size.
    let mut segments = vec![vec![0u8; 1420]; SEGMENTS];
    let mut sizes = vec![0; SEGMENTS];
    let (mut split, mut refused) = (0, 0);
    for round in 0..FRAMES {
        let mut flow = flow(&mut draw);
        let mut frame = frame(&mut draw, &mut flow);
        match split_frame(&mut frame, &mut segments, &mut sizes) {
            Ok(Frame::Whole(n)) => assert_eq!(n, frame.len() - VIRTIO_NET_HDR_LEN),
            Ok(Frame::Split(n)) => {
                split += 1;
                assert!(n <= SEGMENTS, "frame {round}: {n} segments");
                for (segment, &size) in segments.iter().zip(&sizes).take(n) {
                    let ip = &segment[..size];
                    assert_eq!(claimed_len(ip), Some(size), "frame {round}: a segment");
                }
            }
            Err(_) => refused += 1,
        }
    }
    // Both ways must have been taken many times for the test to mean something.
    assert!(
        split > FRAMES / 3 && refused > FRAMES / 10,
        "{split} split, {refused} refused"
    );
}

/// Neither a panic nor a wrong segment in 1,500,000 frames from five other seeds.
const FRAMES: usize = 3000;
