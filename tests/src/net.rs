//! Topology building blocks: veth links, the "internet" (a router with a bridge holding
//! the gateways of the documentation ranges), and site routers with a LAN bridge behind
//! them: NATs of the kinds RFC 4787 tells apart, a firewall, or no NAT at all.

use std::net::Ipv4Addr;

use crate::host::Host;
use crate::lab::Lab;
use crate::linkemu::{LinkEmulator, disable_tx_offload};

/// What a site's router does to its LAN's traffic: how it maps ports (RFC 4787), or
/// that it does not translate at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Plain MASQUERADE: keeps the source port when it can (endpoint-independent mapping
    /// in practice), so UDP hole punching works.
    Masquerade,
    /// MASQUERADE `--random-fully`: a random port per connection, close to a symmetric NAT.
    RandomFully,
    /// No translation: the LAN has public addresses, and a stateful firewall admits only
    /// the answers to what left (conntrack ESTABLISHED): inbound UDP nobody asked for is
    /// dropped. A corporate firewall, or a cellular APN with public addresses.
    Firewall,
    /// No NAT and no filter: the router only routes, so the device has a public address
    /// anyone can reach.
    Public,
}

impl NatKind {
    /// Whether the LAN behind it has private addresses (the router translates them).
    pub fn translates(self) -> bool {
        matches!(self, NatKind::Masquerade | NatKind::RandomFully)
    }
}

/// A veth pair between two hosts; the names are those inside each namespace.
#[derive(Debug, Clone)]
pub struct Link {
    pub a_iface: String,
    pub b_iface: String,
    /// The addresses (without prefix length) of each end.
    pub a_addr: String,
    pub b_addr: String,
}

impl Link {
    pub(crate) fn create(a: &Host, b: &Host, a_cidr: &str, b_cidr: &str) -> Link {
        let (a_iface, b_iface) = veth(a, "eth", b, "eth");
        a.add_addr(&a_iface, a_cidr);
        b.add_addr(&b_iface, b_cidr);
        Link {
            a_iface,
            b_iface,
            a_addr: addr_of(a_cidr).to_string(),
            b_addr: addr_of(b_cidr).to_string(),
        }
    }
}

/// Creates a veth pair with one end in each namespace, both up. Returns (a end, b end).
fn veth(a: &Host, a_stem: &str, b: &Host, b_stem: &str) -> (String, String) {
    let a_iface = a.lab.next_iface(a.netns(), a_stem);
    let b_iface = b.lab.next_iface(b.netns(), b_stem);
    a.run(&[
        "ip",
        "link",
        "add",
        &a_iface,
        "type",
        "veth",
        "peer",
        "name",
        &b_iface,
        "netns",
        b.netns(),
    ]);
    a.link_up(&a_iface);
    b.link_up(&b_iface);
    (a_iface, b_iface)
}

/// A bridge `br0` in `host` holding the given gateway addresses.
fn bridge(host: &Host, cidrs: &[&str]) {
    // A fixed address: otherwise the bridge takes the lowest MAC of its ports and changes
    // it when a port is plugged in later, and hosts keep sending to the old one from
    // their ARP caches for a minute.
    host.run(&[
        "ip",
        "link",
        "add",
        "br0",
        "address",
        "02:ee:00:00:00:01",
        "type",
        "bridge",
    ]);
    for cidr in cidrs {
        host.add_addr("br0", cidr);
    }
    host.link_up("br0");
}

/// Plugs `host` into the bridge `br0` of `switch`; returns `host`'s interface name.
fn plug(switch: &Host, host: &Host) -> String {
    let (port, iface) = veth(switch, "p", host, "eth");
    switch.run(&["ip", "link", "set", &port, "master", "br0"]);
    iface
}

/// The public network: one router ("wan") whose bridge carries 192.0.2.1/24,
/// 198.51.100.1/24 and 203.0.113.1/24 and routes between them.
pub struct Wan {
    router: Host,
}

impl Wan {
    pub(crate) fn create(lab: &Lab) -> Wan {
        let router = lab.router("wan");
        bridge(
            &router,
            &["192.0.2.1/24", "198.51.100.1/24", "203.0.113.1/24"],
        );
        Wan { router }
    }

    pub fn router(&self) -> &Host {
        &self.router
    }

