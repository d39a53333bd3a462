//! The command table: every command, its options, arguments, environment and example.
//!
//! One table feeds the parser (`scan`), each command's `--help`, the man page and the
//! bash completions (`help.rs`), so none of them can say something the parser does not
//! do. A new option is one row here plus reading it where the command is built.

use super::settings::{self, Key, STATE_DIR};

/// An option that is not a setting: it comes from the command line only.
#[derive(Debug)]
pub struct Opt {
    pub flag: &'static str,
    /// A one-letter alias (`-o`).
    pub short: Option<&'static str>,
    /// The value's placeholder; `None` for a switch.
    pub value: Option<&'static str>,
    pub required: bool,
    pub help: &'static str,
}

/// A positional argument.
#[derive(Debug)]
pub struct Arg {
    pub name: &'static str,
    pub help: &'static str,
}

/// What a (sub)command accepts, and how it is documented.
#[derive(Debug)]
pub struct Spec {
    /// As typed after `edgewire`: `run`, `manifest build`.
    pub name: &'static str,
    /// One line for the command list.
    pub about: &'static str,
    /// Settings that may also come from the environment and the env file.
    pub settings: &'static [&'static Key],
    /// Command-line options; `--config` among them reads the env file.
    pub options: &'static [Opt],
    pub args: &'static [Arg],
    pub example: &'static str,
}

impl Spec {
    /// Whether `--config` (and so the env file) applies.
    pub fn reads_env_file(&self) -> bool {
        !self.settings.is_empty()
    }

    pub fn option(&self, flag: &str) -> Option<&'static Opt> {
        self.options
            .iter()
            .find(|o| o.flag == flag || o.short == Some(flag))
    }
}

/// `EDGEWIRE_*` variables read by every command, with their meaning.
pub const COMMON_ENV: &[(&str, &str)] = &[(
    "EDGEWIRE_LOG",
    "log level: off, error, warn, info (default), debug or trace",
)];

const CONFIG: Opt = Opt {
    flag: "--config",
    short: None,
    value: Some("FILE"),
    required: false,
    help: "env file of EDGEWIRE_*=value lines (env EDGEWIRE_CONFIG; default \
           /etc/edgewire/edgewire.conf)",
};

const fn switch(flag: &'static str, help: &'static str) -> Opt {
    Opt {
        flag,
        short: None,
        value: None,
        required: false,
        help,
    }
}

const fn option(flag: &'static str, value: &'static str, help: &'static str) -> Opt {
    Opt {
        flag,
        short: None,
        value: Some(value),
        required: false,
        help,
    }
}

const fn required(flag: &'static str, value: &'static str, help: &'static str) -> Opt {
    Opt {
        required: true,
        ..option(flag, value, help)
    }
}

