//! Command-line parsing, by hand (clap alone would cost a good part of the size budget).
//!
//! Owns the command set, `--flag value` / `--flag=value` scanning, and the merge of
//! flags, environment and env file for the settings in `settings::KEYS`. Nothing here
//! touches the network or the key files; it only builds a [`Command`].

mod envfile;
mod run;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::config::{self, RunConfig};
use settings::{INTERFACE, Key, Origin, STATE_DIR, Settings};

#[derive(Debug)]
pub enum Command {
    Run(RunConfig),
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
    },
    Manifest(ManifestCommand),
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
        bail!("no command given\n\n{}", usage());
    };
    let rest = rest.to_vec();
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help(usage())),
        "version" | "--version" | "-V" => Ok(Command::Version),
        "run" => {
            let Some(s) = scan(&RUN, rest)? else {
                return Ok(Command::Help(usage()));
            };
            let (settings, config_file) = merge(&RUN, &s, env)?;
            run::run_config(&settings, &config_file).map(Command::Run)
        }
        "keygen" | "pubkey" | "status" => {
            let spec = match command.as_str() {
                "keygen" => &KEYGEN,
                "pubkey" => &PUBKEY,
                _ => &STATUS,
            };
            let Some(s) = scan(spec, rest)? else {
                return Ok(Command::Help(usage()));
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
                },
            })
        }
        "manifest" => parse_manifest(rest),
        "open-tun" => {
            let Some(s) = scan(&OPEN_TUN, rest)? else {
                return Ok(Command::Help(usage()));
            };
            let (settings, _) = merge(&OPEN_TUN, &s, env)?;
            let interface = settings
                .one(&INTERFACE, run::check_interface)?
                .unwrap_or_else(|| config::DEFAULT_INTERFACE.to_string());
            Ok(Command::OpenTun { interface })
        }
        other => bail!("unknown command {other:?}\n\n{}", usage()),
    }
}

fn parse_manifest(args: Vec<String>) -> anyhow::Result<Command> {
    let Some((sub, rest)) = args.split_first() else {
        bail!(
            "`edgewire manifest` needs keygen, build, show or import-wg\n\n{}",
            usage()
        );
    };
    let rest = rest.to_vec();
    let command = match sub.as_str() {
        "help" | "--help" | "-h" => return Ok(Command::Help(usage())),
        "keygen" => {
            let Some(mut s) = scan(&MANIFEST_KEYGEN, rest)? else {
                return Ok(Command::Help(usage()));
            };
            ManifestCommand::Keygen {
                out: s.required(&MANIFEST_KEYGEN, "--out")?,
            }
        }
        "build" => {
            let Some(mut s) = scan(&MANIFEST_BUILD, rest)? else {
                return Ok(Command::Help(usage()));
            };
            ManifestCommand::Build {
                source: PathBuf::from(s.positionals.remove(0)),
                key: s.required(&MANIFEST_BUILD, "--key")?,
                out: s.required(&MANIFEST_BUILD, "--out")?,
                turn_secret_file: s.options.remove("--turn-secret-file").map(PathBuf::from),
                turn_ttl: match s.options.remove("--turn-ttl") {
                    Some(text) => parse_ttl(&text)?,
                    None => std::time::Duration::from_secs(24 * 3600),
                },
            }
        }
        "show" => {
            let Some(mut s) = scan(&MANIFEST_SHOW, rest)? else {
                return Ok(Command::Help(usage()));
            };
            ManifestCommand::Show {
                manifest: PathBuf::from(s.positionals.remove(0)),
                pubkey: s.options.remove("--pubkey"),
            }
        }
        "import-wg" => {
            let Some(mut s) = scan(&MANIFEST_IMPORT_WG, rest)? else {
                return Ok(Command::Help(usage()));
            };
            let Some(address) = s.options.remove("--address") else {
                bail!(
                    "`edgewire manifest import-wg` needs --address PREFIX (this device's \
                     overlay address with the overlay's length, as 10.4.0.99/16)"
                );
            };
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
        other => {
            bail!("unknown manifest command {other:?}: expected keygen, build, show or import-wg")
        }
    };
    Ok(Command::Manifest(command))
}

/// What a (sub)command accepts.
struct Spec {
    name: &'static str,
    /// Settings that may also come from the environment and the env file.
    settings: &'static [&'static Key],
    /// Other options that take a value; `--config` among them reads the env file.
    options: &'static [&'static str],
    switches: &'static [&'static str],
    /// Names of the required positional arguments, for messages.
    positionals: &'static [&'static str],
}

