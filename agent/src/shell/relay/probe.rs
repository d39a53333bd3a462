//! One allocation per relay URL, made and freed at once: what `edgewire netcheck` asks
//! of the relays. It connects and allocates with the agent's own code (`link`,
//! `runner::establish`), so a probe that works means the agent's relay comes up the
//! same way, and one that fails says why in the agent's words.
//!
//! All the probes run at once on a small executor of their own, each within the same
//! deadline, so the slowest relay costs the deadline and no more.
//!
//! Asked to `Hold`, a probe keeps its allocation instead of freeing it, with
//! permissions for the given peers, and hands the caller a [`Leg`] to speak through
//! (netcheck's handshakes with the hubs through each relay); the allocation is freed
//! when the caller drops the leg, or at the hold's deadline.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use smol::{LocalExecutor, Timer};

use crate::human::Human;
use crate::manifest::RelaySpec as ManifestRelay;
use crate::turn::Timings;

use super::super::clock;
use super::super::resolver::Resolver;
use super::leg::{self, Leg};
use super::link::Kind;
use super::runner::{Established, establish, with_not_turn};
use super::spec::group;

/// What one relay URL gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The relay's host as the manifest names it.
    pub host: String,
    pub kind: Kind,
    pub port: u16,
    /// `HOST:PORT`, for messages.
    pub target: String,
    pub result: Result<Allocation, String>,
    /// From the start of the probe to its verdict.
    pub took: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub server: SocketAddr,
    pub relayed: SocketAddr,
    /// The Allocate exchange's round trip (the authenticated request).
    pub rtt: Duration,
}

/// What to do with the allocations that succeed instead of freeing them at once.
pub struct Hold<'a> {
    /// The addresses to create permissions and channels for.
    pub peers: Vec<SocketAddr>,
    /// When a leg the caller still holds is freed anyway.
    pub until: Instant,
    /// Hears each leg as its allocation succeeds (on the probes' thread: it must not
    /// block).
    pub on_leg: &'a mut dyn FnMut(Leg),
}

/// Allocates on every transport of every relay in `relays`, all at once, each within
/// `deadline`; `done` hears each verdict as it comes (for progress lines). The results
/// are in the manifest's order. Blocks for at most about `deadline`, or with `hold`
/// until its legs are dropped or its deadline.
pub fn probe_all(
    relays: &[ManifestRelay],
    ca_file: Option<&Path>,
    deadline: Duration,
    mut hold: Option<Hold<'_>>,
    done: &mut dyn FnMut(&Probe),
) -> Vec<Probe> {
    let jobs: Vec<_> = group(relays)
        .into_iter()
        .flat_map(|spec| {
            let candidates = spec.candidates.clone();
            candidates.into_iter().map(move |c| (spec.clone(), c))
        })
        .collect();
    if jobs.is_empty() {
        return Vec::new();
    }
    let tls = super::tls::client_config(ca_file);
    let resolver = Resolver::new();
    let ex = LocalExecutor::new();
    let (tx, rx) = smol::channel::unbounded();
    let held = hold
        .as_ref()
        .filter(|h| !h.peers.is_empty())
        .map(|h| (h.peers.clone(), h.until));
    for (index, (spec, candidate)) in jobs.iter().cloned().enumerate() {
        let (tls, resolver, tx) = (tls.clone(), resolver.clone(), tx.clone());
        let held = held.clone();
        ex.spawn(async move {
            let start = clock::now();
            let not_turn = Cell::new(0);
            // The client never gives up before the probe does: the deadline is ours.
            let timings = Timings {
                transaction_timeout: deadline,
                ..Timings::default()
            };
            let attempt = establish(&spec, &candidate, &tls, &resolver, timings, &not_turn);
            let result = async { Some(attempt.await) }
                .or(async {
                    Timer::after(deadline).await;
                    None
                })
                .await;
            let result = match (result, held) {
                (Some(Ok(established)), Some((peers, until))) => {
                    let allocation = Allocation {
                        server: established.server,
                        relayed: established.relayed,
                        rtt: established.rtt,
                    };
                    let (leg, session) = leg::open(spec, candidate, established, peers);
                    let took = clock::now() - start;
                    let _ = tx.send((index, Ok(allocation), took, Some(leg))).await;
                    // Served until the caller drops the leg (the session then frees
                    // the allocation), or the hold's deadline.
                    session
                        .or(async {
                            Timer::at(until).await;
                        })
                        .await;
                    return;
                }
                (Some(Ok(established)), None) => Ok(free(established).await),
                (Some(Err(e)), _) => Err(e),
                (None, _) => Err(with_not_turn(
                    format!("no allocation within {}", Human(deadline)),
                    &not_turn,
                )),
            };
            let _ = tx.send((index, result, clock::now() - start, None)).await;
        })
        .detach();
    }
    drop(tx);
    let probe = |index: usize, result, took| {
        let (spec, candidate) = &jobs[index];
        Probe {
            target: spec.describe(candidate),
            host: spec.host.clone(),
            kind: candidate.kind,
            port: candidate.port,
            result,
            took,
        }
    };
    let mut probes: Vec<Option<Probe>> = vec![None; jobs.len()];
    // Each task ends by its deadline; the margin only guards against one that cannot
    // (a goodbye stuck in a full send buffer).
    let mut until = clock::now() + deadline + Duration::from_millis(500);
    if let Some((_, held)) = &held {
        // A held session ends at the hold's deadline by itself (see above); the margin
        // is for its goodbye, and small, as it adds to netcheck's ten seconds.
        until = until.max(*held + Duration::from_millis(100));
    }
    smol::block_on(ex.run(async {
        while let Some((index, result, took, leg)) = next(&rx, until).await {
            let p = probe(index, result, took);
            done(&p);
            probes[index] = Some(p);
            if let (Some(leg), Some(hold)) = (leg, hold.as_mut()) {
                (hold.on_leg)(leg);
            }
        }
    }));
    probes
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            p.unwrap_or_else(|| probe(index, Err("the probe did not finish".into()), deadline))
        })
        .collect()
}

async fn next<T>(rx: &smol::channel::Receiver<T>, until: Instant) -> Option<T> {
    async { rx.recv().await.ok() }
        .or(async {
            Timer::at(until).await;
            None
        })
        .await
}

/// Frees the allocation (a Refresh with lifetime 0, not waited for) so a probe leaves
/// nothing on the server that counts against the user's quota.
async fn free(established: Established) -> Allocation {
    let Established {
        mut link,
        mut client,
        server,
        relayed,
        rtt,
    } = established;
    client.close(clock::now());
    while let Some(message) = client.poll_transmit() {
        let _ = link.send(&message).await;
    }
    Allocation {
        server,
        relayed,
        rtt,
    }
}
