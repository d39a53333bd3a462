//! Answers `edgewire status` on a Unix socket in the state directory: one JSON report
//! per connection, written by a small task so a slow reader never holds up packets.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::Context;
use smol::Async;

use crate::status::{self, Report};

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
        Ok(StatusServer { listener, path })
    }

    pub async fn accept(&self) -> std::io::Result<Async<UnixStream>> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }
}

/// Writes the report and closes the connection.
pub async fn answer(stream: Async<UnixStream>, report: Report) {
    let Ok(text) = serde_json::to_vec(&report) else {
        return;
    };
    let mut rest = &text[..];
    while !rest.is_empty() {
        match stream.write_with(|s| (&*s).write(rest)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => rest = &rest[n..],
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
