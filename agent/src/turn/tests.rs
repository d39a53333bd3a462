//! The client's transitions, driven by hand with simulated time against a scripted
//! server built from the same codec.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ring::hmac;

use super::attr::{self, Attr};
use super::*;

const USER: &str = "alice";
const PASS: &str = "s3cret";
const REALM: &[u8] = b"edgewire.test";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn relayed() -> SocketAddr {
    addr("203.0.113.10:49152")
}

fn mapped() -> SocketAddr {
    addr("198.51.100.7:40000")
}

fn peer() -> SocketAddr {
    addr("192.0.2.20:51820")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn key() -> hmac::Key {
    LongTermKey::new(USER, REALM, PASS).hmac_key()
}

// ---- the scripted server ----

fn msg(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes).expect("the client sent a malformed message")
}

fn get<'a>(bytes: &'a [u8], typ: u16) -> Option<Attr<'a>> {
    let m = msg(bytes);
    Attr::parse(typ, m.attribute(typ)?, &m.transaction_id()).ok()
}

fn respond(request: &[u8], class: Class, attrs: &[Attr<'_>], integrity: bool) -> Vec<u8> {
    let req = msg(request);
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, req.method(), class, req.transaction_id());
    for a in attrs {
        w.attr(a);
    }
    if integrity {
        w.integrity(&key());
    }
    out
}

fn challenge(request: &[u8], code: u16, nonce: &[u8]) -> Vec<u8> {
    let attrs = [
        Attr::ErrorCode { code, reason: b"" },
        Attr::Realm(REALM),
        Attr::Nonce(nonce),
    ];
    respond(request, Class::Error, &attrs, false)
}

fn error(request: &[u8], code: u16) -> Vec<u8> {
    let attrs = [Attr::ErrorCode {
        code,
        reason: b"No",
    }];
    respond(request, Class::Error, &attrs, true)
}

