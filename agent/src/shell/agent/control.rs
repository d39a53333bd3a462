//! What `wg show` receives: the agent's peers as the WireGuard control socket
//! describes them (see `crate::uapi`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::uapi;

impl super::Agent<'_> {
    pub(super) fn uapi_device(&self) -> uapi::Device {
        let now = super::clock::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let via = self.node.overlay_via().map(|p| p.key);
        let overlay = self.topology.as_ref().and_then(|t| t.overlay.as_ref());
        let peers = self
            .node
            .peers()
            .map(|p| {
                let mut allowed_ips = p.config.allowed_ips.clone();
                // The hub the overlay prefix is routed to holds it in its allowed IPs,
                // as it would in a wireguard-go configuration of the same routes.
                if via == Some(p.key)
                    && let Some(o) = overlay
                {
                    allowed_ips.push(o.prefix);
                }
                uapi::Peer {
                    public_key: p.key.0,
                    endpoint: p.path().map(|path| path.endpoint()),
                    last_handshake: p
                        .last_handshake(now)
                        .map(|ago| wall.saturating_sub(ago))
                        .filter(|t| *t > Duration::ZERO),
                    rx_bytes: p.stats.rx_bytes,
                    tx_bytes: p.stats.tx_bytes,
                    persistent_keepalive: p.config.keepalive.unwrap_or(0),
                    allowed_ips,
                }
            })
            .collect();
        uapi::Device {
            listen_port: self.config.listen_port,
            peers,
        }
    }
}
