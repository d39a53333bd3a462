//! The interface's addresses, MTU, routes and link state, set over rtnetlink with a
//! small hand-written client (`wire.rs`, `socket.rs`): the few requests the agent needs
//! cost a few kilobytes, where a general netlink library cost 280 KB of the binary. The
//! interface's drop counter is read the same way: netlink answers for the agent's own
//! network namespace, where `/sys/class/net` shows the one that mounted it, and the
//! service's sandbox hides `/proc/net`.
//!
//! The agent owns what it adds: it remembers the addresses and routes it installed and
//! removes only those when the manifest no longer wants them.

mod socket;
mod wire;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;

use anyhow::{Context, anyhow};

use crate::human::list_capped;
use crate::prefix::Prefix;

use socket::RouteSocket;
use wire::{Answer, Request};

/// Packets the TUN holds for the agent to read; past it the kernel drops what applications
/// send (counted as the interface's `tx_dropped`). The one thread reads the TUN only when
/// it runs, and while a stream makes it a batch task (`wake_policy`) that is when the
/// sending application's time slice ends: at 1,500 Mbit/s of 1,400-byte datagrams the
/// kernel's default of 500 packets lasts 3.7 ms, about one scheduler tick, and streams
/// the agent could carry lost packets there. Measured with one core per end (`bench --pin
/// --udp-at`, two rounds), 500 packets lost 1 % at 1,000 Mbit/s and 1.4–4 % at 1,300;
/// 1,000 lost 0.5–1.2 % at 1,500 and 6–10 % at 1,900; 2,000 lost at most 0.06 % up to
/// 1,500 and 0.39 % at 1,700. In-kernel WireGuard queues up to 1,024 packets a device
/// to encrypt (`MAX_QUEUED_PACKETS`). The queue fills only while the agent is behind, and
/// only then costs kernel memory (about 2.6 KB a datagram, 5 MB full) and delay.
const TUN_QUEUE: u32 = 2000;

pub struct Netlink {
    socket: RouteSocket,
    index: u32,
    name: String,
    addresses: BTreeSet<Prefix>,
    routes: BTreeSet<Prefix>,
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
            addresses: BTreeSet::new(),
            routes: BTreeSet::new(),
        })
    }

    /// The interface's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Sets the MTU and the transmit queue (`TUN_QUEUE`) and brings the link up.
    pub fn set_mtu_and_up(&mut self, mtu: u16) -> anyhow::Result<()> {
        let request = Request::LinkUp {
            index: self.index,
            mtu: mtu.into(),
            queue: TUN_QUEUE,
        };
        self.socket.execute(request).with_context(|| {
            format!(
                "setting MTU {mtu} and a queue of {TUN_QUEUE} packets and bringing {} up",
                self.name
            )
        })
    }

    /// Packets applications sent to the interface while its queue (`TUN_QUEUE`) was
    /// full, since it was made: its `tx_dropped`.
    pub fn tun_queue_drops(&self) -> io::Result<u64> {
        let request = Request::GetLink { index: self.index };
        self.socket.ask(request, |answer| match answer {
            Answer::Message(kind, body) => wire::link_tx_dropped(kind, body).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the link's answer has no counters",
                )
            }),
            Answer::Ack(Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Answer::Ack(Ok(())) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the kernel acknowledged a query without answering it",
            )),
        })
    }

    /// Makes the interface carry exactly `wanted` among the addresses the agent manages.
    /// Every change is tried; the first error is returned after the others were done, and
    /// the record of what is installed follows what really happened.
    pub fn sync_addresses(&mut self, wanted: &[Prefix]) -> anyhow::Result<()> {
        let index = self.index;
        let mut installed = std::mem::take(&mut self.addresses);
        let first_error = self.sync(
            &mut installed,
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
        let mut installed = std::mem::take(&mut self.routes);
        let first_error = self.sync(
            &mut installed,
            &wanted,
            "route",
            |prefix| Request::DeleteRoute { index, prefix },
            |prefix| Request::AddRoute { index, prefix },
        );
        self.routes = installed;
        first_error.map_or(Ok(()), Err)
    }

    /// Removes what is installed and not wanted, adds what is wanted and not installed
    /// (in `wanted`'s order: the first address added is the one the kernel prefers as a
    /// source). Set differences, so a hub with 10,000 routes syncs in linear time.
    /// `installed` follows what really happened; returns the first error. One line at
    /// info says what changed, names capped; each change is logged at debug.
    fn sync(
        &mut self,
        installed: &mut BTreeSet<Prefix>,
        wanted: &[Prefix],
        what: &str,
        delete: impl Fn(Prefix) -> Request,
        add: impl Fn(Prefix) -> Request,
    ) -> Option<anyhow::Error> {
        let (stale, new) = difference(installed, wanted);
        let mut first_error = None;
        let mut removed = Vec::new();
        for old in stale {
            match self.socket.execute(delete(old)).or_else(already_gone) {
                Ok(()) => {
                    log::debug!("{}: removed {what} {old}", self.name);
                    installed.remove(&old);
                    removed.push(old);
                }
                Err(e) => {
                    let context = format!("removing {what} {old} from {}", self.name);
                    first_error.get_or_insert(anyhow!(e).context(context));
                }
            }
        }
        let mut added = Vec::new();
        for new in new {
            match self.socket.execute(add(new)) {
                Ok(()) => {
                    log::debug!("{}: {what} {new}", self.name);
                    installed.insert(new);
                    added.push(new);
                }
                Err(e) => {
                    let context = format!("adding {what} {new} to {}", self.name);
                    first_error.get_or_insert(anyhow!(e).context(context));
                }
            }
        }
        for (done, list) in [("added", &added), ("removed", &removed)] {
            match list.len() {
                0 => {}
                1 => log::info!("{}: {done} {what} {}", self.name, list[0]),
                n => log::info!(
                    "{}: {done} {n} {what}s: {}",
                    self.name,
                    list_capped(list.iter())
                ),
            }
        }
        first_error
    }
}

