//! Answers `edgewire status` on a Unix socket in the state directory: one JSON report
//! per connection, written by a small task so a slow reader never holds up packets.
//! The loop hands the task the peers' facts; the task makes their entries and
//! serialises them a piece at a time with the loop running in between (`pace.rs`).
//!
//! The socket is 0600 whatever the umask: `bind` creates it with the umask's mode (0777
//! under umask 000), so it is changed right after; the 0700 state directory keeps
//! everyone else out in between.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::Context;
use smol::Async;

use crate::status::{self, Report};

use super::pace;

pub struct StatusServer {
    listener: Async<UnixListener>,
    path: PathBuf,
}

impl StatusServer {
    pub fn bind(state_dir: &Path) -> anyhow::Result<StatusServer> {
        let path = status::socket_path(state_dir);
        // A socket file left by an agent that died; a live agent would still answer.
        if UnixStream::connect(&path).is_ok() {
            anyhow::bail!(
                "another agent is already running with state directory {} (it answers on {})",
                state_dir.display(),
                path.display()
            );
        }
        let _ = std::fs::remove_file(&path);
        let listener = Async::<UnixListener>::bind(&path)
            .with_context(|| format!("listening for status requests on {}", path.display()))?;
        let server = StatusServer { listener, path };
        std::fs::set_permissions(&server.path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private (0600)", server.path.display()))?;
        Ok(server)
    }

    pub async fn accept(&self) -> std::io::Result<Async<UnixStream>> {
        // Readiness first: the agent's loop polls this afresh on every wake-up, and
        // accept itself would make a system call each time (see `Agent::run`).
        self.listener.readable().await?;
        self.listener.accept().await.map(|(stream, _)| stream)
    }
}

/// Writes the report and closes the connection.
/// Writes `report` (whose peers are left out) with an entry per `peers` made by
/// `entry`, in pieces: the bytes `serde_json::to_vec` gives for the report with those
/// entries as its peers.
pub async fn answer<P>(
    stream: Async<UnixStream>,
    report: Report,
    peers: Vec<P>,
    entry: impl Fn(&P) -> status::PeerReport,
) {
    // The report without its peers, split where they go: the peers are written into
    // the gap.
    let Ok(outline) = serde_json::to_string(&Report {
        peers: Vec::new(),
        ..report
    }) else {
        return;
    };
    // The last one: `drops`, after the peers, has none; text inside a JSON string
    // cannot match (its quotes are escaped).
    let Some(at) = outline.rfind(PEERS_GAP) else {
        return;
    };
    let (head, tail) = outline.split_at(at + PEERS_GAP.len() - 1);
    if pace::write_all(&stream, head.as_bytes()).await.is_err() {
        return;
    }
    let mut text = Vec::new();
    for (i, piece) in peers.chunks(pace::PEERS_PER_PIECE).enumerate() {
        if i > 0 {
            pace::let_the_loop_run().await;
        }
        text.clear();
        for (j, peer) in piece.iter().enumerate() {
            if i + j > 0 {
                text.push(b',');
            }
            if serde_json::to_writer(&mut text, &entry(peer)).is_err() {
                return;
            }
        }
        if pace::write_all(&stream, &text).await.is_err() {
            return;
        }
    }
    let _ = pace::write_all(&stream, tail.as_bytes()).await;
}

/// Where the peers go in the report serialised without them.
const PEERS_GAP: &str = "\"peers\":[]";

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;

    /// What a client reads from `answer` over a real socket pair (read on a thread of
    /// its own: the answer is larger than the socket's buffer).
    fn read_answer(mut report: Report) -> Vec<u8> {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut &theirs, &mut got).unwrap();
            got
        });
        let peers = std::mem::take(&mut report.peers);
        smol::block_on(answer(
            Async::new(ours).unwrap(),
            report,
            peers,
            Clone::clone,
        ));
        reader.join().unwrap()
    }

    #[test]
    fn the_report_written_in_pieces_is_the_report_serialised_whole() {
        let mut report = Report {
            interface: "ew0".into(),
            state: "up".into(),
            ..Report::default()
        };
        // An empty peer list, one piece, and three pieces with a short last one.
        for n in [0, 3, 2 * pace::PEERS_PER_PIECE + 7] {
            report.peers = (0..n)
                .map(|i| status::PeerReport {
                    name: format!("edge-{i}"),
                    role: "edge".into(),
                    health: "up".into(),
                    allowed_ips: vec![format!("10.42.{}.{}/32", i / 250, i % 250)],
                    ..status::PeerReport::default()
                })
                .collect();
            let whole = serde_json::to_vec(&report).unwrap();
            assert_eq!(
                String::from_utf8(read_answer(report.clone())).unwrap(),
                String::from_utf8(whole).unwrap(),
                "{n} peers"
            );
        }
    }

    #[test]
    fn the_socket_is_private_even_under_umask_000() {
        let dir = TestDir::new("status-umask");
        // SAFETY: umask only swaps the process's creation mask; it is put back at once.
        // Other tests creating files meanwhile pass explicit modes or do not check them.
        let old = unsafe { libc::umask(0) };
        let server = StatusServer::bind(&dir.0);
        unsafe { libc::umask(old) };
        let server = server.unwrap();
        let mode = std::fs::metadata(&server.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert!(
            UnixStream::connect(&server.path).is_ok(),
            "root still connects"
        );
        let path = server.path.clone();
        drop(server);
        assert!(!path.exists(), "removed when the agent stops");
    }
}
