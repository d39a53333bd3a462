//! The shell: one smol thread that moves bytes between TUN, UDP and the core.

use crate::config::RunConfig;

pub fn run(_config: RunConfig) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
