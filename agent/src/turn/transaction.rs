//! Client transactions (RFC 8489 §6.2): what a request was for, its bytes for
//! retransmission, and its timers.
//!
//! Over UDP a request is retransmitted after RTO = 500 ms, doubling each time, as the
//! RFC says; but the whole transaction gives up after 5 s instead of the RFC's 39.5 s
//! (Rc = 7, Rm = 16). A relay is only useful to us for fallback within seconds
//! (DESIGN.md: at most 5 s of lost pings when a path dies), several relays are measured
//! side by side, and a relay that needs more than 5 s to answer is worse than the next
//! one. So the sends are at 0, 0.5, 1.5 and 3.5 s, and the verdict at 5 s. Over TCP and
//! TLS the transport retransmits; only the 5 s deadline applies.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::stun::TransactionId;

/// What a request asks for; decides what its response does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Allocate,
    /// Refresh with this LIFETIME (`None`: the server's default).
    Refresh {
        lifetime: Option<u32>,
    },
    /// Refresh with lifetime 0 to free an allocation the server kept for our 5-tuple
    /// (437 on Allocate), then allocate again.
    DeleteStale,
    CreatePermission(IpAddr),
    ChannelBind {
        peer: SocketAddr,
        channel: u16,
    },
    /// A plain STUN Binding request, to measure the round-trip time.
    Binding,
}

impl Request {
    /// Binding needs no credentials; everything TURN does.
    pub fn needs_auth(self) -> bool {
        self != Request::Binding
    }
}

#[derive(Debug)]
pub struct Transaction {
    pub id: TransactionId,
    pub request: Request,
    pub bytes: Vec<u8>,
    pub first_sent: Instant,
    pub retransmits: u32,
    /// Next retransmission over UDP; `None` over streams or when no time is left.
    pub next_retransmit: Option<Instant>,
    rto: Duration,
    pub deadline: Instant,
    /// 438 Stale Nonce answers seen for this request chain (bounded to avoid loops).
    pub stale_nonces: u8,
    /// Whether the request carried MESSAGE-INTEGRITY.
    pub authenticated: bool,
}

/// Timer settings; the defaults are the RFC's lifetimes and our 5 s transaction budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub initial_rto: Duration,
    pub transaction_timeout: Duration,
    /// How long the server keeps a permission (RFC 8656: 300 s, not signalled).
    pub permission_lifetime: Duration,
    /// How long the server keeps a channel binding (RFC 8656: 600 s, not signalled).
    pub channel_lifetime: Duration,
    /// Wait before asking again for a permission or channel the server refused or did
    /// not answer.
    pub retry_after: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            initial_rto: Duration::from_millis(500),
            transaction_timeout: Duration::from_secs(5),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            retry_after: Duration::from_secs(10),
        }
    }
}

/// When to renew something that lives `lifetime` from `since`: one minute early, or at
/// 80% for lifetimes under five minutes, so a lost refresh still has time for retries.
/// 600 s → 540 s, 300 s → 240 s, 3600 s → 3540 s, 20 s → 16 s.
pub fn refresh_at(since: Instant, lifetime: Duration) -> Instant {
    since + lifetime - (lifetime / 5).min(Duration::from_secs(60))
}

impl Transaction {
    pub fn new(
        id: TransactionId,
        request: Request,
        bytes: Vec<u8>,
        now: Instant,
        timings: &Timings,
        reliable: bool,
    ) -> Transaction {
        let deadline = now + timings.transaction_timeout;
        let next = now + timings.initial_rto;
        Transaction {
            id,
            request,
            bytes,
            first_sent: now,
            retransmits: 0,
            next_retransmit: (!reliable && next < deadline).then_some(next),
            rto: timings.initial_rto,
            deadline,
            stale_nonces: 0,
            authenticated: false,
        }
    }

    /// Whether a retransmission is due; if so, schedules the next one.
    pub fn retransmit_due(&mut self, now: Instant) -> bool {
        match self.next_retransmit {
            Some(at) if now >= at && now < self.deadline => {
                self.retransmits += 1;
                self.rto *= 2;
                let next = at + self.rto;
                self.next_retransmit = (next < self.deadline).then_some(next);
                true
            }
            _ => false,
        }
    }

    pub fn next_timer(&self) -> Instant {
        self.next_retransmit.unwrap_or(self.deadline)
    }

    /// A round-trip sample, only from transactions that were never retransmitted (Karn:
    /// an answer to a retransmitted request is ambiguous).
    pub fn rtt_sample(&self, now: Instant) -> Option<Duration> {
        (self.retransmits == 0).then(|| now.saturating_duration_since(self.first_sent))
    }
}

/// Transaction ids from a seeded xorshift64*: unpredictable enough for an off-path
/// attacker who cannot see our traffic once seeded from the OS, and reproducible in tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 spreads small or similar seeds over the whole state (xorshift's
        // first outputs from a seed like 1 are poor); the state must not be zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x9e37_79b9_7f4a_7c15 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn transaction_id(&mut self) -> TransactionId {
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_le_bytes()[..4]);
        id
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one Instant::now() as the simulated start
mod tests {
    use super::*;

    #[test]
    fn udp_requests_are_resent_at_half_one_and_a_half_and_three_and_a_half_seconds() {
        let t0 = Instant::now();
        let mut tx = Transaction::new(
            [0; 12],
            Request::Allocate,
            vec![],
            t0,
            &Timings::default(),
            false,
        );
        let mut sends = Vec::new();
        let mut now = t0;
        while now < tx.deadline {
            now = tx.next_timer();
            if tx.retransmit_due(now) {
                sends.push(now - t0);
            }
        }
        let ms = |m| Duration::from_millis(m);
        assert_eq!(sends, [ms(500), ms(1500), ms(3500)]);
        assert_eq!(tx.deadline - t0, ms(5000));
    }

    #[test]
    fn stream_requests_are_never_resent() {
        let t0 = Instant::now();
        let mut tx = Transaction::new(
            [0; 12],
            Request::Allocate,
            vec![],
            t0,
            &Timings::default(),
            true,
        );
        assert_eq!(tx.next_timer(), t0 + Duration::from_secs(5));
        assert!(!tx.retransmit_due(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn refreshes_a_minute_early_or_at_eighty_percent() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(refresh_at(t0, s(600)) - t0, s(540));
        assert_eq!(refresh_at(t0, s(300)) - t0, s(240));
        assert_eq!(refresh_at(t0, s(3600)) - t0, s(3540));
        assert_eq!(refresh_at(t0, s(20)) - t0, s(16));
    }

    #[test]
    fn the_rng_is_reproducible_and_never_stuck_at_zero() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(a.transaction_id(), b.transaction_id());
        assert_ne!(a.transaction_id(), a.transaction_id());
        let mut z = Rng::new(0);
        assert_ne!(z.next_u64(), 0);
    }
}