fn ok(request: &[u8], attrs: &[Attr<'_>]) -> Vec<u8> {
    respond(request, Class::Success, attrs, true)
}

fn allocate_ok(request: &[u8], lifetime: u32) -> Vec<u8> {
    let attrs = [
        Attr::XorRelayedAddress(relayed()),
        Attr::XorMappedAddress(mapped()),
        Attr::Lifetime(lifetime),
    ];
    ok(request, &attrs)
}

/// A client and the simulated clock.
struct Sim {
    c: TurnClient,
    t0: Instant,
    now: Instant,
}

impl Sim {
    fn new(transport: Transport) -> Sim {
        let t0 = Instant::now();
        let config = TurnConfig {
            server: addr("203.0.113.10:3478"),
            transport,
            username: USER.into(),
            password: PASS.into(),
            software: "edgewire test".into(),
            timings: Timings::default(),
        };
        Sim {
            c: TurnClient::new(config, 7, t0),
            t0,
            now: t0,
        }
    }

    /// Moves the clock to `t0 + at`, firing every timer on the way.
    fn advance_to(&mut self, at: Duration) {
        let target = self.t0 + at;
        let mut fired = 0;
        while let Some(t) = self.c.poll_timeout().filter(|t| *t <= target) {
            fired += 1;
            assert!(fired < 100_000, "a timer at {t:?} does not move on");
            self.now = self.now.max(t);
            self.c.handle_timeout(self.now);
        }
        self.now = target;
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn sent(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.c.poll_transmit()).collect()
    }

    fn one_sent(&mut self) -> Vec<u8> {
        let mut sent = self.sent();
        assert_eq!(sent.len(), 1, "expected one message to the server");
        sent.pop().unwrap()
    }

    fn events(&mut self) -> Vec<TurnEvent> {
        std::iter::from_fn(|| self.c.poll_event()).collect()
    }

    /// Feeds bytes from the server; relayed data comes back owned.
    fn deliver(&mut self, bytes: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut data = Vec::new();
        if self.c.config().transport.is_stream() {
            self.c.handle_stream(bytes);
            while let Some(r) = self.c.poll_stream(self.now) {
                if let Received::Data { from, payload } = r {
                    data.push((from, payload.to_vec()));
                }
            }
        } else if let Received::Data { from, payload } = self.c.handle_datagram(bytes, self.now) {
            data.push((from, payload.to_vec()));
        }
        data
    }

    /// Runs the 401 dance and a successful Allocate with `lifetime`.
    fn allocate(&mut self, lifetime: u32) {
        let first = self.one_sent();
        self.deliver(&challenge(&first, 401, b"nonce-1"));
        let second = self.one_sent();
        self.deliver(&allocate_ok(&second, lifetime));
        let events = self.events();
        assert!(
            matches!(events[..], [TurnEvent::Allocated { .. }]),
            "{events:?}"
        );
    }

    /// Adds `peer` and grants its permission and channel.
    fn add_ready_peer(&mut self, peer: SocketAddr) {
        self.c.add_peer(peer, self.now);
        for request in self.sent() {
            self.deliver(&ok(&request, &[]));
        }
        assert_eq!(self.events(), [TurnEvent::PeerReady(peer)]);
    }
}

fn method(bytes: &[u8]) -> Method {
    msg(bytes).method()
}

// ---- allocation ----

#[test]
fn allocates_after_answering_the_401_challenge_with_long_term_credentials() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    let m = msg(&first);
    assert_eq!((m.method(), m.class()), (Method::ALLOCATE, Class::Request));
    assert_eq!(
        get(&first, attr::REQUESTED_TRANSPORT),
        Some(Attr::RequestedTransport(17))
    );
    assert_eq!(
        get(&first, attr::SOFTWARE),
        Some(Attr::Software(b"edgewire test"))
    );
    assert!(!m.has_integrity());
    assert_eq!(m.check_fingerprint(), Some(true));

    s.advance_to(ms(30));
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    let m = msg(&second);
    assert_ne!(m.transaction_id(), msg(&first).transaction_id());
    assert_eq!(
        get(&second, attr::USERNAME),
        Some(Attr::Username(USER.as_bytes()))
    );
    assert_eq!(get(&second, attr::REALM), Some(Attr::Realm(REALM)));
    assert_eq!(get(&second, attr::NONCE), Some(Attr::Nonce(b"nonce-1")));
    assert!(m.check_integrity(&key()));
    assert_eq!(m.check_fingerprint(), Some(true));
    assert!(!s.c.is_allocated());

    s.advance_to(ms(70));
    s.deliver(&allocate_ok(&second, 600));
    assert_eq!(
        s.events(),
        [TurnEvent::Allocated {
            relayed: relayed(),
            mapped: mapped(),
            lifetime: secs(600),
            rtt: ms(40),
        }]
    );
    assert!(s.c.is_allocated());
    assert_eq!(s.c.relayed_address(), Some(relayed()));
    assert_eq!(s.c.mapped_address(), Some(mapped()));
    assert_eq!(s.c.rtt(), Some(ms(40)));
}

#[test]
fn retries_with_the_fresh_nonce_after_438_stale_nonce() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.advance_to(secs(540));
    let refresh = s.one_sent();
    assert_eq!(method(&refresh), Method::REFRESH);
    s.deliver(&challenge(&refresh, 438, b"nonce-2"));
    let again = s.one_sent();
    assert_eq!(method(&again), Method::REFRESH);
    assert_eq!(get(&again, attr::NONCE), Some(Attr::Nonce(b"nonce-2")));
    assert!(msg(&again).check_integrity(&key()));
    s.deliver(&ok(&again, &[Attr::Lifetime(600)]));
    assert_eq!(s.events(), []);
    assert!(s.c.is_allocated());
}

#[test]
fn gives_up_when_the_server_refuses_the_credentials_twice() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    s.deliver(&challenge(&second, 401, b"nonce-1"));
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::Unauthorized
        }]
    );
    assert_eq!(s.sent().len(), 0);
    assert_eq!(s.c.poll_timeout(), None, "a failed client stays idle");
}

/// pion's TURN server answers a wrong password with 400 and no reason.
#[test]
fn a_400_to_the_allocate_with_our_credentials_is_reported_as_a_credentials_problem() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    // No MESSAGE-INTEGRITY: the server cannot compute it with the key it expected.
    let refused = respond(
        &second,
        Class::Error,
        &[Attr::ErrorCode {
            code: 400,
            reason: b"",
        }],
        false,
    );
    s.deliver(&refused);
    let events = s.events();
    let [TurnEvent::Failed { reason }] = &events[..] else {
        panic!("{events:?}");
    };
    assert!(
        matches!(reason, Reason::CredentialsRefused { code: 400, .. }),
        "{reason:?}"
    );
    let text = reason.to_string();
    assert!(text.contains("(TURN error 400 Bad Request)"), "{text}");
    assert!(text.contains("likely wrong"), "{text}");
    assert!(!text.contains("  ") && !text.ends_with(' '), "{text:?}");
}

