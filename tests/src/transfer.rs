//! Moving data through the overlay and checking it arrived whole.

use std::time::Duration;

use crate::host::Host;
use crate::netns::in_netns;

/// Sends `bytes` of TCP from `from` to a listener on `to` at `addr` (`ip:port`) through
/// the overlay and checks what arrived, byte for byte. Each read and the connect may
/// take up to `within`. With offload on this is the path of TCP super-packets (split,
/// encrypted in a batch, sent with GSO) and GRO on the way back in: a segment cut or
/// checksummed wrongly would stall or corrupt it. Through a relay over TCP or TLS it is
/// the relay connection's backlog: a message cut in two would corrupt the stream.
pub fn bulk_tcp(from: &Host, to: &Host, addr: &str, bytes: usize, within: Duration) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = in_netns(to, || {
        TcpListener::bind(addr).expect("binding the listener")
    });
    let target = addr.parse().unwrap();
    let mut stream = in_netns(from, || {
        TcpStream::connect_timeout(&target, within).expect("connecting")
    });
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accepting");
        conn.set_read_timeout(Some(within)).unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("reading the transfer");
        got
    });
    let sent: Vec<u8> = (0..bytes)
        .map(|i| (i ^ (i >> 9) ^ (i >> 17)) as u8)
        .collect();
    stream.write_all(&sent).expect("sending");
    drop(stream);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), sent.len(), "bytes that arrived");
    assert!(
        got == sent,
        "the transfer arrived with other bytes than were sent"
    );
}

/// Sends `count` UDP datagrams of `len` bytes from `from` to `addr` on the host of the
/// receiving agent `receiver` (WireGuard on UDP `port`) while that agent is frozen, so
/// they wait on its socket and it decrypts them in one go; thaws it and checks every one
/// arrived whole and in order. Returns how many write calls the receiver made meanwhile:
/// with TUN offload the datagrams of the flow go to the TUN coalesced, a few writes for
/// them all.
pub fn frozen_udp_burst(
    from: &Host,
    receiver: &crate::Agent,
    port: u16,
    addr: &str,
    count: usize,
    len: usize,
    within: Duration,
) -> u64 {
    use std::net::UdpSocket;
    let (to, receiver) = (receiver.host(), receiver.proc());
    let socket = in_netns(to, || UdpSocket::bind(addr).expect("binding the receiver"));
    socket.set_read_timeout(Some(within)).unwrap();
    let sender = in_netns(from, || {
        UdpSocket::bind("0.0.0.0:0").expect("binding the sender")
    });
    let datagram = |i: usize| vec![i as u8; len];
    receiver.signal(libc::SIGSTOP);
    // Thawed however this ends: a frozen agent would not stop on SIGTERM.
    let thaw = Thaw(receiver);
    for i in 0..count {
        sender.send_to(&datagram(i), addr).expect("sending");
    }
    // The whole burst waits on the frozen agent's socket before it thaws (the queue
    // counts each datagram's buffer, more than its bytes).
    crate::wait_for(
        "the burst to wait on the frozen agent's socket",
        within,
        || (udp_queued(to, port) >= (count * len) as u64).then_some(()),
    );
    let writes = crate::figures::write_calls(receiver.pid());
    drop(thaw);
    let mut buf = vec![0u8; len + 1];
    for i in 0..count {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} of {count} did not arrive: {e}"));
        assert_eq!(&buf[..n], &datagram(i)[..], "datagram {i} arrived changed");
    }
    crate::figures::write_calls(receiver.pid()) - writes
}

/// Sends SIGCONT to its process when dropped.
struct Thaw<'a>(&'a crate::Proc);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

/// Bytes queued on `host`'s UDP sockets bound to `port` (IPv4 and IPv6), from
/// /proc/net/udp{,6} as seen in its namespace.
fn udp_queued(host: &Host, port: u16) -> u64 {
    let port = format!(":{port:04X}");
    let tables = host.run(&["cat", "/proc/net/udp", "/proc/net/udp6"]);
    tables
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let local = fields.nth(1)?;
            let queues = fields.nth(2)?;
            let rx = queues.split_once(':')?.1;
            local
                .ends_with(&port)
                .then(|| u64::from_str_radix(rx, 16).ok())?
        })
        .sum()
}
