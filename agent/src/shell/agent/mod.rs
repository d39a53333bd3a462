//! The event loop: wait for the TUN device, the UDP socket, the next timer, a status
//! request or a signal; hand what came in to the core; send what the core produced.

mod apply;
mod chores;
mod control;
mod metrics;
mod record;
mod relays;
mod report;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::{FutureExt, StreamExt};
use rand_core::RngCore;
use smol::{Async, LocalExecutor, Timer};
use tun_rs::AsyncDevice;

use crate::config::{OperatorConfig, RunConfig};
use crate::core::topology::Topology;
use crate::core::{Destination, Event, Node};
use crate::fetch::{FetchConfig, Fetcher};
use crate::keys::PrivateKey;
use crate::status::ManifestInfo;

use super::blue::{self, Blue};
use super::clock;
use super::clockfloor::ClockFloor;
use super::codel::{self, Codel};
use super::control_socket::ControlSocket;
use super::give_way::GiveWay;
use super::intake::Intake;
use super::metrics_out::MetricsOut;
use super::netlink::Netlink;
use super::notify::Notifier;
use super::offload;
use super::pace;
use super::pages::Pages;
use super::puller::{self, Accepted, Polled, Puller};
use super::relay::{self, Raced, Relay};
use super::resolver::Resolver;
use super::ring_probe::{self, RingProbe};
use super::sent_wait::SentWaits;
use super::status_server::{self, StatusServer};
use super::tun;
use super::tun_batch::{self, TunBatch};
use super::udp::Udp;
use super::wake_policy::WakePolicy;
use chores::Chores;

/// Reads per wakeup before the transmits are flushed: bounds the work done per turn of
/// the loop and the buffers in flight.
const BATCH: usize = 64;
/// Packets per wakeup, however they came (a TUN super-packet is up to 128, a GRO train
/// up to 64): past this the loop flushes before it reads more, so the core's buffers in
/// flight stay within its pool.
const PACKET_BUDGET: usize = 128;
/// Datagrams queued for one batched send.
const SEND_BATCH: usize = 128;
/// How long the loop keeps taking turns of the data path (read both, flush) after a packet
/// wake-up before it goes back to the full wait: under load the next packets are already
/// there or soon will be (see `SHORT_WAIT`), and the full wait costs more than the packets
/// (every waiter polled and re-armed, the listeners and signal pipes each tried with a
/// system call; when this was measured, also a hop through smol's async-io thread, which
/// took the reactor over while this thread was busy and had to wake it, no longer so:
/// `shell::run`). Bounded in time, not in turns,
/// so timers, the control sockets and the relay connections wait about this long at most,
/// however many packets come. Against the 16 turns this replaces (`bench --udp-at
/// 400,600,700`, two runs each, quiet machine): loss at 600 Mbit/s 3.1–5.2 % → 0.8–0.9 %,
/// at 400 Mbit/s 0.8–0.9 % → 0.1 %, both ends' CPU per GB 3–13 % lower. 0.5 ms and 8 ms
/// were measured too: 0.5 ms lost more, 8 ms saved little more and holds relayed traffic
/// longer.
const BUSY_FOR: std::time::Duration = std::time::Duration::from_millis(2);
/// How long a busy turn that found nothing waits for the TUN device or the UDP socket
/// directly (one `poll` on the two descriptors) before the loop goes back to the full
/// wait. Under load the next packet comes within this; an idle agent pays it once.
const SHORT_WAIT: std::time::Duration = std::time::Duration::from_micros(500);
/// How long after the last packet the buffers a burst grew are given back (see
/// `shed`). A burst that comes later grows them again: page faults and allocations,
/// once per quiet spell.
const SHED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// Large enough for any datagram or packet; boringtun must never see a short buffer.
const RECV_BUFFER: usize = 65_536;

