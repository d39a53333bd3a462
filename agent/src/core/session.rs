//! The WireGuard session with one peer: the only place that touches boringtun's `Tunn`
//! (and its rate limiter, the handshake gate in front of every session).
//!
//! Sharp edges handled here:
//! - `Tunn` reads a clock for its timers (retransmits, keepalives, rekeys, key expiry).
//!   It is built with boringtun's `mock-instant` feature, so that clock is a thread-local
//!   value we set to the core's `now` before every call ([`set_clock`]): the agent runs
//!   boringtun on the real clock, the tests on simulated time, and nothing in boringtun
//!   reads the time on its own. The handshake timestamp still comes from the wall clock
//!   read when a `Tunn` is made (see `Node::renew_sessions`).
//! - `Tunn` queues packets while a handshake is in progress and panics on a short output
//!   buffer: every buffer is sized here and the queue is drained.
//! - Finding which peer sent a handshake initiation costs an X25519 operation: MAC1 (and,
//!   under load, MAC2 with a cookie) is checked first, by [`HandshakeGate`].
//! - A `Tunn` is 11 KB (eight key slots inline): a hub with 10,000 peers cannot hold one
//!   per peer. A [`Session`] makes its `Tunn` when there is something to send or a
//!   handshake initiation arrives, and lets it go once its keys are past WireGuard's
//!   reject time and nothing has passed for a while (see [`Session::release_if_idle`]).
//!
//! Results come back as owned byte buffers, so the rest of the core never sees a
//! `TunnResult`.
//!
//! boringtun copies each packet into the output buffer and seals or opens it there (ring
//! has no out-of-place AEAD). That copy looked worth removing (perf put libc's memmove at
//! 7-11 % of an agent's samples at 1 Gbit/s of UDP), but the cost it stands for is far
//! smaller: a build making four more copies of every datagram on each side, alternated
//! with this one (`bench --only edgewire --udp-at 1100 --seconds 8`), moved CPU per GB
//! from a median 5.55 s (8 runs) to 5.71 (4 runs), and the loss not at all (5.1 against
//! 4.6 %, the run-to-run spread 1.6-7.5 %). The copy warms the buffer the cipher then
//! works in. A zero-copy path would have to reshape the TUN reads and the outbox's
//! buffers, for about a percent.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use mock_instant::MockClock;

use super::path::TUN_HEADROOM;
use crate::keys::{PrivateKey, PublicKey};

/// Where a node's boringtun clock starts: the `now` the node was made with. boringtun's
/// clock is one thread-local value, but each node (the agent has one; a simulation has
/// several, made one after another) keeps its own timeline, and the core's `now` only
/// moves forward, so every `Tunn` only ever sees its clock move forward.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(Instant);

/// Sets boringtun's clock to `now` on the node's timeline, and says which peer the call
/// is for (`None`: no peer's). Called before every call into boringtun.
fn set_clock(epoch: Epoch, now: Instant, peer: Option<&Rc<str>>) {
    MockClock::set_time(now.saturating_duration_since(epoch.0));
    CALLING.with(|c| {
        let mut c = c.borrow_mut();
        let same = match (c.as_ref(), peer) {
            (Some(a), Some(b)) => Rc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            *c = peer.cloned();
        }
    });
}

thread_local! {
    /// The name of the peer whose `Tunn` is being called. boringtun's own log lines
    /// (`HANDSHAKE(REKEY_TIMEOUT)`, `CONNECTION_EXPIRED`) name no peer; the logger adds
    /// this one.
    static CALLING: RefCell<Option<Rc<str>>> = const { RefCell::new(None) };
}

/// The peer whose `Tunn` is being called on this thread, for boringtun's log lines.
pub fn boringtun_peer() -> Option<Rc<str>> {
    CALLING.with(|c| c.borrow().clone())
}

