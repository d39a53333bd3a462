//! Everything printed about the command line, rendered from the table in `spec.rs`:
//! the command list, each command's `--help`, `--version`, the man page edgewire(8)
//! and the bash completions (`edgewire __generate man|bash`, for packagers).

use std::fmt::Write;

use super::settings::Key;
use super::spec::{self, COMMANDS, COMMON_ENV, Spec};
use crate::config;

/// Help text lines never run past this, so they read on an 80-column serial console.
pub const WIDTH: usize = 80;

pub fn version() -> String {
    format!(
        "edgewire {} (commit {}, {})",
        env!("CARGO_PKG_VERSION"),
        env!("EDGEWIRE_GIT_COMMIT"),
        env!("EDGEWIRE_TARGET")
    )
}

/// `edgewire help`: the commands, one line each.
pub fn overview() -> String {
    let mut s = format!(
        "edgewire {}: a WireGuard overlay agent for field devices\n\n\
         usage: edgewire COMMAND [OPTIONS]\n\ncommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    list(&mut s, COMMANDS.iter().copied());
    s.push('\n');
    paragraph(
        &mut s,
        &format!(
            "`edgewire COMMAND --help` prints a command's options, environment variables \
             and an example. Flags beat environment variables, which beat the env file \
             ({}). Options take `--flag value` or `--flag=value`.",
            config::DEFAULT_CONFIG_FILE
        ),
        0,
    );
    s
}

/// `edgewire manifest --help`: the manifest tools.
pub fn manifest_overview() -> String {
    let mut s = String::from(
        "edgewire manifest: the operator's tools for the signed manifest\n\n\
         usage: edgewire manifest COMMAND [OPTIONS]\n\ncommands:\n",
    );
    list(
        &mut s,
        COMMANDS
            .iter()
            .copied()
            .filter(|c| c.name.starts_with("manifest ")),
    );
    s.push_str("\n`edgewire manifest COMMAND --help` prints a command's own help.\n");
    s
}

fn list<'a>(s: &mut String, commands: impl Iterator<Item = &'a Spec>) {
    for c in commands {
        let head = format!("  {:<20} ", c.name);
        let lines = wrap(c.about, WIDTH - head.len());
        for (i, line) in lines.iter().enumerate() {
            let pad = if i == 0 {
                head.clone()
            } else {
                " ".repeat(head.len())
            };
            let _ = writeln!(s, "{pad}{line}");
        }
    }
}

/// `edgewire COMMAND --help`.
pub fn command(spec: &Spec) -> String {
    let mut s = String::new();
    paragraph(
        &mut s,
        &format!("edgewire {}: {}", spec.name, spec.about),
        0,
    );
    s.push('\n');
    let synopsis = format!("usage: {}", synopsis(spec));
    for (i, line) in wrap(&synopsis, WIDTH - 11).iter().enumerate() {
        let pad = if i == 0 { "" } else { "           " };
        let _ = writeln!(s, "{pad}{line}");
    }
    if !spec.args.is_empty() {
        s.push_str("\narguments:\n");
        for arg in spec.args {
            item(&mut s, arg.name, arg.help, None);
        }
    }
    s.push_str("\noptions:\n");
    for key in spec.settings {
        item(
            &mut s,
            &format!("{} {}", key.flag, key.value),
            key.help,
            Some(key.env),
        );
    }
    for opt in spec.options {
        item(&mut s, &opt_head(opt), opt.help, None);
    }
    item(&mut s, "-h, --help", "print this help", None);
    s.push_str("\nenvironment:\n");
    for (name, help) in COMMON_ENV {
        item(&mut s, name, help, None);
    }
    if spec.reads_env_file() {
        s.push('\n');
        paragraph(
            &mut s,
            "Each option's EDGEWIRE_* variable may also be set in the environment or the \
             env file; flags beat the environment, which beats the file.",
            0,
        );
    }
    s.push_str("\nexample:\n");
    for line in spec.example.lines() {
        let _ = writeln!(s, "  {line}");
    }
    s
}

