//! Where the metrics go: a file rewritten atomically (write a hidden temporary in the
//! same directory, then rename, so node_exporter's textfile collector never reads half
//! a file), and an optional plain HTTP endpoint.
//!
//! The text is rendered in a task, a few peers at a time (a 10,000-peer hub's is 60,000
//! samples), from facts the loop copied; the file write is to a local directory without
//! fsync (a lost update on power loss is rewritten at the next tick). The HTTP side is
//! like the control socket: a small task per client renders and delivers the text with
//! a deadline and a request cap, and at most `MAX_CLIENTS` at once.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::FutureExt;
use smol::{Async, Timer};

const DEADLINE: Duration = Duration::from_secs(5);
const MAX_CLIENTS: usize = 4;
/// A scrape's request head is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;

pub struct MetricsOut {
    file: Option<PathBuf>,
    pub interval: Duration,
    listener: Option<Async<TcpListener>>,
    clients: Rc<Cell<usize>>,
    /// The last write failed: said once, not every tick.
    failing: Rc<Cell<bool>>,
    /// A write is under way: a tick that comes meanwhile is skipped.
    writing: Rc<Cell<bool>>,
}

impl MetricsOut {
    /// `None` when neither a file nor an address is configured.
    pub fn new(
        file: Option<PathBuf>,
        interval: Duration,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<Option<MetricsOut>> {
        if file.is_none() && listen.is_none() {
            return Ok(None);
        }
        let listener = match listen {
            Some(addr) => {
                let listener = Async::<TcpListener>::bind(addr).map_err(|e| {
                    anyhow::anyhow!("--metrics-listen {addr}: cannot listen there: {e}")
                })?;
                log::info!("serving metrics on http://{addr}/metrics");
                Some(listener)
            }
            None => None,
        };
        Ok(Some(MetricsOut {
            file,
            interval,
            listener,
            clients: Rc::new(Cell::new(0)),
            failing: Rc::new(Cell::new(false)),
            writing: Rc::new(Cell::new(false)),
        }))
    }

    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// The task that writes the file with the text `render` makes, or `None` when there
    /// is no file or the last write is still under way.
    pub fn write_file(
        &self,
        render: impl std::future::Future<Output = String> + 'static,
    ) -> Option<impl std::future::Future<Output = ()> + 'static> {
        let path = self.file.clone()?;
        if self.writing.replace(true) {
            return None;
        }
        let (failing, writing) = (self.failing.clone(), self.writing.clone());
        Some(async move {
            let text = render.await;
            match write_replacing(&path, text.as_bytes()) {
                Ok(()) if failing.get() => {
                    log::info!("writing metrics to {} works again", path.display());
                    failing.set(false);
                }
                Ok(()) => {}
                Err(e) if !failing.get() => {
                    log::warn!(
                        "cannot write metrics to {}: {e}; check that its directory exists \
                         and is writable by the agent",
                        path.display()
                    );
                    failing.set(true);
                }
                Err(_) => {}
            }
            writing.set(false);
        })
    }

    pub async fn accept(&self) -> io::Result<Async<TcpStream>> {
        match &self.listener {
            // Readiness first: the agent's loop polls this afresh on every wake-up,
            // and accept itself would make a system call each time (see `Agent::run`).
            Some(l) => {
                l.readable().await?;
                l.accept().await.map(|(stream, _)| stream)
            }
            None => std::future::pending().await,
        }
    }

    /// The task that answers one scrape with the text `render` makes, or `None` when
    /// enough are served.
    pub fn serve(
        &self,
        stream: Async<TcpStream>,
        render: impl std::future::Future<Output = String> + 'static,
    ) -> Option<impl std::future::Future<Output = ()> + 'static> {
        if self.clients.get() >= MAX_CLIENTS {
            return None;
        }
        self.clients.set(self.clients.get() + 1);
        let clients = self.clients.clone();
        Some(async move {
            async { answer(&stream, &render.await).await }
                .or(async {
                    Timer::after(DEADLINE).await;
                })
                .await;
            clients.set(clients.get() - 1);
        })
    }
}

impl Drop for MetricsOut {
    /// Stale numbers from a stopped agent would look alive; no file says it is gone.
    fn drop(&mut self) {
        if let Some(path) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `PATH` replaced by `bytes` in one rename; the temporary is `.NAME.tmp` beside it,
/// which the textfile collector ignores (it reads `*.prom` only).
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Reads the request head (any path is answered), then sends the metrics.
async fn answer(stream: &Async<TcpStream>, body: &str) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST {
            return;
        }
        match stream.read_with(|s| (&*s).read(&mut chunk)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    if !head.starts_with(b"GET ") {
        let _ = write_all(
            stream,
            b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        return;
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = write_all(stream, reply.as_bytes()).await;
}

async fn write_all(stream: &Async<TcpStream>, mut rest: &[u8]) -> io::Result<()> {
    while !rest.is_empty() {
        match stream.write_with(|s| (&*s).write(rest)).await? {
            0 => return Ok(()),
            n => rest = &rest[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TestDir;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = TestDir::new("metrics-out");
        let path = dir.path("edgewire.prom");
        write_replacing(&path, b"a 1\n").unwrap();
        write_replacing(&path, b"a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("edgewire.prom")]);
    }
}