#[test]
fn a_400_before_any_credentials_stays_a_plain_server_error() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    let refused = respond(
        &first,
        Class::Error,
        &[Attr::ErrorCode {
            code: 400,
            reason: b"",
        }],
        false,
    );
    s.deliver(&refused);
    let events = s.events();
    let [TurnEvent::Failed { reason }] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(reason.to_string(), "TURN error 400 Bad Request");
}

#[test]
fn a_server_error_reads_without_a_trailing_space() {
    let server = |code, reason: &str| Reason::Server {
        code,
        reason: reason.into(),
    };
    assert_eq!(server(400, "").to_string(), "TURN error 400 Bad Request");
    assert_eq!(server(499, "").to_string(), "TURN error 499");
    assert_eq!(
        server(403, " Forbidden IP ").to_string(),
        "TURN error 403 Forbidden IP"
    );
}

#[test]
fn stops_after_three_stale_nonces_in_a_row() {
    let mut s = Sim::new(Transport::Udp);
    let mut request = s.one_sent();
    for n in 0..3 {
        s.deliver(&challenge(&request, 438, format!("n{n}").as_bytes()));
        request = s.one_sent();
    }
    s.deliver(&challenge(&request, 438, b"n4"));
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::StaleNonceLoop
        }]
    );
}

#[test]
fn reports_a_reached_quota_as_a_clear_failure() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    s.deliver(&error(&second, 486));
    let events = s.events();
    assert_eq!(
        events,
        [TurnEvent::Failed {
            reason: Reason::QuotaReached
        }]
    );
    let TurnEvent::Failed { reason } = &events[0] else {
        unreachable!()
    };
    assert!(reason.to_string().contains("quota"), "{reason}");
}

#[test]
fn follows_nothing_but_reports_the_alternate_server_on_300() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    let alt = addr("198.51.100.99:3478");
    let attrs = [
        Attr::ErrorCode {
            code: 300,
            reason: b"Try Alternate",
        },
        Attr::AlternateServer(alt),
    ];
    s.deliver(&respond(&first, Class::Error, &attrs, false));
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::TryAlternate(alt)
        }]
    );
}

#[test]
fn frees_a_stale_allocation_and_allocates_again_on_437_over_udp() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    s.deliver(&error(&second, 437));
    let delete = s.one_sent();
    assert_eq!(method(&delete), Method::REFRESH);
    assert_eq!(get(&delete, attr::LIFETIME), Some(Attr::Lifetime(0)));
    assert!(msg(&delete).check_integrity(&key()));
    s.deliver(&ok(&delete, &[Attr::Lifetime(0)]));
    assert_eq!(
        s.sent().len(),
        0,
        "coturn needs a moment to drop the old session"
    );
    s.advance_to(secs(1));
    let third = s.one_sent();
    assert_eq!(method(&third), Method::ALLOCATE);
    s.deliver(&allocate_ok(&third, 600));
    assert!(matches!(s.events()[..], [TurnEvent::Allocated { .. }]));
}

#[test]
fn a_437_before_any_challenge_is_answered_by_an_authenticated_delete_then_allocate() {
    // What coturn does when an agent restarts on the same port without closing.
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&error(&first, 437));
    let delete = s.one_sent();
    assert_eq!(get(&delete, attr::LIFETIME), Some(Attr::Lifetime(0)));
    assert!(!msg(&delete).has_integrity());
    s.deliver(&challenge(&delete, 401, b"old-session"));
    let delete = s.one_sent();
    assert!(msg(&delete).check_integrity(&key()));
    s.deliver(&ok(&delete, &[Attr::Lifetime(0)]));
    s.advance_to(secs(1));
    let allocate = s.one_sent();
    assert_eq!(method(&allocate), Method::ALLOCATE);
    assert!(msg(&allocate).check_integrity(&key()));
    s.deliver(&allocate_ok(&allocate, 600));
    assert!(s.c.is_allocated());
}

