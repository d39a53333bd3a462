//! Crafted frames, as an offloading TUN hands them over: a TCP super-packet splits into
//! the packets the sender meant, and every kind of bad frame is refused without a panic.

use super::*;

const PAYLOAD: usize = 3000;
const MSS: u16 = 1000;

/// A virtio-net header and an IPv4 TCP packet carrying `PAYLOAD` bytes, to be cut at
/// `MSS`, the way the kernel writes a TSO frame.
fn tso_frame() -> (VirtioNetHdr, Vec<u8>) {
    let hdr = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: MSS,
        csum_start: 20,
        csum_offset: 16,
    };
    let mut ip = vec![0u8; 40 + PAYLOAD];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + PAYLOAD) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 42, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 42, 0, 2]);
    ip[20..22].copy_from_slice(&5201u16.to_be_bytes());
    ip[22..24].copy_from_slice(&40000u16.to_be_bytes());
    ip[24..28].copy_from_slice(&1000u32.to_be_bytes());
    ip[32] = 5 << 4;
    ip[33] = 0x18; // PSH, ACK
    for (i, b) in ip[40..].iter_mut().enumerate() {
        *b = (i / usize::from(MSS)) as u8 + 1;
    }
    (hdr, ip)
}

fn frame(hdr: VirtioNetHdr, packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VIRTIO_NET_HDR_LEN];
    hdr.encode(&mut f).unwrap();
    f.extend_from_slice(packet);
    f
}

fn buffers(n: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
    (vec![vec![0u8; 1500]; n], vec![0; n])
}

#[test]
fn a_tcp_super_packet_splits_into_mss_sized_packets_with_their_own_headers() {
    let (hdr, packet) = tso_frame();
    let (mut segs, mut sizes) = buffers(SEGMENTS);
    let got = split_frame(&mut frame(hdr, &packet), &mut segs, &mut sizes);
    assert_eq!(got, Ok(Frame::Split(3)));
    for (i, seg) in segs[..3].iter().enumerate() {
        let seg = &seg[..sizes[i]];
        assert_eq!(seg.len(), 40 + usize::from(MSS));
        assert_eq!(u16::from_be_bytes([seg[2], seg[3]]) as usize, seg.len());
        let seq = u32::from_be_bytes(seg[24..28].try_into().unwrap());
        assert_eq!(seq, 1000 + i as u32 * u32::from(MSS));
        assert!(seg[40..].iter().all(|&b| b == i as u8 + 1), "segment {i}");
    }
}

#[test]
fn a_plain_packet_passes_through_whole() {
    let (mut hdr, packet) = tso_frame();
    hdr.gso_type = VIRTIO_NET_HDR_GSO_NONE;
    hdr.flags = 0;
    let packet = &packet[..1040];
    let mut f = frame(hdr, packet);
    let (mut segs, mut sizes) = buffers(4);
    assert_eq!(
        split_frame(&mut f, &mut segs, &mut sizes),
        Ok(Frame::Whole(1040))
    );
    assert_eq!(&f[VIRTIO_NET_HDR_LEN..], packet);
}

#[test]
fn a_lone_packet_whose_checksum_the_kernel_left_gets_it_finished_where_it_lies() {
    let (mut hdr, mut packet) = tso_frame();
    hdr.gso_type = VIRTIO_NET_HDR_GSO_NONE;
    packet.truncate(40 + 1000);
    packet[2..4].copy_from_slice(&1040u16.to_be_bytes());
    // CHECKSUM_PARTIAL: the field holds the pseudo-header's sum, not yet inverted.
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(&packet[12..20]);
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&1020u16.to_be_bytes());
    let partial = tun_rs::checksum(&pseudo, 0);
    packet[36..38].copy_from_slice(&partial.to_be_bytes());
    let mut f = frame(hdr, &packet);
    let (mut segs, mut sizes) = buffers(4);
    assert_eq!(
        split_frame(&mut f, &mut segs, &mut sizes),
        Ok(Frame::Whole(1040))
    );
    let tcp = &f[VIRTIO_NET_HDR_LEN + 20..];
    assert_ne!(tcp[16..18], partial.to_be_bytes());
    assert_eq!(
        tun_rs::checksum(tcp, tun_rs::checksum_no_fold(&pseudo, 0)),
        0xffff
    );
}

#[test]
fn header_flags_we_do_not_know_are_refused() {
    let (mut hdr, packet) = tso_frame();
    hdr.flags |= 4; // VIRTIO_NET_HDR_F_RSC_INFO
    let (mut segs, mut sizes) = buffers(SEGMENTS);
    let got = split_frame(&mut frame(hdr, &packet), &mut segs, &mut sizes);
    assert_eq!(got, Err(BadFrame::Flags(5)));
}

#[test]
fn a_gso_type_we_did_not_ask_for_is_refused() {
    let (mut hdr, packet) = tso_frame();
    for gso_type in [
        3,
        VIRTIO_NET_HDR_GSO_TCPV6,
        VIRTIO_NET_HDR_GSO_UDP_L4 | 0x80,
        9,
    ] {
        hdr.gso_type = gso_type;
        let (mut segs, mut sizes) = buffers(SEGMENTS);
        let got = split_frame(&mut frame(hdr, &packet), &mut segs, &mut sizes);
        assert_eq!(got, Err(BadFrame::GsoType(gso_type)));
    }
}

