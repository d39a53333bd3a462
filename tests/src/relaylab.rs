//! The relay-fallback world, shared by its end-to-end tests and its figures:
//! an edgewire edge `dev-a` behind a NAT router that is also its firewall, a hub `hub-1`
//! on the wan (an edgewire agent, or wireguard-go configured with `wg` as a Kilo node
//! is), and one or two coturns on other "public" addresses, listed in the manifest as
//! `turn:…?transport=udp`, `turn:…?transport=tcp` and (with TLS) `turns:…:443`.
//!
//! The firewall rules live in a chain of their own (`EWBLOCK`, jumped to first from the
//! router's FORWARD), so a test blocks a path with one call and lifts every block with
//! one flush, without touching the NAT.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::agent::{Agent, PeerStatus, Status, run_tool, wait_status_answers};
use crate::coturn::{Coturn, CoturnConfig};
use crate::host::Host;
use crate::lab::Lab;
use crate::manifest::{ManifestSource, NetworkKey};
use crate::net::{NatKind, NatSite, Wan};
use crate::wait::poll_until;
use crate::wg::{WgDevice, WgPeerConfig};

use crate::worlds::hub_and_dev_a;
pub use crate::worlds::{
    DEV_A_LAN as DEV_LAN, DEV_OVERLAY, HUB_ADDR, HUB_OVERLAY, NAT_A_PUBLIC as NAT_PUBLIC,
    TURN_ADDRS,
};
pub const TURN_USER: &str = "edge";
pub const TURN_PASS: &str = "correct horse";
pub const TURN_REALM: &str = "edgewire.test";

const BLOCK_CHAIN: &str = "EWBLOCK";
const T: Duration = Duration::from_secs(20);

/// Which WireGuard implementation runs the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubKind {
    Edgewire,
    WireguardGo,
}

/// How to build a [`RelayWorld`].
#[derive(Debug, Clone)]
pub struct RelayWorldConfig {
    pub hub: HubKind,
    /// How many coturns (1 or 2).
    pub relays: usize,
    /// Whether the coturns also listen for TLS on 443 (and the manifest lists `turns:`).
    pub tls: bool,
    pub nat: NatKind,
    /// The manifest gives relay #0 a wrong password.
    pub wrong_password_on_first: bool,
    /// The coturns check TURN REST credentials against this `static-auth-secret`, and
    /// the manifest lists the relays without credentials: `edgewire manifest build
    /// --turn-secret-file` mints them.
    pub rest_secret: Option<String>,
    /// A [`crate::LinkEmulator`] on the NAT router's uplink, seeded with this (clean
    /// until the test impairs it through `world.nat.emulator()`).
    pub impaired_link: Option<u64>,
}

impl RelayWorldConfig {
    pub fn new(hub: HubKind) -> RelayWorldConfig {
        RelayWorldConfig {
            hub,
            relays: 1,
            tls: true,
            nat: NatKind::Masquerade,
            wrong_password_on_first: false,
            rest_secret: None,
            impaired_link: None,
        }
    }

    pub fn impaired_link(mut self, seed: u64) -> Self {
        self.impaired_link = Some(seed);
        self
    }

    pub fn relays(mut self, n: usize) -> Self {
        assert!(
            (1..=2).contains(&n),
            "the relay world has one or two coturns"
        );
        self.relays = n;
        self
    }

    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    pub fn nat(mut self, kind: NatKind) -> Self {
        self.nat = kind;
        self
    }

    pub fn wrong_password_on_first(mut self) -> Self {
        self.wrong_password_on_first = true;
        self
    }

    pub fn rest_secret(mut self, secret: &str) -> Self {
        self.rest_secret = Some(secret.to_owned());
        self
    }
}

/// The hub, whichever implementation runs it.
pub enum Hub {
    Edgewire(Agent),
    WireguardGo(WgDevice),
}

impl Hub {
    pub fn public_key(&self) -> &str {
        match self {
            Hub::Edgewire(a) => a.public_key(),
            Hub::WireguardGo(w) => w.public_key(),
        }
    }

