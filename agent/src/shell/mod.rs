//! The shell: one smol thread that moves bytes between the TUN device, the UDP socket
//! and the core, and does the I/O the core asks for (netlink, manifest reads, status).

mod agent;
mod blue;
mod clock;
mod clockfloor;
pub(crate) mod clocktrust;
mod codel;
mod control_socket;
mod fdstore;
mod give_way;
mod ifaddrs;
mod intake;
mod metrics_out;
mod netlink;
mod notify;
mod offload;
mod pace;
mod pages;
mod puller;
#[cfg(test)]
mod reactor_tests;
mod relay;
mod resolver;
mod ring_probe;
mod sent_wait;
mod status_server;
mod tun;
mod tun_batch;
/// The TUN's paths without a device, checked, for tests and the fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod tun_hostile;
mod tun_room;
mod udp;
mod udp_batch;
mod wake_policy;

use smol::LocalExecutor;

use crate::config::{OperatorConfig, RunConfig};

pub use relay::{
    Allocation as RelayAllocation, Hold as RelayHold, Kind as RelayKind, Leg as RelayLeg,
    Probe as RelayProbe,
};

/// `edgewire netcheck`: one allocation per relay URL, see `relay/probe.rs`.
pub fn probe_relays(
    relays: &[crate::manifest::RelaySpec],
    ca_file: Option<&std::path::Path>,
    deadline: std::time::Duration,
    hold: Option<RelayHold<'_>>,
    done: &mut dyn FnMut(&RelayProbe),
) -> Vec<RelayProbe> {
    relay::probe_all(relays, ca_file, deadline, hold, done)
}

/// `edgewire open-tun`: see `tun.rs`.
pub fn open_tun_for_systemd(interface: &str) -> anyhow::Result<()> {
    tun::open_for_systemd(interface)
}

/// `edgewire run`: runs until SIGTERM or SIGINT.
pub fn run(config: RunConfig, ops: OperatorConfig) -> anyhow::Result<()> {
    // Before anything of ours is written: what a crash left behind goes first.
    match crate::state::remove_stale_temporaries(&config.state_dir) {
        Ok(removed) => {
            for stale in removed {
                log::info!(
                    "removed {}, a temporary file left by process {} (no longer running)",
                    stale.path.display(),
                    stale.pid
                );
            }
        }
        Err(e) => log::warn!(
            "looking for temporary files left in {}: {e}",
            config.state_dir.display()
        ),
    }
    let key = crate::keys::load_or_create(&config.state_dir)?;
    let ex = LocalExecutor::new();
    // async-io's `block_on`: this thread waits in epoll itself and runs what it wakes
    // with no other thread between. Our async-io (vendor/async-io/EDGEWIRE.md) keeps its
    // helper thread parked meanwhile; as published, that thread polls with a backoff of
    // ten short sleeps after every wakeup, which is why this once blocked in
    // futures-lite's `block_on` and left epoll to the helper, at two context switches
    // per event.
    // Boxed: each layer of the executor holds its future by value, the argument once
    // more beside the running state, so the agent's 7 KB future unboxed became 29 KB in
    // `block_on`'s frame, copied through on the way in: 70 KB of stack touched at start,
    // resident for the life of the process. Boxed, the layers carry a pointer.
    smol::block_on(ex.run(Box::pin(async {
        let mut agent = agent::Agent::start(config, ops, key, &ex).await?;
        agent.run().await
    })))
}
