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
