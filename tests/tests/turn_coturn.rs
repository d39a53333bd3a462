//! The TURN client against a real coturn (Debian's `turnserver`) in the lab: allocations
//! over UDP, TCP and TLS, data echoed by a UDP peer through the relay (ChannelData and
//! Send/Data indications), refreshes of the allocation, permissions and channels with
//! lifetimes shortened to seconds, a reconnect, a stale allocation (437), the quota
//! (486), wrong and expired credentials (401), and TURN REST credentials.
//!
//! The client is driven here with blocking std sockets opened inside the client host's
//! namespace; the agent's shell does the same with smol.
//!
//! `EDGEWIRE_TURN_CAPTURE=DIR` writes the first Allocate 401, Allocate success and
//! ChannelData received over UDP to DIR (the golden files of agent/src/turn/testdata).

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgewire::turn::{
    Class, Message, Method, Reason, Received, Timings, Transport, TurnClient, TurnConfig,
    TurnEvent, rest_credentials,
};
use edgewire_lab::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const RELAY: &str = "203.0.113.10";
const CLIENT: &str = "198.51.100.20";
const PEER: &str = "192.0.2.30";
const PEER_PORT: u16 = 3480;
const USER: &str = "edge-7";
const PASS: &str = "correct horse";
const REALM: &str = "edgewire.test";
const T: Duration = Duration::from_secs(10);

/// The lab: a relay, a client and an echo peer on three "public" networks. The lab is
/// the last field, so the processes stop before their namespaces go.
struct World {
    client: Host,
    coturn: Coturn,
    _peer: Proc,
    next_seed: Cell<u64>,
    _lab: Lab,
}

impl World {
    fn new(name: &str, config: &CoturnConfig) -> World {
        let lab = Lab::new(name);
        let wan = lab.wan();
        let (relay, client, peer) = (lab.host("relay"), lab.host("dev"), lab.host("peer"));
        wan.attach(&relay, &format!("{RELAY}/24"));
        wan.attach(&client, &format!("{CLIENT}/24"));
        wan.attach(&peer, &format!("{PEER}/24"));
        let coturn = Coturn::start(&relay, RELAY, config);
        let echo = udp_echo_peer(&peer, PEER, PEER_PORT);
        World {
            client,
            coturn,
            _peer: echo,
            next_seed: Cell::new(1),
            _lab: lab,
        }
    }

    fn peer(&self) -> SocketAddr {
        SocketAddr::new(PEER.parse().unwrap(), PEER_PORT)
    }

    fn server(&self, transport: Transport) -> SocketAddr {
        let port = if transport == Transport::Tls {
            443
        } else {
            3478
        };
        SocketAddr::new(RELAY.parse().unwrap(), port)
    }

    /// A client for `transport` with these credentials, connected from the client host.
    fn driver(&self, transport: Transport, user: &str, pass: &str, timings: Timings) -> Driver {
        let server = self.server(transport);
        let conn = self.connect(transport, None);
        let config = TurnConfig {
            server,
            transport,
            username: user.into(),
            password: pass.into(),
            software: "edgewire-test".into(),
            timings,
        };
        // Fixed seeds: the first client of a world always draws the same transaction
        // ids, which is what lets agent/src/turn/golden.rs replay the captured answers.
        let seed = self.next_seed.get();
        self.next_seed.set(seed + 1);
        Driver {
            client: TurnClient::new(config, seed, Instant::now()),
            conn,
            events: Vec::new(),
            data: Vec::new(),
            buf: vec![0; 65536],
            out: Vec::new(),
            capture: Vec::new(),
        }
    }

    /// A new connection to the server; for UDP optionally from a given local port.
    fn connect(&self, transport: Transport, udp_port: Option<u16>) -> Conn {
        let server = self.server(transport);
        let ca = self.coturn.ca().map(|ca| ca.ca_cert.clone());
        in_netns(&self.client, move || match transport {
            Transport::Udp => {
                let sock = UdpSocket::bind((CLIENT, udp_port.unwrap_or(0))).unwrap();
                sock.connect(server).unwrap();
                Conn::Udp(sock)
            }
            Transport::Tcp => Conn::Tcp(TcpStream::connect_timeout(&server, T).unwrap()),
            Transport::Tls => {
                let tcp = TcpStream::connect_timeout(&server, T).unwrap();
                let ca = ca.expect("a TLS world has a CA");
                Conn::Tls(Box::new(tls_client(tcp, server, &ca)))
            }
        })
    }
}

