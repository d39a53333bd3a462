//! Pulls manifests on a helper thread: DNS, TCP, TLS and a slow server never hold up the
//! data plane, and neither does taking a manifest in: verifying, decoding, judging and
//! caching it and planning this node's part (about 50 ms for 10,000 nodes here, several
//! times that on a Cortex-A53) happen on this thread too. Each result goes to the event
//! loop over a channel; the thread then sleeps until the next poll (the schedule decides:
//! interval with jitter, backoff on failure), or until the loop asks for a poll now.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::core::topology::{self, NotListed, Topology};
use crate::fetch::{Backoff, FetchError, Fetched, Fetcher};
use crate::keys::PublicKey;
use crate::manifest::Manifest;

use super::intake::Intake;
use super::pages;

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
    /// The peers whose plan differs from the one sent before (`None` for the first, or
    /// after one that did not list this node): the loop applies only these.
    pub diff: Option<PlanDiff>,
}

/// Which peers of this node's plan changed since the plan sent before.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PlanDiff {
    pub removed: Vec<PublicKey>,
    /// Added or changed.
    pub changed: BTreeSet<PublicKey>,
}

impl PlanDiff {
    pub fn between(before: &Topology, after: &Topology) -> PlanDiff {
        PlanDiff {
            removed: (before.peers.keys())
                .filter(|k| !after.peers.contains_key(k))
                .copied()
                .collect(),
            changed: (after.peers.iter())
                .filter(|(k, p)| before.peers.get(k) != Some(p))
                .map(|(k, _)| *k)
                .collect(),
        }
    }
}

impl Accepted {
    /// Plans `manifest` for this node, and what changed since `before`.
    pub fn plan(manifest: Manifest, own: &PublicKey, before: Option<&Topology>) -> Accepted {
        let topology = topology::plan(&manifest, own);
        let diff = match (before, &topology) {
            (Some(b), Ok(t)) => Some(PlanDiff::between(b, t)),
            _ => None,
        };
        Accepted {
            manifest,
            topology,
            diff,
        }
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
    /// `in_force` is the plan the loop runs on now (from the cached manifest), so the
    /// next one is sent as a diff against it.
    pub fn start(
        mut fetcher: Fetcher,
        mut schedule: Schedule,
        mut intake: Intake,
        own: PublicKey,
        mut in_force: Option<Topology>,
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
                    let accepted = accepted.map(|m| {
                        let a = Accepted::plan(m, &own, in_force.as_ref());
                        in_force = a.topology.as_ref().ok().cloned();
                        a
                    });
                    let polled = Polled {
                        fetched,
                        accepted,
                        in_force_source: intake.in_force_source().to_string(),
                    };
                    if tx.send_blocking(polled).is_err() {
                        return;
                    }
                    // The poll's deepest calls (a TLS handshake) need not stay resident
                    // while the thread sleeps.
                    pages::release_stack_below_caller();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::manifest::{Role, test_manifest};

    #[test]
    fn the_diff_names_the_peers_removed_added_and_changed_and_nothing_else() {
        let mut m = test_manifest(1);
        // A hub peers with every other node.
        let own = m
            .nodes
            .iter()
            .find(|n| n.role == Role::Hub)
            .unwrap()
            .public_key;
        let before = topology::plan(&m, &own).unwrap();
        assert!(
            before.peers.len() >= 2,
            "the lab manifest has peers to drop and keep"
        );
        let (kept, dropped) = {
            let mut keys = before.peers.keys();
            (*keys.next().unwrap(), *keys.next().unwrap())
        };
        let template = m
            .nodes
            .iter()
            .find(|n| n.public_key == kept)
            .unwrap()
            .clone();
        m.nodes.retain(|n| n.public_key != dropped);
        let added = PrivateKey::generate().public_key();
        let mut new = template;
        new.public_key = added;
        new.name = "dev-new".into();
        new.addresses = vec!["10.42.99.1/32".parse().unwrap()];
        new.endpoints.clear();
        m.nodes.push(new);
        let after = topology::plan(&m, &own).unwrap();
        let diff = PlanDiff::between(&before, &after);
        assert_eq!(diff.removed, vec![dropped]);
        assert!(diff.changed.contains(&added));
        assert!(
            !diff.changed.contains(&kept),
            "an unchanged peer is not in the diff"
        );
        assert_eq!(
            PlanDiff::between(&after, &after),
            PlanDiff::default(),
            "the same plan twice: nothing"
        );
    }
}
