//! Real sockets on loopback: what leaves in one batch arrives as the same datagrams, with
//! GSO and GRO on and with them forced off, and a bad message in the middle of a batch
//! costs only itself.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::*;

fn pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    (a, b)
}

/// Everything `rx` receives within a second, until `want` datagrams came.
fn drain(rx: &UdpSocket, batch: &mut RecvBatch, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        match batch.recv(rx.as_raw_fd()) {
            Ok(_) => got.extend(batch.datagrams().map(|(f, d, _)| (f, d.to_vec()))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("recvmmsg: {e}"),
        }
    }
    got
}

/// Forty full datagrams and a short last one, each numbered in its first byte.
fn train(to: SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> {
    (0..41u8)
        .map(|i| {
            let len = if i == 40 { 300 } else { 1200 };
            (to, vec![i; len])
        })
        .collect()
}

fn sends_and_receives_a_train(level: Level, gro: bool) {
    let (tx, rx) = pair();
    if gro {
        assert!(enable_gro(rx.as_raw_fd()), "this kernel has UDP GRO (5.0+)");
    }
    let to = rx.local_addr().unwrap();
    let datagrams = train(to);
    let mut sender = SendBatch::new(level);
    let mut sent = 0;
    while sent < datagrams.len() {
        sent += sender
            .send(tx.as_raw_fd(), false, &datagrams[sent..])
            .unwrap();
    }
    assert_eq!(sender.level(), level, "loopback takes every level");
    let mut batch = RecvBatch::new(8, 65_536);
    let got = drain(&rx, &mut batch, datagrams.len());
    let from = tx.local_addr().unwrap();
    assert_eq!(got.len(), datagrams.len());
    for (i, (f, d)) in got.iter().enumerate() {
        assert_eq!(*f, from);
        assert_eq!(d, &datagrams[i].1, "datagram {i}");
    }
}

#[test]
fn a_train_sent_with_gso_arrives_whole_through_gro() {
    sends_and_receives_a_train(Level::Gso, true);
}

#[test]
fn a_train_sent_with_gso_arrives_whole_without_gro() {
    sends_and_receives_a_train(Level::Gso, false);
}

#[test]
fn a_train_sent_with_sendmmsg_arrives_whole() {
    sends_and_receives_a_train(Level::Mmsg, true);
}

#[test]
fn a_train_sent_one_at_a_time_arrives_whole() {
    sends_and_receives_a_train(Level::Single, false);
}

#[test]
fn runs_break_at_a_new_destination_a_bigger_datagram_or_after_a_shorter_one() {
    let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:1".parse().unwrap();
    let batch = [
        (a, vec![0; 100]),
        (a, vec![0; 100]),
        (a, vec![0; 50]),
        (a, vec![0; 50]),
        (b, vec![0; 50]),
        (b, vec![0; 60]),
    ];
    assert_eq!(gso_run(&batch), 3);
    assert_eq!(gso_run(&batch[3..]), 1);
    assert_eq!(gso_run(&batch[4..]), 1);
    let long: Vec<_> = (0..100).map(|_| (a, vec![0u8; 1400])).collect();
    // 46 * 1400 = 64,400 fits in 65,000; 47 would not.
    assert_eq!(gso_run(&long), 46);
    let small: Vec<_> = (0..100).map(|_| (a, vec![0u8; 10])).collect();
    assert_eq!(gso_run(&small), MAX_SEGMENTS);
}

#[test]
fn an_oversized_datagram_in_the_middle_of_a_batch_is_dropped_and_counted() {
    let (tx, rx) = pair();
    let to = rx.local_addr().unwrap();
    for len in [100, 5000, 100] {
        tx.send_to(&vec![len as u8; len], to).unwrap();
    }
    // Slots of 2 KiB: the middle datagram does not fit.
    let mut batch = RecvBatch::new(8, 2048);
    let got = drain(&rx, &mut batch, 2);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(_, d)| d.len() == 100));
    assert_eq!(batch.truncated, 1);
}