#[test]
fn a_fourth_437_is_a_failure_the_caller_solves_with_a_new_port() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let mut allocate = s.one_sent();
    for round in 1..=3 {
        s.deliver(&error(&allocate, 437));
        let delete = s.one_sent();
        assert_eq!(get(&delete, attr::LIFETIME), Some(Attr::Lifetime(0)));
        s.deliver(&error(&delete, 437));
        s.advance_to(secs(round));
        allocate = s.one_sent();
        assert_eq!(method(&allocate), Method::ALLOCATE);
    }
    s.deliver(&error(&allocate, 437));
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::AllocationMismatch
        }]
    );
}

#[test]
fn over_tcp_437_on_allocate_fails_at_once_and_a_reconnect_starts_over() {
    let mut s = Sim::new(Transport::Tcp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    s.deliver(&error(&second, 437));
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::AllocationMismatch
        }]
    );
    s.c.handle_connection_lost(s.now);
    let fresh = s.one_sent();
    assert_eq!(method(&fresh), Method::ALLOCATE);
    assert!(
        !msg(&fresh).has_integrity(),
        "a new connection gets a new challenge"
    );
}

#[test]
fn fails_on_an_unknown_comprehension_required_attribute_in_a_success() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    let attrs = [
        Attr::XorRelayedAddress(relayed()),
        Attr::XorMappedAddress(mapped()),
        Attr::Lifetime(600),
        Attr::Other {
            typ: 0x0031,
            value: b"????",
        },
    ];
    s.deliver(&ok(&second, &attrs));
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::UnknownAttribute(0x0031)
        }]
    );
}

#[test]
fn ignores_unknown_comprehension_optional_attributes() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    let attrs = [
        Attr::XorRelayedAddress(relayed()),
        Attr::Other {
            typ: 0x802b,
            value: b"\x00\x01\x0d\x96\xcb\x00\x71\x0a",
        },
        Attr::XorMappedAddress(mapped()),
        Attr::Lifetime(600),
    ];
    s.deliver(&ok(&second, &attrs));
    assert!(s.c.is_allocated());
}

#[test]
fn drops_a_success_whose_message_integrity_is_wrong_and_keeps_waiting() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    let second = s.one_sent();
    let mut forged = allocate_ok(&second, 600);
    let at = forged.len() - 1;
    forged[at] ^= 1;
    assert_eq!(
        s.c.handle_datagram(&forged, s.now),
        Received::Ignored(Ignored::BadIntegrity)
    );
    let unsigned = respond(&second, Class::Success, &[Attr::Lifetime(600)], false);
    assert_eq!(
        s.c.handle_datagram(&unsigned, s.now),
        Received::Ignored(Ignored::BadIntegrity)
    );
    assert!(!s.c.is_allocated());
    s.deliver(&allocate_ok(&second, 600));
    assert!(s.c.is_allocated());
}

#[test]
fn ignores_responses_to_transactions_it_did_not_start() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    let mut other = challenge(&first, 401, b"nonce-1");
    other[19] ^= 0xff;
    assert_eq!(
        s.c.handle_datagram(&other, s.now),
        Received::Ignored(Ignored::Unexpected)
    );
    assert_eq!(s.sent().len(), 0);
}

// ---- timers ----

#[test]
fn retransmits_over_udp_at_half_a_second_doubling_and_fails_after_5s() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    let mut resent_at = Vec::new();
    while s.elapsed() < secs(10) {
        let Some(at) = s.c.poll_timeout() else { break };
        s.advance_to(at - s.t0);
        for bytes in s.sent() {
            assert_eq!(bytes, first, "a retransmission is the same request");
            resent_at.push(s.elapsed());
        }
    }
    assert_eq!(resent_at, [ms(500), ms(1500), ms(3500)]);
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::Timeout
        }]
    );
    assert_eq!(s.elapsed(), secs(5));
}

#[test]
fn never_retransmits_over_tcp_but_still_gives_up_after_5s() {
    let mut s = Sim::new(Transport::Tcp);
    s.one_sent();
    s.advance_to(ms(4999));
    assert_eq!(s.sent().len(), 0);
    assert_eq!(s.events(), []);
    s.advance_to(secs(5));
    assert_eq!(
        s.events(),
        [TurnEvent::Failed {
            reason: Reason::Timeout
        }]
    );
}

