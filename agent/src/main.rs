//! The `edgewire` binary: parse the command line, run the command, report errors once.

use std::process::ExitCode;

fn main() -> ExitCode {
    edgewire::logger::init();
    let command = match edgewire::cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("edgewire: {err:#}");
            return ExitCode::from(2);
        }
    };
    match edgewire::commands::execute(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
