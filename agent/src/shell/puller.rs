//! Pulls manifests on a helper thread: DNS, TCP, TLS and a slow server never hold up the
//! data plane, and neither does taking a manifest in: verifying, decoding, judging and
//! caching it and planning this node's part (about 50 ms for 10,000 nodes here, several
//! times that on a Cortex-A53) happen on this thread too. Each result goes to the event
//! loop over a channel; the thread then sleeps until the next poll (the schedule decides:
//! interval with jitter, backoff on failure), or until the loop asks for a poll now.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::core::topology::{self, NotListed, Topology};
use crate::fetch::{Backoff, FetchError, Fetched, Fetcher};
use crate::keys::PublicKey;
use crate::manifest::Manifest;

use super::intake::Intake;

/// One poll, as the event loop receives it.
pub struct Polled {
    /// Fetched (new bytes or not modified), or why not.
    pub fetched: Result<(), FetchError>,
    /// A manifest taken in, to put in force.
    pub accepted: Option<Accepted>,
    /// Where the manifest in force came from, after this poll (see `Intake`).
    pub in_force_source: String,
}

/// A manifest verified, judged and cached, with this node's part of it planned.
pub struct Accepted {
    pub manifest: Manifest,
    pub topology: Result<Topology, NotListed>,
}

impl Accepted {
    pub fn plan(manifest: Manifest, own: &PublicKey) -> Accepted {
        let topology = topology::plan(&manifest, own);
        Accepted { manifest, topology }
    }
}

/// When to poll next: given whether the last poll succeeded.
pub type Schedule = Box<dyn FnMut(bool) -> Duration + Send>;

pub struct Puller {
    results: smol::channel::Receiver<Polled>,
    wake: mpsc::Sender<()>,
}

impl Puller {
    /// Starts the thread, which takes the intake over (boot from the cache before); the
    /// first poll happens at once. The thread ends when the `Puller` is dropped.
    pub fn start(
        mut fetcher: Fetcher,
        mut schedule: Schedule,
        mut intake: Intake,
        own: PublicKey,
    ) -> std::io::Result<Puller> {
        let (tx, results) = smol::channel::bounded(1);
        let (wake, woken) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("manifest".into())
            .spawn(move || {
                loop {
                    let (fetched, accepted) = match fetcher.fetch() {
                        Ok(Fetched::NotModified) => {
                            intake.fetched();
                            (Ok(()), None)
                        }
                        Ok(Fetched::New(bytes)) => (Ok(()), intake.take(bytes)),
                        Err(e) => {
                            intake.failed(&e);
                            (Err(e), None)
                        }
                    };
                    let ok = fetched.is_ok();
                    let polled = Polled {
                        fetched,
                        accepted: accepted.map(|m| Accepted::plan(m, &own)),
                        in_force_source: intake.in_force_source().to_string(),
                    };
                    if tx.send_blocking(polled).is_err() {
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
    pub async fn recv(&self) -> Option<Polled> {
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