fn tls_client(
    tcp: TcpStream,
    server: SocketAddr,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("reading the test CA"))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::IpAddress(server.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// The connection to the server, blocking with read timeouts.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn send(&mut self, bytes: &[u8]) {
        let r = match self {
            Conn::Udp(s) => s.send(bytes).map(|_| ()),
            Conn::Tcp(s) => s.write_all(bytes),
            Conn::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
        };
        r.expect("writing to the TURN server");
    }

    /// Reads what is there within `timeout`: `None` on timeout.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<usize> {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        let r = match self {
            Conn::Udp(s) => s.set_read_timeout(timeout).and_then(|_| s.recv(buf)),
            Conn::Tcp(s) => s.set_read_timeout(timeout).and_then(|_| s.read(buf)),
            Conn::Tls(s) => s.sock.set_read_timeout(timeout).and_then(|_| s.read(buf)),
        };
        match r {
            Ok(0) => panic!("the TURN server closed the connection"),
            Ok(n) => Some(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("reading from the TURN server: {e}"),
        }
    }
}

/// One TurnClient and its connection, pumped by hand.
struct Driver {
    client: TurnClient,
    conn: Conn,
    events: Vec<TurnEvent>,
    /// Relayed data received: (from, payload).
    data: Vec<(SocketAddr, Vec<u8>)>,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Raw datagrams (UDP only), for the golden files.
    capture: Vec<Vec<u8>>,
}

impl Driver {
    /// One round: write what the client wants sent, read for at most `max_wait` (less
    /// when a timer is due sooner), feed the input, fire timers.
    fn step(&mut self, max_wait: Duration) {
        self.flush();
        let now = Instant::now();
        let wait = match self.client.poll_timeout() {
            Some(at) => at.saturating_duration_since(now).min(max_wait),
            None => max_wait,
        };
        if let Some(n) = self.conn.recv(&mut self.buf, wait) {
            let now = Instant::now();
            let bytes = &self.buf[..n];
            if matches!(self.conn, Conn::Udp(_)) {
                self.capture.push(bytes.to_vec());
                if let Received::Data { from, payload } = self.client.handle_datagram(bytes, now) {
                    self.data.push((from, payload.to_vec()));
                }
            } else {
                self.client.handle_stream(bytes);
                while let Some(r) = self.client.poll_stream(now) {
                    if let Received::Data { from, payload } = r {
                        self.data.push((from, payload.to_vec()));
                    }
                }
            }
        }
        let now = Instant::now();
        if self.client.poll_timeout().is_some_and(|at| at <= now) {
            self.client.handle_timeout(now);
        }
        while let Some(event) = self.client.poll_event() {
            if let TurnEvent::AllocationLost { .. } | TurnEvent::Failed { .. } = &event {
                eprintln!("turn event: {event:?}");
            }
            self.events.push(event);
        }
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(msg) = self.client.poll_transmit() {
            self.conn.send(&msg);
        }
    }

    /// Steps until an event matching `pred` arrives; removes and returns it.
    fn wait_event(&mut self, what: &str, pred: impl Fn(&TurnEvent) -> bool) -> TurnEvent {
        let deadline = Instant::now() + T;
        loop {
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events so far: {:?}",
                self.events
            );
            self.step(Duration::from_millis(100));
        }
    }

    fn allocated(&mut self) -> (SocketAddr, SocketAddr, Duration) {
        match self.wait_event("Allocated", |e| {
            matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
        }) {
            TurnEvent::Allocated {
                relayed,
                mapped,
                lifetime,
                ..
            } => (relayed, mapped, lifetime),
            other => panic!("allocation failed: {other:?}"),
        }
    }

    fn failed(&mut self) -> Reason {
        match self.wait_event("Failed", |e| {
            matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
        }) {
            TurnEvent::Failed { reason } => reason,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn add_ready_peer(&mut self, peer: SocketAddr) {
        self.client.add_peer(peer, Instant::now());
        self.wait_event("PeerReady", |e| *e == TurnEvent::PeerReady(peer));
    }

    /// Sends `payload` to the echo peer through the relay and waits for it to come back.
    fn echo(&mut self, peer: SocketAddr, payload: &[u8]) {
        self.out.clear();
        self.client
            .send(peer, payload, &mut self.out)
            .expect("send");
        let out = std::mem::take(&mut self.out);
        self.conn.send(&out);
        self.out = out;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(i) = self.data.iter().position(|(_, p)| p == payload) {
                let (from, _) = self.data.remove(i);
                assert_eq!(from, peer, "the echo comes from the peer's address");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no echo of {} bytes within 3 s",
                payload.len()
            );
            self.step(Duration::from_millis(50));
        }
    }

    /// Steps for `d`, echoing a packet every 250 ms (like a keepalive-ed tunnel would).
    fn echo_for(&mut self, peer: SocketAddr, d: Duration) -> usize {
        let end = Instant::now() + d;
        let mut n = 0;
        while Instant::now() < end {
            let payload = format!("keepalive {n}");
            self.echo(peer, payload.as_bytes());
            n += 1;
            let next = Instant::now() + Duration::from_millis(250);
            while Instant::now() < next {
                self.step(next.saturating_duration_since(Instant::now()));
            }
        }
        n
    }

    /// Closes the allocation and waits until the Refresh(0) is answered.
    fn close(&mut self) {
        self.client.close(Instant::now());
        let deadline = Instant::now() + T;
        while self.client.poll_timeout().is_some() {
            assert!(Instant::now() < deadline, "close was not answered");
            self.step(Duration::from_millis(100));
        }
    }

    fn assert_no_loss(&self) {
        assert!(
            !self.events.iter().any(|e| matches!(
                e,
                TurnEvent::AllocationLost { .. } | TurnEvent::Failed { .. }
            )),
            "{:?}",
            self.events
        );
    }
}