/// `edgewire manifest build SOURCE.json --key FILE --out MANIFEST [OPTIONS]`.
pub fn synopsis(spec: &Spec) -> String {
    let mut s = format!("edgewire {}", spec.name);
    for arg in spec.args {
        let _ = write!(s, " {}", arg.name);
    }
    for opt in spec.options.iter().filter(|o| o.required) {
        let _ = write!(s, " {}", opt_usage(opt));
    }
    let optional = spec.settings.len() + spec.options.iter().filter(|o| !o.required).count();
    if optional > 0 {
        s.push_str(" [OPTIONS]");
    }
    s
}

fn opt_usage(opt: &spec::Opt) -> String {
    match opt.value {
        Some(value) => format!("{} {value}", opt.flag),
        None => opt.flag.to_string(),
    }
}

fn opt_head(opt: &spec::Opt) -> String {
    match opt.short {
        Some(short) => format!("{short}, {}", opt_usage(opt)),
        None => opt_usage(opt),
    }
}

/// An option or argument: its head on one line, its text indented below.
fn item(s: &mut String, head: &str, help: &str, env: Option<&str>) {
    let _ = writeln!(s, "  {head}");
    paragraph(s, help, 6);
    if let Some(env) = env {
        let _ = writeln!(s, "      env {env}");
    }
}

fn paragraph(s: &mut String, text: &str, indent: usize) {
    for line in wrap(text, WIDTH - indent) {
        let _ = writeln!(s, "{}{line}", " ".repeat(indent));
    }
}

/// Greedy word wrap; a single word longer than `width` stands on its own line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// edgewire(8) in roff.
pub fn man_page() -> String {
    let mut s = format!(
        ".\\\" Generated by `edgewire __generate man` from the command table; do not edit.\n\
         .TH EDGEWIRE 8 \"\" \"edgewire {}\" \"System Administration\"\n\
         .SH NAME\nedgewire \\- a WireGuard overlay agent for field devices\n\
         .SH SYNOPSIS\n",
        env!("CARGO_PKG_VERSION")
    );
    for c in COMMANDS {
        let _ = writeln!(s, ".B {}\n.br", roff(&synopsis(c)));
    }
    s.push_str(".SH DESCRIPTION\n");
    s.push_str(&roff(
        "edgewire joins a device to a WireGuard overlay network described by a signed \
         manifest it fetches from a URL. It talks plain WireGuard to its peers (kernel \
         WireGuard, wireguard-go, Kilo nodes), falls back to a TURN relay when UDP does \
         not get through, and returns to the direct path when it works again.",
    ));
    s.push_str("\n.PP\n");
    s.push_str(&roff(&format!(
        "Settings come from flags, then the environment (EDGEWIRE_*), then the env file \
         ({}), in that order of precedence. Options take --flag value or --flag=value.",
        config::DEFAULT_CONFIG_FILE
    )));
    s.push_str("\n.SH COMMANDS\n");
    for c in COMMANDS {
        let _ = writeln!(s, ".SS \"{}\"\n{}", roff(&synopsis(c)), roff(c.about));
        for arg in c.args {
            let _ = writeln!(s, ".TP\n.I {}\n{}", roff(arg.name), roff(arg.help));
        }
        for key in c.settings {
            man_key(&mut s, key);
        }
        for opt in c.options {
            let head = match opt.value {
                Some(v) => format!(".BI \"{}\" \" {}\"", roff(&opt_head_flag(opt)), roff(v)),
                None => format!(".B {}", roff(&opt_head_flag(opt))),
            };
            let _ = writeln!(s, ".TP\n{head}\n{}", roff(opt.help));
        }
        let _ = writeln!(s, ".PP\nExample:\n.PP\n.RS\n.nf");
        for line in c.example.lines() {
            let _ = writeln!(s, "{}", roff(line));
        }
        let _ = writeln!(s, ".fi\n.RE");
    }
    s.push_str(".SH ENVIRONMENT\n");
    for (name, help) in COMMON_ENV {
        let _ = writeln!(s, ".TP\n.B {}\n{}", roff(name), roff(help));
    }
    let _ = writeln!(
        s,
        ".TP\n.B EDGEWIRE_CONFIG\n{}",
        roff("the env file to read instead of the default")
    );
    let _ = writeln!(
        s,
        ".TP\n.B EDGEWIRE_*\n{}",
        roff("each setting of `edgewire run`, named under its option above")
    );
    let _ = writeln!(
        s,
        ".SH FILES\n.TP\n.I {}\n{}\n.TP\n.I {}\n{}",
        roff(config::DEFAULT_CONFIG_FILE),
        roff("the env file: EDGEWIRE_*=value lines, as systemd's EnvironmentFile reads them"),
        roff(config::DEFAULT_STATE_DIR),
        roff(
            "the state directory (0700): the device's private key, the last good manifest, \
             the highest accepted serial and the status socket edgewire.sock"
        ),
    );
    s.push_str(".SH SEE ALSO\n.BR wg (8),\n.BR systemd.service (5)\n");
    s
}

