//! The status report: what the running agent answers on its Unix socket, and the
//! `edgewire status` client that asks for it and prints it.
//!
//! The socket lives in the state directory (0700), so only the agent's own user (root or
//! the service user) can ask.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const SOCKET_NAME: &str = "edgewire.sock";

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub interface: String,
    /// This node's name in the manifest (null until it finds itself there).
    pub name: Option<String>,
    pub public_key: String,
    pub addresses: Vec<String>,
    pub listen_port: u16,
    /// The manifest in force (null before the first good one).
    pub manifest: Option<ManifestInfo>,
    /// What the agent is doing, in a few words (also systemd's STATUS= line).
    pub state: String,
    /// The hub the overlay prefix goes through now (edges only).
    pub overlay_via: Option<String>,
    pub peers: Vec<PeerReport>,
    pub drops: DropReport,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ManifestInfo {
    pub serial: u64,
    pub source: String,
    pub network: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerReport {
    pub name: String,
    pub public_key: String,
    pub role: String,
    /// Where datagrams go now (null until known).
    pub endpoint: Option<String>,
    /// `direct` or `relay`; null while no path is known.
    pub path: Option<String>,
    /// `up`, `down` or `unknown`, judged from whether it answers what we send.
    pub health: String,
    /// On a relayed path: the TURN server (`HOST:PORT`) and how it is reached
    /// (`udp`, `tcp` or `tls`).
    pub relay: Option<String>,
    pub relay_transport: Option<String>,
    pub last_handshake_secs: Option<u64>,
    pub handshakes: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub allowed_ips: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DropReport {
    pub no_route: u64,
    pub unknown_datagram: u64,
    pub refused: u64,
}

/// Asks the agent whose state directory is `state_dir` and prints its answer.
pub fn print(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let report = query(state_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}

pub fn query(state_dir: &Path) -> anyhow::Result<Report> {
    let path = socket_path(state_dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| connect_error(state_dir, &path, e))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .with_context(|| format!("reading the status from {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "the agent at {} sent a status this tool cannot read",
            path.display()
        )
    })
}

/// Why `status` cannot ask the agent, and what to do about it.
fn connect_error(state_dir: &Path, path: &Path, e: std::io::Error) -> anyhow::Error {
    let (path, dir) = (path.display(), state_dir.display());
    let advice = match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "the state directory {dir} is open only to the agent's user (it holds the \
             private key): run `edgewire status` as root or as that user"
        ),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "is `edgewire run` running with --state-dir {dir}? (`systemctl status \
             edgewire`)"
        ),
        _ => format!("is `edgewire run` running with --state-dir {dir}?"),
    };
    anyhow::anyhow!("cannot reach the agent at {path} ({e}): {advice}")
}

fn human(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "interface: {}  port {}", r.interface, r.listen_port);
    let _ = writeln!(
        s,
        "node:      {} ({})",
        r.name.as_deref().unwrap_or("-"),
        r.public_key
    );
    let _ = writeln!(s, "addresses: {}", r.addresses.join(", "));
    match &r.manifest {
        Some(m) => {
            let _ = writeln!(
                s,
                "manifest:  {} serial {} from {}",
                m.network, m.serial, m.source
            );
        }
        None => {
            let _ = writeln!(s, "manifest:  none yet");
        }
    }
    let _ = writeln!(s, "state:     {}", r.state);
    if let Some(via) = &r.overlay_via {
        let _ = writeln!(s, "overlay:   via {via}");
    }
    for p in &r.peers {
        let handshake = p
            .last_handshake_secs
            .map_or("never".to_string(), |t| format!("{t} s ago"));
        let _ = writeln!(
            s,
            "\npeer {} ({}, {}, {})\n  endpoint:  {} ({})\n  handshake: {}\n  transfer:  {} B received, {} B sent\n  allowed:   {}",
            p.name,
            p.role,
            p.health,
            p.public_key,
            p.endpoint.as_deref().unwrap_or("unknown"),
            match (&p.relay, &p.relay_transport) {
                (Some(relay), Some(t)) => format!("relay {relay} over {t}"),
                _ => p.path.clone().unwrap_or_else(|| "no path".into()),
            },
            handshake,
            p.rx_bytes,
            p.tx_bytes,
            p.allowed_ips.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_says_whose_directory_it_is_and_what_to_do() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let dir = Path::new("/var/lib/edgewire");
        let text = connect_error(dir, &socket_path(dir), e).to_string();
        assert!(
            text.contains("/var/lib/edgewire is open only to the agent's user")
                && text.contains("run `edgewire status` as root"),
            "{text}"
        );
        assert!(!text.contains("is `edgewire run` running"), "{text}");
    }

    #[test]
    fn no_socket_asks_whether_the_agent_runs_with_that_state_dir() {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        let dir = Path::new("/tmp/s");
        let text = connect_error(dir, &socket_path(dir), e).to_string();
        assert!(text.contains("running with --state-dir /tmp/s"), "{text}");
    }
}
