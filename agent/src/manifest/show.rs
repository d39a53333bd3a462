//! The human-readable dump behind `edgewire manifest show`: everything an operator needs
//! to check before publishing, and nothing secret (relay passwords and preshared keys
//! are only said to be present).

use std::fmt::Write;

use super::rfc3339::format_rfc3339;
use super::{Manifest, Role};

/// Renders `manifest`. `signature` is the line's text ("valid (key ...)" or "not
/// checked ..."): the caller decides what was checked.
pub fn render(manifest: &Manifest, envelope_len: usize, signature: &str) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_all(&mut out, manifest, envelope_len, signature);
    out
}

fn write_all(out: &mut String, m: &Manifest, len: usize, signature: &str) -> std::fmt::Result {
    writeln!(out, "network:   {}", m.network)?;
    writeln!(out, "serial:    {}", m.serial)?;
    writeln!(out, "overlay:   {}", m.overlay)?;
    match m.expires {
        Some(t) => writeln!(out, "expires:   {} ({t})", format_rfc3339(t))?,
        None => writeln!(out, "expires:   never")?,
    }
    writeln!(
        out,
        "format:    version {}, {len} bytes",
        super::FORMAT_VERSION
    )?;
    writeln!(out, "signature: {signature}")?;
    writeln!(out, "nodes ({}):", m.nodes.len())?;
    for node in &m.nodes {
        let role = match node.role {
            Role::Hub => "hub",
            Role::Edge => "edge",
        };
        match &node.site {
            Some(site) => writeln!(out, "  {}  {role}  site {site}", node.name)?,
            None => writeln!(out, "  {}  {role}", node.name)?,
        }
        writeln!(out, "    public key:  {}", node.public_key)?;
        writeln!(out, "    addresses:   {}", join(&node.addresses))?;
        if !node.allowed_ips.is_empty() {
            writeln!(out, "    allowed ips: {}", join(&node.allowed_ips))?;
        }
        if !node.endpoints.is_empty() {
            writeln!(out, "    endpoints:   {}", node.endpoints.join(", "))?;
        }
        match node.keepalive {
            Some(0) => writeln!(out, "    keepalive:   off")?,
            Some(secs) => writeln!(out, "    keepalive:   {secs} s")?,
            None => {}
        }
        if node.preshared_key.is_some() {
            writeln!(out, "    preshared key: set")?;
        }
    }
    if !m.relays.is_empty() {
        writeln!(out, "relays ({}):", m.relays.len())?;
        for relay in &m.relays {
            writeln!(out, "  {}  user {}", relay.url, relay.username)?;
        }
    }
    if !m.stun.is_empty() {
        writeln!(out, "stun servers: {}", m.stun.join(", "))?;
    }
    let problems = m.problems();
    if problems.is_empty() {
        writeln!(out, "validation: ok")?;
    } else {
        writeln!(
            out,
            "validation: {} problem(s); devices will refuse this manifest:",
            problems.len()
        )?;
        for problem in problems {
            writeln!(out, "  - {problem}")?;
        }
    }
    Ok(())
}

fn join(items: &[impl std::fmt::Display]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::lab_manifest;
    use super::*;

    #[test]
    fn the_dump_shows_every_node_and_relay_but_no_secrets() {
        let text = render(&lab_manifest(), 400, "not checked");
        for expected in [
            "network:   lab",
            "expires:   2027-01-01T00:00:00Z (1798761600)",
            "signature: not checked",
            "  hub-1  hub\n",
            "  dev-1  edge  site lab-a\n",
            "    endpoints:   203.0.113.10:51820",
            "    allowed ips: 10.42.128.0/24",
            "    keepalive:   25 s",
            "    keepalive:   off",
            "    preshared key: set",
            "  turn:198.51.100.1:3478?transport=udp  user u\n",
            "validation: ok",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        // The relay password is "p"; nothing may print it.
        assert!(
            !text.contains("password") && !text.contains(" p\n"),
            "{text}"
        );
        assert!(!text.contains("MzMz"), "preshared key leaked:\n{text}");
    }

    #[test]
    fn the_dump_lists_validation_problems() {
        let mut manifest = lab_manifest();
        manifest.serial = 0;
        let text = render(&manifest, 400, "not checked");
        assert!(text.contains("validation: 1 problem(s)"), "{text}");
    }
}
