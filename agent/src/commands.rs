//! Runs a parsed command. The daemon and the status client live elsewhere; here are the
//! short-lived tools: the device key (`keygen`, `pubkey`) and the manifest tools.
//!
//! Output contract (scripts and the lab rely on it): what a command produces (a public
//! key, a dump) goes to stdout alone; summaries and diagnostics go to stderr.

mod export_kilo;
mod import_wg;
mod manifest;
mod netcheck;

use crate::cli::Command;
use crate::keys;

pub fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(config, ops) => crate::shell::run(config, ops),
        Command::Status {
            state_dir,
            json,
            all,
        } => crate::status::print(&state_dir, json, all),
        Command::Keygen { state_dir, force } => {
            let key = keys::create(&state_dir, force)?;
            println!("{}", key.public_key());
            Ok(())
        }
        Command::Pubkey { state_dir } => {
            println!("{}", keys::load(&state_dir)?.public_key());
            Ok(())
        }
        Command::Manifest(command) => manifest::execute(command),
        Command::OpenTun { interface } => crate::shell::open_tun_for_systemd(&interface),
        Command::Netcheck { config, json } => {
            if netcheck::run(&config, json)? {
                Ok(())
            } else {
                anyhow::bail!("netcheck: this device cannot join its overlay")
            }
        }
        Command::Version => {
            println!("{}", crate::cli::version());
            Ok(())
        }
        Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
    }
}
