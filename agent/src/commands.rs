//! Runs a parsed command. (Being written: see the helper brief.)

use crate::cli::Command;

pub fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(config) => crate::shell::run(config),
        Command::Status { state_dir, json } => crate::status::print(&state_dir, json),
        _ => anyhow::bail!("not yet"),
    }
}
