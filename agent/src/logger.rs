//! Log lines for journald: `<N>` syslog priority prefixes when stderr is the journal, a
//! plain `LEVEL` prefix otherwise. `EDGEWIRE_LOG` sets the level; a value that is not
//! one is an error, not a silent `info`.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// What `EDGEWIRE_LOG` accepts, in order of verbosity.
pub const LEVELS: &str = "off, error, warn, info, debug or trace";

struct Logger {
    journal: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) || !wanted(record.target(), record.level()) {
            return;
        }
        // boringtun's own lines name no peer: the core says whose `Tunn` it is calling.
        let peer = record
            .target()
            .starts_with("boringtun")
            .then(crate::core::boringtun_peer)
            .flatten();
        let line = render(self.journal, record.level(), record.args(), peer.as_deref());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// One line, `peer NAME: ` before the message when it is about a peer that does not
/// name itself (boringtun's).
fn render(
    journal: bool,
    level: Level,
    args: &std::fmt::Arguments<'_>,
    peer: Option<&str>,
) -> String {
    match peer {
        Some(name) => format_line(journal, level, &format_args!("peer {name}: {args}")),
        None => format_line(journal, level, args),
    }
}

/// Installs the logger. Err says what is wrong with `EDGEWIRE_LOG`; nothing is
/// installed then, so the caller reports it on stderr and stops.
pub fn init() -> Result<(), String> {
    let level = level(std::env::var("EDGEWIRE_LOG").ok().as_deref())?;
    let journal = stderr_is_journal(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    );
    if log::set_boxed_logger(Box::new(Logger { journal })).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}

/// The level `EDGEWIRE_LOG` asks for; unset or empty is `info`.
pub fn level(value: Option<&str>) -> Result<LevelFilter, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(LevelFilter::Info),
        Some(text) => text
            .parse::<LevelFilter>()
            .map_err(|_| format!("EDGEWIRE_LOG={text:?} is not a log level: use one of {LEVELS}")),
    }
}

/// systemd sets `JOURNAL_STREAM=DEVICE:INODE` for a unit whose stderr is the journal,
/// and the variable is inherited by everything the unit starts. Only when stderr is
/// still that very stream (not redirected to a file or a pipe by a child's caller) do
/// the `<N>` prefixes belong on it.
pub fn stderr_is_journal(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>(), stderr) {
        (Ok(dev), Ok(ino), Some(actual)) => (dev, ino) == actual,
        _ => false,
    }
}

/// stderr's device and inode numbers, as systemd writes them in `JOURNAL_STREAM`.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether a record from `target` at `level` is worth a line.
fn wanted(target: &str, level: Level) -> bool {
    // boringtun's own messages are debug chatter about each packet.
    if target.starts_with("boringtun") && level > Level::Warn {
        return false;
    }
    // ureq's and rustls' trace output is the wire itself: a bearer token included.
    let wire = ["ureq", "rustls"].iter().any(|t| target.starts_with(t));
    !(wire && level > Level::Debug)
}

fn format_line(journal: bool, level: Level, args: &std::fmt::Arguments<'_>) -> String {
    if journal {
        // syslog priorities (sd-daemon(3)): err, warning, info, debug.
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        format!("<{prio}>{args}\n")
    } else {
        format!("{level:<5} {args}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_or_empty_level_is_info_and_names_are_case_blind() {
        assert_eq!(level(None), Ok(LevelFilter::Info));
        assert_eq!(level(Some("")), Ok(LevelFilter::Info));
        assert_eq!(level(Some("debug")), Ok(LevelFilter::Debug));
        assert_eq!(level(Some("WARN")), Ok(LevelFilter::Warn));
        assert_eq!(level(Some("off")), Ok(LevelFilter::Off));
    }

    #[test]
    fn an_unknown_level_is_an_error_naming_the_accepted_values() {
        let err = level(Some("verbose")).unwrap_err();
        assert_eq!(
            err,
            "EDGEWIRE_LOG=\"verbose\" is not a log level: use one of off, error, warn, \
             info, debug or trace"
        );
    }

    #[test]
    fn the_journal_prefix_is_used_only_when_stderr_is_the_journal_stream() {
        assert!(stderr_is_journal(Some("8:12345"), Some((8, 12345))));
        // Inherited by a child whose stderr was redirected elsewhere.
        assert!(!stderr_is_journal(Some("8:12345"), Some((8, 999))));
        assert!(!stderr_is_journal(Some("8:12345"), Some((9, 12345))));
        assert!(!stderr_is_journal(None, Some((8, 12345))));
        assert!(!stderr_is_journal(Some("garbage"), Some((8, 12345))));
        assert!(!stderr_is_journal(Some("8:x"), Some((8, 12345))));
        assert!(!stderr_is_journal(Some("8:12345"), None));
    }

    #[test]
    fn stderr_identity_matches_what_fstat_says_of_fd_2() {
        use std::os::unix::fs::MetadataExt;
        let (dev, ino) = stderr_identity().expect("the test runner has a stderr");
        let meta = std::fs::metadata("/proc/self/fd/2").expect("procfs");
        assert_eq!((dev, ino), (meta.dev(), meta.ino()));
        assert!(stderr_is_journal(
            Some(&format!("{dev}:{ino}")),
            stderr_identity()
        ));
    }

    #[test]
    fn journal_lines_carry_syslog_priorities_and_plain_lines_a_level() {
        let line = |journal, level| format_line(journal, level, &format_args!("hub-1 up"));
        assert_eq!(line(true, Level::Error), "<3>hub-1 up\n");
        assert_eq!(line(true, Level::Warn), "<4>hub-1 up\n");
        assert_eq!(line(true, Level::Info), "<6>hub-1 up\n");
        assert_eq!(line(true, Level::Debug), "<7>hub-1 up\n");
        assert_eq!(line(true, Level::Trace), "<7>hub-1 up\n");
        assert_eq!(line(false, Level::Info), "INFO  hub-1 up\n");
        assert_eq!(line(false, Level::Error), "ERROR hub-1 up\n");
    }

    #[test]
    fn boringtun_lines_name_the_peer_the_core_was_calling() {
        let line = render(
            false,
            Level::Warn,
            &format_args!("HANDSHAKE(REKEY_TIMEOUT)"),
            Some("dev-3"),
        );
        assert!(
            line.contains("peer dev-3: HANDSHAKE(REKEY_TIMEOUT)"),
            "{line}"
        );
        let line = render(false, Level::Info, &format_args!("applied serial 2"), None);
        assert!(line.ends_with("applied serial 2\n"), "{line:?}");
    }

    #[test]
    fn boringtun_chatter_and_wire_traces_are_kept_out() {
        assert!(!wanted("boringtun::noise", Level::Info));
        assert!(wanted("boringtun::noise", Level::Warn));
        assert!(!wanted("rustls::client", Level::Trace));
        assert!(wanted("rustls::client", Level::Debug));
        assert!(!wanted("ureq::unversioned", Level::Trace));
        assert!(wanted("edgewire::shell", Level::Trace));
    }
}