/// Handshake messages accepted per second before the gate asks for cookies. A handshake
/// costs about 100 µs of X25519 here and ~0.5 ms on a Cortex-A53, so 200/s bounds a
/// flood of valid-looking initiations to 2 % of a core here (10 % of an A53); a
/// 10,000-peer hub's steady rekeys are 10,000 / 120 s = 83/s, below it. Over the limit
/// a sender must prove its address with the cookie (MAC2), as WireGuard specifies.
pub const HANDSHAKES_PER_SECOND: u64 = 200;
/// Cookie replies sent per second at most. Past the handshake limit every forged
/// initiation with a valid MAC1 earns a reply; under a flood of 50,000/s the `send_to`
/// of each one took most of the one thread, and a known peer's data waited behind them
/// in the socket's queue until the kernel dropped it. A peer that needs a cookie retries
/// its initiation within REKEY_TIMEOUT (5 s) and gets one then: 2,000/s leaves room for a
/// 10,000-peer hub's peers to all be answered within those 5 s.
pub const COOKIE_REPLIES_PER_SECOND: u32 = 2_000;

/// The check in front of every handshake message, shared by all sessions of a node:
/// MAC1 (keyed by our public key, so a random or misdirected datagram is dropped for the
/// price of a BLAKE2s), and under load MAC2, answered with a cookie reply when missing.
pub struct HandshakeGate {
    limiter: RateLimiter,
    maker: Arc<Maker>,
    /// Cookie replies sent in the current second: (when it started, how many).
    replies: std::cell::Cell<(Instant, u32)>,
}

/// What every `Tunn` of a node is made with, shared by its sessions.
struct Maker {
    own: boringtun::x25519::StaticSecret,
    epoch: Epoch,
    /// Given to every `Tunn` in place of its own rate limiter: it checks MAC1 again
    /// (cheap) but never engages, since the gate already did.
    inner: Arc<RateLimiter>,
}

/// What the gate decided about a handshake message.
#[derive(Debug)]
pub enum Gate {
    /// Go on to the session.
    Pass,
    /// Under load and without a valid MAC2: send this cookie reply back, nothing else.
    Cookie([u8; COOKIE_REPLY_LEN]),
    /// Under load, without a valid MAC2, and over the cookie-reply budget: drop it.
    Shed,
    /// Not for us, or malformed.
    Drop(SessionError),
}

impl HandshakeGate {
    /// The gate of a node made at `now`, which is also where the node's boringtun clock
    /// starts.
    pub fn new(own: &PrivateKey, now: Instant) -> HandshakeGate {
        let epoch = Epoch(now);
        set_clock(epoch, now, None);
        let public = boringtun::x25519::PublicKey::from(own.secret());
        HandshakeGate {
            limiter: RateLimiter::new(&public, HANDSHAKES_PER_SECOND),
            maker: Arc::new(Maker {
                own: own.secret().clone(),
                epoch,
                inner: Arc::new(RateLimiter::new(&public, u64::MAX)),
            }),
            replies: std::cell::Cell::new((now, 0)),
        }
    }

    /// Checks a handshake initiation or response from `from`.
    pub fn check(&self, from: IpAddr, datagram: &[u8], now: Instant) -> Gate {
        set_clock(self.maker.epoch, now, None);
        // Resets the count once a second has passed since the last reset: lazily, so an
        // idle node needs no timer for it.
        self.limiter.reset_count();
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        match self.limiter.verify_packet(Some(from), datagram, &mut reply) {
            Ok(_) => Gate::Pass,
            Err(TunnResult::WriteToNetwork(cookie)) if cookie.len() == COOKIE_REPLY_LEN => {
                if !self.take_reply(now) {
                    return Gate::Shed;
                }
                let mut out = [0u8; COOKIE_REPLY_LEN];
                out.copy_from_slice(cookie);
                Gate::Cookie(out)
            }
            Err(TunnResult::Err(e)) => Gate::Drop(SessionError::Refused(kind(&e))),
            Err(_) => Gate::Drop(SessionError::Refused(WireGuardErrorKind("malformed"))),
        }
    }
}

