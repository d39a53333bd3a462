//! An allocation held open for a caller that speaks through it as through a UDP socket:
//! netcheck's WireGuard handshake with a hub *through* a relay. The allocation is
//! served by the agent's own relay session (`runner::serve`: permissions, channels,
//! ChannelData both ways), so a handshake that works through a leg works the same way
//! when the agent falls back to that relay. The caller runs on a thread of its own and
//! blocks on the leg; the session runs on the probes' executor.

use std::net::SocketAddr;
use std::time::Instant;

use futures_lite::FutureExt;
use smol::Timer;
use smol::channel::{Receiver, Sender};

use super::FromRelay;
use super::link::Kind;
use super::runner::{Established, serve};
use super::spec::{Candidate, RelaySpec};

/// The caller's end of a held allocation. Dropping it frees the allocation.
pub struct Leg {
    /// The relay's host as the manifest names it.
    pub host: String,
    pub kind: Kind,
    /// `HOST:PORT`, for messages.
    pub target: String,
    pub relayed: SocketAddr,
    data: Sender<(SocketAddr, Vec<u8>)>,
    /// Held only so the session keeps serving: it ends when this closes too.
    _peers: Sender<Vec<SocketAddr>>,
    events: Receiver<FromRelay>,
    /// Why the session ended, once it did.
    down: Option<String>,
}

/// A leg for `established`, with permissions for `peers`, and the session that serves
/// it (to run on the probes' executor until the leg is dropped).
pub(super) fn open(
    spec: RelaySpec,
    candidate: Candidate,
    established: Established,
    peers: Vec<SocketAddr>,
) -> (Leg, impl Future<Output = ()>) {
    let (data, data_rx) = smol::channel::bounded(super::QUEUE);
    let (peers_tx, peers_rx) = smol::channel::unbounded();
    let (events_tx, events) = smol::channel::unbounded();
    let leg = Leg {
        host: spec.host.clone(),
        kind: candidate.kind,
        target: spec.describe(&candidate),
        relayed: established.relayed,
        data,
        _peers: peers_tx,
        events,
        down: None,
    };
    let session = async move {
        serve(
            &spec,
            &candidate,
            established,
            peers,
            &data_rx,
            &peers_rx,
            &events_tx,
        )
        .await
    };
    (leg, session)
}

impl Leg {
    /// Waits until the relay holds permissions and channels for the peers (TURN answers
    /// CreatePermission and ChannelBind), until `until`.
    pub fn wait_ready(&mut self, until: Instant) -> Result<(), String> {
        loop {
            match self.next(until) {
                Some(FromRelay::Up) => return Ok(()),
                Some(FromRelay::Down { reason, .. }) => return Err(reason),
                Some(FromRelay::Data { .. }) => {}
                None => {
                    return Err(self
                        .down
                        .clone()
                        .unwrap_or_else(|| "no permission for the peers in time".into()));
                }
            }
        }
    }

    /// Queues a datagram for `to` through the allocation; dropped when the session is
    /// not keeping up, as a full UDP socket would.
    pub fn send_to(&self, to: SocketAddr, datagram: &[u8]) {
        let _ = self.data.try_send((to, datagram.to_vec()));
    }

    /// The next datagram relayed to us, copied into `buf`, waiting until `until`.
    pub fn recv_from(&mut self, buf: &mut [u8], until: Instant) -> Option<(usize, SocketAddr)> {
        loop {
            match self.next(until)? {
                FromRelay::Data { from, payload, .. } => {
                    let n = payload.len().min(buf.len());
                    buf[..n].copy_from_slice(&payload[..n]);
                    return Some((n, from));
                }
                FromRelay::Down { reason, .. } => self.down = Some(reason),
                FromRelay::Up => {}
            }
        }
    }

    /// Why the session ended, if it did.
    pub fn down(&self) -> Option<&str> {
        self.down.as_deref()
    }

    fn next(&mut self, until: Instant) -> Option<FromRelay> {
        if self.down.is_some() && self.events.is_empty() {
            return None;
        }
        let event = smol::block_on(async { self.events.recv().await.ok() }.or(async {
            Timer::at(until).await;
            None
        }));
        if let Some(FromRelay::Down { reason, .. }) = &event {
            self.down = Some(reason.clone());
        }
        event
    }
}
