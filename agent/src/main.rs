//! The `edgewire` binary: parse the command line, run the command, report errors once.

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Err(e) = edgewire::logger::init() {
        eprintln!("edgewire: {e}");
        return ExitCode::from(2);
    }
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