/// What to remove (installed, not wanted) and what to add (wanted, not installed, in
/// `wanted`'s order, each once).
fn difference(installed: &BTreeSet<Prefix>, wanted: &[Prefix]) -> (Vec<Prefix>, Vec<Prefix>) {
    let wanted_set: BTreeSet<Prefix> = wanted.iter().copied().collect();
    let stale = installed.difference(&wanted_set).copied().collect();
    let mut seen = BTreeSet::new();
    let new = wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p) && seen.insert(*p))
        .collect();
    (stale, new)
}

/// ESRCH, ENOENT, EADDRNOTAVAIL: what the kernel says when the thing to delete is not
/// there. Gone is what we wanted.
fn already_gone(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ESRCH | libc::ENOENT | libc::EADDRNOTAVAIL) => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn the_kernel_answers_a_links_drop_counter() {
        // Loopback is in every namespace and asking needs no privilege; its counter
        // rarely moves, and sysfs shows the same one (the test's namespace mounted it).
        let netlink = Netlink::open("lo").unwrap();
        let drops = netlink.tun_queue_drops().unwrap();
        if let Ok(text) = std::fs::read_to_string("/sys/class/net/lo/statistics/tx_dropped") {
            assert_eq!(drops, text.trim().parse::<u64>().unwrap());
        }
        // Asking again works: the socket is left ready for the next request.
        netlink.tun_queue_drops().unwrap();
    }

    #[test]
    fn only_the_prefixes_that_differ_are_removed_and_added() {
        let installed: BTreeSet<Prefix> = [p("10.42.1.0/24"), p("10.42.2.0/24")].into();
        let wanted = [p("10.42.3.0/24"), p("10.42.2.0/24"), p("10.42.3.0/24")];
        let (stale, new) = difference(&installed, &wanted);
        assert_eq!(stale, [p("10.42.1.0/24")]);
        assert_eq!(new, [p("10.42.3.0/24")], "each once");
    }

    #[test]
    fn additions_keep_the_order_wanted() {
        // The first address added is the kernel's preferred source: not sorted away.
        let wanted = [p("10.42.9.1/32"), p("10.42.0.1/32")];
        let (_, new) = difference(&BTreeSet::new(), &wanted);
        assert_eq!(new, wanted);
    }

    #[test]
    fn a_hub_with_10000_routes_moves_only_the_one_that_changed() {
        let routes: Vec<Prefix> = (0..10_000u32)
            .map(|i| Prefix::host(std::net::Ipv4Addr::from(0x0a2a_0000 + i).into()))
            .collect();
        let installed: BTreeSet<Prefix> = routes[..9_999].iter().copied().collect();
        let (stale, new) = difference(&installed, &routes[1..]);
        assert_eq!(stale, [routes[0]]);
        assert_eq!(new, [routes[9_999]]);
    }
}