    /// Gives `host` the public address `cidr` (in one of the three documentation /24s) on
    /// a new interface, with a default route through the wan. Returns the interface name.
    pub fn attach(&self, host: &Host, cidr: &str) -> String {
        let iface = plug(&self.router, host);
        host.add_addr(&iface, cidr);
        host.default_route(&gateway_of(cidr).to_string());
        iface
    }

    /// Like [`Wan::attach`], with a [`LinkEmulator`] on the link: `host`'s interface
    /// goes to a namespace `<host>-link` whose emulator moves frames to and from the wan
    /// bridge. Clean until [`LinkEmulator::set`] impairs it; `seed` draws its losses.
    pub fn attach_impaired(&self, host: &Host, cidr: &str, seed: u64) -> (String, LinkEmulator) {
        let middle = Host::create(self.router.lab.clone(), &format!("{}-link", host.name()));
        let (port, middle_wan) = veth(&self.router, "p", &middle, "wan");
        self.router
            .run(&["ip", "link", "set", &port, "master", "br0"]);
        let (middle_site, iface) = veth(&middle, "site", host, "eth");
        for i in [&middle_wan, &middle_site] {
            middle.run(&["ip", "link", "set", i, "promisc", "on"]);
        }
        // The two neighbours send complete, MTU-sized frames into the emulator.
        disable_tx_offload(&self.router, &port);
        disable_tx_offload(host, &iface);
        let emulator = LinkEmulator::start(&middle, &middle_site, &middle_wan, seed);
        host.add_addr(&iface, cidr);
        host.default_route(&gateway_of(cidr).to_string());
        (iface, emulator)
    }

    /// A NAT router whose uplink crosses a [`LinkEmulator`] (see
    /// [`Wan::attach_impaired`]); the emulator is [`NatSite::link`].
    pub fn impaired_nat_router(
        &self,
        name: &str,
        public_cidr: &str,
        lan_cidr: &str,
        kind: NatKind,
        seed: u64,
    ) -> NatSite {
        self.build_nat_router(name, public_cidr, lan_cidr, kind, Some(seed))
    }

    /// A NAT router with public address `public_cidr` on the wan and a LAN bridge with
    /// address `lan_cidr` (its hosts' gateway), masquerading the LAN.
    pub fn nat_router(&self, name: &str, public_cidr: &str, lan_cidr: &str) -> NatSite {
        self.nat_router_with(name, public_cidr, lan_cidr, NatKind::Masquerade)
    }

    /// A site router of `kind` (see [`NatKind`]). For the kinds that do not translate,
    /// `lan_cidr` must be a public prefix inside `public_cidr`'s subnet (a /28 of it, say):
    /// the router answers ARP for it on the wan, so every wan host reaches it.
    pub fn nat_router_with(
        &self,
        name: &str,
        public_cidr: &str,
        lan_cidr: &str,
        kind: NatKind,
    ) -> NatSite {
        self.build_nat_router(name, public_cidr, lan_cidr, kind, None)
    }

    /// A NAT router, its uplink through an emulator seeded with `seed` when given.
    fn build_nat_router(
        &self,
        name: &str,
        public_cidr: &str,
        lan_cidr: &str,
        kind: NatKind,
        seed: Option<u64>,
    ) -> NatSite {
        let router = Host::create(self.router.lab.clone(), name);
        let (uplink, link) = match seed {
            Some(seed) => {
                let (uplink, emulator) = self.attach_impaired(&router, public_cidr, seed);
                (uplink, Some(emulator))
            }
            None => (self.attach(&router, public_cidr), None),
        };
        bridge(&router, &[lan_cidr]);
        router.nat(&uplink, kind);
        NatSite {
            router,
            kind,
            uplink,
            public_addr: addr_of(public_cidr).to_string(),
            lan_gateway: addr_of(lan_cidr).to_string(),
            link,
        }
    }
}

/// A LAN behind a site router (a NAT, a firewall, or a router that only routes).
pub struct NatSite {
    pub router: Host,
    pub kind: NatKind,
    /// The router's interface toward the wan.
    pub uplink: String,
    /// The router's address on the wan: the source the outside sees when it translates.
    pub public_addr: String,
    /// The router's LAN address.
    pub lan_gateway: String,
    /// The emulator on the uplink, for a router made by [`Wan::impaired_nat_router`].
    pub link: Option<LinkEmulator>,
}

impl NatSite {
    /// The uplink's emulator; panics for a router built without one.
    pub fn emulator(&self) -> &LinkEmulator {
        self.link
            .as_ref()
            .expect("this NAT router has no link emulator: build it with Wan::impaired_nat_router")
    }
}

