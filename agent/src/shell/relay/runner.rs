//! Connecting to one relay: every transport the manifest lists for it at once,
//! staggered (happy eyeballs: the order the core asks for, the one that worked last
//! first, each next one 500 ms later); the first that allocates wins. The agent hands
//! the winner to the core; netcheck's legs are served here (`serve`): permissions,
//! channels and datagrams both ways until the caller lets go.
//!
//! Racing the transports is what lets a device behind a UDP-blocking firewall have its
//! relay over TLS up in well under the 1 s the direct path gets before falling back.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use rand_core::RngCore;
use rustls::ClientConfig;
use smol::Timer;
use smol::channel::{Receiver, Sender};

use crate::human::Human;
use crate::turn::{
    Ignored, Reason, Received, Timings, Transport, TurnClient, TurnConfig, TurnEvent,
};

use super::super::clock;
use super::super::resolver::Resolver;
use super::FromRelay;
use super::link::{Kind, Link};
use super::spec::{Candidate, RelaySpec};

/// Head start of each transport over the next one in the race.
const STAGGER: Duration = Duration::from_millis(500);

/// Serves an allocation `establish` made for a caller other than `run` (netcheck's
/// handshakes through a relay): the same session as the agent's, with permissions and
/// channels for `peers` from the start, so it reports `Up` once they are ready. Ends,
/// freeing the allocation, when the caller closes `data`; a break is reported `Down`.
pub(super) async fn serve(
    spec: &RelaySpec,
    candidate: &Candidate,
    established: Established,
    mut peers: Vec<SocketAddr>,
    data: &Receiver<(SocketAddr, Vec<u8>)>,
    peers_rx: &Receiver<Vec<SocketAddr>>,
    events: &Sender<FromRelay>,
) {
    let mut session = Session {
        spec,
        candidate,
        events,
        up: false,
    };
    let ended = session.serve(established, data, peers_rx, &mut peers).await;
    if let Some(reason) = ended {
        let down = FromRelay::Down { reason };
        let _ = events.send(down).await;
    }
}

/// A connection with an allocation on it.
pub struct Established {
    pub(super) link: Link,
    pub(super) client: TurnClient,
    pub(super) server: SocketAddr,
    pub(super) relayed: SocketAddr,
    pub(super) rtt: Duration,
}

/// A future that succeeds with a `T` or fails with a reason.
type Attempt<'a, T = Established> = Pin<Box<dyn Future<Output = Result<T, String>> + 'a>>;

/// Races the candidates in `order`, staggered; the first allocation wins.
pub(super) async fn establish_any(
    spec: &RelaySpec,
    tls: &Arc<ClientConfig>,
    resolver: &Resolver,
    order: &[usize],
) -> Result<(usize, Established), Vec<String>> {
    let attempts: Vec<Attempt<'_>> = order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let candidate = &spec.candidates[i];
            Box::pin(async move {
                Timer::after(STAGGER * k as u32).await;
                establish(
                    spec,
                    candidate,
                    tls,
                    resolver,
                    Timings::default(),
                    &Cell::new(0),
                )
                .await
                .map_err(|e| format!("{}: {e}", candidate.kind.name()))
            }) as Attempt<'_>
        })
        .collect();
    let (k, won) = first_ok(attempts).await?;
    Ok((order[k], won))
}

