//! Putting a manifest in force: this node's topology, resolved endpoints, the core's
//! peers as a diff, and the interface's addresses and routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::core::topology::Topology;
use crate::core::{Changes, PeerConfig};
use crate::human::{LIST_SHOWN, list_capped};
use crate::keys::PublicKey;
use crate::manifest::{Manifest, Role};
use crate::prefix::Prefix;
use crate::status::ManifestInfo;

use super::super::clock;
use super::super::puller::Accepted;
use super::super::resolver::Resolver;

impl super::Agent<'_> {
    /// Puts a verified manifest in force, planned for this node on the manifest thread:
    /// peers as a diff, then addresses and routes. `source` is where it came from.
    pub(super) async fn apply(&mut self, accepted: Accepted, source: &str) {
        let Accepted {
            manifest,
            topology,
            diff,
        } = accepted;
        let info = ManifestInfo {
            serial: manifest.serial,
            source: source.to_string(),
            network: manifest.network.clone(),
        };
        let topology = match topology {
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
        // A diff against the plan in force: only the peers that changed are resolved and
        // compared (the loop's share of serial+1 on a 10,000-peer hub).
        let overlay = topology.overlay.clone();
        let changes = match diff.filter(|_| self.topology.is_some()) {
            Some(diff) => {
                let only = Some(&diff.changed);
                let desired =
                    resolve_peers(&self.resolver, &mut self.unresolved, &topology, only).await;
                self.node
                    .apply_diff(diff.removed, desired, overlay, clock::now())
            }
            None => {
                let desired =
                    resolve_peers(&self.resolver, &mut self.unresolved, &topology, None).await;
                self.node.apply(desired, overlay, clock::now())
            }
        };
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
        self.sync_mesh(&manifest, &topology).await;
        self.sync_relays(&manifest, topology.role).await;
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
        self.refresh_host_addresses();
        let named = |e: &String| e.parse::<SocketAddr>().is_err();
        // Looked at in place: a hub's 10,000 peers are not copied at every poll.
        let any_named = (self.topology.iter())
            .flat_map(|t| t.peers.values())
            .any(|p| p.endpoints.iter().any(named));
        if !any_named {
            return;
        }
        let Some(topology) = self.topology.clone() else {
            return;
        };
        let desired = resolve_peers(&self.resolver, &mut self.unresolved, &topology, None).await;
        let changes = self.node.apply(desired, topology.overlay, clock::now());
        if !changes.is_empty() {
            log::info!("endpoint names resolved anew: {}", describe(&changes));
            self.node.update_relay_permissions(clock::now());
        }
    }

    /// What the core needs for direct paths to edges of other sites: our overlay
    /// addresses and port, the directory of those edges, our interface addresses, and
    /// the STUN servers (the manifest's `stun` list and the relays' UDP ports: coturn
    /// answers Binding).
    async fn sync_mesh(&mut self, manifest: &Manifest, topology: &Topology) {
        let now = clock::now();
        let port = self.config.listen_port;
        self.node
            .set_own_addresses(topology.addresses.clone(), port);
        let remote = topology
            .remote
            .iter()
            .map(|(k, plan)| (*k, plan.resolve(|_| Vec::new())))
            .collect();
        self.node.set_remote_edges(remote, now);
        self.refresh_host_addresses();
        let relays = super::super::relay::group(&manifest.relays);
        let relay_ports = relays.iter().flat_map(|r| {
            r.candidates
                .iter()
                .filter(|c| c.kind == super::super::relay::Kind::Udp)
                .map(|c| r.describe(c))
        });
        let names: Vec<String> = manifest.stun.iter().cloned().chain(relay_ports).collect();
        let servers = if topology.role == Role::Edge && !names.is_empty() {
            let answers = self.resolver.lookup(names).await;
            answers.into_values().flatten().flatten().collect()
        } else {
            Vec::new()
        };
        self.node.set_stun_servers(servers, clock::now());
    }

    /// Our interfaces' addresses, for host candidates and to notice a changed uplink.
    pub(super) fn refresh_host_addresses(&mut self) {
        let host = super::super::ifaddrs::host_addresses(&self.config.interface);
        self.node.set_host_addresses(host, clock::now());
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

/// Every peer's configuration (or, with `only`, those peers') with its endpoint names
/// resolved on the resolver thread. A name that does not resolve is left out, so one bad
/// endpoint does not stop the others. It is logged once however many peers list it, and
/// once more when it resolves again, not at every manifest poll.
async fn resolve_peers(
    resolver: &Resolver,
    unresolved: &mut BTreeSet<String>,
    topology: &Topology,
    only: Option<&BTreeSet<PublicKey>>,
) -> BTreeMap<PublicKey, PeerConfig> {
    let wanted = |k: &PublicKey| only.is_none_or(|o| o.contains(k));
    let peers = || topology.peers.iter().filter(|(k, _)| wanted(k));
    let mut listed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, p) in peers() {
        for e in &p.endpoints {
            listed.entry(e).or_default().push(&p.name);
        }
    }
    let answers = resolver
        .lookup(listed.keys().map(|e| e.to_string()).collect())
        .await;
    let mut failing = BTreeSet::new();
    for (endpoint, answer) in &answers {
        match answer {
            Err(e) => {
                if !unresolved.contains(endpoint) {
                    let peers = listed.get(endpoint.as_str()).map_or(&[][..], |v| &v[..]);
                    log::warn!(
                        "endpoint {endpoint} does not resolve ({e}); trying the other \
                         endpoints of {}",
                        list_capped(peers.iter())
                    );
                }
                failing.insert(endpoint.clone());
            }
            Ok(addrs) if unresolved.contains(endpoint) => {
                log::info!(
                    "endpoint {endpoint} resolves again: {}",
                    list_capped(addrs.iter())
                );
            }
            Ok(_) => {}
        }
    }
    if only.is_some() {
        // Names not looked up this time keep what was known of them.
        unresolved.retain(|name| !answers.contains_key(name));
        unresolved.extend(failing);
    } else {
        *unresolved = failing;
    }
    peers()
        .map(|(k, p)| {
            let config = p.resolve(|e| match answers.get(e) {
                Some(Ok(addrs)) => addrs.clone(),
                _ => Vec::new(),
            });
            (*k, config)
        })
        .collect()
}

/// What changed in a diff, names capped per kind ("and N more").
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
        match names.len() {
            0 => {}
            n if n <= LIST_SHOWN => parts.push(format!("{what} {}", list_capped(names.iter()))),
            n => parts.push(format!("{what} {n} peers: {}", list_capped(names.iter()))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    }

    #[test]
    fn a_small_diff_names_every_peer() {
        let changes = Changes {
            added: vec!["a3".into()],
            removed: vec!["a2".into()],
            ..Changes::default()
        };
        assert_eq!(describe(&changes), "added a3; removed a2");
    }

    #[test]
    fn a_diff_of_10000_peers_is_counted_and_names_only_a_few() {
        let changes = Changes {
            added: names("edge", 10_000),
            rekeyed: names("hub", 9),
            ..Changes::default()
        };
        let line = describe(&changes);
        assert!(
            line.starts_with("added 10000 peers: edge-0, edge-1, "),
            "{line}"
        );
        assert!(line.contains("edge-7 and 9992 more; "), "{line}");
        assert!(line.ends_with("new session 9 peers: hub-0, hub-1, hub-2, hub-3, hub-4, hub-5, hub-6, hub-7 and 1 more"), "{line}");
        assert!(line.len() < 300, "{} bytes", line.len());
    }
}
