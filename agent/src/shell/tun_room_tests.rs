//! Which packets get a large buffer, and that every buffer of the core comes back.

use super::*;
use crate::shell::tun_hostile::CORE_CAPACITY;

/// A queued IPv4 packet of `protocol` from port `from`, `len` bytes in all, behind room
/// for the virtio header, in a buffer the size of the core's.
fn packet(protocol: u8, from: u16, len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(CORE_CAPACITY);
    buf.resize(VIRTIO_NET_HDR_LEN + len, 0);
    let ip = &mut buf[VIRTIO_NET_HDR_LEN..];
    ip[0] = 0x45;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&[10, 42, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 42, 0, 2]);
    ip[20..22].copy_from_slice(&from.to_be_bytes());
    ip[22..24].copy_from_slice(&5201u16.to_be_bytes());
    ip[len - 1] = from as u8;
    buf
}

fn datagram(from: u16, len: usize) -> Vec<u8> {
    packet(17, from, len)
}

#[test]
fn the_first_packet_of_each_flow_moves_into_room_for_the_flow_coalesced() {
    let mut bufs = vec![
        datagram(1000, 1400),
        datagram(2000, 1400),
        datagram(1000, 1400),
        packet(1, 0, 100),
        datagram(1000, 900),
        datagram(2000, 1400),
        datagram(3000, 1400),
    ];
    let before = bufs.clone();
    let core: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
    let mut room = Room::default();
    room.lend(&mut bufs);
    // tun-rs wants twice the header's room besides the coalesced packet.
    // The first packet whole, the others' payloads (1372 and 872 bytes) after it.
    assert!(bufs[0].capacity() >= 2 * VIRTIO_NET_HDR_LEN + 1400 + 1372 + 872);
    assert!(bufs[1].capacity() >= 2 * VIRTIO_NET_HDR_LEN + 1400 + 1372);
    // The others, and a flow of one, keep the buffer they came in.
    for i in [2, 3, 4, 5, 6] {
        assert_eq!(bufs[i].as_ptr(), core[i], "buffer {i}");
    }
    // Every packet is as it was.
    assert_eq!(bufs, before);

    // tun-rs may move buffers within the batch: each of the core's comes back anyway.
    bufs.swap(0, 6);
    room.take_back(&mut bufs);
    let mut now: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
    let mut was = core.clone();
    now.sort();
    was.sort();
    assert_eq!(now, was, "the core's buffers, all and only them");
    assert!(bufs.iter().all(|b| b.capacity() == CORE_CAPACITY));
}

#[test]
fn large_buffers_are_reused_and_none_holds_more_than_one_ip_packet() {
    let mut room = Room::default();
    let mut first: Option<Vec<*const u8>> = None;
    // A short write first, so its buffer is smaller than the next write asks for.
    let mut short: Vec<Vec<u8>> = (0..20).map(|_| datagram(1000, 1400)).collect();
    room.lend(&mut short);
    room.take_back(&mut short);
    for _ in 0..3 {
        let mut bufs: Vec<Vec<u8>> = (0..64).map(|_| datagram(1000, 1400)).collect();
        room.lend(&mut bufs);
        let mut large: Vec<*const u8> = (bufs.iter())
            .filter(|b| b.capacity() > CORE_CAPACITY)
            .map(|b| b.as_ptr())
            .collect();
        // 64 KiB holds 47 of these datagrams coalesced: two packets, two buffers.
        assert_eq!(large.len(), 2);
        for b in &bufs {
            assert!(b.capacity() <= SLACK + COALESCED_MAX, "{}", b.capacity());
        }
        large.sort();
        assert_eq!(
            *first.get_or_insert(large.clone()),
            large,
            "the same large buffers each write"
        );
        room.take_back(&mut bufs);
    }
}

#[test]
fn flows_of_one_packet_do_not_use_up_the_room() {
    // Ten lone datagrams first, then a stream.
    let mut bufs: Vec<Vec<u8>> = (0..10).map(|i| datagram(2000 + i, 100)).collect();
    bufs.extend((0..4).map(|_| datagram(1000, 1400)));
    let mut room = Room::default();
    room.lend(&mut bufs);
    assert!(bufs[10].capacity() >= SLACK + 1400 + 3 * 1372);
    room.take_back(&mut bufs);
}

#[test]
fn a_few_flows_at_most_get_room() {
    let mut bufs: Vec<Vec<u8>> = (0..40).map(|i| datagram(1000 + i % 20, 1400)).collect();
    let mut room = Room::default();
    room.lend(&mut bufs);
    let large = bufs.iter().filter(|b| b.capacity() > CORE_CAPACITY).count();
    assert_eq!(large, FLOWS);
    room.take_back(&mut bufs);
    assert!(bufs.iter().all(|b| b.capacity() == CORE_CAPACITY));
}