enum Wake {
    Tun,
    Udp,
    Timer,
    Pulled(Option<Box<Polled>>),
    Raced(Option<Raced>),
    RelayLink(usize),
    Status(io::Result<Async<UnixStream>>),
    Control(io::Result<Async<UnixStream>>),
    MetricsTick,
    MetricsScrape(io::Result<Async<std::net::TcpStream>>),
    Reload,
    Signal,
}

pub struct Agent<'a> {
    ex: &'a LocalExecutor<'static>,
    config: RunConfig,
    node: Node,
    tun: AsyncDevice,
    /// The TUN side's buffers: super-packets split on the way in, flights coalesced on
    /// the way out.
    tun_batch: TunBatch,
    /// Lets the applications the TUN's packets go to run first.
    give_way: GiveWay,
    /// Lets the applications that stream into the TUN run on (see wake_policy.rs).
    wake_policy: WakePolicy,
    udp: Udp,
    /// Drops data that waited too long in the UDP socket's queue (codel.rs).
    codel: Codel,
    /// How long TCP segments waited in the TUN's queue (sent_wait.rs), and the CoDel
    /// that drops them when they wait too long.
    sent_waits: SentWaits,
    /// Times the TUN's queue for what has no stamps of its own (ring_probe.rs).
    ring_probe: RingProbe,
    sent_codel: Codel,
    /// Drops UDP that ignores `sent_codel` (blue.rs).
    sent_blue: Blue,
    /// Datagrams the core produced, sent together at the end of the turn.
    udp_out: Vec<(std::net::SocketAddr, Vec<u8>)>,
    netlink: Netlink,
    status: StatusServer,
    /// `wg show`'s socket; none when it could not be bound or is turned off.
    control: Option<ControlSocket>,
    /// `--metrics-file` and `--metrics-listen`, when either is set.
    metrics: Option<MetricsOut>,
    /// SIGTERM and SIGINT: stop.
    signals: Async<UnixStream>,
    /// SIGHUP: poll the manifest URL now.
    reload: Async<UnixStream>,
    /// The manifest URL or path as it may be shown (credentials hidden).
    source: String,
    /// The cached manifest the agent boots on, until `run` puts it in force.
    booted: Option<Accepted>,
    puller: Puller,
    relays: Vec<Relay>,
    /// Endpoint and relay names, resolved off the loop.
    resolver: Resolver,
    /// Endpoint names that did not resolve last time (logged once, not every poll).
    unresolved: std::collections::BTreeSet<String>,
    /// Every relay race reports here.
    relay_tx: smol::channel::Sender<Raced>,
    relay_rx: smol::channel::Receiver<Raced>,
    /// TLS settings for the relays, made when the first race starts.
    relay_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Where the relays' connections are read into; allocated with the first one.
    relay_buf: Pages,
    /// This node's part of the manifest in force.
    topology: Option<Topology>,
    manifest: Option<ManifestInfo>,
    /// What the agent is doing, for `status` and systemd's status line.
    state: String,
    /// The status line systemd has last been told.
    status_line: String,
    notify: Notifier,
    /// When systemd next expects `WATCHDOG=1` (none without a watchdog).
    next_watchdog: Option<Instant>,
    /// When to give back what the last burst grew; `None` once given back.
    shed_at: Option<Instant>,
    ready: bool,
    wall_clock: clock::WallClockWatch,
    /// Saving the time, counting the peers that do not answer.
    chores: Chores,
    /// Start time and manifest polls, for the operator (`status`, metrics).
    record: record::Record,
}