impl HandshakeGate {
    /// Whether one more cookie reply fits this second's budget (and counts it).
    fn take_reply(&self, now: Instant) -> bool {
        let (since, sent) = self.replies.get();
        let (since, sent) = if now.saturating_duration_since(since) >= Duration::from_secs(1) {
            (now, 0)
        } else {
            (since, sent)
        };
        let ok = sent < COOKIE_REPLIES_PER_SECOND;
        self.replies.set((since, sent + u32::from(ok)));
        ok
    }
}

/// WireGuard adds 32 bytes to a data packet; a handshake initiation is 148 bytes, a
/// cookie reply 64.
const OVERHEAD: usize = 32;
const MIN_BUFFER: usize = 148;
pub const COOKIE_REPLY_LEN: usize = 64;

/// The kind of a WireGuard message, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    HandshakeInit,
    HandshakeResponse,
    CookieReply,
    Data,
}

impl MessageKind {
    pub fn of(datagram: &[u8]) -> Option<MessageKind> {
        // The type is a little-endian u32 whose upper three bytes are reserved zeros.
        match datagram.get(..4)? {
            [1, 0, 0, 0] => Some(MessageKind::HandshakeInit),
            [2, 0, 0, 0] => Some(MessageKind::HandshakeResponse),
            [3, 0, 0, 0] => Some(MessageKind::CookieReply),
            [4, 0, 0, 0] => Some(MessageKind::Data),
            _ => None,
        }
    }

    /// The receiver index, which names the session (and so the peer) the message is for.
    pub fn receiver_index(datagram: &[u8]) -> Option<u32> {
        match MessageKind::of(datagram)? {
            MessageKind::HandshakeInit => None,
            MessageKind::HandshakeResponse => datagram.get(8..12),
            MessageKind::CookieReply | MessageKind::Data => datagram.get(4..8),
        }
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
    }
}

/// Finds who sent a handshake initiation, by decrypting its static key with ours. An
/// X25519 operation: only after [`HandshakeGate::check`] passed.
pub fn initiator_of(datagram: &[u8], own: &PrivateKey) -> Option<PublicKey> {
    let Ok(Packet::HandshakeInit(init)) = Tunn::parse_incoming_packet(datagram) else {
        return None;
    };
    let public = boringtun::x25519::PublicKey::from(own.secret());
    parse_handshake_anon(own.secret(), &public, &init)
        .ok()
        .map(|half| PublicKey(half.peer_static_public))
}

/// What came out of a datagram from the peer.
#[derive(Debug)]
pub enum Received {
    /// An IP packet for the TUN device, `TUN_HEADROOM` bytes into the buffer, from this
    /// source address.
    Packet(Vec<u8>, IpAddr),
    /// Nothing for the TUN device (a keepalive, a handshake step).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("WireGuard refused the datagram: {0:?}")]
    Refused(WireGuardErrorKind),
    #[error("the handshake gave up after 90 s without an answer")]
    Expired,
}

/// boringtun's error, kept as a plain copyable value for counting and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireGuardErrorKind(&'static str);

fn kind(e: &WireGuardError) -> WireGuardErrorKind {
    WireGuardErrorKind(match e {
        WireGuardError::InvalidMac => "invalid MAC",
        WireGuardError::InvalidAeadTag => "invalid AEAD tag",
        WireGuardError::WrongKey => "wrong key",
        WireGuardError::WrongIndex => "unknown session index",
        WireGuardError::DuplicateCounter | WireGuardError::InvalidCounter => "replayed counter",
        WireGuardError::WrongTai64nTimestamp | WireGuardError::InvalidTai64nTimestamp => {
            "handshake timestamp not newer than the last one"
        }
        WireGuardError::UnderLoad => "under load (cookie needed)",
        WireGuardError::NoCurrentSession => "no current session",
        WireGuardError::UnexpectedPacket | WireGuardError::WrongPacketType => "unexpected message",
        _ => "malformed message",
    })
}