#[test]
fn flows_are_told_apart_by_protocol_addresses_and_ports() {
    let a = datagram(1000, 100);
    let key = |b: &[u8]| flow_key(&b[VIRTIO_NET_HDR_LEN..]).map(|(key, _)| key);
    assert!(key(&a) == key(&datagram(1000, 1400)));
    assert!(key(&a) != key(&datagram(1001, 100)));
    let tcp = packet(6, 1000, 100);
    assert!(key(&tcp).is_some() && key(&tcp) != key(&a));
    let mut other_dst = a.clone();
    other_dst[VIRTIO_NET_HDR_LEN + 19] = 3;
    assert!(key(&other_dst) != key(&a));
    // Not TCP or UDP, IPv4 with options, too short: no flow.
    assert!(key(&packet(1, 0, 100)).is_none());
    let mut options = a.clone();
    options[VIRTIO_NET_HDR_LEN] = 0x46;
    assert!(key(&options).is_none());
    assert!(flow_key(&[0x45, 0, 0]).is_none());
    assert_eq!(flow_key(&a[VIRTIO_NET_HDR_LEN..]).map(|(_, h)| h), Some(28));
    assert!(flow_key(&[]).is_none());
}

/// A queued IPv4 TCP packet of the benchmark's stream, as tun-rs checks it before it
/// coalesces: timestamps option (`stamp`), sequence number, flags, `payload` bytes and
/// both checksums right.
fn segment(seq: u32, stamp: u32, flags: u8, payload: usize) -> Vec<u8> {
    const HEADERS: usize = 20 + 32;
    let len = HEADERS + payload;
    let mut buf = Vec::with_capacity(CORE_CAPACITY);
    buf.resize(VIRTIO_NET_HDR_LEN + len, 0);
    let ip = &mut buf[VIRTIO_NET_HDR_LEN..];
    ip[..10].copy_from_slice(&[0x45, 0, (len >> 8) as u8, len as u8, 0, 0, 0x40, 0, 64, 6]);
    ip[12..16].copy_from_slice(&[10, 42, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 42, 0, 2]);
    let ip_sum = !tun_rs::checksum(&ip[..20], 0);
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp = &mut ip[20..];
    tcp[..4].copy_from_slice(&[0xc3, 0x50, 0x14, 0x51]);
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&7u32.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[1, 1, 8, 10]);
    tcp[24..28].copy_from_slice(&stamp.to_be_bytes());
    for (i, b) in tcp[32..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&[10, 42, 0, 1]);
    pseudo[4..8].copy_from_slice(&[10, 42, 0, 2]);
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    let sum = !tun_rs::checksum(&ip[20..], tun_rs::checksum_no_fold(&pseudo, 0));
    ip[20 + 16..20 + 18].copy_from_slice(&sum.to_be_bytes());
    buf
}

const ACK: u8 = 0x10;

/// A TCP segment of one flow with `options` bytes of TCP options and `payload` bytes.
fn segment_with_options(seq: u32, options: usize, payload: usize) -> Vec<u8> {
    let len = 20 + 20 + options + payload;
    let mut buf = packet(6, 50000, len);
    let ip = &mut buf[VIRTIO_NET_HDR_LEN..];
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ip[24..28].copy_from_slice(&seq.to_be_bytes());
    ip[32] = (((20 + options) / 4) as u8) << 4;
    ip[33] = ACK;
    buf
}

#[test]
fn a_flow_whose_header_length_changes_is_planned_without_reading_past_a_packet() {
    // A flow's first packet has 12 bytes of options; the next has none and only 7
    // bytes of payload (47 bytes), so it starts a coalesced packet of its own; the
    // third has the options again. Planned against the first packet's header length,
    // the third was compared with the second over 52 bytes of header, past its end: a
    // panic that any peer could cause with three packets (found by
    // `tun_hostile_tests`).
    let mut bufs = vec![
        segment_with_options(1000, 12, 100),
        segment_with_options(1100, 0, 7),
        segment_with_options(1107, 12, 7),
    ];
    let mut room = Room::default();
    room.lend(&mut bufs);
    // Nothing joins: each header differs from the one before it.
    assert!(bufs.iter().all(|b| b.capacity() == CORE_CAPACITY));
    room.take_back(&mut bufs);
}

/// The packets tun-rs's GRO writes for `bufs` once `Room` has lent its buffers, each
/// checked (see `gro_writes`).
fn writes_after_gro(room: &mut Room, bufs: &mut [Vec<u8>]) -> usize {
    room.lend(bufs);
    let writes = gro_writes(bufs);
    room.take_back(bufs);
    writes
}