/// Polls every future until one succeeds; all the errors when none does.
async fn first_ok<T>(mut futures: Vec<Attempt<'_, T>>) -> Result<(usize, T), Vec<String>> {
    let mut errors: Vec<Option<String>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (i, future) in futures.iter_mut().enumerate() {
            if errors[i].is_some() {
                continue;
            }
            if let Poll::Ready(result) = future.as_mut().poll(cx) {
                match result {
                    Ok(value) => return Poll::Ready(Ok((i, value))),
                    Err(e) => errors[i] = Some(e),
                }
            }
        }
        if errors.iter().all(Option::is_some) {
            Poll::Ready(Err(errors.iter().flatten().cloned().collect()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Connects to one candidate and allocates. `not_turn` counts what the server sent that
/// is no TURN answer (a web server or an echo on the relay's port): a caller that gives
/// up first can still say so.
pub(super) async fn establish(
    spec: &RelaySpec,
    candidate: &Candidate,
    tls: &Arc<ClientConfig>,
    resolver: &Resolver,
    timings: Timings,
    not_turn: &Cell<u32>,
) -> Result<Established, String> {
    let name = match spec.host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => SocketAddr::from((v6, candidate.port)).to_string(),
        Err(_) => format!("{}:{}", spec.host, candidate.port),
    };
    let mut resolved = resolver.lookup(vec![name]).await;
    let server = match resolved.pop_first().map(|(_, answer)| answer) {
        Some(Ok(addrs)) => *addrs.first().ok_or("the name has no address")?,
        Some(Err(e)) => return Err(format!("cannot resolve the name: {e}")),
        None => return Err("the name has no address".into()),
    };
    let kind = candidate.kind;
    let mut link = Link::connect(kind, server, &spec.host, tls)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let config = TurnConfig {
        server,
        transport: match kind {
            Kind::Udp => Transport::Udp,
            Kind::Tcp => Transport::Tcp,
            Kind::Tls => Transport::Tls,
        },
        username: candidate.username.clone(),
        password: candidate.password.clone(),
        software: "edgewire".into(),
        timings,
    };
    let mut client = TurnClient::new(config, rand_core::OsRng.next_u64(), clock::now());
    let mut buf = vec![0u8; 4096];
    let mut timer = Timer::never();
    loop {
        while let Some(message) = client.poll_transmit() {
            link.send(&message)
                .await
                .map_err(|e| format!("sending: {e}"))?;
        }
        while let Some(event) = client.poll_event() {
            match event {
                TurnEvent::Allocated { relayed, rtt, .. } => {
                    return Ok(Established {
                        link,
                        client,
                        server,
                        relayed,
                        rtt,
                    });
                }
                // Answers came, none of them TURN: "no answer" would mislead.
                TurnEvent::Failed {
                    reason: Reason::Timeout,
                } if not_turn.get() > 0 => {
                    return Err(with_not_turn("no TURN answer", not_turn));
                }
                TurnEvent::Failed { reason } => return Err(with_not_turn(reason, not_turn)),
                _ => {}
            }
        }
        match client.poll_timeout() {
            Some(at) => timer.set_at(at),
            None => timer = Timer::never(),
        }
        let readable = async { Some(link.readable().await) }
            .or(async {
                (&mut timer).await;
                None
            })
            .await;
        let now = clock::now();
        match readable {
            None => client.handle_timeout(now),
            Some(Err(e)) => return Err(with_not_turn(format!("connection: {e}"), not_turn)),
            Some(Ok(())) => read(
                &mut link,
                &mut client,
                &mut buf,
                now,
                not_turn,
                &mut |_, _| {},
            )
            .map_err(|e| with_not_turn(e, not_turn))?,
        }
    }
}

/// `why`, and when the server sent something that is not TURN, that this is the
/// likelier cause.
pub(super) fn with_not_turn(why: impl std::fmt::Display, not_turn: &Cell<u32>) -> String {
    match not_turn.get() {
        0 => why.to_string(),
        n => format!(
            "{why}; it answered {n} time{} with something that is not TURN: check that the \
             relay URL's host and port are a TURN server's",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// Drains what the connection has into the client; relayed data goes to `deliver`.
/// Counts in `not_turn` the inputs the client dropped as not TURN.
fn read(
    link: &mut Link,
    client: &mut TurnClient,
    buf: &mut [u8],
    now: Instant,
    not_turn: &Cell<u32>,
    deliver: &mut dyn FnMut(SocketAddr, &[u8]),
) -> Result<(), String> {
    let stream = client.config().transport.is_stream();
    let count = |why: Ignored| not_turn.set(not_turn.get() + u32::from(is_not_turn(why)));
    loop {
        let n = match link.try_recv(buf) {
            Ok(0) if stream => return Err("the server closed the connection".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // The server's host says nothing listens there any more (ICMP port
            // unreachable): the relay is gone, and its peers should move now rather
            // than when their own traffic goes unanswered.
            Err(e) if !stream && e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err("the server's port is closed (the relay is not running)".into());
            }
            // Other ICMP errors from UDP sends surface here; the transaction timers decide.
            Err(e) if !stream => {
                log::debug!("relay {}: {e}", client.config().server);
                return Ok(());
            }
            Err(e) => return Err(format!("connection: {e}")),
        };
        if stream {
            client.handle_stream(&buf[..n]);
            while let Some(received) = client.poll_stream(now) {
                match received {
                    Received::Data { from, payload } => deliver(from, payload),
                    Received::Ignored(Ignored::StreamCorrupt) => {
                        count(Ignored::StreamCorrupt);
                        return Err("the stream from the server is corrupt".into());
                    }
                    Received::Ignored(why) => count(why),
                    Received::Control => {}
                }
            }
        } else {
            match client.handle_datagram(&buf[..n], now) {
                Received::Data { from, payload } => deliver(from, payload),
                Received::Ignored(why) => count(why),
                Received::Control => {}
            }
        }
    }
}

/// Inputs a TURN server would not send. A bad MESSAGE-INTEGRITY or data on a channel we
/// dropped can come from a real TURN server, so they do not count.
fn is_not_turn(why: Ignored) -> bool {
    matches!(
        why,
        Ignored::Malformed | Ignored::Unexpected | Ignored::TooLarge | Ignored::StreamCorrupt
    )
}

enum Wake {
    Readable(io::Result<()>),
    Send(Option<(SocketAddr, Vec<u8>)>),
    Peers(Option<Vec<SocketAddr>>),
    Timer,
}

struct Session<'a> {
    spec: &'a RelaySpec,
    candidate: &'a Candidate,
    events: &'a Sender<FromRelay>,
    /// Reported up to the event loop (and so owed a "down").
    up: bool,
}

impl Session<'_> {
    /// Serves until the connection or allocation breaks (`Some(why)`) or the agent lets
    /// go of the relay (`None`).
    async fn serve(
        &mut self,
        established: Established,
        data: &Receiver<(SocketAddr, Vec<u8>)>,
        peers: &Receiver<Vec<SocketAddr>>,
        wanted: &mut Vec<SocketAddr>,
    ) -> Option<String> {
        let Established {
            mut link,
            mut client,
            relayed,
            rtt,
            ..
        } = established;
        let kind = self.candidate.kind;
        log::info!(
            "relay {} ({}): allocated {relayed}, round trip {}",
            self.spec.describe(self.candidate),
            kind.name(),
            Human(rtt)
        );
        let mut allocated = true;
        let now = clock::now();
        for &peer in wanted.iter() {
            client.add_peer(peer, now);
        }
        if wanted.is_empty() {
            self.report_up().await;
        }
        let mut buf = vec![0u8; 65_536];
        let mut out = Vec::with_capacity(2048);
        let mut timer = Timer::never();
        loop {
            while let Some(message) = client.poll_transmit() {
                if let Err(e) = link.send(&message).await {
                    return Some(format!("sending to the server: {e}"));
                }
            }
            while let Some(event) = client.poll_event() {
                match event {
                    TurnEvent::Allocated { .. } => {
                        allocated = true;
                        if wanted.is_empty() {
                            self.report_up().await;
                        }
                    }
                    TurnEvent::PeerReady(_) => {
                        if allocated && !self.up {
                            self.report_up().await;
                        }
                    }
                    TurnEvent::Data { from, payload } => self.deliver(from, &payload),
                    TurnEvent::Failed { reason } => return Some(reason.to_string()),
                    TurnEvent::AllocationLost { reason } => {
                        allocated = false;
                        self.report_down(reason.to_string()).await;
                    }
                    TurnEvent::PeerFailed { peer, reason } => {
                        log::debug!(
                            "relay {}: no permission for {peer}: {reason}",
                            self.spec.host
                        )
                    }
                    TurnEvent::Rtt(_) => {}
                }
            }
            match client.poll_timeout() {
                Some(at) => timer.set_at(at),
                None => timer = Timer::never(),
            }
            let wake = async { Wake::Readable(link.readable().await) }
                .or(async { Wake::Send(data.recv().await.ok()) })
                .or(async { Wake::Peers(peers.recv().await.ok()) })
                .or(async {
                    (&mut timer).await;
                    Wake::Timer
                })
                .await;
            let now = clock::now();
            match wake {
                Wake::Readable(Err(e)) => return Some(format!("connection: {e}")),
                Wake::Readable(Ok(())) => {
                    let mut deliver = |from, payload: &[u8]| self.deliver(from, payload);
                    let not_turn = &Cell::new(0);
                    if let Err(why) = read(
                        &mut link,
                        &mut client,
                        &mut buf,
                        now,
                        not_turn,
                        &mut deliver,
                    ) {
                        return Some(why);
                    }
                }
                Wake::Send(Some((peer, payload))) => {
                    out.clear();
                    if client.send(peer, &payload, &mut out).is_ok()
                        && let Err(e) = link.send(&out).await
                    {
                        return Some(format!("sending to the server: {e}"));
                    }
                }
                Wake::Peers(Some(list)) => {
                    for &gone in wanted.iter().filter(|p| !list.contains(p)) {
                        client.remove_peer(gone);
                    }
                    for &new in list.iter().filter(|p| !wanted.contains(p)) {
                        client.add_peer(new, now);
                    }
                    *wanted = list;
                }
                Wake::Send(None) | Wake::Peers(None) => {
                    // The agent let go of this relay: free the allocation on the way out.
                    client.close(now);
                    while let Some(message) = client.poll_transmit() {
                        let _ = link.send(&message).await;
                    }
                    return None;
                }
                Wake::Timer => client.handle_timeout(now),
            }
        }
    }

    fn deliver(&self, from: SocketAddr, payload: &[u8]) {
        let data = FromRelay::Data {
            from,
            payload: payload.to_vec(),
        };
        let _ = self.events.try_send(data);
    }

    async fn report_up(&mut self) {
        self.up = true;
        let _ = self.events.send(FromRelay::Up).await;
    }

    async fn report_down(&mut self, reason: String) {
        if std::mem::take(&mut self.up) {
            let down = FromRelay::Down { reason };
            let _ = self.events.send(down).await;
        }
    }
}
