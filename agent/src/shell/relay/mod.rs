//! The TURN relays of the manifest, each driven by its own small task on the agent's one
//! thread: it connects (UDP, TCP or TLS, trying the transports the manifest lists and
//! keeping the one that worked), runs the sans-IO TURN client, keeps permissions and
//! channels for the peers' addresses, and reports to the event loop over a channel:
//! up (with the round-trip time), down, and relayed datagrams.
//!
//! Relays are allocated at start, so the relay is warm when a direct path fails.

mod leg;
mod link;
mod probe;
mod runner;
mod spec;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smol::LocalExecutor;
use smol::channel::{Receiver, Sender};

use crate::core::RelayId;

use super::resolver::Resolver;

pub use leg::Leg;
pub use link::Kind;
pub use probe::{Allocation, Hold, Probe, probe_all};
pub use spec::{RelaySpec, group};
pub use tls::client_config;

/// From a relay task to the event loop.
pub enum FromRelay {
    Up {
        id: RelayId,
        rtt: Duration,
        server: SocketAddr,
        kind: Kind,
        relayed: SocketAddr,
    },
    Down {
        id: RelayId,
        reason: String,
    },
    Data {
        id: RelayId,
        from: SocketAddr,
        payload: Vec<u8>,
    },
}

/// Datagrams queued toward one relay before more are dropped (as a full UDP socket
/// would): the relay path is the slow one, and WireGuard copes with loss.
const QUEUE: usize = 256;

/// One running relay, as the event loop holds it. Dropping it closes its channels: the
/// task frees the allocation on the server (when it has one) and ends.
pub struct Relay {
    pub spec: RelaySpec,
    /// WireGuard datagrams for a peer, through the allocation.
    data: Sender<(SocketAddr, Vec<u8>)>,
    /// The addresses the relay must accept datagrams from (and send to); apart from
    /// the data so a full data queue never holds it up.
    peers: Sender<Vec<SocketAddr>>,
    task: Option<smol::Task<()>>,
    /// Where it is connected and how, once up (for `status`).
    pub up: Option<(SocketAddr, Kind)>,
}

impl Relay {
    pub fn start(
        ex: &LocalExecutor<'static>,
        spec: RelaySpec,
        tls: Arc<rustls::ClientConfig>,
        events: Sender<FromRelay>,
        resolver: Resolver,
    ) -> Relay {
        let (data, data_rx) = smol::channel::bounded(QUEUE);
        let (peers, peers_rx) = smol::channel::unbounded();
        let task = ex.spawn(runner::run(
            spec.clone(),
            tls,
            resolver,
            data_rx,
            peers_rx,
            events,
        ));
        Relay {
            spec,
            data,
            peers,
            task: Some(task),
            up: None,
        }
    }

    /// Queues a datagram; drops it when the relay is not keeping up.
    pub fn send(&self, peer: SocketAddr, payload: Vec<u8>) {
        let _ = self.data.try_send((peer, payload));
    }

    pub fn set_peers(&self, peers: Vec<SocketAddr>) {
        let _ = self.peers.try_send(peers);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.data.close();
        self.peers.close();
        // Not cancelled: left to run, it sees the closed channels and says goodbye.
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

/// The channel every relay task reports on.
pub fn events() -> (Sender<FromRelay>, Receiver<FromRelay>) {
    smol::channel::unbounded()
}