    /// Where the hub sends dev-a's datagrams now (`IP:PORT`), as the hub itself reports
    /// it: `wg show` on wireguard-go, `edgewire status` on an edgewire hub.
    pub fn endpoint_of(&self, dev_name: &str, dev_key: &str) -> Option<String> {
        match self {
            Hub::Edgewire(a) => a.status().ok()?.peer(dev_name)?.endpoint.clone(),
            Hub::WireguardGo(w) => w.peer_stat(dev_key)?.endpoint,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Hub::Edgewire(_) => "edgewire hub",
            Hub::WireguardGo(_) => "wireguard-go hub",
        }
    }
}

/// The world; built with everything started but dev-a.
pub struct RelayWorld {
    pub wan: Wan,
    pub hub: Hub,
    pub hub_host: Host,
    pub nat: NatSite,
    pub dev: Agent,
    pub dev_host: Host,
    pub turn_hosts: Vec<Host>,
    /// `None` once stopped by [`RelayWorld::kill_relay`].
    pub turns: Vec<Option<Coturn>>,
    pub key: NetworkKey,
    /// The signed manifest (a local file both agents read).
    pub manifest: PathBuf,
    /// Every coturn's CA in one PEM file, for dev-a's `--ca-file`.
    pub ca_file: PathBuf,
    config: RelayWorldConfig,
}

impl RelayWorld {
    pub fn new(lab: &Lab, config: RelayWorldConfig) -> RelayWorld {
        let wan = lab.wan();
        let hub_host = lab.host("hub");
        wan.attach(&hub_host, &format!("{HUB_ADDR}/24"));
        hub_host.enable_forwarding();
        let nat = match config.impaired_link {
            Some(seed) => wan.impaired_nat_router(
                "nat-a",
                &format!("{NAT_PUBLIC}/24"),
                "192.168.10.1/24",
                config.nat,
                seed,
            ),
            None => wan.nat_router_with(
                "nat-a",
                &format!("{NAT_PUBLIC}/24"),
                "192.168.10.1/24",
                config.nat,
            ),
        };
        nat.router.iptables(&["-N", BLOCK_CHAIN]);
        nat.router.iptables(&["-I", "FORWARD", "-j", BLOCK_CHAIN]);
        let dev_host = nat.host("dev-a", &format!("{DEV_LAN}/24"));
        let dev = Agent::new(&dev_host, "dev-a");

        let mut turn_hosts = Vec::new();
        let mut turns = Vec::new();
        let mut cas = String::new();
        for (i, addr) in TURN_ADDRS.iter().take(config.relays).enumerate() {
            let host = lab.host(&format!("turn-{}", i + 1));
            wan.attach(&host, &format!("{addr}/24"));
            let coturn = Coturn::start(&host, addr, &coturn_config(&config));
            if let Some(ca) = coturn.ca() {
                cas += &fs::read_to_string(&ca.ca_cert).expect("reading a coturn CA");
            }
            turn_hosts.push(host);
            turns.push(Some(coturn));
        }
        let ca_file = lab.dir().join("relay-cas.pem");
        fs::write(&ca_file, cas).expect("writing the relay CA bundle");

        let key = NetworkKey::generate(lab.dir(), "network.key");
        let hub = match config.hub {
            HubKind::Edgewire => Hub::Edgewire(Agent::new(&hub_host, "hub-1")),
            HubKind::WireguardGo => {
                let wg = WgDevice::wireguard_go(&hub_host, 51820);
                wg.address(&format!("{HUB_OVERLAY}/16"));
                wg.add_peer(&WgPeerConfig {
                    public_key: dev.public_key().into(),
                    allowed_ips: vec![format!("{DEV_OVERLAY}/32")],
                    ..Default::default()
                });
                Hub::WireguardGo(wg)
            }
        };
        let src = hub_and_dev_a(1, hub.public_key(), dev.public_key());
        let manifest = build_manifest(&src, &config, &key, lab.dir());

        let mut world = RelayWorld {
            wan,
            hub,
            hub_host,
            nat,
            dev,
            dev_host,
            turn_hosts,
            turns,
            key,
            manifest,
            ca_file,
            config,
        };
        if let Hub::Edgewire(agent) = &mut world.hub {
            let path = world.manifest.to_string_lossy().into_owned();
            agent.start_args(
                &[],
                &[
                    "--manifest-url",
                    &path,
                    "--manifest-pubkey",
                    &world.key.public,
                ],
            );
            wait_status_answers(agent, T);
        }
        world
    }

