//! The status report `edgewire status` receives.

use crate::manifest::Role;
use crate::status::{DropReport, PeerReport, Report};

impl super::Agent<'_> {
    pub(super) fn report(&self) -> Report {
        let now = super::clock::now();
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
                    relay: relay.as_ref().map(|(server, _)| server.clone()),
                    relay_transport: relay.map(|(_, kind)| kind.to_string()),
                }
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
