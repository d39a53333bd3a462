//! The hubs, judged without an agent: one WireGuard handshake each through the core,
//! from an ephemeral socket of netcheck's own; and on the same socket, the NAT's
//! mapping from STUN Binding to the relays' UDP ports (`core::reflexive` classifies).
//! The same handshake runs through each relay's allocation (`relays`): only the
//! [`Carrier`] under the core differs.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use crate::config::RunConfig;
use crate::core::topology;
use crate::core::{Destination, Event, NatMapping, Node, PeerConfig};
use crate::human::Human;
use crate::keys::PublicKey;
use crate::manifest::{self, Manifest, Role};

use super::{Check, HANDSHAKE_DEADLINE, Outcome};

/// What carries the handshakes' datagrams: netcheck's own UDP socket, or a relay's
/// allocation (`shell::RelayLeg`). The core does not know which: the handshake is the
/// same one either way.
pub trait Carrier {
    fn send_to(&mut self, to: SocketAddr, datagram: &[u8]);
    /// The next datagram, waiting until `until` at most.
    fn recv_from(&mut self, buf: &mut [u8], until: Instant) -> Option<(usize, SocketAddr)>;
    /// Why nothing more can come, once that is so.
    fn broken(&self) -> Option<String> {
        None
    }
}

impl Carrier for UdpSocket {
    fn send_to(&mut self, to: SocketAddr, datagram: &[u8]) {
        let _ = UdpSocket::send_to(self, datagram, to);
    }

    fn recv_from(&mut self, buf: &mut [u8], until: Instant) -> Option<(usize, SocketAddr)> {
        let wait = until.saturating_duration_since(Instant::now());
        let _ = self.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        UdpSocket::recv_from(self, buf).ok()
    }
}

/// This node's hubs as the manifest names them, ready to shake hands with.
pub struct Hubs {
    key: crate::keys::PrivateKey,
    /// This node's overlay address: the source of the echo requests.
    source: IpAddr,
    hubs: BTreeMap<PublicKey, PeerConfig>,
}

/// What one round of handshakes found.
pub struct Shaken {
    /// Per hub that answered, the round trip of the handshake it answered.
    pub answered: BTreeMap<PublicKey, Duration>,
    pub mapping: Option<NatMapping>,
    pub reflexive: Vec<SocketAddr>,
}

impl Hubs {
    pub fn load(config: &RunConfig, m: &Manifest) -> Result<Hubs, String> {
        let key = crate::keys::load(&config.state_dir).map_err(|e| format!("{e:#}"))?;
        let plan = topology::plan(m, &key.public_key()).map_err(|e| e.to_string())?;
        let source = plan
            .addresses
            .first()
            .map(|p| p.addr())
            .ok_or("this node has no overlay address")?;
        let resolve = |e: &str| {
            e.to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let hubs: BTreeMap<_, _> = plan
            .peers
            .iter()
            .filter(|(_, p)| p.role == Role::Hub)
            .map(|(k, p)| (*k, p.resolve(resolve)))
            .collect();
        if hubs.is_empty() {
            return Err("the manifest lists no hub for this node".into());
        }
        Ok(Hubs { key, source, hubs })
    }

    /// Every hub's endpoints (the addresses a relay needs permissions for).
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .hubs
            .values()
            .flat_map(|c| c.endpoints.iter().copied())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &PeerConfig)> {
        self.hubs.iter()
    }

