//! The TURN relays of the manifest, as the shell sees them: connections. The core owns
//! each relay's TURN client and decides when to connect and over which transport first
//! (`core/relays.rs`); the shell races the transports (UDP, TCP or TLS) in that order on
//! a small task, hands the client that allocated to the core, and then moves the
//! connection's bytes on the event loop itself (`pump.rs`).
//!
//! netcheck holds allocations of its own through `leg.rs`, served by `runner::serve`.
//! Relays are allocated at start, so the relay is warm when a direct path fails.

mod leg;
mod link;
mod probe;
mod pump;
mod runner;
mod spec;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use smol::LocalExecutor;
use smol::channel::{Receiver, Sender};

use crate::core::RelayId;

use super::resolver::Resolver;

pub use leg::Leg;
pub use link::Kind;
pub use probe::{Allocation, Hold, Probe, probe_all};
pub use pump::Pump;
pub use runner::Established;
pub use spec::{RelaySpec, group};
pub use tls::client_config;

/// From netcheck's relay session to its leg.
pub enum FromRelay {
    /// Permissions and channels for the leg's peers are in place.
    Up,
    Down {
        reason: String,
    },
    Data {
        from: SocketAddr,
        payload: Vec<u8>,
    },
}

/// Datagrams queued toward netcheck's leg before more are dropped (as a full UDP
/// socket would): the relay path is the slow one, and WireGuard copes with loss.
const QUEUE: usize = 256;

/// The end of a race of a relay's transports, for the event loop.
pub enum Raced {
    /// Transport number `index` allocated first.
    Connected {
        id: RelayId,
        index: usize,
        established: Box<Established>,
    },
    /// None did; `why` says what each transport did.
    Failed { id: RelayId, why: String },
}

/// A relay of the manifest as the event loop holds it: its connection once a race won,
/// the race while it runs. Its TURN client lives in the core.
pub struct Relay {
    pub spec: RelaySpec,
    pub pump: Option<Pump>,
    /// Dropped (and so cancelled) when the relay goes or a new race starts.
    race: Option<smol::Task<()>>,
}

impl Relay {
    pub fn new(spec: RelaySpec) -> Relay {
        Relay {
            spec,
            pump: None,
            race: None,
        }
    }

    /// Drops the connection, if any, and races the transports in `order` (indexes into
    /// the spec's candidates, as the core asked); the result comes on `done`.
    pub fn race(
        &mut self,
        ex: &LocalExecutor<'static>,
        order: Vec<usize>,
        tls: Arc<rustls::ClientConfig>,
        resolver: Resolver,
        done: Sender<Raced>,
    ) {
        self.pump = None;
        let spec = self.spec.clone();
        self.race = Some(ex.spawn(async move {
            let id = spec.id;
            let raced = match runner::establish_any(&spec, &tls, &resolver, &order).await {
                Ok((index, established)) => {
                    let candidate = &spec.candidates[index];
                    log::info!(
                        "relay {} ({}): allocated {}, round trip {}",
                        spec.describe(candidate),
                        candidate.kind.name(),
                        established.relayed,
                        crate::human::Human(established.rtt)
                    );
                    Raced::Connected {
                        id,
                        index,
                        established: Box::new(established),
                    }
                }
                Err(errors) => Raced::Failed {
                    id,
                    why: errors.join("; "),
                },
            };
            let _ = done.send(raced).await;
        }));
    }

    /// Takes a won race's connection; its client goes to the core.
    pub fn connected(&mut self, established: Established) -> crate::turn::TurnClient {
        self.race = None;
        let Established { link, client, .. } = established;
        self.pump = Some(Pump::new(link));
        client
    }

    pub fn race_failed(&mut self) {
        self.race = None;
    }
}

/// The channel every relay race reports on: a few messages per connection.
pub fn races() -> (Sender<Raced>, Receiver<Raced>) {
    smol::channel::unbounded()
}
