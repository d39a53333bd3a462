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

/// Sends `count` UDP datagrams of `len` bytes from the host of `agent` to `addr` through
/// its TUN while the agent is frozen, so they wait in the TUN's queue and what does not
/// fit there is dropped by the kernel; thaws it. Nobody need listen at `addr`.
pub fn udp_into_frozen_tun(agent: &crate::Agent, addr: &str, count: usize, len: usize) {
    use std::net::UdpSocket;
    let sender = in_netns(agent.host(), || {
        UdpSocket::bind("0.0.0.0:0").expect("binding the sender")
    });
    let payload = vec![9; len];
    agent.proc().signal(libc::SIGSTOP);
    let _thaw = Thaw(agent.proc());
    for _ in 0..count {
        // A full queue may be reported to the sender, or not: either way it is dropped.
        let _ = sender.send_to(&payload, addr);
    }
}

/// Sends UDP from `from` to `addr` on `to` the way QUIC stacks do: each send is one
/// buffer that the kernel cuts into datagrams of a segment size (`UDP_SEGMENT`), one
/// send for each `(segment size, bytes)` of `sends`; a last datagram shorter than the
/// segment size ends it. On a TUN with UDP offload (Linux 6.2+) the kernel hands the
/// agent each send whole, as one super-packet to split and checksum. One send at a time:
/// each of its datagrams must arrive byte for byte and in order, within `within`, before
/// the next send goes. Returns the datagrams that arrived.
pub fn gso_udp(
    from: &Host,
    to: &Host,
    addr: &str,
    sends: &[(usize, usize)],
    within: Duration,
) -> usize {
    use std::net::UdpSocket;
    let socket = in_netns(to, || UdpSocket::bind(addr).expect("binding the receiver"));
    socket.set_read_timeout(Some(within)).unwrap();
    let sender = in_netns(from, || {
        UdpSocket::bind("0.0.0.0:0").expect("binding the sender")
    });
    let mut arrived = 0;
    let mut buf = vec![0u8; 65_536];
    for (send, &(segment, bytes)) in sends.iter().enumerate() {
        let datagrams: Vec<Vec<u8>> = (0..bytes.div_ceil(segment))
            .map(|i| numbered(send, i, segment.min(bytes - i * segment)))
            .collect();
        let size = libc::c_int::try_from(segment).expect("a segment size fits an int");
        set_udp_option(&sender, libc::UDP_SEGMENT, size)
            .unwrap_or_else(|e| panic!("UDP_SEGMENT {segment}: {e}"));
        sender
            .send_to(&datagrams.concat(), addr)
            .unwrap_or_else(|e| panic!("send {send} ({bytes} bytes by {segment}): {e}"));
        for (i, datagram) in datagrams.iter().enumerate() {
            let n = socket.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "datagram {i} of send {send} ({bytes} bytes by {segment}) did not arrive \
                     ({e}); the receiver's UDP counters:\n{}",
                    udp_counters(to)
                )
            });
            assert!(
                buf[..n] == datagram[..],
                "datagram {i} of send {send} ({bytes} bytes by {segment}) arrived as {n} \
                 bytes, numbered {:?}; the receiver's UDP counters:\n{}",
                buf.get(..8),
                udp_counters(to)
            );
            arrived += 1;
        }
    }
    arrived
}

/// Sends for `gso_udp`, (segment size, bytes), 1,085 datagrams in all: the largest
/// segment a 1420-byte MTU takes, whole and with a short last datagram; smaller ones;
/// many tiny ones; a send of one segment; five times over.
pub fn gso_sends() -> Vec<(usize, usize)> {
    [
        (1392, 1392 * 40),
        (1392, 1392 * 20 + 100),
        (1200, 1200 * 30 + 8),
        (536, 536 * 60 + 300),
        (64, 64 * 60),
        (1392, 1392 * 2 + 10),
        (1000, 1000),
    ]
    .repeat(5)
}

/// Sets a UDP-level socket option that takes an int (`UDP_SEGMENT`, `UDP_GRO`).
pub fn set_udp_option(
    socket: &std::net::UdpSocket,
    option: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a live socket and an int option value of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `len` bytes (at least 8) that say which send and which of its datagrams they are.
fn numbered(send: usize, index: usize, len: usize) -> Vec<u8> {
    assert!(len >= 8, "a numbered datagram holds its two numbers");
    let mut datagram = Vec::with_capacity(len);
    datagram.extend_from_slice(&(send as u32).to_be_bytes());
    datagram.extend_from_slice(&(index as u32).to_be_bytes());
    datagram.extend((8..len).map(|i| (i ^ send ^ (index << 3)) as u8));
    datagram
}

/// The `Udp:` lines of /proc/net/snmp in `host`'s namespace (checksum errors among them).
fn udp_counters(host: &Host) -> String {
    let snmp = host.run(&["cat", "/proc/net/snmp"]);
    snmp.lines()
        .filter(|l| l.starts_with("Udp:"))
        .collect::<Vec<_>>()
        .join("\n")
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