#[test]
fn a_retransmitted_exchange_gives_no_rtt_sample() {
    let mut s = Sim::new(Transport::Udp);
    let first = s.one_sent();
    s.advance_to(ms(600));
    s.sent();
    s.deliver(&challenge(&first, 401, b"nonce-1"));
    assert_eq!(s.c.rtt(), None);
    let second = s.one_sent();
    s.advance_to(ms(620));
    s.deliver(&allocate_ok(&second, 600));
    assert_eq!(s.c.rtt(), Some(ms(20)));
}

#[test]
fn refreshes_the_allocation_a_minute_before_it_expires() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    assert_eq!(
        s.c.poll_timeout_with_reason().map(|(_, r)| r),
        Some(Timer::Refresh)
    );
    s.advance_to(secs(539));
    assert_eq!(s.sent().len(), 0);
    s.advance_to(secs(540));
    let refresh = s.one_sent();
    assert_eq!(method(&refresh), Method::REFRESH);
    assert_eq!(
        get(&refresh, attr::LIFETIME),
        None,
        "the server's default lifetime"
    );
    assert!(msg(&refresh).check_integrity(&key()));
    s.deliver(&ok(&refresh, &[Attr::Lifetime(600)]));
    s.advance_to(secs(1079));
    assert_eq!(s.sent().len(), 0);
    s.advance_to(secs(1080));
    assert_eq!(method(&s.one_sent()), Method::REFRESH);
}

#[test]
fn a_short_lifetime_is_refreshed_at_eighty_percent() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(20);
    s.advance_to(ms(15_999));
    assert_eq!(s.sent().len(), 0);
    s.advance_to(secs(16));
    assert_eq!(method(&s.one_sent()), Method::REFRESH);
}

#[test]
fn keeps_refreshing_through_silence_and_reports_the_loss_at_expiry() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.advance_to(ms(599_999));
    let refreshes = s
        .sent()
        .iter()
        .filter(|b| method(b) == Method::REFRESH)
        .count();
    // From 540 s a Refresh every 15 s (5 s of retransmissions, 10 s of rest) until
    // expiry: at 540, 555, 570 and 585 s, each sent 4 times.
    assert_eq!(refreshes, 16);
    assert_eq!(s.events(), []);
    s.advance_to(secs(600));
    assert_eq!(
        s.events(),
        [TurnEvent::AllocationLost {
            reason: Reason::Expired
        }]
    );
    let again = s.one_sent();
    assert_eq!(method(&again), Method::ALLOCATE);
    assert!(!s.c.is_allocated());
}

#[test]
fn a_refresh_answered_with_437_loses_the_allocation_and_allocates_anew() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.advance_to(secs(540));
    let refresh = s.one_sent();
    s.deliver(&error(&refresh, 437));
    assert_eq!(
        s.events(),
        [TurnEvent::AllocationLost {
            reason: Reason::AllocationMismatch
        }]
    );
    let again = s.one_sent();
    assert_eq!(method(&again), Method::ALLOCATE);
    s.deliver(&allocate_ok(&again, 600));
    assert!(s.c.is_allocated());
}

#[test]
fn a_lost_connection_reports_the_allocation_lost_and_starts_over() {
    let mut s = Sim::new(Transport::Tls);
    s.allocate(600);
    s.add_ready_peer(peer());
    s.c.handle_connection_lost(s.now);
    assert_eq!(
        s.events(),
        [TurnEvent::AllocationLost {
            reason: Reason::ConnectionLost
        }]
    );
    assert!(!s.c.can_send(peer()));
    s.allocate(600);
    // The wanted peer is asked for again on the new allocation.
    let requests: Vec<Method> = s.sent().iter().map(|b| method(b)).collect();
    assert_eq!(requests, [Method::CREATE_PERMISSION, Method::CHANNEL_BIND]);
}

#[test]
fn close_frees_the_allocation_with_lifetime_zero() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.c.close(s.now);
    let refresh = s.one_sent();
    assert_eq!(method(&refresh), Method::REFRESH);
    assert_eq!(get(&refresh, attr::LIFETIME), Some(Attr::Lifetime(0)));
    assert!(!s.c.is_allocated());
    s.deliver(&ok(&refresh, &[Attr::Lifetime(0)]));
    assert_eq!(s.c.poll_timeout(), None);
    assert_eq!(s.events(), []);
}

