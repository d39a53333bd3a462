//! The probe's bookkeeping with a simulated TUN: what is sent is read back as the
//! packet the kernel would queue, at a time the test chooses.

use super::*;

const MS: Duration = Duration::from_millis(1);
const SECRET: [u8; 8] = *b"probe-42";

/// The IPv4 datagram the kernel queues on the TUN for `payload`.
fn as_queued(payload: &[u8]) -> Vec<u8> {
    let mut p = vec![
        0x45,
        0,
        0,
        (20 + 8 + payload.len()) as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&[10, 42, 0, 2]);
    p.extend_from_slice(&DUMMY);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&PORT.to_be_bytes());
    p.extend_from_slice(&[0, (8 + payload.len()) as u8, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Sends a probe at `at`; the packet the TUN would give back, if one was sent.
fn send(probe: &mut RingProbe, at: Instant) -> Option<Vec<u8>> {
    let mut queued = None;
    probe.launch(at, |payload| {
        queued = Some(as_queued(payload));
        Ok(())
    });
    queued
}

fn probe() -> RingProbe {
    RingProbe::detached(SECRET)
}

#[test]
fn a_probe_read_back_measures_how_long_it_waited_in_the_queue() {
    let t0 = Instant::now();
    let mut probe = probe();
    assert_eq!(probe.wait(t0), None, "nothing measured yet");
    let first = send(&mut probe, t0).expect("the first probe goes at once");
    assert!(probe.take(&first, t0 + 40 * MS));
    assert_eq!(probe.wait(t0 + 40 * MS), Some(40 * MS));
    // It stands for the queue until a newer probe comes back, for a second at most.
    assert_eq!(probe.wait(t0 + 1040 * MS), Some(40 * MS));
    assert_eq!(probe.wait(t0 + 1041 * MS), None);
}

#[test]
fn probes_go_every_10_ms_and_each_returned_one_replaces_the_sample() {
    let t0 = Instant::now();
    let mut probe = probe();
    let a = send(&mut probe, t0).unwrap();
    assert_eq!(send(&mut probe, t0 + 9 * MS), None, "too soon");
    let b = send(&mut probe, t0 + 10 * MS).unwrap();
    assert!(probe.take(&a, t0 + 30 * MS));
    assert_eq!(probe.wait(t0 + 30 * MS), Some(30 * MS));
    // The queue is draining: the next probe came back after 22 ms.
    assert!(probe.take(&b, t0 + 32 * MS));
    assert_eq!(probe.wait(t0 + 32 * MS), Some(22 * MS));
    // Read twice (it cannot be), a probe counts once.
    assert!(probe.take(&b, t0 + 50 * MS));
    assert_eq!(probe.wait(t0 + 50 * MS), Some(22 * MS));
}

#[test]
fn a_probe_that_never_came_back_is_forgotten_and_says_nothing() {
    let t0 = Instant::now();
    let mut probe = probe();
    let lost = send(&mut probe, t0).unwrap();
    let mut last = None;
    for i in 1..=IN_FLIGHT as u32 {
        last = send(&mut probe, t0 + i * 10 * MS);
    }
    assert_eq!(probe.in_flight.len(), IN_FLIGHT);
    // The lost one, read at last, is still the agent's (not passed on) but measures
    // nothing: it is no longer known when it left.
    assert!(probe.take(&lost, t0 + 400 * MS));
    assert_eq!(probe.wait(t0 + 400 * MS), None);
    assert!(probe.take(&last.unwrap(), t0 + 400 * MS));
    assert_eq!(probe.wait(t0 + 400 * MS), Some(80 * MS));
}

#[test]
fn only_a_probe_with_this_agents_secret_to_the_dummy_address_and_port_is_taken() {
    let t0 = Instant::now();
    let mut probe = probe();
    let real = send(&mut probe, t0).unwrap();
    let mut other_secret = real.clone();
    other_secret[28] ^= 1;
    let mut other_port = real.clone();
    other_port[23] = 53;
    let mut other_address = real.clone();
    other_address[19] = 9;
    let mut tcp = real.clone();
    tcp[9] = 6;
    for (name, packet) in [
        ("another secret", other_secret),
        ("another port", other_port),
        ("another address", other_address),
        ("TCP", tcp),
        ("cut short", real[..real.len() - 1].to_vec()),
        ("empty", Vec::new()),
    ] {
        assert!(!probe.take(&packet, t0 + MS), "{name}");
    }
    assert_eq!(probe.wait(t0 + MS), None);
}

/// A zeroed IP packet of `len` bytes with `version` and `protocol` (IPv6: next header).
fn packet(version: u8, protocol: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = version << 4;
    p[if version == 4 { 9 } else { 6 }] = protocol;
    p
}

#[test]
fn bulk_is_tcp_or_udp_of_1000_bytes_or_more() {
    assert!(bulk(&packet(4, 17, 1000)));
    assert!(bulk(&packet(4, 6, 1400)));
    assert!(bulk(&packet(6, 17, 1280)));
    assert!(!bulk(&packet(4, 17, 999)), "a small datagram");
    assert!(!bulk(&packet(4, 1, 1400)), "a big ping");
    assert!(!bulk(&packet(6, 58, 1400)), "ICMPv6");
    assert!(!bulk(&[]));
}

#[test]
fn bulk_udp_is_only_the_udp_of_bulk() {
    assert!(bulk_udp(&packet(4, 17, 1400)));
    assert!(bulk_udp(&packet(6, 17, 1280)));
    assert!(!bulk_udp(&packet(4, 6, 1400)), "TCP answers CoDel");
    assert!(!bulk_udp(&packet(6, 6, 1400)));
    assert!(!bulk_udp(&packet(4, 17, 999)), "a small datagram");
    assert!(!bulk_udp(&[0x45]));
}
