//! Tests of the command line: precedence of flags, environment and env file, and the
//! messages an operator sees when something is missing or wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::ManifestFormat;
use crate::fsutil::TestDir;
use crate::manifest::NetworkPublicKey;

const KEY_A: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const KEY_B: &str = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=";

fn parse_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Command> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Never read the real default env file of the machine running the tests.
    let env = move |name: &str| match name {
        "EDGEWIRE_CONFIG" => Some(env.get(name).cloned().unwrap_or_else(|| "/dev/null".into())),
        _ => env.get(name).cloned(),
    };
    parse_with(args.iter().map(OsString::from), &env)
}

fn run(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<RunConfig> {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    match parse_env(&full, env)? {
        Command::Run(config, _) => Ok(config),
        other => panic!("not a run command: {other:?}"),
    }
}

fn error(args: &[&str], env: &[(&str, &str)]) -> String {
    format!("{:#}", parse_env(args, env).unwrap_err())
}

#[test]
fn run_takes_its_settings_from_flags_with_defaults_for_the_rest() {
    let config = run(
        &[
            "--manifest-url",
            "/etc/edgewire/m",
            "--manifest-pubkey",
            KEY_A,
        ],
        &[],
    )
    .unwrap();
    assert_eq!(config.manifest_url, "/etc/edgewire/m");
    assert_eq!(config.manifest_pubkeys, vec![KEY_A.parse().unwrap()]);
    assert_eq!(config.state_dir, PathBuf::from(config::DEFAULT_STATE_DIR));
    assert_eq!(config.interface, config::DEFAULT_INTERFACE);
    assert_eq!(
        (config.listen_port, config.mtu),
        (config::DEFAULT_LISTEN_PORT, config::DEFAULT_MTU)
    );
}

#[test]
fn flags_beat_environment_beats_file() {
    let dir = TestDir::new("precedence");
    let file = dir.path("edgewire.conf");
    std::fs::write(
        &file,
        "# test\nEDGEWIRE_MANIFEST_URL=/from/file\nEDGEWIRE_INTERFACE=\"file0\"\n\
         EDGEWIRE_LISTEN_PORT=1111\nEDGEWIRE_STATE_DIR='/file/state'\n\
         EDGEWIRE_MANIFEST_PUBKEY={KEY_A}\n"
            .replace("{KEY_A}", KEY_A),
    )
    .unwrap();
    let env = [
        ("EDGEWIRE_CONFIG", file.to_str().unwrap()),
        ("EDGEWIRE_INTERFACE", "env0"),
        ("EDGEWIRE_LISTEN_PORT", "2222"),
    ];
    let config = run(&["--listen-port=3333"], &env).unwrap();
    assert_eq!(config.manifest_url, "/from/file");
    assert_eq!(config.state_dir, PathBuf::from("/file/state"));
    assert_eq!(config.interface, "env0");
    assert_eq!(config.listen_port, 3333);
}

#[test]
fn two_pubkeys_come_from_repeated_flags_or_a_comma_list() {
    let both: Vec<NetworkPublicKey> = vec![KEY_A.parse().unwrap(), KEY_B.parse().unwrap()];
    let flags = [
        "--manifest-url",
        "/m",
        "--manifest-pubkey",
        KEY_A,
        "--manifest-pubkey",
        KEY_B,
    ];
    assert_eq!(run(&flags, &[]).unwrap().manifest_pubkeys, both);
    let env_list = format!("{KEY_A}, {KEY_B}");
    let env = [("EDGEWIRE_MANIFEST_PUBKEY", env_list.as_str())];
    assert_eq!(
        run(&["--manifest-url", "/m"], &env)
            .unwrap()
            .manifest_pubkeys,
        both
    );
    let three = [&flags[..], &["--manifest-pubkey", KEY_A]].concat();
    let err = format!("{:#}", run(&three, &[]).unwrap_err());
    assert!(err.contains("--manifest-pubkey: at most 2 values"), "{err}");
}

#[test]
fn a_missing_manifest_url_says_how_to_set_it() {
    let err = error(&["run", "--manifest-pubkey", KEY_A], &[]);
    assert!(
        err.contains(
            "no manifest URL given: pass --manifest-url URL, set EDGEWIRE_MANIFEST_URL=URL"
        ),
        "{err}"
    );
    assert!(err.contains("/dev/null"), "{err}");
    let err = error(&["run", "--manifest-url", "/m"], &[]);
    assert!(
        err.contains("--manifest-pubkey KEY") && err.contains("EDGEWIRE_MANIFEST_PUBKEY"),
        "{err}"
    );
}

#[test]
fn bad_values_name_their_source() {
    let err = error(
        &["run", "--manifest-url", "/m", "--manifest-pubkey", "nope"],
        &[],
    );
    assert!(
        err.starts_with("--manifest-pubkey: \"nope\" is not a network public key"),
        "{err}"
    );
    let env = [("EDGEWIRE_LISTEN_PORT", "0")];
    let err = error(
        &["run", "--manifest-url", "/m", "--manifest-pubkey", KEY_A],
        &env,
    );
    assert!(
        err.contains("EDGEWIRE_LISTEN_PORT (environment): \"0\" is not a port number"),
        "{err}"
    );
    let err = error(
        &[
            "run",
            "--manifest-url=/m",
            "--manifest-pubkey",
            KEY_A,
            "--interface",
            "too-long-a-name0",
        ],
        &[],
    );
    assert!(err.contains("is not an interface name"), "{err}");
}

#[test]
fn manifest_urls_are_paths_file_urls_or_http_urls() {
    let url = |u: &str| run(&["--manifest-url", u, "--manifest-pubkey", KEY_A], &[]);
    assert_eq!(
        url("file:///etc/edgewire/m").unwrap().manifest_url,
        "file:///etc/edgewire/m"
    );
    assert_eq!(
        url("https://example.com/m").unwrap().manifest_url,
        "https://example.com/m"
    );
    assert!(url("http://192.0.2.1:8080/m").is_ok());
    assert!(
        url("https:///m")
            .unwrap_err()
            .to_string()
            .contains("names no host")
    );
    assert!(url("file://relative").is_err());
    assert!(url("ftp://example.com/m").is_err());
}

#[test]
fn the_manifest_settings_have_defaults_and_come_from_flags_env_or_file() {
    let config = run(&["--manifest-url", "/m", "--manifest-pubkey", KEY_A], &[]).unwrap();
    assert_eq!(config.manifest_format, ManifestFormat::Signed);
    assert_eq!(config.manifest_interval, config::DEFAULT_MANIFEST_INTERVAL);
    assert_eq!((config.ca_file, config.manifest_token_file), (None, None));
    assert_eq!(config.address, None);
    let dir = TestDir::new("manifest-settings");
    let file = dir.path("e.conf");
    std::fs::write(
        &file,
        "EDGEWIRE_MANIFEST_INTERVAL=120\nEDGEWIRE_MANIFEST_TOKEN_FILE=/etc/edgewire/token\n",
    )
    .unwrap();
    let env = [
        ("EDGEWIRE_CONFIG", file.to_str().unwrap()),
        ("EDGEWIRE_CA_FILE", "/etc/edgewire/ca.pem"),
    ];
    let config = run(
        &[
            "--manifest-url=https://m.example/m",
            "--manifest-pubkey",
            KEY_A,
        ],
        &env,
    )
    .unwrap();
    assert_eq!(config.manifest_interval, Duration::from_secs(120));
    assert_eq!(config.ca_file, Some(PathBuf::from("/etc/edgewire/ca.pem")));
    assert_eq!(
        config.manifest_token_file,
        Some(PathBuf::from("/etc/edgewire/token"))
    );
}

#[test]
fn a_poll_interval_must_be_whole_seconds_from_one_to_a_day() {
    for bad in ["0", "-1", "1.5", "86401", "30s"] {
        let err = error(
            &[
                "run",
                "--manifest-url=/m",
                "--manifest-pubkey",
                KEY_A,
                "--manifest-interval",
                bad,
            ],
            &[],
        );
        assert!(
            err.starts_with("--manifest-interval: ") && err.contains("is not a poll interval"),
            "{err}"
        );
    }
}

fn wg(args: &[&str]) -> anyhow::Result<RunConfig> {
    let mut full = vec!["--manifest-format", "wg"];
    full.extend_from_slice(args);
    run(&full, &[])
}

#[test]
fn the_wg_format_needs_an_address_and_no_network_key() {
    let config = wg(&[
        "--manifest-url",
        "/etc/edgewire/kilo.conf",
        "--address",
        "10.4.0.99/16",
    ])
    .unwrap();
    assert_eq!(config.manifest_format, ManifestFormat::Wg);
    assert_eq!(config.address, Some("10.4.0.99/16".parse().unwrap()));
    assert!(config.manifest_pubkeys.is_empty());
    let err = format!("{:#}", wg(&["--manifest-url", "/k.conf"]).unwrap_err());
    assert!(
        err.contains(
            "no overlay address (needed by --manifest-format wg) given: pass --address PREFIX"
        ),
        "{err}"
    );
    let err = format!(
        "{:#}",
        wg(&["--manifest-url", "/k.conf", "--address", "10.4.0.300/16"]).unwrap_err()
    );
    assert!(err.starts_with("--address: "), "{err}");
}

#[test]
fn the_wg_format_is_read_only_from_a_file_or_over_https_with_a_pinned_ca() {
    let with = |url: &str, ca: Option<&str>| {
        let mut args = vec!["--manifest-url", url, "--address", "10.4.0.99/16"];
        if let Some(ca) = ca {
            args.extend(["--ca-file", ca]);
        }
        wg(&args).map_err(|e| format!("{e:#}"))
    };
    assert!(with("file:///etc/edgewire/kilo.conf", None).is_ok());
    assert!(
        with(
            "https://kilo.example/peer.conf",
            Some("/etc/edgewire/ca.pem")
        )
        .is_ok()
    );
    let err = with("https://kilo.example/peer.conf", None).unwrap_err();
    assert!(err.contains("needs --ca-file FILE"), "{err}");
    let err = with("http://kilo.example/peer.conf", Some("/ca.pem")).unwrap_err();
    assert!(err.contains("not read over plain http"), "{err}");
}

#[test]
fn an_address_with_the_signed_format_is_refused_and_a_bad_format_is_named() {
    let err = error(
        &[
            "run",
            "--manifest-url=/m",
            "--manifest-pubkey",
            KEY_A,
            "--address",
            "10.4.0.9/16",
        ],
        &[],
    );
    assert!(
        err.contains("--address is only for --manifest-format wg"),
        "{err}"
    );
    let env = [("EDGEWIRE_MANIFEST_FORMAT", "ini")];
    let err = error(
        &["run", "--manifest-url=/m", "--manifest-pubkey", KEY_A],
        &env,
    );
    assert!(
        err.starts_with("EDGEWIRE_MANIFEST_FORMAT (environment): \"ini\" is not a manifest format"),
        "{err}"
    );
}

#[test]
fn an_explicit_env_file_that_is_missing_is_an_error_naming_it() {
    let err = error(&["run", "--config", "/nonexistent/edgewire.conf"], &[]);
    assert!(
        err.contains("reading the env file /nonexistent/edgewire.conf"),
        "{err}"
    );
    let err = error(&["status"], &[("EDGEWIRE_CONFIG", "/nonexistent/e.conf")]);
    assert!(err.contains("/nonexistent/e.conf"), "{err}");
}

#[test]
fn a_bad_value_in_the_env_file_names_file_and_line() {
    let dir = TestDir::new("badfile");
    let file = dir.path("e.conf");
    std::fs::write(&file, "EDGEWIRE_UNKNOWN=1\n\nEDGEWIRE_LISTEN_PORT=http\n").unwrap();
    let config = file.to_str().unwrap();
    let err = error(
        &[
            "run",
            "--config",
            config,
            "--manifest-url",
            "/m",
            "--manifest-pubkey",
            KEY_A,
        ],
        &[],
    );
    assert!(
        err.contains(&format!("EDGEWIRE_LISTEN_PORT in {config} line 3")),
        "{err}"
    );
}

#[test]
fn unknown_flags_and_missing_values_are_named() {
    assert!(
        error(&["run", "--manifest-ur", "/m"], &[])
            .contains("unknown option --manifest-ur for `edgewire run`")
    );
    assert!(error(&["run", "--manifest-url"], &[]).contains("--manifest-url needs a value"));
    assert!(
        error(&["run", "--manifest-url", "--state-dir", "/s"], &[])
            .contains("--manifest-url needs a value")
    );
    assert!(error(&["pubkey", "--force"], &[]).contains("unknown option --force"));
    assert!(error(&["frobnicate"], &[]).contains("unknown command \"frobnicate\""));
    assert!(error(&["run", "extra"], &[]).contains("unexpected argument \"extra\""));
}

fn help(args: &[&str]) -> String {
    match parse_env(args, &[]).unwrap() {
        Command::Help(text) => text,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn help_is_available_everywhere() {
    for args in [&["help"][..], &["--help"], &["-h"]] {
        let text = help(args);
        assert!(text.contains("commands:") && text.contains("manifest build"));
    }
    assert!(matches!(
        parse_env(&["--version"], &[]).unwrap(),
        Command::Version
    ));
}

#[test]
fn each_command_has_its_own_help_with_flags_env_defaults_and_an_example() {
    let run = help(&["run", "--help"]);
    assert!(run.starts_with("edgewire run: "), "{run}");
    assert!(run.contains("--manifest-url URL") && run.contains("env EDGEWIRE_MANIFEST_URL"));
    assert!(run.contains("(default 51820)") && run.contains("EDGEWIRE_LOG"));
    assert!(
        run.contains("example:\n  edgewire run --manifest-url"),
        "{run}"
    );
    assert!(!run.contains("manifest build"), "{run}");
    let build = help(&["manifest", "build", "-h"]);
    assert!(build.starts_with("edgewire manifest build: "), "{build}");
    assert!(build.contains("usage: edgewire manifest build SOURCE.json --key FILE --out"));
    assert!(build.contains("-o, --out MANIFEST") && build.contains("(default\n      24h)"));
    assert!(!build.contains("EDGEWIRE_MANIFEST_URL"), "{build}");
    assert_eq!(help(&["help", "manifest", "build"]), build);
    assert_eq!(help(&["status", "--help"]), help(&["help", "status"]));
    assert!(help(&["status", "-h"]).contains("--json"));
    assert!(help(&["manifest", "--help"]).contains("import-wg"));
    assert!(error(&["help", "stauts"], &[]).contains("did you mean status?"));
}

#[test]
fn every_help_line_fits_80_columns() {
    let mut texts = vec![help::overview(), help::manifest_overview()];
    texts.extend(spec::COMMANDS.iter().map(|c| help::command(c)));
    for text in texts {
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
    }
}

#[test]
fn the_table_names_each_flag_once_per_command() {
    for c in spec::COMMANDS {
        let mut flags: Vec<&str> = c.settings.iter().map(|k| k.flag).collect();
        flags.extend(c.options.iter().map(|o| o.flag));
        flags.extend(c.options.iter().filter_map(|o| o.short));
        let n = flags.len();
        flags.sort();
        flags.dedup();
        assert_eq!(flags.len(), n, "{}", c.name);
    }
}

#[test]
fn close_misspellings_of_commands_and_flags_get_a_suggestion() {
    let err = error(&["stauts"], &[]);
    assert!(
        err.contains("unknown command \"stauts\" (did you mean status?)"),
        "{err}"
    );
    let err = error(&["manifest", "biuld"], &[]);
    assert!(err.contains("(did you mean build?)"), "{err}");
    let err = error(&["run", "--manifest-ur", "/m"], &[]);
    assert!(err.contains("(did you mean --manifest-url?)"), "{err}");
    let err = error(&["status", "--jsno"], &[]);
    assert!(err.contains("(did you mean --json?)"), "{err}");
    let err = error(&["status", "json"], &[]);
    assert!(err.contains("(did you mean --json?)"), "{err}");
    let err = error(&["frobnicate"], &[]);
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn the_version_names_the_commit_and_the_target() {
    let v = help::version();
    assert!(
        v.starts_with(&format!("edgewire {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.ends_with(&format!("{})", env!("EDGEWIRE_TARGET"))), "{v}");
    assert!(!env!("EDGEWIRE_TARGET").is_empty());
}

#[test]
fn the_man_page_and_completions_in_the_tree_are_what_the_table_generates() {
    let man = include_str!("../../../docs/edgewire.8");
    let bash = include_str!("../../../docs/edgewire.bash-completion");
    let fix = "regenerate with `edgewire __generate man > docs/edgewire.8` and \
               `edgewire __generate bash > docs/edgewire.bash-completion`";
    assert!(man == help::man_page(), "docs/edgewire.8 is stale: {fix}");
    assert!(
        bash == help::bash_completion(),
        "docs/edgewire.bash-completion is stale: {fix}"
    );
    assert_eq!(help(&["__generate", "man"]), help::man_page());
}

#[test]
fn the_man_page_documents_every_flag_and_the_completions_offer_it() {
    let man = help::man_page();
    let bash = help::bash_completion();
    for c in spec::COMMANDS {
        let flags = c
            .settings
            .iter()
            .map(|k| k.flag)
            .chain(c.options.iter().map(|o| o.flag));
        for flag in flags {
            assert!(man.contains(&flag.replace('-', "\\-")), "man: {flag}");
            assert!(bash.contains(flag), "bash: {flag}");
        }
    }
    assert!(man.starts_with(".\\\"") && man.contains(".TH EDGEWIRE 8"));
}

#[test]
fn open_tun_takes_the_interface_like_run_and_ignores_the_other_settings() {
    let open_tun = |args: &[&str], env: &[(&str, &str)]| match parse_env(args, env).unwrap() {
        Command::OpenTun { interface } => interface,
        other => panic!("{other:?}"),
    };
    assert_eq!(open_tun(&["open-tun"], &[]), config::DEFAULT_INTERFACE);
    // Under systemd the unit's EnvironmentFile= reaches it as the environment; a bad
    // value of a setting it does not use is left for `run` to report (exit 2, no retry).
    let dir = TestDir::new("opentun");
    let file = dir.path("e.conf");
    std::fs::write(&file, "EDGEWIRE_INTERFACE=ew7\nEDGEWIRE_LISTEN_PORT=http\n").unwrap();
    let config = file.to_str().unwrap();
    assert_eq!(open_tun(&["open-tun", "--config", config], &[]), "ew7");
    assert_eq!(
        open_tun(
            &["open-tun", "--interface", "ew9"],
            &[("EDGEWIRE_INTERFACE", "ew8")]
        ),
        "ew9"
    );
    assert!(error(&["open-tun", "--interface", "a/b"], &[]).contains("not an interface name"));
}

#[test]
fn keygen_pubkey_and_status_take_the_state_dir_like_run() {
    let env = [("EDGEWIRE_STATE_DIR", "/env/state")];
    match parse_env(&["keygen", "--force"], &env).unwrap() {
        Command::Keygen { state_dir, force } => {
            assert_eq!((state_dir, force), ("/env/state".into(), true))
        }
        other => panic!("{other:?}"),
    }
    match parse_env(&["pubkey", "--state-dir", "/flag"], &env).unwrap() {
        Command::Pubkey { state_dir } => assert_eq!(state_dir, PathBuf::from("/flag")),
        other => panic!("{other:?}"),
    }
    match parse_env(&["status", "--json"], &[]).unwrap() {
        Command::Status {
            state_dir,
            json,
            all,
        } => assert_eq!(
            (state_dir, json, all),
            (config::DEFAULT_STATE_DIR.into(), true, false)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn manifest_subcommands_parse_their_files() {
    let manifest = |args: &[&str]| match parse_env(args, &[]).unwrap() {
        Command::Manifest(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        manifest(&["manifest", "keygen", "--out", "net.key"]),
        ManifestCommand::Keygen {
            out: "net.key".into()
        }
    );
    assert_eq!(
        manifest(&[
            "manifest",
            "build",
            "lab.json",
            "--key=net.key",
            "-o",
            "lab.ewm"
        ]),
        ManifestCommand::Build {
            source: "lab.json".into(),
            key: "net.key".into(),
            out: "lab.ewm".into(),
            turn_secret_file: None,
            turn_ttl: std::time::Duration::from_secs(24 * 3600),
        }
    );
    assert!(matches!(
        manifest(&["manifest", "build", "lab.json", "--key", "k", "-o", "o", "--turn-secret-file", "s", "--turn-ttl", "90m"]),
        ManifestCommand::Build { turn_secret_file: Some(_), turn_ttl, .. } if turn_ttl.as_secs() == 5400
    ));
    assert_eq!(
        manifest(&["manifest", "show", "lab.ewm", "--pubkey", KEY_A]),
        ManifestCommand::Show {
            manifest: "lab.ewm".into(),
            pubkey: Some(KEY_A.into())
        }
    );
    assert!(error(&["manifest", "build", "lab.json", "-o", "x"], &[]).contains("needs --key FILE"));
    assert!(
        error(&["manifest", "build", "--key", "k", "-o", "x"], &[]).contains("needs SOURCE.json")
    );
    assert!(error(&["manifest", "keygen"], &[]).contains("needs --out FILE"));
    assert!(error(&["status", "--json=yes"], &[]).contains("--json takes no value"));
    assert!(
        error(&["manifest", "keygen", "--out", "a", "--out", "b"], &[]).contains("given twice")
    );
}

#[test]
fn import_wg_takes_a_file_an_address_and_optionally_this_devices_key() {
    let key = "+9FR5rcSXnU3aLEDWGm0KQK5fpRQcPlorzYLaoGr7CQ=";
    match parse_env(
        &[
            "manifest",
            "import-wg",
            "peer.conf",
            "--address=10.4.0.99/16",
            "--public-key",
            key,
        ],
        &[],
    )
    .unwrap()
    {
        Command::Manifest(ManifestCommand::ImportWg {
            file,
            address,
            public_key,
        }) => {
            assert_eq!(file, PathBuf::from("peer.conf"));
            assert_eq!(address, "10.4.0.99/16".parse().unwrap());
            assert_eq!(public_key, Some(key.parse().unwrap()));
        }
        other => panic!("{other:?}"),
    }
    let err = error(&["manifest", "import-wg", "peer.conf"], &[]);
    assert!(err.contains("needs --address PREFIX"), "{err}");
    let err = error(&["manifest", "import-wg", "--address", "10.4.0.99/16"], &[]);
    assert!(
        err.contains("needs FILE (the output of `kgctl showconf peer NAME`)"),
        "{err}"
    );
    let err = error(
        &[
            "manifest",
            "import-wg",
            "p",
            "--address",
            "10.4.0.99/16",
            "--public-key",
            "x",
        ],
        &[],
    );
    assert!(
        err.starts_with("--public-key: \"x\" is not a WireGuard key"),
        "{err}"
    );
}

#[test]
fn export_kilo_takes_a_source_and_a_keepalive_that_is_not_0() {
    match parse_env(
        &["manifest", "export-kilo", "site.json", "--keepalive", "15"],
        &[],
    )
    .unwrap()
    {
        Command::Manifest(ManifestCommand::ExportKilo { source, keepalive }) => {
            assert_eq!((source, keepalive), ("site.json".into(), Some(15)));
        }
        other => panic!("{other:?}"),
    }
    let err = error(
        &["manifest", "export-kilo", "s.json", "--keepalive", "0"],
        &[],
    );
    assert!(
        err.contains("Kilo resets a Peer whose keepalive is 0"),
        "{err}"
    );
    let err = error(&["manifest", "export-kilo"], &[]);
    assert!(err.contains("needs SOURCE"), "{err}");
}

#[test]
fn the_control_socket_and_metrics_settings_have_defaults_and_checks() {
    let ops = |args: &[&str]| {
        let mut full = vec!["run", "--manifest-url", "/m", "--manifest-pubkey", KEY_A];
        full.extend_from_slice(args);
        match parse_env(&full, &[]) {
            Ok(Command::Run(_, ops)) => Ok(ops),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(format!("{e:#}")),
        }
    };
    let default = ops(&[]).unwrap();
    assert_eq!(
        default.control_dir,
        Some(PathBuf::from(config::DEFAULT_CONTROL_DIR))
    );
    assert_eq!((default.metrics_file, default.metrics_listen), (None, None));
    assert_eq!(default.metrics_interval, config::DEFAULT_METRICS_INTERVAL);
    assert_eq!(ops(&["--control-dir", "none"]).unwrap().control_dir, None);
    let set = ops(&[
        "--metrics-file=/var/lib/node_exporter/edgewire.prom",
        "--metrics-interval",
        "10",
        "--metrics-listen",
        "127.0.0.1:9586",
    ])
    .unwrap();
    assert_eq!(set.metrics_interval, Duration::from_secs(10));
    assert_eq!(set.metrics_listen, Some("127.0.0.1:9586".parse().unwrap()));
    let err = ops(&["--metrics-listen", "localhost"]).unwrap_err();
    assert!(
        err.starts_with("--metrics-listen: \"localhost\" is not an address and port"),
        "{err}"
    );
}
