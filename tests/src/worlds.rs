//! The lab's catalogue of worlds and its one set of addresses. [`HubSites`] is the
//! underlay most worlds stand on (the wan, a hub host, NATed sites with a device each);
//! [`OneHub`] adds nginx and edgewire agents for the manifest lifecycle, [`TwoHubs`] a
//! second hub for failover; the relay world (with coturns and a firewall) is in
//! `relaylab`. Built, not started, except nginx.

use crate::agent::Agent;
use crate::coturn::{Coturn, CoturnConfig};
use crate::host::Host;
use crate::lab::Lab;
use crate::lifecycle::{as_strs, https_flags, publish_signed, signed_manifest};
use crate::manifest::{ManifestSource, NetworkKey, NodeSource};
use crate::manifest_server::ManifestServer;
use crate::net::{NatKind, NatSite, Wan};
use crate::relaylab::{TURN_PASS, TURN_REALM, TURN_USER};
use crate::wg::{WgDevice, WgPeerConfig};

// The lab's one set of addresses: every world places its hosts here.
/// The manifest server (nginx).
pub const SERVER_ADDR: &str = "203.0.113.20";
/// hub-1's public address and overlay address.
pub const HUB_ADDR: &str = "203.0.113.10";
pub const HUB_OVERLAY: &str = "10.42.0.1";
/// hub-2's, in the worlds that have a second hub.
pub const HUB2_ADDR: &str = "203.0.113.11";
/// dev-a's overlay address.
pub const DEV_OVERLAY: &str = "10.42.1.1";
/// Site A's NAT router on the wan (where hubs see dev-a on a direct path) and dev-a's
/// address on the LAN behind it.
pub const NAT_A_PUBLIC: &str = "198.51.100.2";
pub const DEV_A_LAN: &str = "192.168.10.2";
/// The coturns, in manifest order (relay #0, relay #1), on two different wan subnets.
pub const TURN_ADDRS: [&str; 2] = ["203.0.113.30", "192.0.2.40"];

/// The sites of [`HubSites`], in order: (router name, its public CIDR, its LAN CIDR,
/// device name, device CIDR, device overlay address).
pub const SITES: [(&str, &str, &str, &str, &str, &str); 3] = [
    (
        "nat-a",
        "198.51.100.2/24",
        "192.168.10.1/24",
        "dev-a",
        "192.168.10.2/24",
        "10.42.1.1",
    ),
    (
        "nat-b",
        "192.0.2.2/24",
        "192.168.20.1/24",
        "dev-b",
        "192.168.20.2/24",
        "10.42.2.1",
    ),
    (
        "nat-c",
        "192.0.2.3/24",
        "192.168.30.1/24",
        "dev-c",
        "192.168.30.2/24",
        "10.42.3.1",
    ),
];

/// Where a site's router does not translate ([`NatKind::Firewall`], [`NatKind::Public`]),
/// its LAN is public: a /28 of the router's own wan subnet, per site of [`SITES`]:
/// (router's LAN CIDR, device CIDR). The device's address is then the one the outside
/// sees.
pub const PUBLIC_LANS: [(&str, &str); 3] = [
    ("198.51.100.113/28", "198.51.100.114/28"),
    ("192.0.2.113/28", "192.0.2.114/28"),
    ("192.0.2.129/28", "192.0.2.130/28"),
];

/// The underlay of the hub worlds: the wan; a host `hub` at [`HUB_ADDR`] that forwards;
/// `n` sites from [`SITES`] (plain MASQUERADE unless given other [`NatKind`]s), each
/// with its device host. Nothing runs on it yet: the test puts edgewire agents or
/// standard WireGuard peers on it.
pub struct HubSites {
    pub wan: Wan,
    pub hub_host: Host,
    pub sites: Vec<NatSite>,
    /// The device host of each site (dev-a, dev-b).
    pub devs: Vec<Host>,
}

impl HubSites {
    pub fn new(lab: &Lab, n: usize) -> HubSites {
        HubSites::with_nats(lab, &vec![NatKind::Masquerade; n])
    }

    /// The first `nats.len()` sites, each behind a router of the kind given: a NAT over
    /// the site's private LAN, or (firewall, no NAT) a router of its [`PUBLIC_LANS`].
    pub fn with_nats(lab: &Lab, nats: &[NatKind]) -> HubSites {
        let n = nats.len();
        assert!(n <= SITES.len(), "the catalogue has {} sites", SITES.len());
        let wan = lab.wan();
        let hub_host = lab.host("hub");
        wan.attach(&hub_host, &format!("{HUB_ADDR}/24"));
        hub_host.enable_forwarding();
        let mut sites = Vec::new();
        let mut devs = Vec::new();
        let sites_and_lans = SITES.into_iter().zip(PUBLIC_LANS).zip(nats);
        for (((router, public, lan, dev, dev_cidr, _), public_lan), kind) in sites_and_lans {
            let (lan, dev_cidr) = if kind.translates() {
                (lan, dev_cidr)
            } else {
                public_lan
            };
            let site = wan.nat_router_with(router, public, lan, *kind);
            devs.push(site.host(dev, dev_cidr));
            sites.push(site);
        }
        HubSites {
            wan,
            hub_host,
            sites,
            devs,
        }
    }
}