    /// Starts `edgewire run` on dev-a with the manifest file and the coturns' CAs.
    pub fn start_dev(&mut self) {
        let path = self.manifest.to_string_lossy().into_owned();
        let ca = self.ca_file.to_string_lossy().into_owned();
        let mut args = vec![
            "--manifest-url",
            &path,
            "--manifest-pubkey",
            &self.key.public,
        ];
        if self.config.tls {
            args.extend(["--ca-file", &ca]);
        }
        self.dev.start_args(&[], &args);
    }

    // ------------------------------------------------------------------ the firewall

    /// Drops UDP between dev-a's LAN and the hub, both ways; UDP to the relays passes.
    pub fn block_udp_to_hub(&self) {
        for flag in ["-d", "-s"] {
            self.nat.router.iptables(&[
                "-A",
                BLOCK_CHAIN,
                flag,
                HUB_ADDR,
                "-p",
                "udp",
                "-j",
                "DROP",
            ]);
        }
    }

    /// A network that lets only TCP to port 443 out (and its answers in): every UDP
    /// packet from or to dev-a's LAN is dropped, and TCP to 3478 too.
    pub fn allow_only_tcp_443(&self) {
        let uplink = self.nat.uplink.as_str();
        let rules: [&[&str]; 4] = [
            &["-p", "udp", "-j", "DROP"],
            &["-o", uplink, "-p", "tcp", "--dport", "443", "-j", "RETURN"],
            &[
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "RETURN",
            ],
            &["-j", "DROP"],
        ];
        for rule in rules {
            let mut argv = vec!["-A", BLOCK_CHAIN];
            argv.extend_from_slice(rule);
            self.nat.router.iptables(&argv);
        }
    }

    /// Removes every block.
    pub fn lift_blocks(&self) {
        self.nat.router.iptables(&["-F", BLOCK_CHAIN]);
    }

    // ------------------------------------------------------------------ the relays

    /// `HOST:PORT` of relay `i` as status names it for `transport` (udp, tcp or tls).
    pub fn relay_name(i: usize, transport: &str) -> String {
        let port = if transport == "tls" { 443 } else { 3478 };
        format!("{}:{port}", TURN_ADDRS[i])
    }

    /// Which coturn (index) a status `relay` field names.
    pub fn relay_index(relay: &str) -> Option<usize> {
        let host = relay.rsplit_once(':')?.0;
        TURN_ADDRS.iter().position(|a| *a == host)
    }

    /// Kills coturn `i` with SIGKILL (it dies, it does not say goodbye) and reaps it.
    pub fn kill_relay(&mut self, i: usize) {
        if let Some(coturn) = self.turns[i].take() {
            coturn.proc().signal(libc::SIGKILL);
            coturn.proc().wait_exit(Duration::from_secs(5));
        }
    }

    /// Starts coturn `i` again (same address and users; a new CA if TLS).
    pub fn restart_relay(&mut self, i: usize) {
        self.kill_relay(i);
        let coturn = Coturn::start(
            &self.turn_hosts[i],
            TURN_ADDRS[i],
            &coturn_config(&self.config),
        );
        self.turns[i] = Some(coturn);
    }

    // ------------------------------------------------------------------ observing

    /// dev-a's view of hub-1, if status answers and lists it.
    pub fn dev_hub(&self) -> Option<PeerStatus> {
        self.dev.status().ok()?.peer("hub-1").cloned()
    }