fn man_key(s: &mut String, key: &Key) {
    let _ = writeln!(
        s,
        ".TP\n.BI \"{}\" \" {}\"\n{}\n.br\nEnvironment: {}.",
        roff(key.flag),
        roff(key.value),
        roff(key.help),
        roff(key.env)
    );
}

fn opt_head_flag(opt: &spec::Opt) -> String {
    match opt.short {
        Some(short) => format!("{short}, {}", opt.flag),
        None => opt.flag.to_string(),
    }
}

/// Text safe in a roff line: backslashes and hyphens escaped, no line starting as a
/// request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The bash completion script.
pub fn bash_completion() -> String {
    let mut s = String::from(
        "# bash completion for edgewire. Generated by `edgewire __generate bash` from the\n\
         # command table; do not edit.\n\
         _edgewire() {\n\
         \x20   local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n\
         \x20   local cmd=${COMP_WORDS[1]}\n\
         \x20   COMPREPLY=()\n\
         \x20   if [[ $COMP_CWORD -eq 1 ]]; then\n",
    );
    let _ = writeln!(
        s,
        "        COMPREPLY=($(compgen -W \"{} --help --version\" -- \"$cur\"))\n        \
         return\n    fi",
        spec::top_words().join(" ")
    );
    let _ = writeln!(
        s,
        "    if [[ $cmd == manifest ]]; then\n        if [[ $COMP_CWORD -eq 2 ]]; then\n            \
         COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))\n            return\n        fi\n        \
         cmd=\"manifest ${{COMP_WORDS[2]}}\"\n    fi",
        spec::manifest_subcommands().collect::<Vec<_>>().join(" ")
    );
    s.push_str("    case \"$cmd $prev\" in\n");
    for c in COMMANDS {
        let mut valued: Vec<(&str, &str)> = c.settings.iter().map(|k| (k.flag, k.value)).collect();
        for o in c.options {
            if let Some(value) = o.value {
                valued.push((o.flag, value));
                valued.extend(o.short.map(|short| (short, value)));
            }
        }
        for (flag, value) in valued {
            let _ = writeln!(
                s,
                "        \"{} {flag}\") {}; return ;;",
                c.name,
                complete_value(value)
            );
        }
    }
    s.push_str("    esac\n    case \"$cmd\" in\n");
    for c in COMMANDS {
        let mut flags: Vec<&str> = c.settings.iter().map(|k| k.flag).collect();
        flags.extend(c.options.iter().map(|o| o.flag));
        flags.push("--help");
        let files = if c.args.is_empty() {
            String::new()
        } else {
            "\n            [[ $cur != -* ]] && COMPREPLY=($(compgen -f -- \"$cur\"))".to_string()
        };
        let _ = writeln!(
            s,
            "        \"{}\")\n            [[ $cur == -* ]] && COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")){files}\n            ;;",
            c.name,
            flags.join(" ")
        );
    }
    s.push_str("    esac\n}\ncomplete -F _edgewire edgewire\n");
    s
}

/// How a value placeholder completes: files, directories, a fixed list, or nothing.
fn complete_value(value: &str) -> String {
    if value.contains('|') && value.chars().all(|c| c.is_ascii_lowercase() || c == '|') {
        return format!(
            "COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))",
            value.replace('|', " ")
        );
    }
    match value {
        "DIR" => "COMPREPLY=($(compgen -d -- \"$cur\"))".into(),
        v if v.contains("FILE") || v == "MANIFEST" || v == "URL" => {
            "COMPREPLY=($(compgen -f -- \"$cur\"))".into()
        }
        _ => "COMPREPLY=()".into(),
    }
}