    /// One WireGuard handshake per hub, all at once over `carrier`, through the core
    /// (the only code that speaks WireGuard), started by one ICMP echo per hub; and on
    /// the same carrier STUN Binding to `stun`, for the NAT's mapping. Returns by
    /// `deadline`, or as soon as every hub answered and the mapping is known.
    pub fn shake(
        &self,
        carrier: &mut dyn Carrier,
        stun: &[SocketAddr],
        deadline: Instant,
    ) -> Shaken {
        let start = Instant::now();
        let mut node = Node::new(
            self.key.clone(),
            rand_core::RngCore::next_u32(&mut rand_core::OsRng),
            start,
        );
        node.apply(self.hubs.clone(), None, start);
        if !stun.is_empty() {
            node.set_host_addresses(host_addresses(stun), start);
            node.set_stun_servers(stun.to_vec(), start);
        }
        for config in self.hubs.values() {
            if let Some(to) = config.allowed_ips.first().map(|p| p.addr()) {
                node.handle_tun(&echo_request(self.source, to), start);
            }
        }
        let mut answered: BTreeMap<PublicKey, Duration> = BTreeMap::new();
        let mut mapping = None;
        let mut buf = vec![0u8; 65_536];
        let stun_pending = |mapping: &Option<NatMapping>| stun.len() >= 2 && mapping.is_none();
        while (answered.len() < self.hubs.len() || stun_pending(&mapping))
            && Instant::now() < deadline
            && carrier.broken().is_none()
        {
            while let Some(t) = node.poll_transmit() {
                if let Destination::Udp(to) = t.destination {
                    carrier.send_to(to, &t.payload);
                }
                node.recycle(t.payload);
            }
            let now = Instant::now();
            let until = node
                .poll_timeout()
                .map(|(at, _)| at)
                .unwrap_or(now + Duration::from_millis(100))
                .min(deadline)
                .max(now + Duration::from_millis(1));
            match carrier.recv_from(&mut buf, until) {
                Some((n, from)) => node.handle_udp(from, &buf[..n], Instant::now()),
                None => node.handle_timeout(Instant::now()),
            }
            while let Some(event) = node.poll_event() {
                if let Event::NatMapping(m) = event {
                    mapping = Some(m);
                }
            }
            let now = Instant::now();
            for k in self.hubs.keys() {
                let Some(peer) = node.peer(k).filter(|p| p.last_handshake(now).is_some()) else {
                    continue;
                };
                // The answered initiation's own round trip: one that was lost or
                // refused (another handshake with this key, through another path,
                // reached the hub first with a newer timestamp) was retried 450 ms
                // later, and that wait is not the path's.
                answered
                    .entry(*k)
                    .or_insert_with(|| peer.rtt().unwrap_or(now - start));
            }
        }
        Shaken {
            answered,
            mapping,
            reflexive: node.reflexive_addresses(),
        }
    }
}

/// The hubs (as `Hubs::load` found them), each with one handshake from netcheck's own
/// socket, and the NAT check.
pub fn check_hubs(hubs: Result<&Hubs, &str>, m: &Manifest) -> Vec<Check> {
    let fail = |name: &str, detail: String| Check {
        name: name.into(),
        outcome: Outcome::Fail,
        detail,
        millis: 0,
    };
    let hubs = match hubs {
        Ok(h) => h,
        Err(e) => return vec![fail("hubs", e.to_string())],
    };
    let mut socket = match UdpSocket::bind(("0.0.0.0", 0)) {
        Ok(s) => s,
        Err(e) => return vec![fail("hubs", format!("binding a UDP socket: {e}"))],
    };
    // The relays' UDP ports answer STUN Binding (coturn does): two of different
    // addresses classify the NAT's mapping, from this very socket.
    let stun: Vec<SocketAddr> = stun_servers(m);
    let shaken = hubs.shake(&mut socket, &stun, Instant::now() + HANDSHAKE_DEADLINE);
    let nat = nat_check(&stun, shaken.mapping, &shaken.reflexive);
    let mut checks: Vec<Check> = hubs
        .iter()
        .map(|(k, c)| {
            let at = c
                .endpoints
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match shaken.answered.get(k) {
                Some(rtt) => Check {
                    name: format!("hub {}", c.name),
                    outcome: Outcome::Ok,
                    detail: format!("{at}: handshake answered in {}", Human(*rtt)),
                    millis: rtt.as_millis() as u64,
                },
                None if c.endpoints.is_empty() => {
                    fail(&format!("hub {}", c.name), "no endpoint resolves".into())
                }
                None => fail(
                    &format!("hub {}", c.name),
                    format!(
                        "{at}: no handshake answer within {} s (UDP blocked, hub down, or \
                         this device's key not enrolled there)",
                        HANDSHAKE_DEADLINE.as_secs()
                    ),
                ),
            }
        })
        .collect();
    checks.push(nat);
    checks
}

