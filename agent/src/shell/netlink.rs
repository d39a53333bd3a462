//! The interface's addresses, MTU, routes and link state, set over rtnetlink.
//!
//! The agent owns what it adds: it remembers the addresses and routes it installed and
//! removes only those when the manifest no longer wants them.

use std::net::IpAddr;

use anyhow::{Context, anyhow};
use futures_lite::StreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use smol::LocalExecutor;

use crate::prefix::Prefix;

pub struct Netlink {
    handle: Handle,
    index: u32,
    name: String,
    addresses: Vec<Prefix>,
    routes: Vec<Prefix>,
}

impl Netlink {
    /// Connects to the kernel and finds the interface `name`.
    pub async fn open(ex: &LocalExecutor<'static>, name: &str) -> anyhow::Result<Netlink> {
        let (connection, handle, _) =
            rtnetlink::new_connection_with_socket::<rtnetlink::sys::SmolSocket>()
                .context("opening a netlink socket")?;
        ex.spawn(connection).detach();
        let link = handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .with_context(|| format!("looking up interface {name}"))?
            .ok_or_else(|| anyhow!("interface {name} vanished right after it was created"))?;
        Ok(Netlink {
            handle,
            index: link.header.index,
            name: name.to_string(),
            addresses: Vec::new(),
            routes: Vec::new(),
        })
    }

    pub async fn set_mtu_and_up(&self, mtu: u16) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(self.index)
            .mtu(mtu.into())
            .up()
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| format!("setting MTU {mtu} and bringing {} up", self.name))
    }

    /// Makes the interface carry exactly `wanted` among the addresses the agent manages.
    pub async fn sync_addresses(&mut self, wanted: &[Prefix]) -> anyhow::Result<()> {
        for old in self.addresses.clone() {
            if !wanted.contains(&old) {
                self.delete_address(old).await?;
                log::info!("{}: removed address {old}", self.name);
            }
        }
        for new in wanted {
            if !self.addresses.contains(new) {
                self.handle
                    .address()
                    .add(self.index, new.addr(), new.len())
                    .replace()
                    .execute()
                    .await
                    .with_context(|| format!("adding address {new} to {}", self.name))?;
                log::info!("{}: address {new}", self.name);
            }
        }
        self.addresses = wanted.to_vec();
        Ok(())
    }

    async fn delete_address(&self, prefix: Prefix) -> anyhow::Result<()> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute();
        while let Some(msg) = found.try_next().await? {
            let matches = msg.header.prefix_len == prefix.len()
                && msg
                    .attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == prefix.addr()));
            if matches {
                self.handle
                    .address()
                    .del(msg)
                    .execute()
                    .await
                    .with_context(|| format!("removing address {prefix} from {}", self.name))?;
            }
        }
        Ok(())
    }

    /// Routes exactly `wanted` (plus what the kernel adds itself) to the interface.
    pub async fn sync_routes(&mut self, wanted: &[Prefix]) -> anyhow::Result<()> {
        for old in self.routes.clone() {
            if !wanted.contains(&old) {
                self.handle
                    .route()
                    .del(self.route(old)?)
                    .execute()
                    .await
                    .with_context(|| format!("removing route {old} from {}", self.name))?;
                log::info!("{}: removed route {old}", self.name);
            }
        }
        for new in wanted {
            if !self.routes.contains(new) {
                self.handle
                    .route()
                    .add(self.route(*new)?)
                    .replace()
                    .execute()
                    .await
                    .with_context(|| format!("adding route {new} via {}", self.name))?;
                log::info!("{}: route {new}", self.name);
            }
        }
        self.routes = wanted.to_vec();
        Ok(())
    }

    fn route(
        &self,
        prefix: Prefix,
    ) -> anyhow::Result<rtnetlink::packet_route::route::RouteMessage> {
        let net = prefix.network();
        Ok(RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(net.addr(), net.len())
            .map_err(|e| anyhow!("route {prefix}: {e:?}"))?
            .output_interface(self.index)
            .build())
    }
}