#[test]
fn a_datagram_to_an_unreachable_address_fails_alone() {
    let (tx, rx) = pair();
    let to = rx.local_addr().unwrap();
    // An IPv6 destination on an IPv4 socket: refused for that datagram only.
    let bad: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
    let datagrams = vec![(bad, vec![1u8; 10]), (to, vec![2u8; 10])];
    let mut sender = SendBatch::new(Level::Gso);
    let err = sender.send(tx.as_raw_fd(), false, &datagrams).unwrap_err();
    assert_ne!(err.kind(), io::ErrorKind::WouldBlock);
    // The caller skips it and goes on.
    assert_eq!(
        sender.send(tx.as_raw_fd(), false, &datagrams[1..]).unwrap(),
        1
    );
    let mut batch = RecvBatch::new(4, 2048);
    assert_eq!(drain(&rx, &mut batch, 1).len(), 1);
    assert_eq!(
        sender.level(),
        Level::Gso,
        "a bad address is not a kernel refusal"
    );
}

#[test]
fn a_train_split_at_its_segment_size_keeps_the_short_tail() {
    let bytes = [0u8; 25];
    let sizes: Vec<usize> = split_train(&bytes, 10).map(<[u8]>::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(split_train(&bytes, 0).count(), 1);
    assert_eq!(split_train(&bytes, 100).count(), 1);
}

#[test]
fn the_kernel_knows_udp_gso() {
    let (tx, _) = pair();
    assert!(kernel_has_gso(tx.as_raw_fd()));
}

#[test]
fn a_kernel_that_refuses_gso_gets_the_train_by_sendmmsg_and_keeps_that_level() {
    let (tx, rx) = pair();
    // SO_NO_CHECK makes Linux answer every UDP_SEGMENT send with EINVAL (udp_send_skb)
    // while plain sends pass: a kernel refusing GSO, on loopback.
    assert!(setsockopt_int(
        tx.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_NO_CHECK,
        1
    ));
    let datagrams = train(rx.local_addr().unwrap());
    let mut sender = SendBatch::new(Level::Gso);
    let mut sent = 0;
    while sent < datagrams.len() {
        sent += sender
            .send(tx.as_raw_fd(), false, &datagrams[sent..])
            .unwrap();
    }
    assert_eq!(sender.level(), Level::Mmsg);
    let mut batch = RecvBatch::new(8, 2048);
    let got = drain(&rx, &mut batch, datagrams.len());
    assert_eq!(got.len(), datagrams.len());
    assert!(got.iter().zip(&datagrams).all(|((_, g), (_, d))| g == d));
}

/// Waits, up to 5 s, until a datagram `rx` reads shows that it waited in the socket.
///
/// Linux stamps arriving packets only once a static key is on, and it turns that key on
/// from a work queue a moment after the first socket in the system asks for stamps
/// (`net_enable_timestamp`). A datagram that arrives before is stamped as it is read, so
/// it looks as if it never waited. In the agent that costs nothing (a zero wait is never
/// dropped); here it would fail the measurement, as it did once in CI under qemu.
fn until_stamps_are_live(tx: &UdpSocket, rx: &UdpSocket) {
    const LAY: Duration = Duration::from_millis(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batch = RecvBatch::new(1, 2048);
    loop {
        tx.send_to(b"probe", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(LAY);
        let waits: Vec<Duration> = drain_waits(rx, &mut batch);
        if waits.iter().all(|w| *w >= LAY) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the kernel never stamped on arrival: {waits:?}"
        );
    }
}

/// The waits of the datagram(s) `rx` holds, read once the first has arrived.
fn drain_waits(rx: &UdpSocket, batch: &mut RecvBatch) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match batch.recv(rx.as_raw_fd()) {
            Ok(_) => return batch.datagrams().map(|(_, _, w)| w).collect(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("recvmmsg: {e}"),
        }
    }
}

/// How long since `sent_at` on the wall clock, the clock the kernel's stamps are read
/// on. Measured on the monotonic clock instead, the bound failed once in CI under qemu
/// (a wait of 31.044 ms against 30.805 lain): the two clocks had moved apart by a
/// quarter of a millisecond within the 30 ms, as a virtual machine's stepped wall clock
/// does; the stamps themselves cannot come before the send.
fn lain_since(sent_at: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(sent_at)
        .unwrap_or_default()
}

/// The wait the loop's queue control reads (codel.rs): as long as the datagram lay in
/// the socket, with GRO trains and without, and zero when the kernel was not asked.
#[test]
fn each_datagram_says_how_long_it_waited_in_the_socket() {
    // Long enough to tell from a scheduling hiccup, short of LONGEST_WAIT.
    const LAY: Duration = Duration::from_millis(30);
    for (stamped, gro) in [(true, true), (true, false), (false, true)] {
        let (tx, rx) = pair();
        assert!(
            !stamped || enable_timestamps(rx.as_raw_fd()),
            "Linux 5.1+ stamps"
        );
        if stamped {
            until_stamps_are_live(&tx, &rx);
        }
        assert!(!gro || enable_gro(rx.as_raw_fd()));
        let to = rx.local_addr().unwrap();
        let mut sender = SendBatch::new(Level::Gso);
        let datagrams = train(to);
        let sent_at = SystemTime::now();
        let mut sent = 0;
        while sent < datagrams.len() {
            sent += sender
                .send(tx.as_raw_fd(), false, &datagrams[sent..])
                .unwrap();
        }
        // What is measured is this wait: the datagrams lie in the socket meanwhile.
        std::thread::sleep(LAY);
        let mut batch = RecvBatch::new(64, 65_536);
        batch.recv(rx.as_raw_fd()).unwrap();
        let lain = lain_since(sent_at);
        let waits: Vec<Duration> = batch.datagrams().map(|(_, _, w)| w).collect();
        assert_eq!(waits.len(), datagrams.len(), "stamped {stamped}, gro {gro}");
        for wait in waits {
            if stamped {
                assert!(
                    wait >= LAY && wait <= lain,
                    "{wait:?}, lain {lain:?}, gro {gro}"
                );
            } else {
                assert_eq!(wait, Duration::ZERO);
            }
        }
    }
}

#[test]
fn a_wait_is_read_from_a_32_bit_stamp_after_its_seconds_wrapped_and_never_backwards() {
    let taken = UNIX_EPOCH + Duration::from_secs(1 << 32) + Duration::from_millis(500);
    let wrapped = (0, 400_000);
    assert_eq!(waited(taken, wrapped), Some(Duration::from_millis(100)));
    let whole = ((1i64 << 32) - 1, 900_000);
    assert_eq!(waited(taken, whole), Some(Duration::from_millis(600)));
    assert_eq!(
        waited(taken, (0, 600_000)),
        None,
        "a stamp after the reading"
    );
    assert_eq!(
        waited(taken, (-5, 0)),
        None,
        "a wall clock stepped back 5 s"
    );
}

/// The path without batching reads the same wait, sender and bytes one datagram a call,
/// and drops one bigger than its buffer instead of passing on a cut one.
#[test]
fn one_datagram_read_alone_says_how_long_it_waited_and_is_never_cut() {
    const LAY: Duration = Duration::from_millis(30);
    let (tx, rx) = pair();
    assert!(enable_timestamps(rx.as_raw_fd()));
    until_stamps_are_live(&tx, &rx);
    let to = rx.local_addr().unwrap();
    let sent_at = SystemTime::now();
    tx.send_to(&[7; 1200], to).unwrap();
    tx.send_to(&[8; 100], to).unwrap();
    std::thread::sleep(LAY);
    let mut buf = [0u8; 1000];
    let (len, from, wait) = recv_one(rx.as_raw_fd(), &mut buf).unwrap();
    assert_eq!(len, None, "1,200 bytes do not fit 1,000");
    assert_eq!(from, tx.local_addr().unwrap());
    assert!(wait >= LAY, "{wait:?}");
    let (len, _, wait) = recv_one(rx.as_raw_fd(), &mut buf).unwrap();
    let lain = lain_since(sent_at);
    assert_eq!(len, Some(100));
    assert_eq!(&buf[..100], &[8; 100][..]);
    assert!(wait >= LAY && wait <= lain, "{wait:?}, lain {lain:?}");
    let empty = recv_one(rx.as_raw_fd(), &mut buf).unwrap_err();
    assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);

    let (tx, rx) = pair();
    tx.send_to(b"unstamped", rx.local_addr().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    let got = loop {
        match recv_one(rx.as_raw_fd(), &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(
        (got.0, got.2),
        (Some(9), Duration::ZERO),
        "not asked, not stamped"
    );
}
