//! The TUN device. Its address, MTU, routes and link state are set over netlink
//! (`netlink.rs`); this only creates it and moves packets.
//!
//! Creating a TUN interface takes CAP_NET_ADMIN *and* opening `/dev/net/tun`. The unit
//! gives the agent the capability but runs it as an unprivileged dynamic user, and
//! where no udev runs (containers, minimal images) the node is `crw------- root`: the
//! agent cannot open it. So under systemd the device comes ready-made: `edgewire
//! open-tun`, run by the unit as root before the agent (`ExecStartPre=!`), opens the
//! node, creates the interface and puts the descriptor in the service's descriptor
//! store; systemd passes it to the agent (`LISTEN_FDS`), which takes it and removes it
//! from the store again, so the interface lives exactly as long as the agent, as one
//! it created itself. Without a passed descriptor (not under systemd, or run by hand)
//! the agent opens `/dev/net/tun` itself.
//!
//! A handed-over descriptor cannot carry TUN offload: tun-rs adopts only descriptors
//! without the virtio-net header. So where the node is open to every user (udev's rules
//! make it 0666, as on most devices), open-tun leaves the device to the agent, which
//! creates it with offload like an agent run by hand; the hand-over is for nodes only
//! root may open.

use std::io;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use tun_rs::{AsyncDevice, DeviceBuilder, SyncDevice};

use super::fdstore;

/// The name of the descriptor in the service's store (`FDNAME=`).
const FD_NAME: &str = "tun";

/// The node every TUN device is made through.
const TUN_NODE: &str = "/dev/net/tun";

/// Creates (or takes from systemd) the TUN device; with `offload`, asks for virtio-net
/// headers and TCP segmentation offload (`tcp_gso()` on the device says whether it got
/// them).
pub fn create(name: &str, offload: bool) -> anyhow::Result<AsyncDevice> {
    if let Some(fd) = fdstore::take(FD_NAME) {
        let device = adopt(fd, name)?;
        // Our copy keeps the interface; systemd's would keep it after we exit.
        if let Err(e) = fdstore::forget(FD_NAME) {
            log::warn!("{name}: could not remove the TUN descriptor from systemd's store: {e}");
        }
        log::info!("{name}: TUN device passed by systemd (made by open-tun)");
        if offload {
            // The virtio-net header is chosen when the descriptor is opened, and tun-rs
            // adopts only descriptors without it (see `adopt`).
            log::info!(
                "{name}: TUN offload not used: only root may open {TUN_NODE}, so open-tun \
                 made the device, and a descriptor handed over has no virtio-net header; \
                 packets move one per system call (a 0666 node, as udev makes it, lets \
                 the agent make the device with offload)"
            );
        }
        return Ok(device);
    }
    if offload {
        match builder(name).offload(true).build_async() {
            Ok(device) => return Ok(device),
            // A name still held is the caller's to wait for, not a reason to drop offload.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(e).with_context(|| format!("creating the TUN device {name}"));
            }
            Err(e) => log::info!(
                "{name}: the kernel refused TUN offload ({e}); packets move one per system call"
            ),
        }
    }
    builder(name).build_async().with_context(|| {
        format!(
            "creating the TUN device {name}: the agent needs CAP_NET_ADMIN and read-write \
             access to /dev/net/tun (modprobe tun; under systemd the unit's \
             `ExecStartPre=!/usr/bin/edgewire open-tun` passes the device instead), and no \
             other interface may have this name"
        )
    })
}

/// `create`, waiting up to `wait` while the name is busy: an agent restarted at once
/// (systemd's `Restart=`, an operator) starts while the old one is still exiting and
/// still holds the interface. Retried every 100 ms, logged once.
pub async fn create_waiting(
    name: &str,
    offload: bool,
    wait: std::time::Duration,
) -> anyhow::Result<AsyncDevice> {
    let start = super::clock::now();
    let mut logged = false;
    loop {
        match create(name, offload) {
            Err(e) if is_busy(&e) && start.elapsed() < wait => {
                if !std::mem::replace(&mut logged, true) {
                    log::info!("{name} is still held (another agent exiting?); waiting for it");
                }
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

fn is_busy(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.raw_os_error() == Some(libc::EBUSY))
}

/// `edgewire open-tun`: creates the interface and hands its descriptor to systemd's
/// store for the `edgewire run` that follows. Runs as root, for the one `open`. Where
/// any user may open the node, it does nothing: the agent makes the device itself,
/// with offload.
pub fn open_for_systemd(name: &str) -> anyhow::Result<()> {
    if open_to_all(Path::new(TUN_NODE)) {
        log::info!(
            "{name}: {TUN_NODE} is open to every user: the agent makes the device itself, \
             with TUN offload where the kernel has it"
        );
        return Ok(());
    }
    let device: SyncDevice = builder(name).build_sync().with_context(|| {
        format!(
            "creating the TUN device {name} for the agent: open-tun needs root (to open \
             /dev/net/tun) and CAP_NET_ADMIN, and no other interface may have this name"
        )
    })?;
    fdstore::store(device.as_fd(), FD_NAME).with_context(|| {
        format!(
            "handing the TUN device {name} to systemd: the unit needs NotifyAccess=exec and \
             FileDescriptorStoreMax=1"
        )
    })?;
    // Closing our copy is fine: systemd's copy keeps the interface until the agent has
    // its own.
    Ok(())
}

/// Whether every user may open `node` for reading and writing (what the agent's dynamic
/// user needs). A node that cannot be read counts as closed: open-tun then tries it
/// itself and says what failed.
fn open_to_all(node: &Path) -> bool {
    std::fs::metadata(node).is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006)
}

fn builder(name: &str) -> DeviceBuilder {
    DeviceBuilder::new()
        .name(name)
        // The agent brings the link up itself once addresses and routes are set.
        .enable(false)
}

/// Takes a descriptor systemd passed: it must be a TUN device (no packet information
/// header, no virtio-net header) attached to the interface `name`.
fn adopt(fd: OwnedFd, name: &str) -> anyhow::Result<AsyncDevice> {
    let attached = attached_name(&fd).with_context(|| {
        format!("the descriptor systemd passed as {FD_NAME:?} is not a TUN device")
    })?;
    if attached != name {
        bail!(
            "systemd passed the TUN device {attached:?}, but the agent is configured for \
             {name:?}: open-tun and run must see the same EDGEWIRE_INTERFACE"
        );
    }
    // SAFETY: the descriptor is owned (taken from systemd's hand-over exactly once) and
    // open; open-tun made it with tun-rs's defaults (IFF_TUN | IFF_NO_PI, no
    // IFF_VNET_HDR), which from_fd requires and checks again.
    unsafe { AsyncDevice::from_fd(fd.into_raw_fd()) }
        .with_context(|| format!("using the TUN device {name} passed by systemd"))
}

/// TUNGETIFF: the name of the interface a TUN descriptor is attached to.
fn attached_name(fd: &OwnedFd) -> io::Result<String> {
    // SAFETY: an all-zero ifreq is a valid argument; TUNGETIFF fills in name and flags.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes at most one ifreq into `req`, which lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let name: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_every_user_may_read_and_write_is_open_to_all() {
        let dir = crate::fsutil::TestDir::new("tun-node");
        let node = dir.path("tun");
        std::fs::write(&node, b"").unwrap();
        for (mode, open) in [
            (0o666, true),
            (0o606, true),
            (0o600, false),
            (0o664, false),
            (0o662, false),
        ] {
            std::fs::set_permissions(&node, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(open_to_all(&node), open, "mode {mode:o}");
        }
        assert!(!open_to_all(&dir.path("missing")));
    }
}