impl<'a> Agent<'a> {
    pub async fn start(
        config: RunConfig,
        ops: OperatorConfig,
        key: PrivateKey,
        ex: &'a LocalExecutor<'static>,
    ) -> anyhow::Result<Agent<'a>> {
        let fetcher = Fetcher::new(FetchConfig::from_run(&config))?;
        let offload = offload::enabled();
        let tun = tun::create_waiting(&config.interface, offload, super::udp::PORT_WAIT).await?;
        let tun_batch = TunBatch::new(tun.tcp_gso(), tun.udp_gso(), config.mtu);
        let mut netlink = Netlink::open(&config.interface)?;
        netlink.set_mtu_and_up(config.mtu)?;
        let mut udp = Udp::bind_waiting(config.listen_port, super::udp::PORT_WAIT)
            .await
            .with_context(|| format!("binding UDP port {}", config.listen_port))?;
        if offload {
            udp.enable_batching();
            log::info!("data path: {}", report::data_path(&udp, &tun_batch));
        } else {
            log::info!(
                "data path: {}=off, one datagram and one packet per system call",
                offload::VAR
            );
        }
        log::debug!(
            "UDP port {}: receive buffer {} KiB",
            config.listen_port,
            udp.receive_buffer() / 1024
        );
        let status = StatusServer::bind(&config.state_dir)?;
        let control = (ops.control_dir.as_deref())
            .and_then(|dir| ControlSocket::bind(dir, &config.interface));
        let metrics = MetricsOut::new(ops.metrics_file, ops.metrics_interval, ops.metrics_listen)?;
        let signals = signal_pipe(&[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
        let reload = signal_pipe(&[signal_hook::consts::SIGHUP])?;
        let public = key.public_key();
        let node = Node::new(key, rand_core::OsRng.next_u32(), clock::now());
        log::info!(
            "{}: up, MTU {}, UDP port {}, public key {public}",
            config.interface,
            config.mtu,
            config.listen_port
        );
        let source = fetcher.describe();
        let mut intake = Intake::new(&config, public, source.clone())?;
        // The cached manifest is read before the manifest thread takes the intake over.
        let booted = intake.boot().map(|m| Accepted::plan(m, &public, None));
        let in_force = booted
            .as_ref()
            .and_then(|b| b.topology.as_ref().ok().cloned());
        let schedule = puller::schedule(config.manifest_interval);
        let puller = Puller::start(fetcher, schedule, intake, public, in_force)
            .context("starting the manifest thread")?;
        // Before the first session is made: its handshakes are stamped from this floor.
        let clock_floor = ClockFloor::restore(&config.state_dir);
        let (relay_tx, relay_rx) = relay::races();
        let notify = Notifier::from_env();
        let now = clock::now();
        let tun_drops = netlink.tun_queue_drops().ok();
        let mut secret = [0u8; 8];
        rand_core::OsRng.fill_bytes(&mut secret);
        let ring_probe = RingProbe::new(netlink.index(), secret);
        Ok(Agent {
            ex,
            config,
            node,
            tun,
            tun_batch,
            give_way: GiveWay::new(),
            wake_policy: WakePolicy::new(),
            udp,
            codel: Codel::new(),
            sent_waits: SentWaits::new(clock::now()),
            ring_probe,
            sent_codel: Codel::new(),
            sent_blue: Blue::new(),
            udp_out: Vec::with_capacity(SEND_BATCH),
            netlink,
            status,
            control,
            metrics,
            signals,
            reload,
            source,
            booted,
            puller,
            relays: Vec::new(),
            resolver: Resolver::new(),
            unresolved: Default::default(),
            relay_tx,
            relay_rx,
            relay_tls: None,
            relay_buf: Pages::zeroed(0),
            topology: None,
            manifest: None,
            state: "starting".into(),
            status_line: String::new(),
            next_watchdog: notify.watchdog_interval().map(|i| now + i),
            shed_at: None,
            notify,
            ready: false,
            wall_clock: clock::WallClockWatch::new(),
            chores: Chores::start(clock_floor, tun_drops, now),
            record: record::Record::new(now, clock::unix_now()),
        })
    }

    pub async fn run(&mut self) -> anyhow::Result<()> {
        // The cached manifest first: the overlay comes up without waiting for the server.
        if let Some(booted) = self.booted.take() {
            let source = super::super::state::cache::path(&self.config.state_dir);
            self.apply(booted, &source.display().to_string()).await;
            self.flush().await;
            self.mark_ready();
        }
        let mut udp_buf = Pages::zeroed(if self.udp.batching() { 0 } else { RECV_BUFFER });
        let mut timer = Timer::never();
        let mut metrics_tick = (self.metrics.as_ref())
            .filter(|m| m.has_file())
            .map(|m| Timer::interval_at(Instant::now(), m.interval));
        loop {
            match self.next_deadline() {
                Some(at) => timer.set_at(at),
                None => timer = Timer::never(),
            }
            // Whichever is ready first; the losers are dropped, which is safe because
            // each only waits for readiness (nothing is read until the match below).
            // Readiness, not a read or an accept: every one of these is polled afresh on
            // each wake-up, and under load the loop comes here hundreds of times a
            // second; a read or accept would be tried first each time, a system call
            // that finds nothing (measured at 450 Mbit/s before the listeners and pipes
            // waited for readiness: about 2,200 a second per agent, two accepts and two
            // reads per wake-up).
            let wake = async {
                let _ = self.tun.readable().await;
                Wake::Tun
            }
            .or(async {
                let _ = self.udp.readable().await;
                Wake::Udp
            })
            .or(async {
                (&mut timer).await;
                Wake::Timer
            })
            .or(async { Wake::Pulled(self.puller.recv().await.map(Box::new)) })
            .or(async { Wake::Raced(self.relay_rx.recv().await.ok()) })
            .or(async {
                Wake::RelayLink(
                    std::future::poll_fn(|cx| relays::poll_relays(&self.relays, cx)).await,
                )
            })
            .or(async { Wake::Status(self.status.accept().await) })
            .or(async {
                match metrics_tick.as_mut() {
                    Some(tick) => {
                        tick.next().await;
                        Wake::MetricsTick
                    }
                    None => std::future::pending().await,
                }
            })
            .or(async {
                match &self.metrics {
                    Some(m) => Wake::MetricsScrape(m.accept().await),
                    None => std::future::pending().await,
                }
            })
            .or(async {
                match &self.control {
                    Some(c) => Wake::Control(c.accept().await),
                    None => std::future::pending().await,
                }
            })
            .or(async {
                let _ = self.reload.readable().await;
                Wake::Reload
            })
            .or(async {
                let _ = self.signals.readable().await;
                Wake::Signal
            })
            .await;
            match wake {
                Wake::Tun => {
                    let moved = self.read_tun();
                    self.busy_turns(moved, &mut udp_buf).await;
                }
                Wake::Udp => {
                    let moved = self.read_udp(&mut udp_buf);
                    self.busy_turns(moved, &mut udp_buf).await;
                }
                Wake::Timer => self.on_timer(),
                Wake::Pulled(Some(polled)) => self.on_pulled(*polled).await,
                Wake::Pulled(None) => anyhow::bail!("the manifest thread stopped"),
                Wake::Raced(Some(raced)) => self.on_raced(raced),
                // The agent holds a sender itself: the channel never closes.
                Wake::Raced(None) => {}
                Wake::RelayLink(i) => self.pump_relay(i),
                Wake::Status(Ok(stream)) => {
                    let (report, peers) = self.report_parts();
                    let n = peers.len();
                    self.spawn_answer(
                        status_server::answer(stream, report, peers, |p| p.entry()),
                        n,
                    );
                }
                Wake::Status(Err(e)) => log::debug!("status socket: {e}"),
                Wake::Control(Ok(stream)) => {
                    let device = self.uapi_device();
                    let n = device.peers.len();
                    if let Some(task) = self.control.as_ref().and_then(|c| c.serve(stream, device))
                    {
                        self.spawn_answer(task, n);
                    }
                }
                Wake::Control(Err(e)) => log::debug!("control socket: {e}"),
                Wake::MetricsTick => {
                    let render = self.metrics_facts().render();
                    if let Some(task) = self.metrics.as_ref().and_then(|m| m.write_file(render)) {
                        self.spawn_answer(task, self.node.peers().count());
                    }
                }
                Wake::MetricsScrape(Ok(stream)) => {
                    let render = self.metrics_facts().render();
                    if let Some(task) = self.metrics.as_ref().and_then(|m| m.serve(stream, render))
                    {
                        self.spawn_answer(task, self.node.peers().count());
                    }
                }
                Wake::MetricsScrape(Err(e)) => log::debug!("metrics listener: {e}"),
                Wake::Reload => {
                    drain(&self.reload);
                    log::info!("SIGHUP: polling {} now", self.source);
                    self.puller.poll_now();
                }
                Wake::Signal => {
                    self.notify.stopping();
                    log::info!(
                        "stopping on signal; {} goes away with the agent",
                        self.config.interface
                    );
                    return Ok(());
                }
            }
            self.flush().await;
            self.wake_policy.review();
        }
    }

    /// Runs a task that answers about `peers` peers; once it is done with a large
    /// answer, the memory it freed goes back to the system.
    fn spawn_answer(&self, task: impl std::future::Future<Output = ()> + 'static, peers: usize) {
        let large = peers > pace::PEERS_PER_PIECE;
        self.ex
            .spawn(async move {
                task.await;
                if large {
                    pace::give_back_memory();
                }
            })
            .detach();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let node = self.node.poll_timeout().map(|(t, _)| t);
        [
            node,
            self.next_watchdog,
            self.shed_at,
            self.wake_policy.due(),
            Some(self.chores.next_due()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// After a packet wake-up that moved `moved` packets: flush, and while packets keep
    /// coming (or come within `SHORT_WAIT`) and no timer is due, read both sides again
    /// (for at most `BUSY_FOR`).
    async fn busy_turns(&mut self, mut moved: usize, udp_buf: &mut [u8]) {
        if moved == 0 {
            return;
        }
        let started = clock::now();
        self.shed_at = Some(started + SHED_AFTER);
        loop {
            let now = clock::now();
            let deadline = self.next_deadline();
            if deadline.is_some_and(|t| t <= now) || now - started >= BUSY_FOR {
                return;
            }
            self.flush().await;
            if moved == 0 {
                let wait = deadline.map_or(SHORT_WAIT, |t| (t - now).min(SHORT_WAIT));
                if !wait_packets(&[self.tun.as_raw_fd(), self.udp.raw_fd()], wait) {
                    return;
                }
            }
            moved = self.read_tun() + self.read_udp(udp_buf);
        }
    }

    /// Reads from the TUN device until it is empty or the budget is spent; the number
    /// of packets handed to the core.
    fn read_tun(&mut self) -> usize {
        let now = clock::now();
        let mut packets = 0;
        for _ in 0..BATCH {
            match self.tun_batch.read(&self.tun) {
                Ok(n) => {
                    self.wake_policy.count_read();
                    for (i, packet) in self.tun_batch.packets().enumerate() {
                        // One sample a read: a super-packet's segments waited alike. A
                        // probe is a read of its own.
                        if i == 0 && self.ring_probe.take(packet, now) {
                            continue;
                        }
                        if i == 0
                            && let Some(waited) =
                                sent_wait(&mut self.sent_waits, &self.ring_probe, packet, now)
                            && self.sent_codel.should_drop(now, waited)
                        {
                            log::debug!(
                                "dropped a packet that waited {waited:?} in the TUN's queue: \
                                 a queue stands in front of the agent"
                            );
                            continue;
                        }
                        if blue::droppable(packet, self.tun_batch.came_whole())
                            && self.sent_blue.should_drop(now, self.ring_probe.sample(now))
                        {
                            continue;
                        }
                        self.node.handle_tun(packet, now);
                    }
                    packets += n;
                    if packets >= PACKET_BUDGET {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ring_probe.drained(now);
                    return packets;
                }
                Err(e) => {
                    log::warn!("reading {}: {e}", self.config.interface);
                    return packets;
                }
            }
        }
        // More was queued than a turn takes: time the queue.
        self.ring_probe.send(now);
        packets
    }

    /// Reads datagrams until none is left or the budget is spent; how many.
    fn read_udp(&mut self, buf: &mut [u8]) -> usize {
        let now = clock::now();
        if self.udp.batching() {
            return self.read_udp_batched(now);
        }
        let mut packets = 0;
        for _ in 0..BATCH {
            match self.udp.try_recv(buf) {
                Ok((len, from, waited)) => {
                    packets += 1;
                    let Some(n) = len else { continue };
                    if !dropped_for_queue(&mut self.codel, from, &buf[..n], waited, now) {
                        self.node.handle_udp(from, &buf[..n], now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; they say nothing new.
                Err(e) => {
                    log::debug!("UDP receive: {e}");
                    break;
                }
            }
        }
        packets
    }

    fn read_udp_batched(&mut self, now: Instant) -> usize {
        let mut packets = 0;
        while packets < PACKET_BUDGET {
            match self.udp.recv_batch() {
                Ok(_) => {
                    let taken = clock::now();
                    for (from, datagram, waited) in self.udp.datagrams() {
                        packets += 1;
                        if !dropped_for_queue(&mut self.codel, from, datagram, waited, taken) {
                            self.node.handle_udp(from, datagram, now);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("UDP receive: {e}");
                    break;
                }
            }
        }
        packets
    }

    fn on_timer(&mut self) {
        let now = clock::now();
        if let Some(jump) = self.wall_clock.jumped() {
            log::info!(
                "the wall clock jumped {} by {}; renewing WireGuard sessions so their \
                 handshake timestamps follow it",
                if jump < 0 { "back" } else { "forward" },
                crate::human::Human(std::time::Duration::from_secs(jump.unsigned_abs()))
            );
            self.node.renew_sessions(now);
        }
        self.node.handle_timeout(now);
        if let Some(due) = self.next_watchdog.filter(|&due| now >= due) {
            // Sent from the loop itself: a wedged loop stops feeding the watchdog.
            self.notify.watchdog();
            self.next_watchdog = self.notify.watchdog_interval().map(|i| due.max(now) + i);
        }
        let netlink = &self.netlink;
        let read_tun_drops = || {
            (netlink.tun_queue_drops())
                .inspect_err(|e| log::debug!("reading the TUN's drop counter: {e}"))
                .ok()
        };
        self.chores.run(&self.node, read_tun_drops, now);
        if self.shed_at.is_some_and(|due| now >= due) {
            self.shed_at = None;
            self.shed();
        }
        // A hub that stopped answering moves the overlay without a path event.
        self.publish_status();
    }

    /// Gives back what a burst of packets grew, once none has moved for `SHED_AFTER`:
    /// the receive arena's and the TUN frame's pages, the buffers kept for reuse, the
    /// GRO tables. Left alone, an agent that once carried a TCP flood held its peak
    /// for good: 6.36 MB idle on the receiving end of `scripts/bench`, 4.53 with this.
    fn shed(&mut self) {
        self.udp.shed();
        self.tun_batch.shed();
        self.relay_buf.discard();
        self.node.shed_buffers();
        pace::give_back_memory();
        log::debug!("no packets for {SHED_AFTER:?}: gave back the buffers the last burst grew");
    }

    /// A poll of the manifest URL finished.
    async fn on_pulled(&mut self, polled: Polled) {
        self.record
            .on_pulled(&polled.fetched, clock::now(), clock::unix_now());
        // A boot from the cache names the cache until the server sends the same bytes.
        if let Some(info) = self.manifest.as_mut() {
            info.source.clear();
            info.source.push_str(&polled.in_force_source);
        }
        match polled.accepted {
            Some(accepted) => self.apply(accepted, &polled.in_force_source).await,
            // Names may point elsewhere now, whatever the server said.
            None => self.refresh_endpoints().await,
        }
        self.mark_ready();
    }

    /// Ready once the interface is configured and the first manifest was tried: a device
    /// with no manifest yet still runs, and says so in its status.
    fn mark_ready(&mut self) {
        if self.ready {
            return;
        }
        self.ready = true;
        if self.manifest.is_none() {
            self.set_state("waiting for a manifest".into());
        }
        self.status_line = self.status_text();
        self.notify.ready(&self.status_line);
    }

    fn set_state(&mut self, state: String) {
        if state != self.state {
            self.state = state;
            self.publish_status();
        }
    }

    /// systemd's status line: the state, and how the overlay is reached now (`systemctl
    /// status` then says "overlay via hub-1, relay over tls" without asking the agent).
    fn publish_status(&mut self) {
        let line = self.status_text();
        if line != self.status_line {
            self.notify.status(&line);
            self.status_line = line;
        }
    }

    fn status_text(&self) -> String {
        match self.overlay_summary() {
            Some(overlay) => format!("{}; {overlay}", self.state),
            None => self.state.clone(),
        }
    }

    fn overlay_summary(&self) -> Option<String> {
        let hub = self.node.overlay_via()?;
        let name = &hub.config.name;
        match hub.health() {
            crate::core::Health::Down => return Some(format!("no hub answers ({name} tried)")),
            crate::core::Health::Unknown => return Some(format!("waiting for {name} to answer")),
            crate::core::Health::Up => {}
        }
        Some(match hub.path().and_then(|p| p.relay()) {
            Some(id) => match self.relay_link(id) {
                Some((_, transport)) => format!("overlay via {name}, relay over {transport}"),
                None => format!("overlay via {name}, relay"),
            },
            None => format!("overlay via {name}, direct"),
        })
    }

    /// Sends everything the core produced, then hands the buffers back. Sending can make
    /// more (a relay connection found broken moves its peers): a few rounds at most.
    async fn flush(&mut self) {
        for _ in 0..4 {
            self.take_events();
            self.send_transmits().await;
            if !self.node.has_output() {
                return;
            }
        }
    }

    async fn send_transmits(&mut self) {
        let batching = self.udp.batching();
        while let Some(t) = self.node.poll_transmit() {
            match t.destination {
                // Datagrams with the default TTL wait for one batched send; one with its
                // own TTL (a punch) goes alone, after those queued before it.
                Destination::Udp(to) if batching && t.ttl.is_none() => {
                    self.udp_out.push((to, t.payload));
                    if self.udp_out.len() >= SEND_BATCH {
                        self.send_udp_out().await;
                    }
                    continue;
                }
                Destination::Udp(to) => {
                    self.send_udp_out().await;
                    if let Err(e) = self.udp.send_to_with_ttl(&t.payload, to, t.ttl).await {
                        log::debug!("UDP send to {to}: {e}");
                    }
                }
                Destination::RelayServer(relay) => self.send_to_relay(relay, &t.payload),
                // The core frames these for the relays it drives: none are left.
                Destination::Relay { relay, .. } => {
                    log::debug!("relay #{relay}: no TURN client; dropped a datagram")
                }
                Destination::Tun => {
                    let spare = self.tun_batch.queue(t.payload);
                    self.node.recycle(spare);
                    if self.tun_batch.queued() >= tun_batch::SEGMENTS {
                        self.write_tun().await;
                    }
                    continue;
                }
            }
            self.node.recycle(t.payload);
        }
        self.send_udp_out().await;
        self.write_tun().await;
    }

    /// What the core reports: logged and counted, and relay connections to make.
    fn take_events(&mut self) {
        let mut moved = false;
        while let Some(event) = self.node.poll_event() {
            moved |= matches!(
                event,
                Event::PathSwitched { .. } | Event::RelayUp { .. } | Event::RelayDown { .. }
            );
            match event {
                Event::NatMapping(mapping) => log::info!(
                    "NAT in front of UDP port {}: {mapping} mapping (seen as {})",
                    self.config.listen_port,
                    describe_addresses(&self.node.reflexive_addresses())
                ),
                Event::PathSwitched { why, .. } => {
                    *self.record.path_switches.entry(why.name()).or_default() += 1;
                }
                Event::ConnectRelay { id, order } => self.connect_relay(id, order),
                Event::RelayUp { id, rtt } => {
                    self.record.relay_rtt.insert(id, rtt);
                }
                Event::RelayDown { id } => {
                    self.record.relay_rtt.remove(&id);
                }
            }
        }
        if moved {
            self.publish_status();
        }
    }

    async fn send_udp_out(&mut self) {
        if self.udp_out.is_empty() {
            return;
        }
        self.udp.send_batch(&self.udp_out).await;
        for (_, payload) in self.udp_out.drain(..) {
            self.node.recycle(payload);
        }
    }

    async fn write_tun(&mut self) {
        // Each run's packets wait in an application's socket once written, and the write
        // woke it: let it read them before the next run lands (see give_way.rs).
        let give_way = &mut self.give_way;
        let wrote = self
            .tun_batch
            .write(&self.tun, |packets| give_way.after_write(packets));
        if let Err(e) = wrote.await {
            log::debug!("writing {}: {e}", self.config.interface);
        }
    }
}

/// Blocks this thread until one of `fds` is readable or `wait` is over; whether one is.
/// Only for `busy_turns`' short wait: nothing else on the loop runs meanwhile.
fn wait_packets(fds: &[std::os::fd::RawFd; 2], wait: std::time::Duration) -> bool {
    let mut polled = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // ppoll, not poll: poll counts in milliseconds, twice the wait meant.
    let timeout = libc::timespec {
        tv_sec: wait.as_secs() as _,
        tv_nsec: wait.subsec_nanos() as _,
    };
    // SAFETY: `polled` is an array of valid pollfd entries and `timeout` a valid
    // timespec, both outliving the call; a null signal mask leaves the mask as it is.
    let n = unsafe {
        libc::ppoll(
            polled.as_mut_ptr(),
            polled.len() as libc::nfds_t,
            &timeout,
            std::ptr::null(),
        )
    };
    n > 0
}

fn describe_addresses(addrs: &[std::net::SocketAddr]) -> String {
    let all: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    if all.is_empty() {
        "nothing yet".into()
    } else {
        all.join(", ")
    }
}

/// Empties a signal pipe without waiting: however many signals came, one wake-up.
fn drain(pipe: &Async<UnixStream>) {
    let mut bytes = [0u8; 16];
    while matches!(io::Read::read(&mut pipe.get_ref(), &mut bytes), Ok(n) if n > 0) {}
}

/// Each of `signals` becomes a byte on a socket the loop waits on.
fn signal_pipe(signals: &[i32]) -> anyhow::Result<Async<UnixStream>> {
    let (read, write) = UnixStream::pair().context("creating the signal pipe")?;
    for &signal in signals {
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)
            .context("installing the signal handlers")?;
    }
    Async::new(read).context("watching the signal pipe")
}

/// Whether CoDel drops this received datagram before it costs a decryption: data that
/// waited in the socket while a queue stood in front of the agent (codel.rs).
fn dropped_for_queue(
    codel: &mut Codel,
    from: SocketAddr,
    datagram: &[u8],
    waited: Duration,
    now: Instant,
) -> bool {
    let drop = codel::droppable(datagram) && codel.should_drop(now, waited);
    if drop {
        log::debug!(
            "dropped a data datagram from {from} that waited {waited:?}: a queue stands in \
             front of the agent"
        );
    }
    drop
}

/// How long `packet`, read from the TUN at `now`, waited there: told by its own TCP
/// timestamp where it has one the agent believes (sent_wait.rs), else, for bulk data, by
/// the last probe through the queue (ring_probe.rs).
fn sent_wait(
    waits: &mut SentWaits,
    probe: &RingProbe,
    packet: &[u8],
    now: Instant,
) -> Option<Duration> {
    let stamped = waits.wait(packet, now);
    stamped.or_else(|| ring_probe::bulk(packet).then(|| probe.wait(now)).flatten())
}
