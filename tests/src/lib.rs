//! The edgewire lab: topologies in Linux network namespaces for end-to-end tests, the
//! demo and the benchmark.
//!
//! A [`Lab`] owns everything a test creates — namespaces (and with them their veths,
//! bridges and TUN devices), processes, and a temporary directory — and removes it all on
//! drop, also when the test panics. Every name carries the test process id and a counter,
//! so tests run in parallel without clashing. Traffic stays inside the lab's namespaces:
//! "public" addresses come from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24), LANs behind NAT routers use private ranges, the overlay 10.42.0.0/16.
//!
//! ```no_run
//! use edgewire_lab::*;
//! use std::time::Duration;
//! let lab = Lab::new("example");
//! let wan = lab.wan();
//! let hub = lab.host("hub");
//! wan.attach(&hub, "203.0.113.10/24");
//! let site = wan.nat_router("nat-a", "198.51.100.2/24", "192.168.10.1/24");
//! let dev = site.host("dev-a", "192.168.10.2/24");
//! dev.ping("203.0.113.10", Duration::from_secs(5)).unwrap();
//! ```

mod agent;
mod coturn;
pub mod figures;
mod fileserver;
mod host;
mod lab;
pub mod lifecycle;
pub mod linkemu;
mod manifest;
pub mod manifest_server;
mod net;
pub mod netns;
pub mod pingstream;
mod proc;
pub mod relaylab;
mod transfer;
mod wait;
mod wg;
pub mod worlds;

pub use agent::{
    AGENT_IFACE, AGENT_PORT, Agent, DataPathStatus, ManifestStatus, PeerStatus, Status,
    edgewire_bin, edgewire_bin_for, find_edgewire_bin, offload_off, peak_rss_kb, run_netcheck,
    target_dir, use_edgewire_bin, use_edgewire_profile, wait_status_answers,
};
pub use coturn::{Coturn, CoturnAuth, CoturnConfig, udp_echo_peer};
pub use fileserver::{FileServer, TestCa};
pub use host::{ExecOutput, Host, PingReply};
pub use lab::Lab;
pub use linkemu::{Direction, DirectionStats, Impairment, LinkEmulator};
pub use manifest::{ManifestSource, NetworkKey, NodeSource};
pub use net::{Link, NatKind, NatSite, Wan};
pub use netns::in_netns;
pub use proc::Proc;
pub use transfer::{
    bulk_tcp, frozen_udp_burst, gso_sends, gso_udp, set_udp_option, udp_into_frozen_tun,
};
pub use wait::{poll_until, wait_for};
pub use wg::{KeyPair, WgDevice, WgImpl, WgPeerConfig, WgPeerStat};

/// Whether this process may create namespaces (it must run as root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns from the calling test, with a printed reason, unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "SKIPPED {}: needs root to create network namespaces (run the tests as root, e.g. scripts/test)",
                module_path!()
            );
            return;
        }
    };
}