/// Timings matching the shortened coturn lifetimes below.
fn short_timings() -> Timings {
    Timings {
        permission_lifetime: Duration::from_secs(5),
        channel_lifetime: Duration::from_secs(8),
        ..Timings::default()
    }
}

fn short_lived(tls: bool) -> CoturnConfig {
    CoturnConfig {
        tls,
        max_allocate_lifetime: Some(6),
        permission_lifetime: Some(5),
        channel_lifetime: Some(8),
        ..CoturnConfig::long_term(USER, PASS, REALM)
    }
}

/// Payload sizes around every padding remainder, and a WireGuard-sized one.
const SIZES: [usize; 8] = [1, 2, 3, 4, 5, 31, 148, 1420];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

/// Allocation, echoes of every size, then 2.5 allocation lifetimes of traffic: without
/// working refreshes of allocation, permission and channel, the echoes would stop.
fn relays_and_keeps_the_allocation_alive(w: &World, transport: Transport) -> Driver {
    let mut d = w.driver(transport, USER, PASS, short_timings());
    let (relayed, mapped, lifetime) = d.allocated();
    assert_eq!(relayed.ip().to_string(), RELAY);
    assert_eq!(mapped.ip().to_string(), CLIENT);
    assert_eq!(
        lifetime,
        Duration::from_secs(6),
        "max-allocate-lifetime applies"
    );
    assert!(d.client.rtt().is_some());
    d.add_ready_peer(w.peer());
    for len in SIZES {
        d.echo(w.peer(), &payload(len));
    }
    let n = d.echo_for(w.peer(), Duration::from_secs(15));
    assert!(n >= 30, "only {n} echoes in 15 s");
    d.assert_no_loss();
    assert_eq!(
        d.client.relayed_address(),
        Some(relayed),
        "the same allocation throughout"
    );
    d
}

#[test]
fn relays_over_udp_keeps_alive_and_recovers_a_stale_allocation_on_the_same_port() {
    require_root!();
    let w = World::new("turn-udp", &short_lived(false));
    let d = relays_and_keeps_the_allocation_alive(&w, Transport::Udp);
    // Later echoes come back as ChannelData (first bits 01), not Data indications.
    assert!(d.capture.iter().rev().take(5).any(|b| b[0] >> 6 == 1));
    save_capture(&d.capture);

    // The agent restarts on the same port without closing: coturn still holds the old
    // allocation for this 5-tuple and answers 437; the client frees it and allocates.
    let Conn::Udp(sock) = &d.conn else {
        unreachable!()
    };
    let port = sock.local_addr().unwrap().port();
    drop(d);
    let mut again = w.driver(Transport::Udp, USER, PASS, short_timings());
    again.conn = w.connect(Transport::Udp, Some(port));
    let (relayed, _, _) = again.allocated();
    assert_eq!(relayed.ip().to_string(), RELAY);
    again.add_ready_peer(w.peer());
    again.echo(w.peer(), b"after the restart");
    again.close();
}