const RUN: Spec = Spec {
    name: "run",
    settings: settings::KEYS,
    options: &["--config"],
    switches: &[],
    positionals: &[],
};
const KEYGEN: Spec = Spec {
    name: "keygen",
    settings: &[&STATE_DIR],
    options: &["--config"],
    switches: &["--force"],
    positionals: &[],
};
const PUBKEY: Spec = Spec {
    name: "pubkey",
    switches: &[],
    ..KEYGEN
};
const STATUS: Spec = Spec {
    name: "status",
    switches: &["--json"],
    ..KEYGEN
};
const OPEN_TUN: Spec = Spec {
    name: "open-tun",
    settings: &[&INTERFACE],
    options: &["--config"],
    switches: &[],
    positionals: &[],
};
const MANIFEST_KEYGEN: Spec = Spec {
    name: "manifest keygen",
    settings: &[],
    options: &["--out"],
    switches: &[],
    positionals: &[],
};
const MANIFEST_BUILD: Spec = Spec {
    name: "manifest build",
    options: &["--key", "--out", "--turn-secret-file", "--turn-ttl"],
    positionals: &["SOURCE.json"],
    ..MANIFEST_KEYGEN
};
const MANIFEST_IMPORT_WG: Spec = Spec {
    name: "manifest import-wg",
    options: &["--address", "--public-key"],
    positionals: &["FILE (the output of `kgctl showconf peer NAME`)"],
    ..MANIFEST_KEYGEN
};
const MANIFEST_SHOW: Spec = Spec {
    name: "manifest show",
    options: &["--pubkey"],
    positionals: &["MANIFEST"],
    ..MANIFEST_KEYGEN
};

#[derive(Debug, Default)]
struct Scanned {
    settings: Vec<(&'static Key, String)>,
    options: BTreeMap<&'static str, String>,
    switches: BTreeSet<&'static str>,
    positionals: Vec<String>,
}

impl Scanned {
    fn required(&mut self, spec: &Spec, option: &str) -> anyhow::Result<PathBuf> {
        match self.options.remove(option) {
            Some(value) => Ok(PathBuf::from(value)),
            None => bail!("`edgewire {}` needs {option} FILE", spec.name),
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
        let arg = if arg == "-o" {
            "--out".to_string()
        } else {
            arg
        };
        if let Some(switch) = spec.switches.iter().find(|s| **s == arg) {
            out.switches.insert(switch);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        let setting = spec.settings.iter().copied().find(|k| k.flag == flag);
        let option = spec.options.iter().copied().find(|o| *o == flag);
        let name = match (setting, option) {
            (Some(key), _) => key.flag,
            (None, Some(option)) => option,
            (None, None) => bail!(
                "unknown option {flag} for `edgewire {}`; see `edgewire help`",
                spec.name
            ),
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
    if out.positionals.len() != spec.positionals.len() {
        match spec.positionals.get(out.positionals.len()) {
            Some(missing) => bail!("`edgewire {}` needs {missing}", spec.name),
            None => bail!(
                "unexpected argument {:?} for `edgewire {}`",
                out.positionals[spec.positionals.len()],
                spec.name
            ),
        }
    }
    Ok(Some(out))
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

pub fn usage() -> String {
    let mut run_options = String::new();
    for key in settings::KEYS {
        let flag = format!("{} {}", key.flag, key.value);
        run_options.push_str(&format!(
            "      {flag:<27} {}\n      {:<27} env {}\n",
            key.help, "", key.env
        ));
    }
    format!(
        "edgewire {version}: a WireGuard overlay agent for field devices

usage:
  edgewire run [--config FILE] [OPTIONS]
{run_options}      --config FILE               env file of EDGEWIRE_*=value lines
                                  (env EDGEWIRE_CONFIG; default {config})
  edgewire keygen [--state-dir DIR] [--force]   make this device's WireGuard key
  edgewire pubkey [--state-dir DIR]             print its public key, for enrolment
  edgewire status [--state-dir DIR] [--json]    ask the running agent
  edgewire manifest keygen --out FILE           make a network signing key (FILE, FILE.pub)
  edgewire manifest build SOURCE.json --key FILE -o MANIFEST
                              [--turn-secret-file FILE [--turn-ttl 24h]]
  edgewire manifest show MANIFEST [--pubkey KEY|FILE.pub]
  edgewire manifest import-wg FILE --address PREFIX [--public-key KEY]
                                 Kilo's `kgctl showconf peer` as a JSON source
  edgewire open-tun [--interface NAME]          for the systemd unit (as root, before run):
                                 create the TUN device and pass it to the agent
  edgewire version | help

Flags beat environment variables, which beat the env file. Options take
`--flag value` or `--flag=value`.
",
        version = env!("CARGO_PKG_VERSION"),
        config = config::DEFAULT_CONFIG_FILE,
    )
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