impl NatSite {
    /// The NAT rebinds: it forgets every mapping it holds and maps the LAN's flows to
    /// source port `port` from now on, as a carrier NAT does when its mapping expired or
    /// it restarted and the old port went to someone else. The device sees nothing
    /// change; its peers see its packets come from a new port, and theirs to the old one
    /// are dropped. Plain MASQUERADE only (`port` keeps it endpoint-independent: one port
    /// toward every destination).
    pub fn rebind(&self, port: u16) {
        assert_eq!(
            self.kind,
            NatKind::Masquerade,
            "only a plain MASQUERADE NAT rebinds to one port"
        );
        // The rules first (they only decide new flows), then the flush: the rebinding
        // happens at one instant, the flush. A port needs `-p udp`, so UDP gets its own
        // rule in place of rule 1 (the one `Host::nat` added) and the rest keeps a plain
        // MASQUERADE, appended before the replacement so something masquerades at every
        // moment.
        let (uplink, port) = (self.uplink.as_str(), port.to_string());
        self.router.iptables(&[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            uplink,
            "-j",
            "MASQUERADE",
        ]);
        self.router.iptables(&[
            "-t",
            "nat",
            "-R",
            "POSTROUTING",
            "1",
            "-o",
            uplink,
            "-p",
            "udp",
            "-j",
            "MASQUERADE",
            "--to-ports",
            &port,
        ]);
        // The conntrack tool is a lab package (scripts/packages); iptables cannot flush.
        self.router.run(&["conntrack", "-F"]);
    }

    /// The site's uplink moves to another network (Wi-Fi to cellular, a carrier handing
    /// out a new address): the router's wan address becomes `cidr`, in another of the
    /// documentation /24s, its default route goes through that subnet's gateway, and it
    /// forgets every mapping. The device sees nothing change; everyone else sees its
    /// packets come from a new address, and theirs to the old one go nowhere.
    /// [`NatSite::public_addr`] keeps the old address. Translating kinds only.
    pub fn move_uplink(&self, cidr: &str) {
        assert!(self.kind.translates(), "only a NAT's uplink moves");
        let shown = self
            .router
            .run(&["ip", "-o", "-4", "addr", "show", "dev", &self.uplink]);
        let old = shown
            .split_whitespace()
            .find(|w| w.starts_with(&format!("{}/", self.public_addr)))
            .unwrap_or_else(|| panic!("{} not on {}: {shown}", self.public_addr, self.uplink))
            .to_string();
        self.router.add_addr(&self.uplink, cidr);
        self.router.default_route(&gateway_of(cidr).to_string());
        self.router
            .run(&["ip", "addr", "del", &old, "dev", &self.uplink]);
        self.router.run(&["conntrack", "-F"]);
    }

    /// A new host on this LAN with address `cidr` and a default route via the router.
    pub fn host(&self, name: &str, cidr: &str) -> Host {
        let host = Host::create(self.router.lab.clone(), name);
        self.attach(&host, cidr);
        host
    }

    /// Puts an existing host on this LAN. Returns its interface name.
    pub fn attach(&self, host: &Host, cidr: &str) -> String {
        let iface = plug(&self.router, host);
        host.add_addr(&iface, cidr);
        host.default_route(&self.lan_gateway);
        iface
    }
}

/// The address part of `a.b.c.d/len`.
pub(crate) fn addr_of(cidr: &str) -> Ipv4Addr {
    let addr = cidr.split('/').next().unwrap_or(cidr);
    addr.parse()
        .unwrap_or_else(|_| panic!("{cidr:?} is not an IPv4 address in CIDR notation"))
}

/// The first host address of the subnet of `cidr`: the lab's gateway convention.
fn gateway_of(cidr: &str) -> Ipv4Addr {
    let len: u32 = cidr
        .split_once('/')
        .and_then(|(_, l)| l.parse().ok())
        .filter(|l| *l <= 30)
        .unwrap_or_else(|| panic!("{cidr:?} needs a prefix length of at most /30"));
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Ipv4Addr::from((u32::from(addr_of(cidr)) & mask) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_first_address_of_the_subnet() {
        assert_eq!(gateway_of("203.0.113.10/24"), Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(gateway_of("10.0.0.77/26"), Ipv4Addr::new(10, 0, 0, 65));
    }
}
