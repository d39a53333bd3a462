//! Log lines for journald: `<N>` syslog priority prefixes when stderr goes to the
//! journal, a plain `LEVEL` prefix otherwise. `EDGEWIRE_LOG` sets the level.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    journal: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // boringtun's own messages are debug chatter about each packet.
        if record.target().starts_with("boringtun") && record.level() > Level::Warn {
            return;
        }
        // ureq's and rustls' trace output is the wire itself: a bearer token included.
        let wire = ["ureq", "rustls"]
            .iter()
            .any(|t| record.target().starts_with(t));
        if wire && record.level() > Level::Debug {
            return;
        }
        let line = if self.journal {
            let prio = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{prio}>{}\n", record.args())
        } else {
            format!("{:<5} {}\n", record.level(), record.args())
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

pub fn init() {
    let level = std::env::var("EDGEWIRE_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if log::set_boxed_logger(Box::new(Logger { journal })).is_ok() {
        log::set_max_level(level);
    }
}