/// Two coturns on the wan at [`TURN_ADDRS`] (two addresses, so a device can tell its
/// NAT's mapping), long-term credentials; with `sites`' manifest they are its relays
/// and STUN servers.
pub struct StunPair {
    pub hosts: Vec<Host>,
    pub coturns: Vec<Coturn>,
}

impl StunPair {
    pub fn start(lab: &Lab, wan: &Wan) -> StunPair {
        let mut hosts = Vec::new();
        let mut coturns = Vec::new();
        for (i, addr) in TURN_ADDRS.iter().enumerate() {
            let host = lab.host(&format!("turn-{}", i + 1));
            wan.attach(&host, &format!("{addr}/24"));
            let config = CoturnConfig::long_term(TURN_USER, TURN_PASS, TURN_REALM);
            coturns.push(Coturn::start(&host, addr, &config));
            hosts.push(host);
        }
        StunPair { hosts, coturns }
    }

    /// `src` with both coturns as UDP relays.
    pub fn add_to(&self, mut src: ManifestSource) -> ManifestSource {
        for addr in TURN_ADDRS {
            let url = format!("turn:{addr}:3478?transport=udp");
            src = src.relay(&url, TURN_USER, TURN_PASS);
        }
        src
    }
}

/// A wireguard-go hub on `host` (overlay [`HUB_OVERLAY`]/16) that knows its peers by key
/// and allowed IPs only: they come to it, as to a Kilo leader.
pub fn wireguard_go_hub(host: &Host, peers: &[(&str, &str)]) -> WgDevice {
    let hub = WgDevice::wireguard_go(host, 51820);
    hub.address(&format!("{HUB_OVERLAY}/16"));
    for (key, ip) in peers {
        hub.add_peer(&WgPeerConfig {
            public_key: (*key).into(),
            allowed_ips: vec![(*ip).into()],
            ..Default::default()
        });
    }
    hub
}

/// The manifest of hub-1 (at [`HUB_ADDR`], overlay [`HUB_OVERLAY`], keepalive 25) and
/// dev-a (site-a, [`DEV_OVERLAY`]) at `serial`; add nodes with `.node(…)`.
pub fn hub_and_dev_a(serial: u64, hub_key: &str, dev_key: &str) -> ManifestSource {
    hub_and_devs(serial, hub_key, &[dev_key])
}

/// hub-1 and the devices of the first `dev_keys.len()` [`SITES`] (dev-a in site-a,
/// dev-b in site-b, …) with their overlay addresses.
pub fn hub_and_devs(serial: u64, hub_key: &str, dev_keys: &[&str]) -> ManifestSource {
    assert!(
        dev_keys.len() <= SITES.len(),
        "the catalogue has {} sites",
        SITES.len()
    );
    let mut src = ManifestSource::new("lab", serial).node(
        NodeSource::hub("hub-1", hub_key, &format!("{HUB_OVERLAY}/32"))
            .endpoint(&format!("{HUB_ADDR}:51820"))
            .keepalive(25),
    );
    for (key, (.., dev, _, overlay)) in dev_keys.iter().zip(SITES) {
        let site = format!("site-{}", dev.trim_start_matches("dev-"));
        src = src.node(NodeSource::edge(dev, key, &site, &format!("{overlay}/32")));
    }
    src
}

/// The smallest world for the manifest lifecycle: the wan; nginx over HTTPS at
/// [`SERVER_ADDR`]; an edgewire hub `hub-1` at [`HUB_ADDR`] (overlay [`HUB_OVERLAY`]);
/// a device `dev-a` behind a NAT (overlay [`DEV_OVERLAY`]). Nothing is started but nginx.
pub struct OneHub {
    pub wan: Wan,
    pub server: ManifestServer,
    pub key: NetworkKey,
    pub hub: Agent,
    pub dev: Agent,
    pub dev_host: Host,
    dir: std::path::PathBuf,
}

impl OneHub {
    /// With `bearer_token`, nginx wants it on every request.
    pub fn new(lab: &Lab, bearer_token: Option<&str>) -> OneHub {
        let HubSites {
            wan,
            hub_host,
            mut devs,
            ..
        } = HubSites::new(lab, 1);
        let dev_host = devs.remove(0);
        let server_host = lab.host("www");
        wan.attach(&server_host, &format!("{SERVER_ADDR}/24"));
        let server = ManifestServer::start(&server_host, SERVER_ADDR, bearer_token);
        OneHub {
            server,
            key: NetworkKey::generate(lab.dir(), "network.key"),
            hub: Agent::new(&hub_host, "hub-1"),
            dev: Agent::new(&dev_host, "dev-a"),
            dev_host,
            wan,
            dir: lab.dir().to_path_buf(),
        }
    }