pub const RUN: Spec = Spec {
    name: "run",
    about: "join the overlay and keep it up (the daemon)",
    settings: settings::KEYS,
    options: &[CONFIG],
    args: &[],
    example: "edgewire run --manifest-url https://m.example.net/site-a.ewm \\\n    \
              --manifest-pubkey 9GDKR4Yt0i8gE2GFu1A3CsyZ0kHZoTWuKuXfG2y4rWY=",
};
pub const NETCHECK: Spec = Spec {
    name: "netcheck",
    about: "check whether this device can join its overlay, and what is in the way",
    settings: settings::OVERLAY_KEYS,
    options: &[CONFIG, switch("--json", "print the checks as JSON")],
    args: &[],
    example: "edgewire netcheck --json",
};
pub const KEYGEN: Spec = Spec {
    name: "keygen",
    about: "make this device's WireGuard key (kept 0600 in the state directory)",
    settings: &[&STATE_DIR],
    options: &[
        CONFIG,
        switch(
            "--force",
            "replace an existing key (the device's peers must learn the new one)",
        ),
    ],
    args: &[],
    example: "edgewire keygen --state-dir /var/lib/edgewire",
};
pub const PUBKEY: Spec = Spec {
    name: "pubkey",
    about: "print this device's public key, for enrolment in the manifest",
    options: &[CONFIG],
    example: "edgewire pubkey",
    ..KEYGEN
};
pub const STATUS: Spec = Spec {
    name: "status",
    about: "ask the running agent what it is doing",
    options: &[
        CONFIG,
        switch(
            "--json",
            "print the report as JSON (field names are kept across versions)",
        ),
        switch(
            "--all",
            "list every peer (by default: counts, hubs and the peers not idle)",
        ),
    ],
    example: "edgewire status --json",
    ..KEYGEN
};
pub const MANIFEST_KEYGEN: Spec = Spec {
    name: "manifest keygen",
    about: "make a network signing key: FILE (private, 0600) and FILE.pub",
    settings: &[],
    options: &[Opt {
        short: Some("-o"),
        ..required(
            "--out",
            "FILE",
            "where the private key goes; never replaced",
        )
    }],
    args: &[],
    example: "edgewire manifest keygen --out net.key",
};
pub const MANIFEST_BUILD: Spec = Spec {
    name: "manifest build",
    about: "sign a JSON source into the manifest devices fetch",
    settings: &[],
    options: &[
        required(
            "--key",
            "FILE",
            "the network private key from `manifest keygen`",
        ),
        Opt {
            short: Some("-o"),
            ..required("--out", "MANIFEST", "where the signed manifest goes")
        },
        option(
            "--turn-secret-file",
            "FILE",
            "coturn's static-auth-secret: relays without credentials get \
             time-limited ones (the secret itself is never written)",
        ),
        option(
            "--turn-ttl",
            "DURATION",
            "how long minted relay credentials stay valid: 3600, 90m, 24h, 7d \
             (default 24h)",
        ),
    ],
    args: &[Arg {
        name: "SOURCE.json",
        help: "the manifest source: network, serial, overlay, nodes, relays",
    }],
    example: "edgewire manifest build site-a.json --key net.key -o site-a.ewm",
};
pub const MANIFEST_SHOW: Spec = Spec {
    name: "manifest show",
    about: "print a built manifest; with --pubkey, check its signature",
    settings: &[],
    options: &[option(
        "--pubkey",
        "KEY|FILE.pub",
        "the network public key, base64 or the .pub file from `manifest keygen`",
    )],
    args: &[Arg {
        name: "MANIFEST",
        help: "a file written by `manifest build`",
    }],
    example: "edgewire manifest show site-a.ewm --pubkey net.key.pub",
};
pub const MANIFEST_IMPORT_WG: Spec = Spec {
    name: "manifest import-wg",
    about: "turn Kilo's `kgctl showconf peer` into a JSON source (on stdout)",
    settings: &[],
    options: &[
        required(
            "--address",
            "PREFIX",
            "this device's overlay address with the overlay's length, as 10.4.0.99/16",
        ),
        option(
            "--public-key",
            "KEY",
            "this device's WireGuard public key (`edgewire pubkey`), to add it as a node",
        ),
    ],
    args: &[Arg {
        name: "FILE",
        help: "the output of `kgctl showconf peer NAME`",
    }],
    example: "kgctl showconf peer dev-1 > dev-1.conf\n\
              edgewire manifest import-wg dev-1.conf --address 10.4.0.99/16 > site-a.json",
};
pub const MANIFEST_EXPORT_KILO: Spec = Spec {
    name: "manifest export-kilo",
    about: "print each edge as a Kilo Peer (YAML, for `kubectl apply -f -`)",
    settings: &[],
    options: &[option(
        "--keepalive",
        "SECS",
        "persistentKeepalive for edges that have none in the source; Kilo resets a \
         Peer whose keepalive is 0 (default 25)",
    )],
    args: &[Arg {
        name: "SOURCE",
        help: "the manifest's JSON source, or a manifest built from it",
    }],
    example: "edgewire manifest export-kilo site-a.json | kubectl apply -f -",
};
pub const OPEN_TUN: Spec = Spec {
    name: "open-tun",
    about: "for the systemd unit, as root before run: make the TUN device, pass it on",
    settings: &[&settings::INTERFACE],
    options: &[CONFIG],
    args: &[],
    example: "edgewire open-tun --interface ew0",
};
pub const VERSION: Spec = Spec {
    name: "version",
    about: "print the version, the git commit it was built from and its target",
    settings: &[],
    options: &[],
    args: &[],
    example: "edgewire --version",
};
pub const HELP: Spec = Spec {
    name: "help",
    about: "print the command list, or a command's own help",
    settings: &[],
    options: &[],
    args: &[],
    example: "edgewire help manifest build",
};

/// Every command, in the order the help lists them.
pub const COMMANDS: &[&Spec] = &[
    &RUN,
    &NETCHECK,
    &KEYGEN,
    &PUBKEY,
    &STATUS,
    &MANIFEST_KEYGEN,
    &MANIFEST_BUILD,
    &MANIFEST_SHOW,
    &MANIFEST_IMPORT_WG,
    &MANIFEST_EXPORT_KILO,
    &OPEN_TUN,
    &VERSION,
    &HELP,
];

/// The subcommands of `manifest`.
pub fn manifest_subcommands() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .filter_map(|c| c.name.strip_prefix("manifest "))
}

/// The words that may follow `edgewire`.
pub fn top_words() -> Vec<&'static str> {
    let mut words: Vec<&'static str> = COMMANDS
        .iter()
        .map(|c| c.name.split(' ').next().unwrap_or(c.name))
        .collect();
    words.dedup();
    words
}

pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().copied().find(|c| c.name == name)
}