/// A `Tunn` whose keys are older than this cannot carry data: WireGuard's
/// REJECT_AFTER_TIME.
const REJECT_AFTER: Duration = Duration::from_secs(180);
/// A `Tunn` without live keys is let go after this long without a datagram through it.
/// Longer than a handshake takes to be answered, retransmits included (REKEY_TIMEOUT is
/// 5 s); an initiation answered later than this is answered to a `Tunn` that is gone
/// and refused, and the next one starts afresh.
const QUIET_BEFORE_RELEASE: Duration = Duration::from_secs(15);

/// The WireGuard session with one peer, its `Tunn` made only while it is needed.
pub struct Session {
    tunn: Option<Box<Tunn>>,
    maker: Arc<Maker>,
    peer: PublicKey,
    /// The peer's name, for boringtun's log lines.
    name: Rc<str>,
    preshared_key: Option<[u8; 32]>,
    keepalive: Option<u16>,
    index: u32,
    /// When a datagram last went through the `Tunn`, either way.
    last_used: Option<Instant>,
    /// When the last handshake completed: boringtun forgets it when the keys expire,
    /// `status` and the decision to let the `Tunn` go do not.
    handshake_at: Option<Instant>,
    /// The largest packet handed to `encapsulate`: no packet boringtun queued behind a
    /// handshake is larger, so `flush` needs no more room than this.
    largest_packet: usize,
}

impl Session {
    /// `index` must be unique among this node's sessions: the upper 24 bits of every
    /// receiver index the peer sends us are this value. Costs no `Tunn` until one is
    /// needed.
    pub fn new(
        peer: PublicKey,
        name: &str,
        preshared_key: Option<[u8; 32]>,
        keepalive: Option<u16>,
        index: u32,
        gate: &HandshakeGate,
    ) -> Self {
        Session {
            tunn: None,
            maker: gate.maker.clone(),
            peer,
            name: name.into(),
            preshared_key,
            keepalive,
            index,
            last_used: None,
            handshake_at: None,
            largest_packet: 0,
        }
    }

    /// Whether a `Tunn` exists now (it has state worth timers).
    pub fn is_live(&self) -> bool {
        self.tunn.is_some()
    }

    /// The `Tunn`, made now if there is none, with boringtun's clock set to `now`.
    fn tunn(&mut self, now: Instant) -> &mut Tunn {
        set_clock(self.maker.epoch, now, Some(&self.name));
        self.last_used = Some(now);
        let maker = &self.maker;
        let (peer, psk, keepalive, index) =
            (self.peer, self.preshared_key, self.keepalive, self.index);
        self.tunn.get_or_insert_with(|| {
            Box::new(Tunn::new(
                maker.own.clone(),
                boringtun::x25519::PublicKey::from(peer.0),
                psk,
                keepalive.filter(|&k| k > 0),
                index,
                Some(maker.inner.clone()),
            ))
        })
    }

    /// The existing `Tunn`, with boringtun's clock set to `now`.
    fn existing(&mut self, now: Instant) -> Option<&mut Tunn> {
        set_clock(self.maker.epoch, now, Some(&self.name));
        self.tunn.as_deref_mut()
    }

