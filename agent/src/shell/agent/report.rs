//! The status report `edgewire status` receives.

use crate::manifest::Role;
use crate::status::{DropReport, HubReport, ManifestPoll, PeerReport, Report};

use super::clock;
use super::record::secs_since;

impl super::Agent<'_> {
    pub(super) fn report(&self) -> Report {
        let now = clock::now();
        let peers = self
            .node
            .peers()
            .map(|p| {
                let relay = p
                    .path()
                    .and_then(|path| path.relay())
                    .and_then(|id| self.relay_link(id));
                PeerReport {
                    name: p.config.name.clone(),
                    public_key: p.key.to_string(),
                    role: role_name(p.config.role).into(),
                    endpoint: p.path().map(|path| path.endpoint().to_string()),
                    path: p.path().map(|path| path.kind().to_string()),
                    health: p.health().name().into(),
                    last_handshake_secs: p.last_handshake(now).map(|d| d.as_secs()),
                    handshakes: p.stats.handshakes,
                    rx_bytes: p.stats.rx_bytes,
                    tx_bytes: p.stats.tx_bytes,
                    allowed_ips: p.config.allowed_ips.iter().map(|a| a.to_string()).collect(),
                    keepalive_secs: p.config.keepalive,
                    relay: relay.as_ref().map(|(server, _)| server.clone()),
                    relay_transport: relay.map(|(_, kind)| kind.to_string()),
                    via: p.direct_via().map(String::from),
                    candidate: p
                        .punched_through()
                        .map(|c| format!("{} {}", c.kind.name(), c.addr)),
                }
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
        Report {
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
            peers,
            drops: DropReport {
                no_route: drops.no_route,
                unknown_datagram: drops.unknown_datagram,
                refused: drops.refused,
                cookie_replies: drops.cookie_replies,
                shed_handshakes: drops.shed,
                bad_batch: self.tun_batch.bad_frames + self.udp.truncated(),
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