    /// Waits until dev-a's status shows hub-1 on `path` ("direct" or "relay") and, for a
    /// relay, through `relay_transport` when given; panics with the last status.
    pub fn wait_dev_path(
        &self,
        path: &str,
        relay_transport: Option<&str>,
        timeout: Duration,
    ) -> PeerStatus {
        let status = self.dev.wait_status(
            &format!("hub-1 on path {path} ({relay_transport:?})"),
            timeout,
            |s: &Status| {
                s.peer("hub-1").is_some_and(|p| {
                    p.path.as_deref() == Some(path)
                        && relay_transport.is_none_or(|t| p.relay_transport.as_deref() == Some(t))
                })
            },
        );
        status.peer("hub-1").cloned().expect("hub-1 is listed")
    }

    /// Waits until the hub sends dev-a's datagrams to an address starting with `prefix`
    /// (`"198.51.100.2:"` direct, a coturn's `"ADDR:"` relayed); returns it.
    pub fn wait_hub_sees(&self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let mut last = None;
        poll_until(timeout, || {
            last = self.hub.endpoint_of("dev-a", self.dev.public_key());
            last.clone().filter(|e| e.starts_with(prefix))
        })
        .ok_or_else(|| {
            format!(
                "the {} still sends dev-a's datagrams to {last:?} after {timeout:?}, \
                 not to {prefix}…",
                self.hub.describe()
            )
        })
    }
}

fn coturn_config(world: &RelayWorldConfig) -> CoturnConfig {
    let mut config = match &world.rest_secret {
        Some(secret) => CoturnConfig::secret(secret, TURN_REALM),
        None => CoturnConfig::long_term(TURN_USER, TURN_PASS, TURN_REALM),
    };
    config.tls = world.tls;
    config
}

/// Signs `src` plus the relays with `edgewire manifest build` (minting TURN REST
/// credentials with `--turn-secret-file F --turn-ttl 24h` when the world has a secret);
/// returns the signed manifest's path, `DIR/manifest`.
fn build_manifest(
    src: &ManifestSource,
    config: &RelayWorldConfig,
    key: &NetworkKey,
    dir: &Path,
) -> PathBuf {
    let mut json = serde_json::to_value(src).expect("a manifest source serialises");
    json["relays"] = relays_json(config);
    let source = dir.join("manifest.json");
    let out = dir.join("manifest");
    fs::write(&source, serde_json::to_string_pretty(&json).unwrap())
        .unwrap_or_else(|e| panic!("writing {}: {e}", source.display()));
    let mut args: Vec<&OsStr> = vec![
        "manifest".as_ref(),
        "build".as_ref(),
        source.as_os_str(),
        "--key".as_ref(),
        key.path.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    let secret_file = dir.join("turn-secret");
    if let Some(secret) = &config.rest_secret {
        fs::write(&secret_file, format!("{secret}\n")).expect("writing the TURN secret");
        args.extend([
            "--turn-secret-file".as_ref(),
            secret_file.as_os_str(),
            "--turn-ttl".as_ref(),
            "24h".as_ref(),
        ]);
    }
    run_tool(&args).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// The manifest's `relays`: per coturn, UDP and TCP on 3478 and (with TLS) `turns:` 443.
fn relays_json(config: &RelayWorldConfig) -> serde_json::Value {
    let mut list = Vec::new();
    for (i, addr) in TURN_ADDRS.iter().take(config.relays).enumerate() {
        let password = if i == 0 && config.wrong_password_on_first {
            "wrong horse"
        } else {
            TURN_PASS
        };
        let mut urls = vec![
            format!("turn:{addr}:3478?transport=udp"),
            format!("turn:{addr}:3478?transport=tcp"),
        ];
        if config.tls {
            urls.push(format!("turns:{addr}:443"));
        }
        for url in urls {
            list.push(match config.rest_secret {
                Some(_) => json!({ "url": url }),
                None => json!({"url": url, "username": TURN_USER, "password": password}),
            });
        }
    }
    serde_json::Value::Array(list)
}
