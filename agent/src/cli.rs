//! Command-line parsing, by hand (clap alone would cost a good part of the size budget).
//!
//! Owns the command set, `--flag value` / `--flag=value` scanning, and the merge of
//! flags, environment and env file for the settings in `settings::KEYS`. Nothing here
//! touches the network or the key files; it only builds a [`Command`].

mod envfile;
mod help;
mod run;
mod settings;
mod spec;
mod suggest;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::config::{self, OperatorConfig, RunConfig};
use settings::{INTERFACE, Key, Origin, STATE_DIR, Settings};
use spec::Spec;

pub use help::version;

#[derive(Debug)]
pub enum Command {
    Run(RunConfig, OperatorConfig),
    Keygen {
        state_dir: PathBuf,
        force: bool,
    },
    Pubkey {
        state_dir: PathBuf,
    },
    Status {
        state_dir: PathBuf,
        json: bool,
        /// Every peer, not only the ones that are not idle.
        all: bool,
    },
    Manifest(ManifestCommand),
    /// Whether the device can join its overlay; `run`'s settings.
    Netcheck {
        config: RunConfig,
        json: bool,
    },
    /// For the systemd unit, run as root before `run`: create the TUN interface and
    /// hand its descriptor to systemd, which passes it to the agent.
    OpenTun {
        interface: String,
    },
    Version,
    /// Print this text on stdout and exit successfully.
    Help(String),
}

/// The operator's tools for the network key and the signed manifest.
#[derive(Debug, PartialEq, Eq)]
pub enum ManifestCommand {
    Keygen {
        out: PathBuf,
    },
    Build {
        source: PathBuf,
        key: PathBuf,
        out: PathBuf,
        /// coturn's `static-auth-secret`: relays without credentials get time-limited ones.
        turn_secret_file: Option<PathBuf>,
        /// How long minted relay credentials stay valid.
        turn_ttl: std::time::Duration,
    },
    /// `pubkey` is base64, or the path of a `.pub` file written by `manifest keygen`.
    Show {
        manifest: PathBuf,
        pubkey: Option<String>,
    },
    /// Every edge as a Kilo `Peer`; `keepalive` for edges without one.
    ExportKilo {
        source: PathBuf,
        keepalive: Option<u16>,
    },
    /// Kilo's `kgctl showconf peer` INI as a JSON source; `public_key` adds this device.
    ImportWg {
        file: PathBuf,
        address: crate::prefix::Prefix,
        public_key: Option<crate::keys::PublicKey>,
    },
}

pub fn parse(args: impl Iterator<Item = OsString>) -> anyhow::Result<Command> {
    // A non-UTF-8 variable is taken lossily; any such value then fails its own check.
    parse_with(args, &|name| {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    })
}

