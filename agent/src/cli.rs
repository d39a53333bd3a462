//! Command-line parsing. (Being written: see the helper brief.)

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::RunConfig;

#[derive(Debug)]
pub enum Command {
    Run(RunConfig),
    Keygen { state_dir: PathBuf, force: bool },
    Pubkey { state_dir: PathBuf },
    Status { state_dir: PathBuf, json: bool },
    Help(String),
}

pub fn parse(_args: impl Iterator<Item = OsString>) -> anyhow::Result<Command> {
    anyhow::bail!("not yet")
}
