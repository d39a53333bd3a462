//! The interface's addresses, MTU, routes and link state, set over rtnetlink with a
//! small hand-written client (`wire.rs`, `socket.rs`): the four requests the agent needs
//! cost a few kilobytes, where a general netlink library cost 280 KB of the binary.
//!
//! The agent owns what it adds: it remembers the addresses and routes it installed and
//! removes only those when the manifest no longer wants them.

mod socket;
mod wire;

use std::ffi::CString;
use std::io;

use anyhow::{Context, anyhow};

use crate::prefix::Prefix;

use socket::RouteSocket;
use wire::Request;

pub struct Netlink {
    socket: RouteSocket,
    index: u32,
    name: String,
    addresses: Vec<Prefix>,
    routes: Vec<Prefix>,
}

impl Netlink {
    /// Opens a netlink socket and finds the interface `name`.
    pub fn open(name: &str) -> anyhow::Result<Netlink> {
        let socket = RouteSocket::open().context("opening a netlink socket")?;
        let c_name = CString::new(name).with_context(|| format!("interface name {name:?}"))?;
        // SAFETY: a valid NUL-terminated string; the call only reads it.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(anyhow!(io::Error::last_os_error()))
                .with_context(|| format!("looking up interface {name}"));
        }
        Ok(Netlink {
            socket,
            index,
            name: name.to_string(),
            addresses: Vec::new(),
            routes: Vec::new(),
        })
    }

    pub fn set_mtu_and_up(&mut self, mtu: u16) -> anyhow::Result<()> {
        let request = Request::LinkUp {
            index: self.index,
            mtu: mtu.into(),
        };
        self.socket
            .execute(request)
            .with_context(|| format!("setting MTU {mtu} and bringing {} up", self.name))
    }

    /// Makes the interface carry exactly `wanted` among the addresses the agent manages.
    /// Every change is tried; the first error is returned after the others were done, and
    /// the record of what is installed follows what really happened.
    pub fn sync_addresses(&mut self, wanted: &[Prefix]) -> anyhow::Result<()> {
        let index = self.index;
        let (installed, first_error) = self.sync(
            self.addresses.clone(),
            wanted,
            "address",
            |address| Request::DeleteAddress { index, address },
            |address| Request::AddAddress { index, address },
        );
        self.addresses = installed;
        first_error.map_or(Ok(()), Err)
    }

    /// Routes exactly `wanted` (plus what the kernel adds itself) to the interface, the
    /// same way. A route the kernel already removed (it drops an interface's routes with
    /// its last address) counts as removed.
    pub fn sync_routes(&mut self, wanted: &[Prefix]) -> anyhow::Result<()> {
        let index = self.index;
        let wanted: Vec<Prefix> = wanted.iter().map(Prefix::network).collect();
        let (installed, first_error) = self.sync(
            self.routes.clone(),
            &wanted,
            "route",
            |prefix| Request::DeleteRoute { index, prefix },
            |prefix| Request::AddRoute { index, prefix },
        );
        self.routes = installed;
        first_error.map_or(Ok(()), Err)
    }

    /// Removes what is installed and not wanted, adds what is wanted and not installed.
    /// Returns what is installed afterwards and the first error.
    fn sync(
        &mut self,
        mut installed: Vec<Prefix>,
        wanted: &[Prefix],
        what: &str,
        delete: impl Fn(Prefix) -> Request,
        add: impl Fn(Prefix) -> Request,
    ) -> (Vec<Prefix>, Option<anyhow::Error>) {
        let mut first_error = None;
        for old in installed.clone() {
            if wanted.contains(&old) {
                continue;
            }
            match self.socket.execute(delete(old)).or_else(already_gone) {
                Ok(()) => {
                    log::info!("{}: removed {what} {old}", self.name);
                    installed.retain(|p| *p != old);
                }
                Err(e) => {
                    let context = format!("removing {what} {old} from {}", self.name);
                    first_error.get_or_insert(anyhow!(e).context(context));
                }
            }
        }
        for &new in wanted {
            if installed.contains(&new) {
                continue;
            }
            match self.socket.execute(add(new)) {
                Ok(()) => {
                    log::info!("{}: {what} {new}", self.name);
                    installed.push(new);
                }
                Err(e) => {
                    let context = format!("adding {what} {new} to {}", self.name);
                    first_error.get_or_insert(anyhow!(e).context(context));
                }
            }
        }
        (installed, first_error)
    }
}

/// ESRCH, ENOENT, EADDRNOTAVAIL: what the kernel says when the thing to delete is not
/// there. Gone is what we wanted.
fn already_gone(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ESRCH | libc::ENOENT | libc::EADDRNOTAVAIL) => Ok(()),
        _ => Err(e),
    }
}
