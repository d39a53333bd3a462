//! Golden bytes from a real coturn (Debian 4.6.1), captured by
//! `EDGEWIRE_TURN_CAPTURE=DIR cargo test -p edgewire-lab --test turn_coturn udp`: the
//! first client of that test (seed 1, user "edge-7", password "correct horse", realm
//! "edgewire.test", from 198.51.100.20 to 203.0.113.10:3478 over UDP). Each is decoded,
//! re-encoded byte for byte with our own MESSAGE-INTEGRITY and FINGERPRINT, and the
//! exchange is replayed into a client with the same seed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::attr::{self, Attr};
use super::*;

const ALLOCATE_401: &[u8] = include_bytes!("testdata/allocate-401.bin");
const ALLOCATE_SUCCESS: &[u8] = include_bytes!("testdata/allocate-success.bin");
/// 31 bytes from the echo peer on channel 0x4000, unpadded as coturn sends over UDP.
const CHANNEL_DATA: &[u8] = include_bytes!("testdata/channel-data.bin");

const USER: &str = "edge-7";
const PASS: &str = "correct horse";
const REALM: &[u8] = b"edgewire.test";
const SOFTWARE: &[u8] = b"Coturn-4.6.1 'Gorst'";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Every attribute of `bytes`, decoded, in order.
fn decode(bytes: &[u8]) -> (Message<'_>, Vec<Attr<'_>>) {
    let msg = Message::parse(bytes).unwrap();
    let id = msg.transaction_id();
    let attrs = msg
        .all_attributes()
        .map(|(t, v)| Attr::parse(t, v, &id).unwrap())
        .collect();
    (msg, attrs)
}

/// Writes `attrs` again, computing MESSAGE-INTEGRITY and FINGERPRINT ourselves.
fn reencode(msg: &Message<'_>, attrs: &[Attr<'_>], key: Option<&LongTermKey>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, msg.method(), msg.class(), msg.transaction_id());
    for a in attrs {
        match a {
            Attr::MessageIntegrity(_) => {
                w.integrity(&key.expect("a key for MESSAGE-INTEGRITY").hmac_key());
            }
            Attr::Fingerprint(_) => {
                w.fingerprint();
            }
            other => {
                w.attr(other);
            }
        }
    }
    out
}

#[test]
fn coturn_s_401_challenge_decodes_and_reencodes_byte_for_byte() {
    let (msg, attrs) = decode(ALLOCATE_401);
    assert_eq!(
        (msg.method(), msg.class()),
        (Method::ALLOCATE, Class::Error)
    );
    assert_eq!(msg.check_fingerprint(), Some(true));
    assert!(!msg.has_integrity());
    let [
        Attr::ErrorCode { code: 401, reason },
        Attr::Nonce(nonce),
        Attr::Realm(REALM),
        Attr::Software(SOFTWARE),
        Attr::Fingerprint(_),
    ] = attrs[..]
    else {
        panic!("unexpected attributes {attrs:?}");
    };
    assert_eq!(reason, b"Unauthorized");
    assert_eq!(nonce.len(), 16);
    assert_eq!(reencode(&msg, &attrs, None), ALLOCATE_401);
}

#[test]
fn coturn_s_allocate_success_decodes_verifies_and_reencodes_byte_for_byte() {
    let (msg, attrs) = decode(ALLOCATE_SUCCESS);
    assert_eq!(
        (msg.method(), msg.class()),
        (Method::ALLOCATE, Class::Success)
    );
    let key = LongTermKey::new(USER, REALM, PASS);
    assert!(msg.check_integrity(&key.hmac_key()));
    assert!(!msg.check_integrity(&LongTermKey::new(USER, REALM, "wrong").hmac_key()));
    assert_eq!(msg.check_fingerprint(), Some(true));
    assert_eq!(
        attrs[..4],
        [
            Attr::XorRelayedAddress(addr("203.0.113.10:49253")),
            Attr::XorMappedAddress(addr("198.51.100.20:38753")),
            Attr::Lifetime(6),
            Attr::Software(SOFTWARE),
        ]
    );
    assert!(matches!(
        attrs[4..],
        [Attr::MessageIntegrity(_), Attr::Fingerprint(_)]
    ));
    assert_eq!(reencode(&msg, &attrs, Some(&key)), ALLOCATE_SUCCESS);
}

#[test]
fn coturn_s_channel_data_decodes_and_reencodes_byte_for_byte() {
    let cd = ChannelData::parse(CHANNEL_DATA).unwrap();
    assert_eq!(cd.channel, 0x4000);
    let sent: Vec<u8> = (0..31).map(|i| (i * 7 + 31) as u8).collect();
    assert_eq!(cd.payload, sent, "the test's 31-byte payload, echoed");
    let mut out = Vec::new();
    ChannelData::emit(cd.channel, cd.payload, false, &mut out);
    assert_eq!(out, CHANNEL_DATA);
}

#[test]
fn replaying_coturn_s_answers_into_a_client_with_the_same_seed_allocates() {
    let t0 = Instant::now();
    let config = TurnConfig {
        server: addr("203.0.113.10:3478"),
        transport: Transport::Udp,
        username: USER.into(),
        password: PASS.into(),
        software: "edgewire-test".into(),
        timings: Timings::default(),
    };
    let mut c = TurnClient::new(config, 1, t0);
    let first = c.poll_transmit().unwrap();
    let id = |b: &[u8]| Message::parse(b).unwrap().transaction_id();
    assert_eq!(id(&first), id(ALLOCATE_401));
    assert_eq!(c.handle_datagram(ALLOCATE_401, t0), Received::Control);
    let second = c.poll_transmit().unwrap();
    assert_eq!(id(&second), id(ALLOCATE_SUCCESS));
    let nonce = Message::parse(ALLOCATE_401).unwrap().attribute(attr::NONCE);
    assert_eq!(
        Message::parse(&second).unwrap().attribute(attr::NONCE),
        nonce
    );
    let t1 = t0 + Duration::from_millis(3);
    assert_eq!(c.handle_datagram(ALLOCATE_SUCCESS, t1), Received::Control);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Allocated {
            relayed: addr("203.0.113.10:49253"),
            mapped: addr("198.51.100.20:38753"),
            lifetime: Duration::from_secs(6),
            rtt: Duration::from_millis(3),
        })
    );
}
