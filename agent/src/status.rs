//! The status report: what the running agent tells `edgewire status` over its socket.

use std::path::Path;

pub fn print(_state_dir: &Path, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