/// Runs tun-rs's GRO over `bufs` and checks each packet it would write: its IP length is
/// its real length, and its payload is the stream's bytes from its sequence number on
/// (what `segment` puts there), so nothing was lost, doubled or put out of order. The
/// number of packets, and of payload bytes in all, must be those of the input.
fn gro_writes(bufs: &mut [Vec<u8>]) -> usize {
    const HEADERS: usize = 20 + 32;
    let payload = |b: &Vec<u8>| b.len() - VIRTIO_NET_HDR_LEN - HEADERS;
    let bytes_in: usize = bufs.iter().map(payload).sum();
    let (mut tcp, mut udp, mut to_write) = (Default::default(), Default::default(), Vec::new());
    tun_rs::handle_gro(
        bufs,
        VIRTIO_NET_HDR_LEN,
        &mut tcp,
        &mut udp,
        false,
        &mut to_write,
    )
    .expect("tun-rs takes the batch");
    let mut bytes_out = 0;
    for &i in &to_write {
        let ip = &bufs[i][VIRTIO_NET_HDR_LEN..];
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        let seq = u32::from_be_bytes([ip[24], ip[25], ip[26], ip[27]]);
        let data = &ip[HEADERS..];
        let wrong = data
            .iter()
            .zip(seq as usize..)
            .position(|(&b, n)| b != n as u8);
        assert_eq!(wrong, None, "payload of the packet from sequence {seq}");
        bytes_out += data.len();
    }
    assert_eq!(bytes_out, bytes_in);
    to_write.len()
}

#[test]
fn a_full_write_of_one_tcp_stream_goes_out_as_a_few_64_kib_packets() {
    // 128 full-sized segments (the most one write holds), 180 KB: 47 fit in one IP
    // packet coalesced. Before the plan, the first 47 went out as one and the other 81
    // one by one.
    let mut bufs: Vec<Vec<u8>> = (0..128u32)
        .map(|i| segment(1000 + i * 1368, 77, ACK, 1368))
        .collect();
    let mut room = Room::default();
    assert_eq!(writes_after_gro(&mut room, &mut bufs), 3);
    assert!(bufs.iter().all(|b| b.capacity() == CORE_CAPACITY));
    // And again, on the kept buffers.
    assert_eq!(writes_after_gro(&mut room, &mut bufs), 3);
}

#[test]
fn a_push_a_new_timestamp_or_a_gap_starts_the_next_coalesced_packet() {
    let mut seq = 5000;
    let mut bufs = Vec::new();
    for i in 0..30 {
        let flags = if i == 4 { ACK | 0x08 } else { ACK };
        let stamp = if i < 12 { 77 } else { 78 };
        if i == 20 {
            seq += 1368;
        }
        bufs.push(segment(seq, stamp, flags, 1368));
        seq += 1368;
    }
    // 0-4 (push ends it), 5-11, 12-19 (new timestamp), 20-29 (after the gap).
    assert_eq!(writes_after_gro(&mut Room::default(), &mut bufs), 4);
}

#[test]
fn a_segment_that_comes_before_its_flows_packet_is_put_in_front_of_it() {
    // tun-rs prepends when a later packet of the write holds the earlier sequence
    // numbers and its buffer has the room (here all do): the two become one packet.
    let mut bufs: Vec<Vec<u8>> = [1000 + 1368, 1000]
        .into_iter()
        .map(|seq| {
            let mut b = segment(seq, 77, ACK, 1368);
            b.reserve_exact(4 * 1420);
            b
        })
        .collect();
    assert_eq!(gro_writes(&mut bufs), 1);
    let ip = &bufs[0][VIRTIO_NET_HDR_LEN..];
    assert_eq!(u32::from_be_bytes([ip[24], ip[25], ip[26], ip[27]]), 1000);
    assert_eq!(ip.len(), 20 + 32 + 2 * 1368);
}

#[test]
fn a_trusting_gro_table_coalesces_without_checking_checksums_and_a_default_one_checks() {
    // Two segments of one stream; the second's TCP checksum is off by one, as if its
    // sender had got it wrong. What comes out of WireGuard was authenticated, so the
    // batch's table trusts it; an ordinary one leaves the bad segment on its own.
    let coalesced = |trust: bool| {
        let mut bufs = vec![segment(1000, 77, ACK, 1368), segment(2368, 77, ACK, 1368)];
        bufs[1][VIRTIO_NET_HDR_LEN + 20 + 17] ^= 1;
        bufs[0].reserve_exact(2 * 1420);
        let mut gro = tun_rs::GROTable::default();
        if trust {
            gro.trust_checksums();
        }
        gro.apply_gro(&mut bufs, VIRTIO_NET_HDR_LEN, false)
            .expect("tun-rs takes the batch");
        let ip = &bufs[0][VIRTIO_NET_HDR_LEN..];
        usize::from(u16::from_be_bytes([ip[2], ip[3]]))
    };
    assert_eq!(coalesced(false), 20 + 32 + 1368);
    assert_eq!(coalesced(true), 20 + 32 + 2 * 1368);
}
