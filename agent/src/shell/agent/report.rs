//! The status report `edgewire status` receives. The loop copies each peer's facts
//! (`PeerFacts`: numbers, keys, two small copies, no text); their text is made from
//! them apart, for a status client a piece at a time off the loop's turn
//! (`status_server::answer`).

use std::time::Duration;

use crate::core::{Candidate, Health, Path};
use crate::keys::PublicKey;
use crate::manifest::Role;
use crate::prefix::Prefix;
use crate::status::{DataPath, DropReport, HubReport, ManifestPoll, PeerReport, Report};

use super::super::tun_batch::TunBatch;
use super::super::udp::Udp;
use super::clock;
use super::record::secs_since;

/// One peer as the loop saw it when the report was asked for.
pub struct PeerFacts {
    name: String,
    key: PublicKey,
    role: Role,
    path: Option<Path>,
    health: Health,
    last_handshake: Option<Duration>,
    handshakes: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    allowed_ips: Vec<Prefix>,
    keepalive: Option<u16>,
    /// On a relayed path: the TURN server and its transport.
    relay: Option<(String, &'static str)>,
    via: Option<&'static str>,
    candidate: Option<Candidate>,
}

impl PeerFacts {
    /// Its entry in the report.
    pub fn entry(&self) -> PeerReport {
        PeerReport {
            name: self.name.clone(),
            public_key: self.key.to_string(),
            role: role_name(self.role).into(),
            endpoint: self.path.map(|path| path.endpoint().to_string()),
            // Sent straight to the other side's relay: a relayed path all the same.
            path: self.path.map(|path| match self.via {
                Some("relayed") => "relay".to_string(),
                _ => path.kind().to_string(),
            }),
            health: self.health.name().into(),
            last_handshake_secs: self.last_handshake.map(|d| d.as_secs()),
            handshakes: self.handshakes,
            rx_bytes: self.rx_bytes,
            tx_bytes: self.tx_bytes,
            allowed_ips: self.allowed_ips.iter().map(|a| a.to_string()).collect(),
            keepalive_secs: self.keepalive,
            relay: self.relay.as_ref().map(|(server, _)| server.clone()),
            relay_transport: self.relay.as_ref().map(|(_, kind)| kind.to_string()),
            via: self.via.map(String::from),
            candidate: self
                .candidate
                .map(|c| format!("{} {}", c.kind.name(), c.addr)),
        }
    }
}

impl super::Agent<'_> {
    /// The report without its peers, and the peers' facts.
    pub(super) fn report_parts(&self) -> (Report, Vec<PeerFacts>) {
        let now = clock::now();
        let peers = self
            .node
            .peers()
            .map(|p| PeerFacts {
                name: p.config.name.clone(),
                key: p.key,
                role: p.config.role,
                path: p.path(),
                health: p.health(),
                last_handshake: p.last_handshake(now),
                handshakes: p.stats.handshakes,
                rx_bytes: p.stats.rx_bytes,
                tx_bytes: p.stats.tx_bytes,
                allowed_ips: p.config.allowed_ips.clone(),
                keepalive: p.config.keepalive,
                relay: p
                    .path()
                    .and_then(|path| path.relay())
                    .and_then(|id| self.relay_link(id)),
                via: p.direct_via(),
                candidate: p.punched_through(),
            })
            .collect();
        let drops = self.node.drops;
        // The core keeps routing the overlay to its preferred hub while every hub is
        // down (that is what retries): "via" only while that hub carries traffic.
        let hub = self.node.overlay_via().map(|p| HubReport {
            name: p.config.name.clone(),
            health: p.health().name().into(),
            carrying: p.is_routable(),
        });
        let r = &self.record;
        let report = Report {
            version: crate::cli::version(),
            uptime_secs: r.uptime(now).as_secs(),
            started_unix: r.started_unix,
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
            overlay_via: hub.as_ref().filter(|h| h.carrying).map(|h| h.name.clone()),
            overlay_hub: hub,
            nat_mapping: self.node.nat_mapping().name().into(),
            reflexive_addresses: (self.node.reflexive_addresses().iter())
                .map(|a| a.to_string())
                .collect(),
            manifest_poll: ManifestPoll {
                interval_secs: self.config.manifest_interval.as_secs(),
                last_poll_secs: secs_since(r.last_poll, now),
                last_success_secs: secs_since(r.last_success, now),
                last_error: r.last_error.as_ref().map(|(_, e)| e.clone()),
                last_error_secs: secs_since(r.last_error.as_ref().map(|(t, _)| *t), now),
            },
            peers: Vec::new(),
            drops: DropReport {
                no_route: drops.no_route,
                unknown_datagram: drops.unknown_datagram,
                refused: drops.refused,
                cookie_replies: drops.cookie_replies,
                shed_handshakes: drops.shed,
                bad_batch: self.tun_batch.bad_frames + self.udp.truncated(),
                queue_delay: self.codel.dropped,
                sent_queue_delay: self.sent_codel.dropped + self.sent_blue.dropped,
                tun_queue_full: self
                    .netlink
                    .tun_queue_drops()
                    .inspect_err(|e| log::debug!("reading the TUN's drop counter: {e}"))
                    .ok(),
            },
            data_path: Some(data_path(&self.udp, &self.tun_batch)),
        };
        (report, peers)
    }
}

/// How packets move now: the UDP socket's levels (after any step down) and the TUN's
/// offload.
pub(super) fn data_path(udp: &Udp, tun: &TunBatch) -> DataPath {
    let (send, receive) = udp.levels();
    DataPath {
        udp_send: send.into(),
        udp_receive: receive.into(),
        tun_offload: tun.offload(),
        tun_udp_offload: tun.udp_offload(),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Hub => "hub",
        Role::Edge => "edge",
    }
}
