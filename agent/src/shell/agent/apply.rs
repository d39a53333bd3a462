//! Putting a manifest in force: this node's topology, resolved endpoints, the core's
//! peers as a diff, and the interface's addresses and routes.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::core::topology::{self, Topology};
use crate::core::{Changes, PeerConfig};
use crate::keys::PublicKey;
use crate::manifest::{Manifest, Role};
use crate::prefix::Prefix;
use crate::status::ManifestInfo;

use super::super::clock;

impl super::Agent<'_> {
    /// Puts a verified manifest in force: peers as a diff, then addresses and routes.
    pub(super) async fn apply(&mut self, manifest: Manifest) {
        let info = ManifestInfo {
            serial: manifest.serial,
            source: self.intake.in_force_source().to_string(),
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
        self.sync_relays(&manifest, topology.role);
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
    pub(super) async fn refresh_endpoints(&mut self) {
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
            self.update_relay_peers();
        }
    }

    /// Routes first: the kernel drops an interface's routes with its last address.
    async fn sync_kernel(&mut self, addresses: &[Prefix]) {
        if let Err(e) = self.netlink.sync_routes(&self.node.routed_prefixes()) {
            log::error!("{e:#}");
        }
        if let Err(e) = self.netlink.sync_addresses(addresses) {
            log::error!("{e:#}");
        }
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

fn describe(changes: &Changes) -> String {
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
