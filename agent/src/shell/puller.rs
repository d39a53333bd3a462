//! Pulls manifests on a helper thread: DNS, TCP, TLS and a slow server never hold up the
//! data plane. Each result goes to the event loop over a channel; the thread then sleeps
//! until the next poll (the schedule decides: interval with jitter, backoff on failure),
//! or until the loop asks for a poll now.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::fetch::{FetchError, Fetched, Fetcher};

/// One poll's outcome.
pub enum Pulled {
    NotModified,
    New(Vec<u8>),
    Failed(FetchError),
}

/// When to poll next: given whether the last poll succeeded.
pub type Schedule = Box<dyn FnMut(bool) -> Duration + Send>;

pub struct Puller {
    results: smol::channel::Receiver<Pulled>,
    wake: mpsc::Sender<()>,
}

impl Puller {
    /// Starts the thread; the first poll happens at once. The thread ends when the
    /// `Puller` is dropped.
    pub fn start(mut fetcher: Fetcher, mut schedule: Schedule) -> std::io::Result<Puller> {
        let (tx, results) = smol::channel::bounded(1);
        let (wake, woken) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("manifest".into())
            .spawn(move || {
                loop {
                    let pulled = match fetcher.fetch() {
                        Ok(Fetched::NotModified) => Pulled::NotModified,
                        Ok(Fetched::New(bytes)) => Pulled::New(bytes),
                        Err(e) => Pulled::Failed(e),
                    };
                    let ok = !matches!(pulled, Pulled::Failed(_));
                    if tx.send_blocking(pulled).is_err() {
                        return;
                    }
                    match woken.recv_timeout(schedule(ok)) {
                        Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Puller { results, wake })
    }

    /// The next result. Never ends while the thread runs.
    pub async fn recv(&self) -> Option<Pulled> {
        self.results.recv().await.ok()
    }

    /// Polls now instead of at the next scheduled time.
    pub fn poll_now(&self) {
        let _ = self.wake.send(());
    }
}

/// The first retry after a failure; doubles up to `BACKOFF_CAP`.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
/// A server that is down for a day costs a device a poll every five minutes, no more.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The interval while the server answers, and exponential backoff while it does not,
/// each with ±10 % jitter so a fleet that booted together does not poll in step.
pub fn schedule(interval: Duration) -> Schedule {
    let mut rng = XorShift(rand_core::RngCore::next_u64(&mut rand_core::OsRng) | 1);
    let mut failures = 0u32;
    Box::new(move |ok| {
        failures = if ok { 0 } else { failures.saturating_add(1) };
        let base = match failures {
            0 => interval,
            n => BACKOFF_FIRST
                .saturating_mul(1 << (n - 1).min(16))
                .min(BACKOFF_CAP.max(interval)),
        };
        jitter(base, &mut rng)
    })
}

/// `base` ± 10 %.
fn jitter(base: Duration, rng: &mut XorShift) -> Duration {
    let permille = 900 + rng.next() % 201;
    base * permille as u32 / 1000
}

/// A tiny PRNG for jitter; nothing here needs more.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_at_the_interval_with_jitter_and_backs_off_to_the_cap_while_failing() {
        let mut s = schedule(Duration::from_secs(30));
        for _ in 0..50 {
            let d = s(true);
            assert!(
                d >= Duration::from_secs(27) && d <= Duration::from_secs(33),
                "{d:?}"
            );
        }
        let fails: Vec<u64> = (0..12).map(|_| s(false).as_secs()).collect();
        assert!((1..=2).contains(&fails[0]), "{fails:?}");
        assert!((3..=4).contains(&fails[1]), "{fails:?}");
        assert!(fails[10] >= 270 && fails[10] <= 330, "capped: {fails:?}");
        let back = s(true);
        assert!(
            back <= Duration::from_secs(33),
            "a success resets the backoff"
        );
    }
}
