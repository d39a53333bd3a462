//! The event loop: wait for the TUN device, the UDP socket, the next timer, a status
//! request or a signal; hand what came in to the core; send what the core produced.

mod apply;
mod report;

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use anyhow::Context;
use futures_lite::future;
use futures_lite::io::AsyncReadExt;
use rand_core::RngCore;
use smol::{Async, LocalExecutor, Timer};
use tun_rs::AsyncDevice;

use crate::config::RunConfig;
use crate::core::topology::Topology;
use crate::core::{Destination, Node};
use crate::keys::PrivateKey;
use crate::status::ManifestInfo;

use super::clock;
use super::feed::{self, Feed, Source};
use super::netlink::Netlink;
use super::notify::Notifier;
use super::status_server::{self, StatusServer};
use super::tun;
use super::udp::Udp;

/// Packets read per wakeup before the transmits are flushed: bounds the work done per
/// turn of the loop and the buffers in flight.
const BATCH: usize = 64;
/// Large enough for any datagram or packet; boringtun must never see a short buffer.
const RECV_BUFFER: usize = 65_536;

enum Wake {
    Tun,
    Udp,
    Timer,
    Status(io::Result<Async<UnixStream>>),
    Signal,
}

pub struct Agent<'a> {
    ex: &'a LocalExecutor<'static>,
    config: RunConfig,
    node: Node,
    tun: AsyncDevice,
    udp: Udp,
    netlink: Netlink,
    status: StatusServer,
    signals: Async<UnixStream>,
    feed: Feed,
    next_poll: Instant,
    /// This node's part of the manifest in force.
    topology: Option<Topology>,
    manifest: Option<ManifestInfo>,
    /// What the agent is doing, for `status` and systemd's status line.
    state: String,
    notify: Notifier,
    /// When systemd next expects `WATCHDOG=1` (none without a watchdog).
    next_watchdog: Option<Instant>,
    ready: bool,
}

impl<'a> Agent<'a> {
    pub async fn start(
        config: RunConfig,
        key: PrivateKey,
        ex: &'a LocalExecutor<'static>,
    ) -> anyhow::Result<Agent<'a>> {
        let source = Source::parse(&config.manifest_url)?;
        let tun = tun::create(&config.interface)?;
        let netlink = Netlink::open(ex, &config.interface).await?;
        netlink.set_mtu_and_up(config.mtu).await?;
        let udp = Udp::bind(config.listen_port)
            .with_context(|| format!("binding UDP port {}", config.listen_port))?;
        let status = StatusServer::bind(&config.state_dir)?;
        let signals = signal_pipe()?;
        let public = key.public_key();
        let node = Node::new(key, rand_core::OsRng.next_u32());
        log::info!(
            "{}: up, MTU {}, UDP port {}, public key {public}",
            config.interface,
            config.mtu,
            config.listen_port
        );
        let feed = Feed::new(source, config.manifest_pubkeys.clone());
        let notify = Notifier::from_env();
        let now = clock::now();
        Ok(Agent {
            ex,
            config,
            node,
            tun,
            udp,
            netlink,
            status,
            signals,
            feed,
            next_poll: now,
            topology: None,
            manifest: None,
            state: "starting".into(),
            next_watchdog: notify.watchdog_interval().map(|i| now + i),
            notify,
            ready: false,
        })
    }

    pub async fn run(&mut self) -> anyhow::Result<()> {
        let mut tun_buf = vec![0u8; RECV_BUFFER];
        let mut udp_buf = vec![0u8; RECV_BUFFER];
        let mut timer = Timer::never();
        loop {
            timer.set_at(self.next_deadline());
            let wake = future::or(
                async {
                    let _ = self.tun.readable().await;
                    Wake::Tun
                },
                future::or(
                    async {
                        let _ = self.udp.readable().await;
                        Wake::Udp
                    },
                    future::or(
                        async {
                            (&mut timer).await;
                            Wake::Timer
                        },
                        future::or(async { Wake::Status(self.status.accept().await) }, async {
                            let _ = (&self.signals).read(&mut [0u8; 16]).await;
                            Wake::Signal
                        }),
                    ),
                ),
            )
            .await;
            match wake {
                Wake::Tun => self.read_tun(&mut tun_buf),
                Wake::Udp => self.read_udp(&mut udp_buf),
                Wake::Timer => self.on_timer().await,
                Wake::Status(Ok(stream)) => {
                    self.ex
                        .spawn(status_server::answer(stream, self.report()))
                        .detach();
                }
                Wake::Status(Err(e)) => log::debug!("status socket: {e}"),
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
        }
    }

    fn next_deadline(&self) -> Instant {
        [self.node.poll_timeout().map(|(t, _)| t), self.next_watchdog]
            .into_iter()
            .flatten()
            .fold(self.next_poll, Instant::min)
    }

    fn read_tun(&mut self, buf: &mut [u8]) {
        let now = clock::now();
        for _ in 0..BATCH {
            match self.tun.try_recv(buf) {
                Ok(n) => self.node.handle_tun(&buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("reading {}: {e}", self.config.interface);
                    return;
                }
            }
        }
    }

    fn read_udp(&mut self, buf: &mut [u8]) {
        let now = clock::now();
        for _ in 0..BATCH {
            match self.udp.try_recv(buf) {
                Ok((n, from)) => self.node.handle_udp(from, &buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors from earlier sends surface here; they say nothing new.
                Err(e) => {
                    log::debug!("UDP receive: {e}");
                    return;
                }
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = clock::now();
        self.node.handle_timeout(now);
        if let Some(due) = self.next_watchdog.filter(|&due| now >= due) {
            // Sent from the loop itself: a wedged loop stops feeding the watchdog.
            self.notify.watchdog();
            self.next_watchdog = self.notify.watchdog_interval().map(|i| due.max(now) + i);
        }
        if now >= self.next_poll {
            self.next_poll = now + feed::POLL_INTERVAL;
            match self.feed.poll().await {
                Some(manifest) => self.apply(manifest).await,
                None => self.refresh_endpoints().await,
            }
            if !self.ready {
                // Ready once the interface is configured and the first manifest was tried:
                // a device with no manifest yet still runs, and says so in its status.
                self.ready = true;
                if self.manifest.is_none() {
                    self.set_state("waiting for a manifest".into());
                }
                self.notify.ready(&self.state);
            }
        }
    }

    fn set_state(&mut self, state: String) {
        if state != self.state {
            self.notify.status(&state);
            self.state = state;
        }
    }

    /// Sends everything the core produced, then hands the buffers back.
    async fn flush(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            match t.destination {
                Destination::Udp(to) => {
                    if let Err(e) = self.udp.send_to(&t.payload, to).await {
                        log::debug!("UDP send to {to}: {e}");
                    }
                }
                Destination::Relay { relay, .. } => {
                    // Relays are not wired into the shell yet; the core only picks a
                    // relayed path once the shell reports a relay up.
                    log::debug!("no transport for relay #{relay}");
                }
                Destination::Tun => {
                    if let Err(e) = self.tun.send(&t.payload).await {
                        log::debug!("writing {}: {e}", self.config.interface);
                    }
                }
            }
            self.node.recycle(t.payload);
        }
    }
}

/// SIGTERM and SIGINT become a byte on a socket the loop waits on.
fn signal_pipe() -> anyhow::Result<Async<UnixStream>> {
    let (read, write) = UnixStream::pair().context("creating the signal pipe")?;
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)
            .context("installing the signal handlers")?;
    }
    Async::new(read).context("watching the signal pipe")
}