// ---- peers ----

#[test]
fn asks_for_a_permission_and_a_channel_per_peer_and_reports_it_ready_once() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.c.add_peer(peer(), s.now);
    let sent = s.sent();
    assert_eq!(sent.len(), 2);
    let (perm, bind) = (&sent[0], &sent[1]);
    assert_eq!(method(perm), Method::CREATE_PERMISSION);
    assert_eq!(
        get(perm, attr::XOR_PEER_ADDRESS),
        Some(Attr::XorPeerAddress(SocketAddr::new(peer().ip(), 0)))
    );
    assert_eq!(method(bind), Method::CHANNEL_BIND);
    assert_eq!(
        get(bind, attr::CHANNEL_NUMBER),
        Some(Attr::ChannelNumber(0x4000))
    );
    assert_eq!(
        get(bind, attr::XOR_PEER_ADDRESS),
        Some(Attr::XorPeerAddress(peer()))
    );
    assert!(msg(bind).check_integrity(&key()));

    let mut out = Vec::new();
    assert_eq!(
        s.c.send(peer(), b"x", &mut out),
        Err(SendError::NoPermission)
    );
    s.deliver(&ok(perm, &[]));
    assert_eq!(s.events(), [TurnEvent::PeerReady(peer())]);
    // Permission only: a Send indication.
    s.c.send(peer(), b"hello", &mut out).unwrap();
    let ind = msg(&out);
    assert_eq!(
        (ind.method(), ind.class()),
        (Method::SEND, Class::Indication)
    );
    assert_eq!(
        get(&out, attr::XOR_PEER_ADDRESS),
        Some(Attr::XorPeerAddress(peer()))
    );
    assert_eq!(get(&out, attr::DATA), Some(Attr::Data(b"hello")));

    s.deliver(&ok(bind, &[]));
    assert_eq!(s.events(), [], "ready is reported once");
    out.clear();
    s.c.send(peer(), b"hello", &mut out).unwrap();
    assert_eq!(
        out, b"\x40\x00\x00\x05hello",
        "ChannelData, unpadded over UDP"
    );
}

#[test]
fn pads_channel_data_to_four_bytes_on_streams() {
    let mut s = Sim::new(Transport::Tcp);
    s.allocate(600);
    s.add_ready_peer(peer());
    let mut out = Vec::new();
    s.c.send(peer(), b"hello", &mut out).unwrap();
    s.c.send(peer(), b"wg", &mut out).unwrap();
    assert_eq!(out, b"\x40\x00\x00\x05hello\0\0\0\x40\x00\x00\x02wg\0\0");
}

#[test]
fn renews_permissions_at_240s_and_channels_at_540s() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(3600);
    s.add_ready_peer(peer());
    let t = s.elapsed();
    let mut renewals = Vec::new();
    while let Some(at) = s.c.poll_timeout().filter(|at| *at - s.t0 < t + secs(1100)) {
        s.advance_to(at - s.t0);
        for request in s.sent() {
            renewals.push((s.elapsed() - t, method(&request)));
            s.deliver(&ok(&request, &[Attr::Lifetime(3600)]));
        }
    }
    use Method as M;
    assert_eq!(
        renewals,
        [
            (secs(240), M::CREATE_PERMISSION),
            (secs(480), M::CREATE_PERMISSION),
            (secs(540), M::CHANNEL_BIND),
            (secs(720), M::CREATE_PERMISSION),
            (secs(960), M::CREATE_PERMISSION),
            (secs(1080), M::CHANNEL_BIND),
        ]
    );
    assert_eq!(s.events(), []);
}

#[test]
fn a_refused_permission_is_reported_and_asked_again_later() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.c.add_peer(peer(), s.now);
    let sent = s.sent();
    s.deliver(&error(&sent[0], 403));
    let events = s.events();
    assert!(
        matches!(&events[..], [TurnEvent::PeerFailed { peer: p, reason: Reason::Server { code: 403, .. } }] if *p == peer()),
        "{events:?}"
    );
    let t = s.elapsed();
    s.advance_to(t + secs(10));
    let retry = s.sent();
    assert!(retry.iter().any(|b| method(b) == Method::CREATE_PERMISSION));
}