    /// Lets the `Tunn` go when it holds nothing worth its 11 KB: its keys are past the
    /// reject time (or it never had any) and no datagram went through it for
    /// `QUIET_BEFORE_RELEASE`. The next packet or initiation makes a new one. Returns
    /// true when it was let go: a handshake in flight is forgotten with it.
    ///
    /// What is lost is the peer's last handshake timestamp, so one replay of an old
    /// initiation would be answered by the new `Tunn`; with no live keys there is no
    /// session for the replay to displace, and the answer is useless to its sender.
    pub fn release_if_idle(&mut self, now: Instant) -> bool {
        let quiet = self
            .last_used
            .is_none_or(|t| now.saturating_duration_since(t) >= QUIET_BEFORE_RELEASE);
        let age = self.time_since_last_handshake(now);
        if self.tunn.is_none() || !quiet || age.is_some_and(|a| a < REJECT_AFTER) {
            return false;
        }
        self.tunn = None;
        true
    }

    /// The manifest renamed the peer.
    pub fn rename(&mut self, name: &str) {
        if *self.name != *name {
            self.name = name.into();
        }
    }

    /// A new `Tunn` from the next use on (see `Node::renew_sessions`).
    pub fn reset(&mut self) {
        self.tunn = None;
    }

    /// Encrypts an IP packet, or starts a handshake and queues the packet until it is done.
    /// Returns the datagram to send, if any.
    pub fn encapsulate(
        &mut self,
        packet: &[u8],
        mut out: Vec<u8>,
        now: Instant,
    ) -> Option<Vec<u8>> {
        self.largest_packet = self.largest_packet.max(packet.len());
        room(&mut out, (packet.len() + OVERHEAD).max(MIN_BUFFER));
        let w = match self.tunn(now).encapsulate(packet, &mut out) {
            TunnResult::WriteToNetwork(d) => written(d),
            _ => return None,
        };
        keep(&mut out, w);
        Some(out)
    }

    /// Decrypts a datagram from the peer. `replies` receives what must go back to the
    /// peer (a handshake response, a keepalive, packets queued behind the handshake).
    pub fn decapsulate(
        &mut self,
        from: IpAddr,
        datagram: &[u8],
        mut new_buffer: impl FnMut() -> Vec<u8>,
        replies: &mut Vec<Vec<u8>>,
        now: Instant,
    ) -> Result<Received, SessionError> {
        // Only an initiation makes a `Tunn`: anything else names keys a missing one
        // cannot have.
        let tunn = match (MessageKind::of(datagram), self.tunn.is_some()) {
            (_, true) | (Some(MessageKind::HandshakeInit), false) => self.tunn(now),
            _ => {
                return Err(SessionError::Refused(WireGuardErrorKind(
                    "no session (let go while idle)",
                )));
            }
        };
        // boringtun panics if the output is shorter than the datagram. A packet is
        // decrypted `TUN_HEADROOM` bytes in, where the TUN device wants it.
        let mut out = new_buffer();
        room(&mut out, TUN_HEADROOM + datagram.len().max(MIN_BUFFER));
        let result = tunn.decapsulate(Some(from), datagram, &mut out[TUN_HEADROOM..]);
        if let Some(since) = self
            .tunn
            .as_ref()
            .and_then(|t| t.time_since_last_handshake())
        {
            self.handshake_at = now.checked_sub(since);
        }
        let received = match result {
            TunnResult::Done => Received::Nothing,
            TunnResult::Err(e) => return Err(SessionError::Refused(kind(&e))),
            TunnResult::WriteToNetwork(d) => {
                // A handshake answer or cookie: a datagram, which has no room in front
                // (moved down once; a handshake's worth of bytes, once per handshake).
                let w = written(d);
                keep_from(&mut out, TUN_HEADROOM, w);
                out.drain(..TUN_HEADROOM);
                replies.push(out);
                self.flush(&mut new_buffer, replies);
                return Ok(Received::Nothing);
            }
            TunnResult::WriteToTunnelV4(d, src) => {
                let w = written(d);
                keep_from(&mut out, TUN_HEADROOM, w);
                Received::Packet(out, src.into())
            }
            TunnResult::WriteToTunnelV6(d, src) => {
                let w = written(d);
                keep_from(&mut out, TUN_HEADROOM, w);
                Received::Packet(out, src.into())
            }
        };
        Ok(received)
    }