#[test]
fn a_super_packet_that_splits_into_more_than_the_batch_holds_is_refused() {
    let (hdr, packet) = tso_frame();
    let (mut segs, mut sizes) = buffers(2);
    let got = split_frame(&mut frame(hdr, &packet), &mut segs, &mut sizes);
    assert!(matches!(got, Err(BadFrame::Malformed(_))), "{got:?}");
}

#[test]
fn malformed_headers_are_refused_without_a_panic() {
    let (good, packet) = tso_frame();
    let cases: Vec<(&str, VirtioNetHdr, Vec<u8>)> = vec![
        (
            "segment size 0",
            VirtioNetHdr {
                gso_size: 0,
                ..good
            },
            packet.clone(),
        ),
        (
            "checksum past the end",
            VirtioNetHdr {
                csum_start: 9000,
                ..good
            },
            packet.clone(),
        ),
        (
            "IP header too short",
            VirtioNetHdr {
                csum_start: 4,
                ..good
            },
            packet.clone(),
        ),
        ("cut inside the TCP header", good, packet[..30].to_vec()),
        ("not IP", good, {
            let mut p = packet.clone();
            p[0] = 0x25;
            p
        }),
        ("TCP header length 8", good, {
            let mut p = packet.clone();
            p[32] = 2 << 4;
            p
        }),
        (
            "wrong checksum offset",
            VirtioNetHdr {
                csum_offset: 6,
                ..good
            },
            packet.clone(),
        ),
        (
            "segments bigger than a buffer",
            VirtioNetHdr {
                gso_size: 2000,
                ..good
            },
            packet,
        ),
    ];
    for (what, hdr, packet) in cases {
        let (mut segs, mut sizes) = buffers(SEGMENTS);
        let got = split_frame(&mut frame(hdr, &packet), &mut segs, &mut sizes);
        assert!(got.is_err(), "{what}: {got:?}");
    }
    let (mut segs, mut sizes) = buffers(4);
    assert_eq!(
        split_frame(&mut [0u8; 5], &mut segs, &mut sizes),
        Err(BadFrame::Short)
    );
}

#[test]
fn random_frames_never_panic() {
    // A cheap fuzz: every prefix and byte flip of a good frame.
    let (hdr, packet) = tso_frame();
    let good = frame(hdr, &packet);
    let mut seed = 0x2545_f491_u32;
    for round in 0..2000 {
        let mut f = good.clone();
        let cut = (round * 7) % f.len();
        f.truncate(cut.max(1));
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let at = seed as usize % f.len();
            f[at] = (seed >> 8) as u8;
        }
        let (mut segs, mut sizes) = buffers(SEGMENTS);
        let _ = split_frame(&mut f, &mut segs, &mut sizes);
    }
}

/// A queued packet as `TunBatch::queue` leaves it: room for the header, then IP with
/// this protocol and a tag byte to follow it by.
fn queued(version: u8, protocol: u8, tag: u8) -> Vec<u8> {
    let mut ip = vec![0u8; 48];
    ip[0] = version << 4;
    if version == 4 {
        ip[9] = protocol;
    } else {
        ip[6] = protocol;
    }
    ip[47] = tag;
    let mut buf = vec![0u8; VIRTIO_NET_HDR_LEN];
    buf.extend_from_slice(&ip);
    buf
}

#[test]
fn udp_packets_go_after_the_others_each_group_in_its_own_order() {
    let mut bufs = vec![
        queued(4, 17, 1),
        queued(4, 6, 2),
        queued(6, 17, 3),
        queued(6, 6, 4),
        queued(4, 1, 5),
        queued(4, 17, 6),
    ];
    let udp_from = udp_last(&mut bufs);
    assert_eq!(udp_from, 3);
    let tags: Vec<u8> = bufs.iter().map(|b| b[b.len() - 1]).collect();
    assert_eq!(tags, [2, 4, 5, 1, 3, 6]);
}

#[test]
fn short_or_unknown_packets_are_not_taken_for_udp() {
    assert!(!is_udp(&[]));
    assert!(!is_udp(&[0x45, 0, 0]));
    assert!(!is_udp(&[0x60; 4]));
    assert!(!is_udp(&[0x10; 40]));
    assert!(is_udp(&queued(4, 17, 0)[VIRTIO_NET_HDR_LEN..]));
}

#[test]
fn shedding_keeps_the_packets_that_wait_for_a_write() {
    let mut batch = TunBatch::new(true, true, 1420);
    for tag in 1..=5u8 {
        let mut buf = vec![0u8; VIRTIO_NET_HDR_LEN + 40];
        buf[VIRTIO_NET_HDR_LEN..].fill(tag);
        assert!(batch.queue(buf).is_empty(), "no spare yet");
    }
    batch.shed();
    assert_eq!(batch.queued(), 5);
    let tags: Vec<u8> = batch.out[..5]
        .iter()
        .map(|b| b[VIRTIO_NET_HDR_LEN])
        .collect();
    assert_eq!(tags, [1, 2, 3, 4, 5], "the waiting packets, in order");
    assert!(
        batch.segments.is_empty(),
        "the segments went back; a read grows them"
    );
}