#[test]
fn a_removed_peer_is_no_longer_renewed() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(3600);
    s.add_ready_peer(peer());
    s.c.remove_peer(peer());
    s.advance_to(secs(1000));
    assert_eq!(s.sent().len(), 0);
    assert!(!s.c.can_send(peer()), "both lapsed");
    // Back again: a new channel number is fine once the old binding expired.
    s.c.add_peer(peer(), s.now);
    assert_eq!(s.sent().len(), 2);
}

#[test]
fn a_peer_removed_and_added_again_keeps_its_channel_number() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(3600);
    s.add_ready_peer(peer());
    s.c.remove_peer(peer());
    s.c.add_peer(addr("192.0.2.21:51820"), s.now);
    s.c.add_peer(peer(), s.now);
    let binds: Vec<_> = s
        .sent()
        .iter()
        .filter_map(|b| {
            get(b, attr::CHANNEL_NUMBER)
                .map(|a| a.typ())
                .and(get(b, attr::CHANNEL_NUMBER))
                .map(|a| format!("{a:?}"))
        })
        .collect();
    assert_eq!(
        binds,
        ["ChannelNumber(16385)"],
        "only the new peer needs a bind"
    );
    assert!(s.c.can_send(peer()));
}

// ---- data from the server ----

#[test]
fn delivers_channel_data_and_data_indications_with_the_peer_address() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.add_ready_peer(peer());
    let got = s.c.handle_datagram(b"\x40\x00\x00\x03abc\0", s.now);
    assert_eq!(
        got,
        Received::Data {
            from: peer(),
            payload: b"abc"
        }
    );
    assert_eq!(
        s.c.handle_datagram(b"\x40\x07\x00\x03abc", s.now),
        Received::Ignored(Ignored::UnknownChannel)
    );
    let mut ind = Vec::new();
    Writer::new(&mut ind, Method::DATA, Class::Indication, [3; 12])
        .attr(&Attr::XorPeerAddress(peer()))
        .attr(&Attr::Data(b"via indication"));
    assert_eq!(
        s.c.handle_datagram(&ind, s.now),
        Received::Data {
            from: peer(),
            payload: b"via indication"
        }
    );
}

#[test]
fn handle_input_turns_relayed_data_into_events_on_both_transports() {
    for transport in [Transport::Udp, Transport::Tls] {
        let mut s = Sim::new(transport);
        s.allocate(600);
        s.add_ready_peer(peer());
        s.c.handle_input(b"\x40\x00\x00\x02hi\0\0", s.now);
        assert_eq!(
            s.events(),
            [TurnEvent::Data {
                from: peer(),
                payload: b"hi".to_vec()
            }],
            "{transport}"
        );
    }
}

#[test]
fn reads_responses_and_channel_data_from_a_stream_split_anywhere() {
    let mut s = Sim::new(Transport::Tcp);
    s.allocate(600);
    s.c.add_peer(peer(), s.now);
    let sent = s.sent();
    let mut stream = Vec::new();
    for request in &sent {
        stream.extend_from_slice(&ok(request, &[]));
    }
    stream.extend_from_slice(b"\x40\x00\x00\x05hello\0\0\0\x40\x00\x00\x04wire");
    for cut in [1, 7, 20, 21, 50, stream.len() - 6, stream.len() - 1] {
        let mut s2 = Sim::new(Transport::Tcp);
        s2.allocate(600);
        s2.c.add_peer(peer(), s2.now);
        let sent2 = s2.sent();
        // Same requests but fresh transaction ids: rebuild the answers for this client.
        let mut stream2 = Vec::new();
        for request in &sent2 {
            stream2.extend_from_slice(&ok(request, &[]));
        }
        stream2.extend_from_slice(&stream[stream.len() - 20..]);
        let mut data = s2.deliver(&stream2[..cut.min(stream2.len())]);
        data.extend(s2.deliver(&stream2[cut.min(stream2.len())..]));
        assert_eq!(
            data,
            [(peer(), b"hello".to_vec()), (peer(), b"wire".to_vec())],
            "cut at {cut}"
        );
        assert_eq!(s2.events(), [TurnEvent::PeerReady(peer())]);
    }
}

