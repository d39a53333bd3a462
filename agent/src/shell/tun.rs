//! The TUN device. Its address, MTU, routes and link state are set over netlink
//! (`netlink.rs`); this only creates it and moves packets.

use anyhow::Context;
use tun_rs::{AsyncDevice, DeviceBuilder};

pub fn create(name: &str) -> anyhow::Result<AsyncDevice> {
    DeviceBuilder::new()
        .name(name)
        // The agent brings the link up itself once addresses and routes are set.
        .enable(false)
        .build_async()
        .with_context(|| {
            format!(
                "creating the TUN device {name}: the agent needs CAP_NET_ADMIN and /dev/net/tun \
                 (modprobe tun), and no other interface may have this name"
            )
        })
}
