//! The env file (`/etc/edgewire/edgewire.conf`) in systemd's `EnvironmentFile=` syntax,
//! so one file serves both the unit and a hand-started `edgewire run`: `KEY=value`
//! lines, `#` and `;` comments, blank lines, optional single or double quotes.

/// One assignment, with its 1-based line number for messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// The assignments, and `(line, problem)` for lines that are not assignments. Problems
/// are warnings, not errors: systemd skips such lines too, and the daemon should start
/// the same way under both.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<(usize, String)>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            problems.push((i + 1, "expected KEY=value".to_string()));
            continue;
        };
        let name = name.trim();
        if !is_env_name(name) {
            problems.push((i + 1, format!("{name:?} is not a variable name")));
            continue;
        }
        entries.push(Entry {
            name: name.to_string(),
            value: unquote(value.trim()),
            line: i + 1,
        });
    }
    (entries, problems)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Single quotes keep their content as is; double quotes honour backslash escapes
/// (`\"`, `\\`), as systemd does.
fn unquote(value: &str) -> String {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') {
        value[1..value.len() - 1].to_string()
    } else if quoted('"') {
        let mut out = String::new();
        let mut chars = value[1..value.len() - 1].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: &str, line: usize) -> Entry {
        Entry {
            name: name.into(),
            value: value.into(),
            line,
        }
    }

    #[test]
    fn comments_blank_lines_and_quotes_follow_systemd() {
        let text = "# edgewire\n\nEDGEWIRE_A=plain\n  ; old style\n\
                    EDGEWIRE_B = \"quoted \\\"x\\\"\"\n\
                    EDGEWIRE_C='single $x'\nEDGEWIRE_D=a=b\nEDGEWIRE_E=\n";
        let (entries, problems) = parse(text);
        assert_eq!(
            entries,
            vec![
                entry("EDGEWIRE_A", "plain", 3),
                entry("EDGEWIRE_B", "quoted \"x\"", 5),
                entry("EDGEWIRE_C", "single $x", 6),
                entry("EDGEWIRE_D", "a=b", 7),
                entry("EDGEWIRE_E", "", 8),
            ]
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn lines_that_are_not_assignments_are_reported_with_their_number() {
        let (entries, problems) = parse("EDGEWIRE_A=1\nnonsense\n1BAD=2\n");
        assert_eq!(entries.len(), 1);
        assert_eq!(problems[0], (2, "expected KEY=value".to_string()));
        assert_eq!(problems[1].0, 3);
    }
}
