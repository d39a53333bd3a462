//! The event loop: wait for the TUN device, the UDP socket, the next timer, a status
//! request or a signal; hand what came in to the core; send what the core produced.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use anyhow::Context;
use futures_lite::future;
use futures_lite::io::AsyncReadExt;
use rand_core::RngCore;
use smol::{Async, LocalExecutor, Timer};
use tun_rs::AsyncDevice;

use crate::config::RunConfig;
use crate::core::topology::{self, Topology};
use crate::core::{Destination, Node, PeerConfig};
use crate::keys::{PrivateKey, PublicKey};
use crate::manifest::{Manifest, Role};
use crate::status::{DropReport, ManifestInfo, PeerReport, Report};

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

    /// Puts a verified manifest in force: peers as a diff, then addresses and routes.
    async fn apply(&mut self, manifest: Manifest) {
        let info = ManifestInfo {
            serial: manifest.serial,
            source: self.feed.describe(),
            network: manifest.network.clone(),
        };
        let topology = match topology::plan(&manifest, &self.node.public_key()) {
            Ok(t) => t,
            Err(e) => {
                log::warn!(
                    "{e} (manifest {} serial {}); waiting for one that does",
                    info.source,
                    info.serial
                );
                self.set_state("waiting: this node is not in the manifest".into());
                // A newer signed manifest without this node means it was removed.
                self.node.apply(BTreeMap::new(), None, clock::now());
                self.sync_kernel(&[]).await;
                self.topology = None;
                self.manifest = Some(info);
                return;
            }
        };
        let desired = resolve_peers(&topology).await;
        let changes = self
            .node
            .apply(desired, topology.overlay.clone(), clock::now());
        log::info!(
            "manifest {} serial {} applied as node {}: {}",
            info.source,
            info.serial,
            topology.name,
            describe(&changes)
        );
        if topology.role == Role::Hub {
            warn_if_not_forwarding();
        }
        self.sync_kernel(&topology.addresses).await;
        self.set_state(format!(
            "running as {} with {} peers (manifest serial {})",
            topology.name,
            topology.peers.len(),
            info.serial
        ));
        self.topology = Some(topology);
        self.manifest = Some(info);
    }

    /// Resolves endpoint names again (devices with dynamic addresses publish DNS names)
    /// and moves peers whose addresses changed.
    async fn refresh_endpoints(&mut self) {
        let Some(topology) = self.topology.clone() else {
            return;
        };
        let named = |e: &String| e.parse::<SocketAddr>().is_err();
        if !topology
            .peers
            .values()
            .any(|p| p.endpoints.iter().any(named))
        {
            return;
        }
        let desired = resolve_peers(&topology).await;
        let changes = self.node.apply(desired, topology.overlay, clock::now());
        if !changes.is_empty() {
            log::info!("endpoint names resolved anew: {}", describe(&changes));
        }
    }

    async fn sync_kernel(&mut self, addresses: &[crate::prefix::Prefix]) {
        if let Err(e) = self.netlink.sync_addresses(addresses).await {
            log::error!("{e:#}");
        }
        if let Err(e) = self.netlink.sync_routes(&self.node.routed_prefixes()).await {
            log::error!("{e:#}");
        }
    }

    fn report(&self) -> Report {
        let peers = self
            .node
            .peers()
            .map(|p| PeerReport {
                name: p.config.name.clone(),
                public_key: p.key.to_string(),
                role: role_name(p.config.role).into(),
                endpoint: p.path().map(|path| path.endpoint().to_string()),
                path: p.path().map(|path| path.kind().to_string()),
                health: p.health().name().into(),
                last_handshake_secs: p.last_handshake().map(|d| d.as_secs()),
                handshakes: p.stats.handshakes,
                rx_bytes: p.stats.rx_bytes,
                tx_bytes: p.stats.tx_bytes,
                allowed_ips: p.config.allowed_ips.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        let drops = self.node.drops;
        Report {
            interface: self.config.interface.clone(),
            name: self.topology.as_ref().map(|t| t.name.clone()),
            public_key: self.node.public_key().to_string(),
            addresses: self
                .topology
                .iter()
                .flat_map(|t| &t.addresses)
                .map(|a| a.to_string())
                .collect(),
            listen_port: self.config.listen_port,
            manifest: self.manifest.clone(),
            state: self.state.clone(),
            overlay_via: self.node.overlay_via().map(|p| p.config.name.clone()),
            peers,
            drops: DropReport {
                no_route: drops.no_route,
                unknown_datagram: drops.unknown_datagram,
                refused: drops.refused,
            },
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Hub => "hub",
        Role::Edge => "edge",
    }
}

/// Every peer's configuration with its endpoint names resolved, off the event loop.
async fn resolve_peers(topology: &Topology) -> BTreeMap<PublicKey, PeerConfig> {
    let plans = topology.peers.clone();
    smol::unblock(move || {
        plans
            .iter()
            .map(|(k, p)| (*k, p.resolve(|e| resolve(&p.name, e))))
            .collect()
    })
    .await
}

/// Resolves `host:port`; a name that does not resolve is logged and left out, so one bad
/// endpoint does not stop the others.
fn resolve(peer: &str, endpoint: &str) -> Vec<SocketAddr> {
    match endpoint.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            log::warn!(
                "peer {peer}: endpoint {endpoint} does not resolve ({e}); trying the others"
            );
            Vec::new()
        }
    }
}

fn describe(changes: &crate::core::Changes) -> String {
    if changes.is_empty() {
        return "no peer changed".into();
    }
    let mut parts = Vec::new();
    for (what, names) in [
        ("added", &changes.added),
        ("removed", &changes.removed),
        ("updated", &changes.updated),
        ("new session", &changes.rekeyed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    parts.join("; ")
}

/// A hub forwards edge-to-edge traffic through the kernel.
fn warn_if_not_forwarding() {
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "0") {
        log::warn!(
            "this node is a hub but net.ipv4.ip_forward is 0: edges cannot reach each other \
             through it (sysctl -w net.ipv4.ip_forward=1)"
        );
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