/// `parse` with the environment passed in, for tests.
pub(crate) fn parse_with(
    args: impl Iterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Command> {
    let args = args
        .map(|a| {
            a.into_string()
                .map_err(|a| anyhow::anyhow!("argument {a:?} is not valid UTF-8"))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let Some((command, rest)) = args.split_first() else {
        bail!("no command given\n\n{}", help::overview());
    };
    let rest = rest.to_vec();
    match command.as_str() {
        "help" | "--help" | "-h" => help_for(&rest),
        "version" | "--version" | "-V" => Ok(Command::Version),
        // For packagers: the man page and completions come from the same table.
        "__generate" => match rest.first().map(String::as_str) {
            Some("man") => Ok(Command::Help(help::man_page())),
            Some("bash") => Ok(Command::Help(help::bash_completion())),
            _ => bail!("`edgewire __generate` needs man or bash"),
        },
        "run" => {
            let Some(s) = scan(&spec::RUN, rest)? else {
                return Ok(Command::Help(help::command(&spec::RUN)));
            };
            let (settings, config_file) = merge(&spec::RUN, &s, env)?;
            Ok(Command::Run(
                run::run_config(&settings, &config_file)?,
                run::operator_config(&settings)?,
            ))
        }
        "netcheck" => {
            let Some(s) = scan(&spec::NETCHECK, rest)? else {
                return Ok(Command::Help(help::command(&spec::NETCHECK)));
            };
            let (settings, config_file) = merge(&spec::NETCHECK, &s, env)?;
            Ok(Command::Netcheck {
                config: run::run_config(&settings, &config_file)?,
                json: s.switches.contains("--json"),
            })
        }
        "keygen" | "pubkey" | "status" => {
            let spec = match command.as_str() {
                "keygen" => &spec::KEYGEN,
                "pubkey" => &spec::PUBKEY,
                _ => &spec::STATUS,
            };
            let Some(s) = scan(spec, rest)? else {
                return Ok(Command::Help(help::command(spec)));
            };
            let (settings, _) = merge(spec, &s, env)?;
            let state_dir = settings.one(&STATE_DIR, |v| Ok(PathBuf::from(v)))?;
            let state_dir = state_dir.unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR));
            Ok(match command.as_str() {
                "keygen" => Command::Keygen {
                    state_dir,
                    force: s.switches.contains("--force"),
                },
                "pubkey" => Command::Pubkey { state_dir },
                _ => Command::Status {
                    state_dir,
                    json: s.switches.contains("--json"),
                    all: s.switches.contains("--all"),
                },
            })
        }
        "manifest" => parse_manifest(rest),
        "open-tun" => {
            let Some(s) = scan(&spec::OPEN_TUN, rest)? else {
                return Ok(Command::Help(help::command(&spec::OPEN_TUN)));
            };
            let (settings, _) = merge(&spec::OPEN_TUN, &s, env)?;
            let interface = settings
                .one(&INTERFACE, run::check_interface)?
                .unwrap_or_else(|| config::DEFAULT_INTERFACE.to_string());
            Ok(Command::OpenTun { interface })
        }
        other => bail!(
            "unknown command {other:?}{}; `edgewire help` lists the commands",
            suggest::hint(other, spec::top_words())
        ),
    }
}

/// `edgewire help [COMMAND...]`.
fn help_for(words: &[String]) -> anyhow::Result<Command> {
    let name = words.join(" ");
    if name.is_empty() {
        return Ok(Command::Help(help::overview()));
    }
    if name == "manifest" {
        return Ok(Command::Help(help::manifest_overview()));
    }
    match spec::find(&name) {
        Some(spec) => Ok(Command::Help(help::command(spec))),
        None => bail!(
            "no help for {name:?}{}; `edgewire help` lists the commands",
            suggest::hint(&name, spec::COMMANDS.iter().map(|c| c.name))
        ),
    }
}

fn parse_manifest(args: Vec<String>) -> anyhow::Result<Command> {
    let subcommands = || spec::manifest_subcommands().collect::<Vec<_>>().join(", ");
    let Some((sub, rest)) = args.split_first() else {
        bail!(
            "`edgewire manifest` needs one of {}\n\n{}",
            subcommands(),
            help::manifest_overview()
        );
    };
    let rest = rest.to_vec();
    if matches!(sub.as_str(), "help" | "--help" | "-h") {
        return Ok(Command::Help(help::manifest_overview()));
    }
    let Some(spec) = spec::find(&format!("manifest {sub}")) else {
        bail!(
            "unknown manifest command {sub:?}{}; expected {}",
            suggest::hint(sub, spec::manifest_subcommands()),
            subcommands()
        );
    };
    let Some(mut s) = scan(spec, rest)? else {
        return Ok(Command::Help(help::command(spec)));
    };
    let command = match sub.as_str() {
        "keygen" => ManifestCommand::Keygen {
            out: s.required(spec, "--out")?,
        },
        "build" => ManifestCommand::Build {
            source: PathBuf::from(s.positionals.remove(0)),
            key: s.required(spec, "--key")?,
            out: s.required(spec, "--out")?,
            turn_secret_file: s.options.remove("--turn-secret-file").map(PathBuf::from),
            turn_ttl: match s.options.remove("--turn-ttl") {
                Some(text) => parse_ttl(&text)?,
                None => std::time::Duration::from_secs(24 * 3600),
            },
        },
        "show" => ManifestCommand::Show {
            manifest: PathBuf::from(s.positionals.remove(0)),
            pubkey: s.options.remove("--pubkey"),
        },
        "import-wg" => {
            let address = s.required_text(spec, "--address")?;
            ManifestCommand::ImportWg {
                file: PathBuf::from(s.positionals.remove(0)),
                address: address
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--address: {e}"))?,
                public_key: s
                    .options
                    .remove("--public-key")
                    .map(|k| k.parse().map_err(|e| anyhow::anyhow!("--public-key: {e}")))
                    .transpose()?,
            }
        }
        "export-kilo" => ManifestCommand::ExportKilo {
            source: PathBuf::from(s.positionals.remove(0)),
            keepalive: s
                .options
                .remove("--keepalive")
                .map(|k| match k.parse::<u16>() {
                    Ok(k) if k > 0 => Ok(k),
                    _ => Err(anyhow::anyhow!(
                        "--keepalive {k:?}: expected seconds from 1 to 65535 (Kilo resets a \
                         Peer whose keepalive is 0)"
                    )),
                })
                .transpose()?,
        },
        other => unreachable!("manifest {other} is in the table but not parsed"),
    };
    Ok(Command::Manifest(command))
}

#[derive(Debug, Default)]
struct Scanned {
    settings: Vec<(&'static Key, String)>,
    options: BTreeMap<&'static str, String>,
    switches: BTreeSet<&'static str>,
    positionals: Vec<String>,
}

impl Scanned {
    /// A required option's value; its absence names the option and what it is for.
    fn required(&mut self, spec: &Spec, option: &str) -> anyhow::Result<PathBuf> {
        self.required_text(spec, option).map(PathBuf::from)
    }

    fn required_text(&mut self, spec: &Spec, option: &str) -> anyhow::Result<String> {
        match self.options.remove(option) {
            Some(value) => Ok(value),
            None => {
                let opt = spec.option(option);
                bail!(
                    "`edgewire {}` needs {option} {} ({})",
                    spec.name,
                    opt.and_then(|o| o.value).unwrap_or("VALUE"),
                    opt.map_or("", |o| o.help)
                )
            }
        }
    }
}

/// Splits `args` by what `spec` accepts. `None` when help was asked for.
fn scan(spec: &Spec, args: Vec<String>) -> anyhow::Result<Option<Scanned>> {
    let mut out = Scanned::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        if arg == "--" {
            out.positionals.extend(args.by_ref());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            out.positionals.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        let setting = spec.settings.iter().copied().find(|k| k.flag == flag);
        let option = spec.option(&flag);
        let name = match (setting, option) {
            (Some(key), _) => key.flag,
            (None, Some(opt)) if opt.value.is_none() => {
                if inline.is_some() {
                    bail!("{} takes no value", opt.flag);
                }
                out.switches.insert(opt.flag);
                continue;
            }
            (None, Some(opt)) => opt.flag,
            (None, None) => {
                let known = spec
                    .settings
                    .iter()
                    .map(|k| k.flag)
                    .chain(spec.options.iter().map(|o| o.flag));
                bail!(
                    "unknown option {flag} for `edgewire {}`{}; see `edgewire {} --help`",
                    spec.name,
                    suggest::hint(&flag, known),
                    spec.name
                )
            }
        };
        let value = match inline {
            Some(value) => value,
            // A following flag is more likely a forgotten value than a value.
            None => match args.next() {
                Some(value) if !value.starts_with("--") => value,
                _ => bail!("{name} needs a value"),
            },
        };
        match setting {
            Some(key) => out.settings.push((key, value)),
            None if out.options.contains_key(name) => bail!("{name} is given twice"),
            None => {
                out.options.insert(name, value);
            }
        }
    }
    if out.positionals.len() != spec.args.len() {
        match spec.args.get(out.positionals.len()) {
            Some(missing) => bail!(
                "`edgewire {}` needs {} ({})",
                spec.name,
                missing.name,
                missing.help
            ),
            None => {
                let extra = &out.positionals[spec.args.len()];
                bail!(
                    "unexpected argument {extra:?} for `edgewire {}`{}",
                    spec.name,
                    forgotten_dashes(spec, extra)
                )
            }
        }
    }
    Ok(Some(out))
}

/// `status json` was most likely meant as `status --json`.
fn forgotten_dashes(spec: &Spec, word: &str) -> String {
    let flags = spec
        .settings
        .iter()
        .map(|k| k.flag)
        .chain(spec.options.iter().map(|o| o.flag));
    match suggest::closest(&format!("--{word}"), flags) {
        Some(flag) => format!(" (did you mean {flag}?)"),
        None => String::new(),
    }
}

/// Layers flags, environment and env file into settings; also returns the env file's
/// path, which messages about missing settings mention.
fn merge(
    spec: &Spec,
    s: &Scanned,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(Settings, PathBuf)> {
    let mut settings = Settings::default();
    for key in spec.settings {
        let flags: Vec<String> = s
            .settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect();
        settings.offer(key, flags, Origin::Flag(key.flag))?;
    }
    for key in spec.settings {
        if let Some(value) = env(key.env) {
            settings.offer(key, split(key, &value), Origin::Env(key.env))?;
        }
    }
    let (path, explicit) = match (s.options.get("--config"), env("EDGEWIRE_CONFIG")) {
        (Some(path), _) => (PathBuf::from(path), true),
        (None, Some(path)) if !path.is_empty() => (PathBuf::from(path), true),
        _ => (PathBuf::from(config::DEFAULT_CONFIG_FILE), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => String::new(),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => bail!(
            "cannot read the env file {} ({e}): it may hold secrets and be open only to \
             root; run as root, or give the settings as flags with --config /dev/null",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("reading the env file {}", path.display()));
        }
    };
    let (entries, problems) = envfile::parse(&text);
    for (line, problem) in problems {
        log::warn!("{} line {line}: {problem}; ignored", path.display());
    }
    // Later lines override earlier ones, as in systemd.
    let mut last = BTreeMap::new();
    for entry in entries {
        match settings::key_by_env(&entry.name) {
            Some(key) => {
                last.insert(key.env, (key, entry));
            }
            None if entry.name.starts_with("EDGEWIRE_")
                && !settings::OTHER_ENV.contains(&entry.name.as_str()) =>
            {
                log::warn!(
                    "{} line {}: unknown setting {}; ignored (known: {})",
                    path.display(),
                    entry.line,
                    entry.name,
                    settings::KEYS
                        .iter()
                        .map(|k| k.env)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            None => {}
        }
    }
    for (key, entry) in last.into_values() {
        if spec.settings.contains(&key) {
            let origin = Origin::File {
                name: key.env,
                path: path.clone(),
                line: entry.line,
            };
            settings.offer(key, split(key, &entry.value), origin)?;
        }
    }
    Ok((settings, path))
}

/// Environment and file carry several values of a key comma-separated.
fn split(key: &Key, value: &str) -> Vec<String> {
    if key.max > 1 {
        value.split(',').map(|v| v.trim().to_string()).collect()
    } else {
        vec![value.to_string()]
    }
}

/// `90s`, `30m`, `24h`, `7d`, or plain seconds.
fn parse_ttl(text: &str) -> anyhow::Result<std::time::Duration> {
    let bad =
        || anyhow::anyhow!("--turn-ttl {text:?}: expected a duration such as 3600, 90m, 24h or 7d");
    let (number, unit) = match text.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text.trim()[..i], c),
        _ => (text.trim(), 's'),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        'd' => n * 86_400,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(secs))
}
