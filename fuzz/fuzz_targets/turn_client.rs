//! The TURN client fed whatever a server (or anyone spoofing it) sends: the first byte
//! picks UDP datagrams or a TCP/TLS byte stream, the rest is cut into messages by 2-byte
//! length prefixes; the client's outputs are drained after each, and time moves on.
#![no_main]

use std::time::{Duration, Instant};

use edgewire::turn::{Timings, Transport, TurnClient, TurnConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let transport = if mode & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let config = TurnConfig {
        server: "203.0.113.30:3478".parse().unwrap(),
        transport,
        username: "edge".into(),
        password: "correct horse".into(),
        software: String::new(),
        timings: Timings::default(),
    };
    let mut now = Instant::now();
    let mut client = TurnClient::new(config, 7, now);
    if mode & 2 != 0 {
        client.add_peer("198.51.100.2:51820".parse().unwrap(), now);
    }
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 1600;
        let chunk = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        if transport == Transport::Udp {
            let _ = client.handle_datagram(chunk, now);
        } else {
            client.handle_stream(chunk);
            while client.poll_stream(now).is_some() {}
        }
        while client.poll_transmit().is_some() {}
        while client.poll_event().is_some() {}
        now += Duration::from_millis(u64::from(len as u8) * 40);
        client.handle_timeout(now);
    }
});