/// Each relay's UDP port (`turn:` URLs with UDP, resolved).
fn stun_servers(m: &Manifest) -> Vec<SocketAddr> {
    let mut servers: Vec<SocketAddr> = m
        .relays
        .iter()
        .filter_map(|r| manifest::parse_relay_url(&r.url).ok())
        .filter(|u| u.transport == manifest::Transport::Udp)
        .flat_map(|u| {
            let host = match u.host {
                manifest::Host::Ip(ip) => ip.to_string(),
                manifest::Host::Name(name) => name,
            };
            (host.as_str(), u.port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    servers.sort();
    servers.dedup();
    servers
}

/// The local addresses the kernel picks toward each server (a connected UDP socket
/// sends nothing): a reflexive address equal to one of them means no NAT.
fn host_addresses(servers: &[SocketAddr]) -> Vec<IpAddr> {
    let mut own: Vec<IpAddr> = servers
        .iter()
        .filter_map(|s| {
            let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
            socket.connect(s).ok()?;
            socket.local_addr().ok().map(|a| a.ip())
        })
        .collect();
    own.sort();
    own.dedup();
    own
}

fn nat_check(stun: &[SocketAddr], mapping: Option<NatMapping>, seen: &[SocketAddr]) -> Check {
    let seen = seen
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let (outcome, detail) = match mapping {
        _ if stun.len() < 2 => (
            Outcome::Skip,
            format!(
                "needs two STUN servers of different addresses (the manifest's relays with \
                 UDP); it lists {}",
                stun.len()
            ),
        ),
        None | Some(NatMapping::Unknown) => (
            Outcome::Warn,
            "fewer than two STUN servers answered: UDP to the relays may be blocked".into(),
        ),
        Some(NatMapping::NoNat) => (Outcome::Ok, format!("no NAT: seen as {seen}")),
        Some(NatMapping::EndpointIndependent) => (
            Outcome::Ok,
            format!("endpoint-independent mapping (direct paths can be punched); seen as {seen}"),
        ),
        Some(NatMapping::EndpointDependent) => (
            Outcome::Warn,
            format!(
                "endpoint-dependent mapping (\"symmetric\"): other edges are reached through \
                 a hub or a relay, not directly; seen as {seen}"
            ),
        ),
    };
    Check {
        name: "NAT".into(),
        outcome,
        detail,
        millis: 0,
    }
}

/// A minimal IPv4 ICMP echo request, or an IPv6 one without checksum care (the
/// handshake, not the echo, is what is measured).
fn echo_request(from: IpAddr, to: IpAddr) -> Vec<u8> {
    match (from, to) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let mut p = vec![0u8; 28];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&28u16.to_be_bytes());
            p[8] = 64;
            p[9] = 1;
            p[12..16].copy_from_slice(&from.octets());
            p[16..20].copy_from_slice(&to.octets());
            let sum = checksum(&p[..20]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
            p[20] = 8;
            let sum = checksum(&p[20..]);
            p[22..24].copy_from_slice(&sum.to_be_bytes());
            p
        }
        (from, to) => {
            let (IpAddr::V6(from), IpAddr::V6(to)) = (
                match from {
                    IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
                    a => a,
                },
                match to {
                    IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
                    a => a,
                },
            ) else {
                unreachable!("both mapped to IPv6")
            };
            let mut p = vec![0u8; 48];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&8u16.to_be_bytes());
            p[6] = 58;
            p[7] = 64;
            p[8..24].copy_from_slice(&from.octets());
            p[24..40].copy_from_slice(&to.octets());
            p[40] = 128;
            p
        }
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_request_has_valid_checksums() {
        let p = echo_request("10.42.1.1".parse().unwrap(), "10.42.0.1".parse().unwrap());
        assert_eq!(checksum(&p[..20]), 0, "IPv4 header");
        assert_eq!(checksum(&p[20..]), 0, "ICMP");
        assert_eq!(&p[16..20], &[10, 42, 0, 1]);
    }
}
