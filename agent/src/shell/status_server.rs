//! Answers `edgewire status` on a Unix socket in the state directory: one JSON report
//! per connection, written by a small task so a slow reader never holds up packets.
//!
//! The socket is 0600 whatever the umask: `bind` creates it with the umask's mode (0777
//! under umask 000), so it is changed right after; the 0700 state directory keeps
//! everyone else out in between.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
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
        let server = StatusServer { listener, path };
        std::fs::set_permissions(&server.path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private (0600)", server.path.display()))?;
        Ok(server)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;

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
