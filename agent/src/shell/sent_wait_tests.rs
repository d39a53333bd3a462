use super::*;

const MS: Duration = Duration::from_millis(1);

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// The TCP header of a segment from port 40000 to `port`: NOP, NOP, timestamp `stamp`,
/// then `payload` bytes.
fn tcp(port: u16, stamp: u32, payload: usize) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&40000u16.to_be_bytes());
    t.extend_from_slice(&port.to_be_bytes());
    t.extend_from_slice(&[0; 8]); // sequence and acknowledgement numbers
    t.extend_from_slice(&[8 << 4, 0x10, 0xff, 0xff, 0, 0, 0, 0]); // 32-byte header, ACK
    t.extend_from_slice(&[1, 1, 8, 10]);
    t.extend_from_slice(&stamp.to_be_bytes());
    t.extend_from_slice(&[0; 4]); // the echoed stamp
    t.resize(32 + payload, 0xab);
    t
}

fn ipv4(tcp: &[u8]) -> Vec<u8> {
    let total = (20 + tcp.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]); // don't fragment, TTL, TCP
    p.extend_from_slice(&[10, 42, 0, 1, 10, 42, 0, 2]);
    p.extend_from_slice(tcp);
    p
}

fn ipv6(tcp: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[6, 64]);
    p.extend_from_slice(&[0xfd; 16]);
    p.extend_from_slice(&[0xfe; 16]);
    p.extend_from_slice(tcp);
    p
}

/// A data segment sent at `sent` ms on a millisecond clock that reads `base` at 0, read
/// at `read` ms.
fn sent_at(waits: &mut SentWaits, start: Instant, sent: u64, read: u64) -> Option<Duration> {
    let stamp = 7_000_000u32.wrapping_add(sent as u32);
    waits.wait(&ipv4(&tcp(5201, stamp, 1000)), start + ms(read))
}

#[test]
fn a_segment_waited_as_long_as_its_stamp_lags_the_least_lag_of_its_flow() {
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    // Every 10 ms, read as soon as sent: nothing is believed until the clock is proven.
    let proven = PROVE.as_millis() as u64;
    for t in (0..proven).step_by(10) {
        assert_eq!(sent_at(&mut waits, start, t, t), None, "at {t} ms");
    }
    assert_eq!(
        sent_at(&mut waits, start, proven, proven),
        Some(Duration::ZERO)
    );
    // A queue builds: each segment read 40 ms after it was stamped.
    let t = proven + 10;
    assert_eq!(sent_at(&mut waits, start, t, t + 40), Some(40 * MS));
    assert_eq!(sent_at(&mut waits, start, t + 10, t + 50), Some(40 * MS));
    // And drains.
    assert_eq!(sent_at(&mut waits, start, t + 100, t + 101), Some(MS));
}

#[test]
fn a_stamp_across_the_wrap_of_the_32_bit_clock_reads_right() {
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    let near_wrap = u32::MAX - 1500;
    let segment = |t: u64| ipv4(&tcp(5201, near_wrap.wrapping_add(t as u32), 100));
    for t in (0..=2500).step_by(10) {
        waits.wait(&segment(t), start + ms(t));
    }
    // Sent at 2,600 ms (stamp past the wrap), read at 2,630.
    assert_eq!(waits.wait(&segment(2600), start + 2630 * MS), Some(30 * MS));
}

#[test]
fn stamps_that_do_not_tick_in_milliseconds_are_never_believed() {
    // A jiffies clock at 100 Hz or 250 Hz (Linux before 4.13), and microseconds (Linux's
    // usec timestamps): read as milliseconds they would look like a wait growing or
    // shrinking for ever.
    for (name, per_second) in [
        ("10 ms", 100u64),
        ("4 ms", 250),
        ("microseconds", 1_000_000),
    ] {
        let start = Instant::now();
        let mut waits = SentWaits::new(start);
        for t in (0..5000).step_by(10) {
            let stamp = (t * per_second / 1000) as u32;
            let wait = waits.wait(&ipv4(&tcp(22, stamp, 100)), start + ms(t));
            assert_eq!(wait, None, "{name} clock at {t} ms");
        }
    }
}

#[test]
fn segments_without_a_payload_teach_the_offset_but_are_not_measured() {
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    let ack = |t: u64| ipv4(&tcp(5201, 500 + t as u32, 0));
    for t in (0..=2500).step_by(10) {
        assert_eq!(waits.wait(&ack(t), start + ms(t)), None);
    }
    // The first data segment of the flow, 20 ms late, is measured against the ACKs.
    let data = ipv4(&tcp(5201, 500 + 2600, 1));
    assert_eq!(waits.wait(&data, start + 2620 * MS), Some(20 * MS));
}

#[test]
fn each_flow_is_measured_against_its_own_offset() {
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    // Two connections, their clocks offset far apart (Linux offsets each at random).
    let segment = |port: u16, offset: u32, t: u64| ipv4(&tcp(port, offset + t as u32, 500));
    for t in (0..=2500).step_by(10) {
        waits.wait(&segment(22, 10, t), start + ms(t));
        waits.wait(
            &ipv6(&tcp(443, 3_000_000_000 + t as u32, 500)),
            start + ms(t),
        );
    }
    let read = start + 2625 * MS;
    assert_eq!(waits.wait(&segment(22, 10, 2600), read), Some(25 * MS));
    let v6 = ipv6(&tcp(443, 3_000_000_000 + 2620, 500));
    assert_eq!(waits.wait(&v6, read), Some(5 * MS));
}