    /// hub-1 and dev-a at `serial`.
    pub fn source(&self, serial: u64) -> ManifestSource {
        hub_and_dev_a(serial, self.hub.public_key(), self.dev.public_key())
    }

    /// Signs `src` and publishes it as `/manifest`.
    pub fn publish(&self, src: &ManifestSource) -> Vec<u8> {
        publish_signed(&self.server, src, &self.key, &self.dir)
    }

    /// Starts the hub on a local copy of `src` (so it runs whatever the server does).
    pub fn start_hub(&mut self, src: &ManifestSource) {
        let name = format!("hub-manifest-{}", src.serial);
        signed_manifest(src, &[], &self.key, &self.dir, &name);
        let path = self.dir.join(name).to_string_lossy().into_owned();
        let key = self.key.public.clone();
        self.hub
            .start_args(&[], &["--manifest-url", &path, "--manifest-pubkey", &key]);
    }

    /// Starts dev-a polling `/manifest` every second, plus `extra` flags.
    pub fn start_dev(&mut self, extra: &[&str]) {
        let mut flags = https_flags(&self.server, "manifest", Some(&self.key.public), 1);
        flags.extend(extra.iter().map(|s| s.to_string()));
        self.dev.start_args(&[], &as_strs(&flags));
    }
}

/// Two edgewire hubs, `hub-1` (preferred, 203.0.113.10, overlay 10.42.0.1) and `hub-2`
/// (203.0.113.11, 10.42.0.2); `dev-a` (10.42.1.1) and `dev-b` (10.42.2.1) behind NATs in
/// two sites, so they reach each other only through a hub; nginx over HTTPS with the
/// manifest (serial 1) published. Every agent polls it every second.
pub struct TwoHubs {
    pub wan: Wan,
    pub server: ManifestServer,
    pub key: NetworkKey,
    pub hubs: Vec<Agent>,
    pub dev_a: Agent,
    pub dev_b: Agent,
    pub a_host: Host,
    pub b_host: Host,
}

impl TwoHubs {
    pub fn new(lab: &Lab) -> TwoHubs {
        let HubSites {
            wan,
            hub_host,
            mut devs,
            ..
        } = HubSites::new(lab, 2);
        let (a_host, b_host) = (devs.remove(0), devs.remove(0));
        let www = lab.host("www");
        wan.attach(&www, &format!("{SERVER_ADDR}/24"));
        let server = ManifestServer::start(&www, SERVER_ADDR, None);
        let hub2_host = lab.host("hub-2");
        wan.attach(&hub2_host, &format!("{HUB2_ADDR}/24"));
        hub2_host.enable_forwarding();
        let hubs = vec![
            Agent::new(&hub_host, "hub-1"),
            Agent::new(&hub2_host, "hub-2"),
        ];
        let dev_a = Agent::new(&a_host, "dev-a");
        let dev_b = Agent::new(&b_host, "dev-b");
        let key = NetworkKey::generate(lab.dir(), "network.key");
        let src = ManifestSource::new("lab", 1)
            .node(
                NodeSource::hub("hub-1", hubs[0].public_key(), "10.42.0.1/32")
                    .endpoint("203.0.113.10:51820")
                    .keepalive(25),
            )
            .node(
                NodeSource::hub("hub-2", hubs[1].public_key(), "10.42.0.2/32")
                    .endpoint("203.0.113.11:51820")
                    .keepalive(25),
            )
            .node(NodeSource::edge(
                "dev-a",
                dev_a.public_key(),
                "site-a",
                "10.42.1.1/32",
            ))
            .node(NodeSource::edge(
                "dev-b",
                dev_b.public_key(),
                "site-b",
                "10.42.2.1/32",
            ));
        publish_signed(&server, &src, &key, lab.dir());
        TwoHubs {
            wan,
            server,
            key,
            hubs,
            dev_a,
            dev_b,
            a_host,
            b_host,
        }
    }

    fn flags(&self) -> Vec<String> {
        https_flags(&self.server, "manifest", Some(&self.key.public), 1)
    }

    /// Starts both hubs and both devices.
    pub fn start_all(&mut self) {
        let flags = self.flags();
        for agent in self
            .hubs
            .iter_mut()
            .chain([&mut self.dev_a, &mut self.dev_b])
        {
            agent.start_args(&[], &as_strs(&flags));
        }
    }

    /// Starts hub `i` again after it died (reaps the old process first).
    pub fn restart_hub(&mut self, i: usize) {
        let flags = self.flags();
        self.hubs[i].stop();
        self.hubs[i].start_args(&[], &as_strs(&flags));
    }
}
