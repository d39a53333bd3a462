//! edgewire: a single-threaded WireGuard overlay agent for constrained field devices.
//!
//! `core` decides (sans-IO, time passed in); `shell` moves bytes between the TUN device,
//! the UDP socket and the core; `manifest` is the signed description of the overlay;
//! `fetch` brings manifests from a URL or a file; `state` keeps the manifest cache and
//! the trust record; `fsutil` writes state files atomically; `cli` and `commands` are what the operator types.

pub mod cli;
pub mod commands;
pub mod config;
pub mod core;
pub mod fetch;
pub mod fsutil;
pub mod human;
pub mod keys;
pub mod logger;
pub mod manifest;
pub mod metrics;
pub mod prefix;
pub mod shell;
pub mod state;
pub mod status;
pub mod turn;
pub mod uapi;
