//! The off switch for the batched data path: `EDGEWIRE_OFFLOAD=off` (or `0`, `no`,
//! `false`) makes the agent move one datagram and one packet per system call, with no
//! UDP GSO/GRO and no TUN offload, as it did before batching. For a kernel or driver that
//! misbehaves in a way the run-time fallbacks do not catch, and so the tests can run both
//! paths.
//!
//! Read from the process environment only, like `EDGEWIRE_LOG` (under systemd the
//! unit's `EnvironmentFile=` exports the env file's lines, so it can be set there): it is
//! a switch for a misbehaving kernel and for tests, not a setting to tune.

pub const VAR: &str = "EDGEWIRE_OFFLOAD";

/// Whether batching and offload may be used (the default).
pub fn enabled() -> bool {
    match std::env::var(VAR) {
        Ok(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "off" | "0" | "no" | "false"
        ),
        Err(_) => true,
    }
}
