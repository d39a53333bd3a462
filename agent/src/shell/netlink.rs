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
    /// Every change is tried; the first error is returned after the others were done, and
    /// the record of what is installed follows what really happened.
    pub async fn sync_addresses(&mut self, wanted: &[Prefix]) -> anyhow::Result<()> {
        let mut first_error = None;
        for old in self.addresses.clone() {
            if wanted.contains(&old) {
                continue;
            }
            match self.delete_address(old).await {
                Ok(()) => {
                    log::info!("{}: removed address {old}", self.name);
                    self.addresses.retain(|a| *a != old);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        for &new in wanted {
            if self.addresses.contains(&new) {
                continue;
            }
            let add = self.handle.address().add(self.index, new.addr(), new.len());
            match add.replace().execute().await {
                Ok(()) => {
                    log::info!("{}: address {new}", self.name);
                    self.addresses.push(new);
                }
                Err(e) => {
                    let context = format!("adding address {new} to {}", self.name);
                    first_error.get_or_insert(anyhow!(e).context(context));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
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
                let deleted = self.handle.address().del(msg).execute().await;
                if let Err(e) = deleted.or_else(already_gone) {
                    let context = format!("removing address {prefix} from {}", self.name);
                    return Err(anyhow!(e).context(context));
                }
            }
        }
        Ok(())
    }

    /// Routes exactly `wanted` (plus what the kernel adds itself) to the interface. As
    /// with addresses, every change is tried and the record follows what happened; a
    /// route the kernel already removed (it drops an interface's routes with its last
    /// address) counts as removed.
    pub async fn sync_routes(&mut self, wanted: &[Prefix]) -> anyhow::Result<()> {
        let mut first_error = None;
        for old in self.routes.clone() {
            if wanted.contains(&old) {
                continue;
            }
            let deleted = self.handle.route().del(self.route(old)?).execute().await;
            match deleted.or_else(already_gone) {
                Ok(()) => {
                    log::info!("{}: removed route {old}", self.name);
                    self.routes.retain(|r| *r != old);
                }
                Err(e) => {
                    let context = format!("removing route {old} from {}", self.name);
                    first_error.get_or_insert(anyhow!(e).context(context));
                }
            }
        }
        for &new in wanted {
            if self.routes.contains(&new) {
                continue;
            }
            match self
                .handle
                .route()
                .add(self.route(new)?)
                .replace()
                .execute()
                .await
            {
                Ok(()) => {
                    log::info!("{}: route {new}", self.name);
                    self.routes.push(new);
                }
                Err(e) => {
                    let context = format!("adding route {new} via {}", self.name);
                    first_error.get_or_insert(anyhow!(e).context(context));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
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

/// ESRCH, ENOENT, EADDRNOTAVAIL: what the kernel says when the thing to delete is not
/// there. Gone is what we wanted.
fn already_gone(e: rtnetlink::Error) -> Result<(), rtnetlink::Error> {
    match &e {
        rtnetlink::Error::NetlinkError(msg)
            if [-libc::ESRCH, -libc::ENOENT, -libc::EADDRNOTAVAIL].contains(&msg.raw_code()) =>
        {
            Ok(())
        }
        _ => Err(e),
    }
}