#[test]
fn a_corrupt_stream_is_reported_and_a_reconnect_recovers() {
    let mut s = Sim::new(Transport::Tcp);
    s.allocate(600);
    s.c.handle_stream(b"\xff\xff\xff\xff");
    assert_eq!(
        s.c.poll_stream(s.now),
        Some(Received::Ignored(Ignored::StreamCorrupt))
    );
    assert_eq!(s.c.poll_stream(s.now), None);
    s.c.handle_connection_lost(s.now);
    s.events();
    s.allocate(600);
}

#[test]
fn measures_rtt_with_a_binding_request_on_demand() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    s.c.probe_rtt(s.now);
    let binding = s.one_sent();
    assert_eq!(method(&binding), Method::BINDING);
    assert!(!msg(&binding).has_integrity());
    let t = s.elapsed();
    s.advance_to(t + ms(12));
    s.deliver(&respond(
        &binding,
        Class::Success,
        &[Attr::XorMappedAddress(mapped())],
        false,
    ));
    assert_eq!(s.events(), [TurnEvent::Rtt(ms(12))]);
    assert_eq!(s.c.rtt(), Some(ms(12)));
}

// ---- robustness ----

/// xorshift for the property loops: fixed seed, same run every time.
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn random_bytes_and_mutated_messages_never_panic_the_client() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut s = Sim::new(transport);
        s.allocate(600);
        s.add_ready_peer(peer());
        s.c.add_peer(addr("[2001:db8::7]:51820"), s.now);
        let templates: Vec<Vec<u8>> = s
            .sent()
            .iter()
            .map(|r| ok(r, &[Attr::Lifetime(600)]))
            .collect();
        for round in 0..20_000 {
            let len = (noise(&mut seed) % 160) as usize;
            let mut bytes: Vec<u8> = if round % 2 == 0 {
                (0..len).map(|_| noise(&mut seed) as u8).collect()
            } else {
                // A valid message with a few bytes changed: reaches deeper code.
                let mut b = templates[round % templates.len()].clone();
                for _ in 0..1 + noise(&mut seed) % 4 {
                    let i = (noise(&mut seed) as usize) % b.len();
                    b[i] = noise(&mut seed) as u8;
                }
                b
            };
            if round % 7 == 0 {
                // Keep the STUN or ChannelData prefix so the parsers get past byte one.
                if let Some(b) = bytes.first_mut() {
                    *b &= 0x7f;
                }
            }
            s.deliver(&bytes);
            if transport.is_stream() && round % 100 == 0 {
                s.c.handle_connection_lost(s.now);
            }
            s.c.handle_timeout(s.now);
            s.sent();
            s.events();
        }
    }
}

#[test]
fn the_message_views_never_panic_on_random_bytes() {
    let mut seed = 0xfeed_f00d_dead_beefu64;
    for _ in 0..50_000 {
        let len = (noise(&mut seed) % 96) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
        if bytes.len() >= 8 {
            // Often a valid header, so attribute walking gets exercised.
            bytes[0] &= 0x3f;
            bytes[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
            let body = (bytes.len() - 20.min(bytes.len())) as u16 & !3;
            bytes[2..4].copy_from_slice(&body.to_be_bytes());
        }
        if let Ok(m) = Message::parse(&bytes) {
            let id = m.transaction_id();
            for (t, v) in m.all_attributes() {
                let _ = Attr::parse(t, v, &id);
            }
            let _ = (
                m.check_integrity(&key()),
                m.check_fingerprint(),
                m.method(),
                m.class(),
            );
        }
        let _ = ChannelData::parse(&bytes);
    }
}

#[test]
fn send_refuses_payloads_too_large_for_the_framing() {
    let mut s = Sim::new(Transport::Udp);
    s.allocate(600);
    let mut out = Vec::new();
    assert_eq!(
        s.c.send(peer(), b"x", &mut out),
        Err(SendError::NoPermission)
    );
    s.add_ready_peer(peer());
    let big = vec![0u8; 70_000];
    assert_eq!(s.c.send(peer(), &big, &mut out), Err(SendError::TooLarge));
    let ip: IpAddr = peer().ip();
    assert!(
        s.c.can_send(SocketAddr::new(ip, 1)),
        "same IP: permission covers it"
    );
}
