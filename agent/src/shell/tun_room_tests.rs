//! Which packets get a large buffer, and that every buffer of the core comes back.

use super::*;

/// What the core's buffers hold (its pool's size).
const CORE_CAPACITY: usize = 2048;

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
    assert!(bufs[0].capacity() >= 2 * VIRTIO_NET_HDR_LEN + 1400 + 1400 + 900);
    assert!(bufs[1].capacity() >= 2 * VIRTIO_NET_HDR_LEN + 2 * 1400);
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
fn large_buffers_are_reused_and_a_flow_gets_room_for_one_ip_packet_at_most() {
    let mut room = Room::default();
    let mut first = None;
    for _ in 0..3 {
        let mut bufs: Vec<Vec<u8>> = (0..64).map(|_| datagram(1000, 1400)).collect();
        room.lend(&mut bufs);
        let cap = bufs[0].capacity();
        assert!(
            (2 * VIRTIO_NET_HDR_LEN + 65_535..2 * (2 * VIRTIO_NET_HDR_LEN + 65_535)).contains(&cap)
        );
        let at = bufs[0].as_ptr();
        assert_eq!(
            *first.get_or_insert(at),
            at,
            "the same large buffer each write"
        );
        room.take_back(&mut bufs);
    }
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
    let key = |b: &[u8]| flow_key(&b[VIRTIO_NET_HDR_LEN..]);
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
    assert!(flow_key(&[]).is_none());
}