#[test]
fn relays_over_tcp_keeps_alive_and_reallocates_after_a_reconnect() {
    require_root!();
    let w = World::new("turn-tcp", &short_lived(false));
    let mut d = relays_and_keeps_the_allocation_alive(&w, Transport::Tcp);
    reconnect_and_echo(&w, &mut d, Transport::Tcp);
    d.close();
}

#[test]
fn relays_over_tls_keeps_alive_and_reallocates_after_a_reconnect() {
    require_root!();
    let w = World::new("turn-tls", &short_lived(true));
    let mut d = relays_and_keeps_the_allocation_alive(&w, Transport::Tls);
    reconnect_and_echo(&w, &mut d, Transport::Tls);
    d.close();
}

/// The connection breaks; the shell connects again and tells the client, which reports
/// the allocation lost and makes a new one.
fn reconnect_and_echo(w: &World, d: &mut Driver, transport: Transport) {
    d.conn = w.connect(transport, None);
    d.client.handle_connection_lost(Instant::now());
    d.wait_event("AllocationLost", |e| {
        *e == TurnEvent::AllocationLost {
            reason: Reason::ConnectionLost,
        }
    });
    d.allocated();
    d.wait_event("PeerReady", |e| *e == TurnEvent::PeerReady(w.peer()));
    d.echo(w.peer(), b"after the reconnect");
}

#[test]
fn refuses_wrong_credentials_and_a_full_quota_with_clear_reasons() {
    require_root!();
    let config = CoturnConfig {
        user_quota: Some(1),
        ..CoturnConfig::long_term(USER, PASS, REALM)
    };
    let w = World::new("turn-refusals", &config);
    let mut wrong = w.driver(Transport::Udp, USER, "wrong", Timings::default());
    assert_eq!(wrong.failed(), Reason::Unauthorized);

    let mut first = w.driver(Transport::Tcp, USER, PASS, Timings::default());
    first.allocated();
    let mut second = w.driver(Transport::Udp, USER, PASS, Timings::default());
    let reason = second.failed();
    assert_eq!(reason, Reason::QuotaReached, "{reason}");
    first.close();
}

#[test]
fn allocates_with_rest_credentials_minted_from_the_shared_secret() {
    require_root!();
    let secret = "north-secret";
    let config = CoturnConfig {
        tls: true,
        ..CoturnConfig::secret(secret, REALM)
    };
    let w = World::new("turn-rest", &config);
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let (user, pass) = rest_credentials(secret.as_bytes(), "edge-7", unix + 3600);
    for transport in [Transport::Udp, Transport::Tls] {
        let mut d = w.driver(transport, &user, &pass, Timings::default());
        d.allocated();
        d.add_ready_peer(w.peer());
        d.echo(w.peer(), b"minted credentials");
        d.close();
    }

    let (user, pass) = rest_credentials(secret.as_bytes(), "edge-7", unix - 60);
    let mut expired = w.driver(Transport::Udp, &user, &pass, Timings::default());
    assert_eq!(expired.failed(), Reason::Unauthorized);
    let (user, _) = rest_credentials(secret.as_bytes(), "edge-7", unix + 3600);
    let (_, other_pass) = rest_credentials(b"another secret", "edge-7", unix + 3600);
    let mut forged = w.driver(Transport::Udp, &user, &other_pass, Timings::default());
    assert_eq!(forged.failed(), Reason::Unauthorized);
}

/// With `EDGEWIRE_TURN_CAPTURE=DIR`: the first Allocate 401, Allocate success and
/// ChannelData seen, as golden files.
fn save_capture(datagrams: &[Vec<u8>]) {
    let Ok(dir) = std::env::var("EDGEWIRE_TURN_CAPTURE") else {
        return;
    };
    let mut wanted = [
        ("allocate-401.bin", None::<&Vec<u8>>),
        ("allocate-success.bin", None),
        ("channel-data.bin", None),
    ];
    for d in datagrams {
        let slot = if d[0] >> 6 == 1 {
            if d.len() < 20 {
                continue; // a longer one shows more
            }
            2
        } else {
            match Message::parse(d) {
                Ok(m) if m.method() == Method::ALLOCATE && m.class() == Class::Error => 0,
                Ok(m) if m.method() == Method::ALLOCATE && m.class() == Class::Success => 1,
                _ => continue,
            }
        };
        wanted[slot].1.get_or_insert(d);
    }
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in wanted {
        if let Some(bytes) = bytes {
            std::fs::write(format!("{dir}/{name}"), bytes).unwrap();
        }
    }
}
