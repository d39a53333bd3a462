//! Request–response exchanges with the server: building requests (with credentials once
//! challenged), matching responses to transactions, and what each answer or timeout does
//! to the allocation, its permissions and channels. [`super::client::TurnClient`] wraps
//! this with the public API and the stream buffer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ring::hmac;

use super::attr::{self, Attr, TRANSPORT_UDP};
use super::auth::LongTermKey;
use super::peers::Peers;
use super::stun::{Class, Message, Method, Writer};
use super::transaction::{Request, Rng, Transaction, refresh_at};
use super::{Ignored, Reason, Received, TurnConfig, TurnEvent};

/// 438 answers accepted in a row for one request before giving up on the server.
const MAX_STALE_NONCES: u8 = 3;
/// 437 answers to Allocate over UDP we try to clear before giving up.
const MAX_MISMATCHES: u8 = 3;
/// Wait between freeing a stale allocation and allocating again: coturn answers the
/// Refresh at once but drops the old session on its next timer tick, and answers 437 to
/// an Allocate that comes before that.
const REALLOCATE_AFTER_DELETE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) enum State {
    /// An Allocate (or the DeleteStale before it) is in flight, or, with `retry_at`,
    /// due then. `mismatches` counts 437s.
    Allocating {
        mismatches: u8,
        retry_at: Option<Instant>,
    },
    Allocated(Allocation),
    /// Terminal until `handle_connection_lost`.
    Failed,
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Allocation {
    pub(super) relayed: SocketAddr,
    pub(super) expires: Instant,
    /// `None` while a Refresh is in flight.
    pub(super) refresh_at: Option<Instant>,
}

/// What the server told us to authenticate with (RFC 8489 §9.2).
pub(super) struct Auth {
    pub(super) realm: Vec<u8>,
    pub(super) nonce: Vec<u8>,
    pub(super) key: hmac::Key,
}

/// The client's state, everything but the stream buffer (so a STUN message can be handled
/// while it still sits in that buffer).
pub(super) struct Exchange {
    pub(super) config: TurnConfig,
    pub(super) rng: Rng,
    pub(super) state: State,
    pub(super) auth: Option<Auth>,
    pub(super) transactions: Vec<Transaction>,
    pub(super) peers: Peers,
    pub(super) transmits: VecDeque<Vec<u8>>,
    pub(super) events: VecDeque<TurnEvent>,
    pub(super) rtt: Option<Duration>,
    pub(super) mapped: Option<SocketAddr>,
}

impl Exchange {
    pub(super) fn handle_stun<'a>(&mut self, bytes: &'a [u8], now: Instant) -> Received<'a> {
        let Ok(msg) = Message::parse(bytes) else {
            return Received::Ignored(Ignored::Malformed);
        };
        if msg.check_fingerprint() == Some(false) {
            return Received::Ignored(Ignored::Malformed);
        }
        match msg.class() {
            Class::Indication if msg.method() == Method::DATA => data_indication(&msg),
            Class::Success | Class::Error => self.response(&msg, now),
            _ => Received::Ignored(Ignored::Unexpected),
        }
    }

    fn response(&mut self, msg: &Message<'_>, now: Instant) -> Received<'static> {
        let id = msg.transaction_id();
        let Some(pos) = self.transactions.iter().position(|t| t.id == id) else {
            return Received::Ignored(Ignored::Unexpected);
        };
        // An answer to an authenticated request must prove it knows the key, except the
        // challenges (401, 438) that tell us which key to use. A forged answer is
        // dropped and the transaction keeps waiting for the real one.
        let code = error_code(msg);
        let challenge = matches!(code, Some(401 | 438));
        if self.transactions[pos].authenticated && !challenge {
            let ok = match self.auth.as_ref() {
                Some(auth) => msg.check_integrity(&auth.key),
                None => false,
            };
            if !ok && (msg.class() == Class::Success || msg.has_integrity()) {
                return Received::Ignored(Ignored::BadIntegrity);
            }
        }
        let tx = self.transactions.swap_remove(pos);
        if let Some(sample) = tx.rtt_sample(now) {
            self.rtt = Some(sample);
        }
        if let Some(typ) = msg
            .attributes()
            .map(|(t, _)| t)
            .find(|t| !attr::is_understood(*t))
        {
            self.request_failed(tx.request, Reason::UnknownAttribute(typ), now);
            return Received::Control;
        }
        match code {
            None => self.success(&tx, msg, now),
            // The first challenge, or a fresh nonce: answer with the credentials. Bounded,
            // so a server that keeps changing its nonce cannot keep us busy.
            Some(401 | 438) if tx.stale_nonces < MAX_STALE_NONCES && self.learn_auth(msg) => {
                self.start_request(tx.request, now, tx.stale_nonces + 1);
            }
            // The same realm and nonce refused again: the credentials are wrong.
            Some(401) => self.request_failed(tx.request, Reason::Unauthorized, now),
            Some(438) => self.request_failed(tx.request, Reason::StaleNonceLoop, now),
            Some(code) => {
                let reason = match code {
                    300 => match find(msg, attr::ALTERNATE_SERVER) {
                        Some(Attr::AlternateServer(a)) => Reason::TryAlternate(a),
                        _ => server_error(msg, code),
                    },
                    437 => Reason::AllocationMismatch,
                    486 => Reason::QuotaReached,
                    // Some servers (pion) answer an Allocate whose MESSAGE-INTEGRITY does
                    // not verify, a wrong password, with 400 and no reason.
                    400 if tx.request == Request::Allocate && tx.authenticated => {
                        match server_error(msg, code) {
                            Reason::Server { code, reason } => {
                                Reason::CredentialsRefused { code, reason }
                            }
                            other => other,
                        }
                    }
                    _ => server_error(msg, code),
                };
                self.request_failed(tx.request, reason, now);
            }
        }
        Received::Control
    }

    /// Takes REALM and NONCE from a 401 or 438. Returns whether the credentials changed
    /// (a 401 repeating what we used means the password is wrong).
    fn learn_auth(&mut self, msg: &Message<'_>) -> bool {
        let (Some(realm), Some(nonce)) = (msg.attribute(attr::REALM), msg.attribute(attr::NONCE))
        else {
            return false;
        };
        if let Some(auth) = self.auth.as_mut() {
            let same = auth.realm == realm && auth.nonce == nonce;
            if auth.realm == realm {
                auth.nonce = nonce.to_vec();
                return !same;
            }
        }
        let key = LongTermKey::new(&self.config.username, realm, &self.config.password);
        self.auth = Some(Auth {
            realm: realm.to_vec(),
            nonce: nonce.to_vec(),
            key: key.hmac_key(),
        });
        true
    }

    fn success(&mut self, tx: &Transaction, msg: &Message<'_>, now: Instant) {
        match tx.request {
            Request::Allocate => {
                let relayed = find(msg, attr::XOR_RELAYED_ADDRESS);
                let mapped = find(msg, attr::XOR_MAPPED_ADDRESS);
                let lifetime = find(msg, attr::LIFETIME);
                let (
                    Some(Attr::XorRelayedAddress(relayed)),
                    Some(Attr::XorMappedAddress(mapped)),
                    Some(Attr::Lifetime(secs)),
                ) = (relayed, mapped, lifetime)
                else {
                    let reason =
                        Reason::Malformed("Allocate success without addresses or lifetime");
                    return self.request_failed(tx.request, reason, now);
                };
                let lifetime = Duration::from_secs(secs.into());
                self.state = State::Allocated(Allocation {
                    relayed,
                    expires: now + lifetime,
                    refresh_at: Some(refresh_at(now, lifetime)),
                });
                self.mapped = Some(mapped);
                self.peers.reset(now);
                let rtt = self.rtt.unwrap_or_else(|| now - tx.first_sent);
                self.events.push_back(TurnEvent::Allocated {
                    relayed,
                    mapped,
                    lifetime,
                    rtt,
                });
            }
            Request::Refresh { .. } => {
                if let (State::Allocated(a), Some(Attr::Lifetime(secs))) =
                    (&mut self.state, find(msg, attr::LIFETIME))
                {
                    let lifetime = Duration::from_secs(secs.into());
                    a.expires = now + lifetime;
                    a.refresh_at = Some(refresh_at(now, lifetime));
                }
            }
            Request::DeleteStale => self.reallocate_soon(now),
            Request::CreatePermission(ip) => {
                let ready = self
                    .peers
                    .permission_installed(ip, now, &self.config.timings);
                self.events
                    .extend(ready.into_iter().map(TurnEvent::PeerReady));
            }
            Request::ChannelBind { peer, .. } => {
                let ready = self.peers.channel_bound(peer, now, &self.config.timings);
                self.events
                    .extend(ready.into_iter().map(TurnEvent::PeerReady));
            }
            Request::Binding => {
                if let Some(rtt) = tx.rtt_sample(now) {
                    self.events.push_back(TurnEvent::Rtt(rtt));
                }
            }
        }
    }

    /// A request ended without success: an error answer, or no answer in time.
    fn request_failed(&mut self, request: Request, reason: Reason, now: Instant) {
        let mismatch = reason == Reason::AllocationMismatch;
        match request {
            Request::Allocate => {
                let State::Allocating { mismatches, .. } = self.state else {
                    return;
                };
                // Over UDP a 437 usually means the server still holds an allocation
                // from our previous run on the same port: free it and allocate again.
                // coturn answers 437 before any challenge, so the Refresh may have to
                // go through a 401 first; same user, so the server lets us delete it.
                let stream = self.config.transport.is_stream();
                if mismatch && mismatches < MAX_MISMATCHES && !stream {
                    self.state = State::Allocating {
                        mismatches: mismatches + 1,
                        retry_at: None,
                    };
                    return self.start_request(Request::DeleteStale, now, 0);
                }
                self.state = State::Failed;
                self.events.push_back(TurnEvent::Failed { reason });
            }
            // Whatever became of it, try the allocation again.
            Request::DeleteStale => self.reallocate_soon(now),
            Request::Refresh { lifetime: Some(0) } => {}
            Request::Refresh { .. } => match reason {
                // The server is silent: keep trying until the allocation expires.
                Reason::Timeout => {
                    if let State::Allocated(a) = &mut self.state {
                        let retry = now + self.config.timings.retry_after;
                        a.refresh_at = Some(retry.min(a.expires));
                    }
                }
                _ => self.restart(now, reason),
            },
            Request::CreatePermission(_) | Request::ChannelBind { .. } if mismatch => {
                self.restart(now, reason)
            }
            Request::CreatePermission(ip) => {
                self.peers
                    .request_failed(request, now, &self.config.timings);
                for peer in self.peers.peers_at(ip) {
                    let reason = reason.clone();
                    self.events
                        .push_back(TurnEvent::PeerFailed { peer, reason });
                }
            }
            Request::ChannelBind { peer, .. } => {
                self.peers
                    .request_failed(request, now, &self.config.timings);
                self.events
                    .push_back(TurnEvent::PeerFailed { peer, reason });
            }
            Request::Binding => {}
        }
    }

    /// The allocation is gone (or never came): say so and allocate anew.
    pub(super) fn restart(&mut self, now: Instant, reason: Reason) {
        if matches!(self.state, State::Allocated(_)) {
            self.events.push_back(TurnEvent::AllocationLost { reason });
        }
        self.transactions.clear();
        self.state = State::Allocating {
            mismatches: 0,
            retry_at: None,
        };
        self.peers.reset(now);
        self.start_request(Request::Allocate, now, 0);
    }

    fn reallocate_soon(&mut self, now: Instant) {
        if let State::Allocating { retry_at, .. } = &mut self.state {
            *retry_at = Some(now + REALLOCATE_AFTER_DELETE);
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.transactions.len() {
            let tx = &mut self.transactions[i];
            if now >= tx.deadline {
                let tx = self.transactions.swap_remove(i);
                self.request_failed(tx.request, Reason::Timeout, now);
                // request_failed may have cleared or added transactions: start over.
                i = 0;
                continue;
            }
            if tx.retransmit_due(now) {
                self.transmits.push_back(tx.bytes.clone());
            }
            i += 1;
        }
        if let State::Allocating { retry_at, .. } = &mut self.state
            && retry_at.is_some_and(|t| now >= t)
        {
            *retry_at = None;
            self.start_request(Request::Allocate, now, 0);
        }
        if let State::Allocated(a) = &mut self.state {
            if now >= a.expires {
                self.restart(now, Reason::Expired);
            } else if a.refresh_at.is_some_and(|t| now >= t) {
                self.start_request(Request::Refresh { lifetime: None }, now, 0);
            }
        }
        self.peers.expire(now);
    }

    /// Sends the permission and channel requests that are due.
    pub(super) fn drive(&mut self, now: Instant) {
        if !matches!(self.state, State::Allocated(_)) {
            return;
        }
        while let Some(request) = self.peers.poll_request(now) {
            self.start_request(request, now, 0);
        }
    }

    pub(super) fn start_request(&mut self, request: Request, now: Instant, stale_nonces: u8) {
        if let (Request::Refresh { lifetime: None }, State::Allocated(a)) =
            (request, &mut self.state)
        {
            a.refresh_at = None; // in flight
        }
        let id = self.rng.transaction_id();
        let (method, mut attrs): (Method, Vec<Attr<'_>>) = match request {
            Request::Allocate => (
                Method::ALLOCATE,
                vec![Attr::RequestedTransport(TRANSPORT_UDP)],
            ),
            Request::Refresh { lifetime } => (
                Method::REFRESH,
                lifetime.map(Attr::Lifetime).into_iter().collect(),
            ),
            Request::DeleteStale => (Method::REFRESH, vec![Attr::Lifetime(0)]),
            Request::CreatePermission(ip) => (
                Method::CREATE_PERMISSION,
                vec![Attr::XorPeerAddress(SocketAddr::new(ip, 0))],
            ),
            Request::ChannelBind { peer, channel } => (
                Method::CHANNEL_BIND,
                vec![Attr::ChannelNumber(channel), Attr::XorPeerAddress(peer)],
            ),
            Request::Binding => (Method::BINDING, vec![]),
        };
        if !self.config.software.is_empty()
            && matches!(request, Request::Allocate | Request::Binding)
        {
            attrs.push(Attr::Software(self.config.software.as_bytes()));
        }
        let mut bytes = Vec::with_capacity(128);
        let mut w = Writer::new(&mut bytes, method, Class::Request, id);
        for a in &attrs {
            w.attr(a);
        }
        let auth = self.auth.as_ref().filter(|_| request.needs_auth());
        if let Some(auth) = auth {
            w.attr(&Attr::Username(self.config.username.as_bytes()))
                .attr(&Attr::Realm(&auth.realm))
                .attr(&Attr::Nonce(&auth.nonce))
                .integrity(&auth.key);
        }
        w.fingerprint();
        let reliable = self.config.transport.is_stream();
        let mut tx = Transaction::new(id, request, bytes, now, &self.config.timings, reliable);
        tx.stale_nonces = stale_nonces;
        tx.authenticated = auth.is_some();
        self.transmits.push_back(tx.bytes.clone());
        self.transactions.push(tx);
    }
}

fn data_indication<'a>(msg: &Message<'a>) -> Received<'a> {
    // Indications with attributes we must understand but do not are dropped (§7.3.2).
    if msg.attributes().any(|(t, _)| !attr::is_understood(t)) {
        return Received::Ignored(Ignored::Malformed);
    }
    match (find(msg, attr::XOR_PEER_ADDRESS), find(msg, attr::DATA)) {
        (Some(Attr::XorPeerAddress(from)), Some(Attr::Data(payload))) => {
            Received::Data { from, payload }
        }
        _ => Received::Ignored(Ignored::Malformed),
    }
}

/// The first attribute of type `typ`, decoded; `None` when absent or malformed.
fn find<'a>(msg: &Message<'a>, typ: u16) -> Option<Attr<'a>> {
    let value = msg.attribute(typ)?;
    Attr::parse(typ, value, &msg.transaction_id()).ok()
}

fn error_code(msg: &Message<'_>) -> Option<u16> {
    if msg.class() != Class::Error {
        return None;
    }
    match find(msg, attr::ERROR_CODE) {
        Some(Attr::ErrorCode { code, .. }) => Some(code),
        _ => Some(0), // an error without a code is still an error
    }
}

fn server_error(msg: &Message<'_>, code: u16) -> Reason {
    let reason = match find(msg, attr::ERROR_CODE) {
        Some(Attr::ErrorCode { reason, .. }) => {
            // Bounded: the server's text ends up in our logs.
            let text = String::from_utf8_lossy(reason);
            text.chars().take(128).collect()
        }
        _ => String::new(),
    };
    Reason::Server { code, reason }
}