    /// Sends what boringtun queued: after a handshake completes, packets that waited.
    fn flush(&mut self, new_buffer: &mut impl FnMut() -> Vec<u8>, replies: &mut Vec<Vec<u8>>) {
        let Some(tunn) = self.tunn.as_deref_mut() else {
            return;
        };
        loop {
            let mut out = new_buffer();
            // Room for the largest packet that can be waiting, not for any the TUN could
            // hand over: 64 KiB zeroed here at the first handshake stayed resident in
            // the heap (60 KB of an idle agent's 450).
            room(&mut out, (self.largest_packet + OVERHEAD).max(MIN_BUFFER));
            match tunn.decapsulate(None, &[], &mut out) {
                TunnResult::WriteToNetwork(d) => {
                    let w = written(d);
                    keep(&mut out, w);
                    replies.push(out);
                }
                _ => return,
            }
        }
    }

    /// Runs WireGuard's timers: retransmits, keepalives, rekeys.
    pub fn update_timers(
        &mut self,
        mut out: Vec<u8>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        out.resize(MIN_BUFFER.max(OVERHEAD), 0);
        let Some(tunn) = self.existing(now) else {
            return Ok(None);
        };
        match tunn.update_timers(&mut out) {
            TunnResult::WriteToNetwork(d) => {
                let w = written(d);
                keep(&mut out, w);
                self.last_used = Some(now);
                Ok(Some(out))
            }
            TunnResult::Err(WireGuardError::ConnectionExpired) => Err(SessionError::Expired),
            _ => Ok(None),
        }
    }

    /// Starts a new handshake now, even if one is in progress (a path probe, or a
    /// restart after the previous attempt expired).
    pub fn initiate(&mut self, mut out: Vec<u8>, now: Instant) -> Option<Vec<u8>> {
        out.resize(MIN_BUFFER, 0);
        let w = match self.tunn(now).format_handshake_initiation(&mut out, true) {
            TunnResult::WriteToNetwork(d) => written(d),
            _ => return None,
        };
        keep(&mut out, w);
        Some(out)
    }

    /// How long ago the last handshake completed, even if its keys have expired since.
    pub fn time_since_last_handshake(&self, now: Instant) -> Option<Duration> {
        self.handshake_at.map(|t| now.saturating_duration_since(t))
    }
}

/// Where boringtun wrote its result: (address, length).
fn written(d: &[u8]) -> (usize, usize) {
    (d.as_ptr() as usize, d.len())
}

/// Makes `out` exactly `len` bytes long for boringtun to write into. Bytes a used buffer
/// already holds stay as they are (boringtun overwrites what we keep, and the rest is
/// cut off); the others are zeroed by copying from a zero block rather than by
/// `Vec::resize`: under the release profile's opt-level "z", `resize` fills byte by
/// byte, and on the data path that one fill cost as much CPU as the cipher (15 % of the
/// sender's samples in `perf`).
fn room(out: &mut Vec<u8>, len: usize) {
    static ZEROS: [u8; 2048] = [0; 2048];
    if out.len() >= len {
        out.truncate(len);
        return;
    }
    out.reserve(len - out.len());
    while out.len() < len {
        let more = (len - out.len()).min(ZEROS.len());
        out.extend_from_slice(&ZEROS[..more]);
    }
}

/// boringtun writes every result at the start of the output buffer, so keeping the
/// result is a truncation.
fn keep(out: &mut Vec<u8>, written: (usize, usize)) {
    keep_from(out, 0, written);
}

/// `keep` for output boringtun wrote `from` bytes into `out`: the room before it stays.
fn keep_from(out: &mut Vec<u8>, from: usize, (at, len): (usize, usize)) {
    debug_assert_eq!(
        at,
        out.as_ptr() as usize + from,
        "boringtun wrote past the buffer start"
    );
    out.truncate(from + len);
}