/// Proves 10.42.0.1's clock with a flow to port 22 over the first 1.2 s.
fn prove_the_source(waits: &mut SentWaits, start: Instant) {
    for t in (0..=1200).step_by(10) {
        waits.wait(&ipv4(&tcp(22, 10 + t as u32, 100)), start + ms(t));
    }
}

#[test]
fn a_new_flow_from_a_source_that_proved_its_clock_is_measured_from_its_first_segment() {
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    prove_the_source(&mut waits, start);
    // A new connection from the same host, its clock offset elsewhere, in slow start: its
    // segments wait longer and longer from the first on.
    let segment = |t: u64| ipv4(&tcp(5201, 4_000_000_000 + t as u32, 1000));
    assert_eq!(waits.wait(&segment(1300), start + 1300 * MS), Some(ms(0)));
    assert_eq!(waits.wait(&segment(1310), start + 1325 * MS), Some(ms(15)));
    assert_eq!(waits.wait(&segment(1320), start + 1360 * MS), Some(ms(40)));
    // Another host's new flow still proves its own clock first.
    let other = |t: u64| ipv6(&tcp(5201, 77 + t as u32, 1000));
    assert_eq!(waits.wait(&other(1300), start + 1300 * MS), None);
    assert_eq!(waits.wait(&other(1310), start + 1350 * MS), None);
}

#[test]
fn a_flow_that_fails_its_own_proof_disowns_its_source() {
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    prove_the_source(&mut waits, start);
    // From the same address (a NAT in front of two hosts, say) a flow whose clock ticks
    // every 4 ms: believed at first, then disowned once its second has passed.
    let jiffies = |t: u64| ipv4(&tcp(5201, (t / 4) as u32, 1000));
    let mut believed = 0;
    for t in (1300..=2400).step_by(10) {
        let wait = waits.wait(&jiffies(t), start + ms(t));
        if t < 2300 {
            believed += usize::from(wait.is_some());
        } else {
            assert_eq!(wait, None, "at {t} ms, after its proof failed");
        }
    }
    assert_eq!(believed, 100, "vouched for until its own proof");
    // The next new flow from that address waits for a proof of its own.
    let next = ipv4(&tcp(8080, 5, 1000));
    assert_eq!(waits.wait(&next, start + 2500 * MS), None);
}

#[test]
fn a_queue_that_stood_two_whole_windows_reads_as_no_wait() {
    // What the offset cannot tell apart from a sender's clock that stepped: said in the
    // module's comment, and shown here so a change to it is a choice.
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    for t in (0..=2500).step_by(10) {
        sent_at(&mut waits, start, t, t);
    }
    let mut last = None;
    for t in (2510..2510 + 61_000).step_by(10) {
        last = sent_at(&mut waits, start, t, t + 50);
        if t < 2510 + 30_000 {
            assert_eq!(last, Some(50 * MS), "at {t} ms");
        }
    }
    assert_eq!(last, Some(Duration::ZERO));
}

#[test]
fn the_flow_seen_least_lately_gives_way_when_the_table_is_full() {
    let start = Instant::now();
    let mut waits = SentWaits::new(start);
    for port in 0..FLOWS as u16 + 1 {
        let t = u64::from(port);
        waits.wait(&ipv4(&tcp(port, 0, 10)), start + ms(t));
    }
    assert_eq!(waits.flows.len(), FLOWS);
    assert!(
        waits.flows.iter().all(|f| f.key.ports & 0xffff != 0),
        "port 0 went"
    );
    assert!(
        waits
            .flows
            .iter()
            .any(|f| f.key.ports & 0xffff == FLOWS as u32)
    );
}

#[test]
fn packets_that_are_not_stamped_tcp_say_nothing() {
    let segment = tcp(80, 1234, 10);
    let stamped = parse(&ipv4(&segment)).expect("a stamped segment");
    assert_eq!(stamped.stamp, 1234);
    assert!(stamped.has_payload);
    assert_eq!(parse(&ipv6(&segment)).map(|s| s.stamp), Some(1234));

    let mut udp = ipv4(&segment);
    udp[9] = 17;
    assert_eq!(parse(&udp), None, "UDP");
    let mut fragment = ipv4(&segment);
    fragment[7] = 1;
    assert_eq!(parse(&fragment), None, "a later fragment");
    let mut ended = segment.clone();
    ended[20] = 0; // end of options before the timestamp
    assert_eq!(parse(&ipv4(&ended)), None);
    let mut zero_length = segment.clone();
    zero_length[22] = 2;
    zero_length[23] = 0; // an option of length 0 would never end
    assert_eq!(parse(&ipv4(&zero_length)), None);
    let mut behind_extension = ipv6(&segment);
    behind_extension[6] = 0;
    assert_eq!(parse(&behind_extension), None, "behind a hop-by-hop header");
}

#[test]
fn a_packet_cut_short_anywhere_or_lying_about_its_lengths_is_not_read_past() {
    for packet in [ipv4(&tcp(80, 1, 10)), ipv6(&tcp(80, 1, 10))] {
        for cut in 0..packet.len() {
            assert_eq!(parse(&packet[..cut]), None, "cut at {cut}");
        }
    }
    let mut long_header = ipv4(&tcp(80, 1, 10));
    long_header[0] = 0x4f; // 60-byte IP header
    long_header[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(parse(&long_header), None);
    let mut long_tcp = ipv4(&tcp(80, 1, 0));
    long_tcp[20 + 12] = 0xf0; // a 60-byte TCP header in 32 bytes
    assert_eq!(parse(&long_tcp), None);
}
