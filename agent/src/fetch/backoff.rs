//! When to poll the manifest URL next: the configured interval with ±10 % jitter while
//! the server answers, and exponential backoff with a cap while it fails. Jitter keeps
//! a fleet that rebooted together (a power cut at a site) from polling in lockstep.
//!
//! Pure: the failure count and the random source are passed in, so tests use a seed.

use std::time::Duration;

use rand_core::RngCore;

/// First retry after a failure (or sooner, with a shorter interval).
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest wait between attempts while the server fails, unless the interval is longer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Between polls while the server answers.
    pub interval: Duration,
    /// After the first failure; doubles with each further one.
    pub first_retry: Duration,
    /// The most any retry waits.
    pub cap: Duration,
}

impl Backoff {
    /// The schedule for `--manifest-interval`: retries start at 5 s (or the interval,
    /// if shorter) and are capped at 5 minutes (or the interval, if longer).
    pub fn new(interval: Duration) -> Backoff {
        Backoff {
            interval,
            first_retry: FIRST_RETRY.min(interval),
            cap: MAX_BACKOFF.max(interval),
        }
    }

    /// The wait before the next attempt, after `failures` failed attempts in a row
    /// (0: the last one succeeded).
    pub fn next_delay(&self, failures: u32, rng: &mut dyn RngCore) -> Duration {
        if failures == 0 {
            // interval × [0.9, 1.1)
            return self.interval.mul_f64(0.9 + 0.2 * unit(rng));
        }
        let doublings = (failures - 1).min(31);
        let full = self
            .first_retry
            .checked_mul(1 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap);
        // "Equal jitter": at least half the backoff, so retries still spread out but
        // never collapse to zero.
        full.mul_f64(0.5 + 0.5 * unit(rng))
    }
}

/// A uniform value in [0, 1).
fn unit(rng: &mut dyn RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a seedable generator for repeatable tests.
    struct Seeded(u64);

    impl RngCore for Seeded {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            rand_core::impls::fill_bytes_via_next(self, dest)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn while_the_server_answers_polls_come_at_the_interval_within_ten_percent() {
        let b = Backoff::new(Duration::from_secs(30));
        let mut rng = Seeded(1);
        let delays: Vec<f64> = (0..1000).map(|_| secs(b.next_delay(0, &mut rng))).collect();
        assert!(
            delays.iter().all(|d| (27.0..33.0).contains(d)),
            "{delays:?}"
        );
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((mean - 30.0).abs() < 0.5, "mean {mean}");
        // Jitter is real: a fleet does not poll in lockstep.
        assert!(delays.iter().any(|d| *d < 28.0) && delays.iter().any(|d| *d > 32.0));
    }

    #[test]
    fn failures_back_off_exponentially_from_five_seconds_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(30));
        for (failures, full) in [
            (1, 5.0),
            (2, 10.0),
            (3, 20.0),
            (4, 40.0),
            (7, 300.0),
            (40, 300.0),
        ] {
            let mut rng = Seeded(failures as u64);
            for _ in 0..100 {
                let d = secs(b.next_delay(failures, &mut rng));
                assert!(d >= full / 2.0 && d < full, "{failures} failures: {d} s");
            }
        }
        assert!(b.next_delay(u32::MAX, &mut Seeded(9)) <= MAX_BACKOFF);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let b = Backoff::new(Duration::from_secs(30));
        let run = |seed| {
            let mut rng = Seeded(seed);
            (0..6)
                .map(|f| b.next_delay(f, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn a_long_interval_raises_the_cap_and_a_short_one_lowers_the_first_retry() {
        let hourly = Backoff::new(Duration::from_secs(3600));
        assert_eq!(hourly.cap, Duration::from_secs(3600));
        let fast = Backoff::new(Duration::from_secs(2));
        assert_eq!(fast.first_retry, Duration::from_secs(2));
        assert_eq!(fast.cap, MAX_BACKOFF);
    }
}
