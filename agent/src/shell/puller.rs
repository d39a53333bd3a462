//! Pulls manifests on a helper thread: DNS, TCP, TLS and a slow server never hold up the
//! data plane. Each result goes to the event loop over a channel; the thread then sleeps
//! until the next poll (the schedule decides: interval with jitter, backoff on failure),
//! or until the loop asks for a poll now.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::fetch::{Backoff, FetchError, Fetched, Fetcher};

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

/// The poll schedule of `backoff.rs`, counting failures in a row.
pub fn schedule(interval: Duration) -> Schedule {
    let backoff = Backoff::new(interval);
    let mut failures = 0u32;
    Box::new(move |ok| {
        failures = if ok { 0 } else { failures.saturating_add(1) };
        backoff.next_delay(failures, &mut rand_core::OsRng)
    })
}
