//! The WireGuard control socket `/var/run/wireguard/IFACE.sock`, read-only, so `wg show`
//! and `wg showconf` work on edgewire as on wireguard-go. The protocol text is in
//! `crate::uapi`; here are the socket and one small task per client.
//!
//! The loop never waits on a client: the peers are copied when the connection is
//! accepted (numbers and keys, no text), and the task that delivers the answer gives up
//! after a deadline (a client that never sends or never reads), on garbage, or past
//! `uapi::MAX_REQUEST` bytes. At most `MAX_CLIENTS` are served at once; more are closed
//! on accept.
//!
//! Nor does the loop wait on a large answer: the task renders it a piece at a time
//! (`pace.rs`).

use std::cell::Cell;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::FutureExt;
use smol::{Async, Timer};

use crate::uapi::{self, Request};

use super::pace::{self, write_all};

/// `wg` sends its request at once and reads at once: two seconds is generous.
const DEADLINE: Duration = Duration::from_secs(2);
const MAX_CLIENTS: usize = 8;

pub struct ControlSocket {
    listener: Async<UnixListener>,
    path: PathBuf,
    clients: Rc<Cell<usize>>,
}

impl ControlSocket {
    /// Listens on `DIR/IFACE.sock` as wireguard-go does: the directory 0755, the socket
    /// 0700 (root's only, as the process runs). `None`, with a warning, when it cannot:
    /// the agent runs without it (the control socket is for the operator's tools only).
    pub fn bind(dir: &Path, interface: &str) -> Option<ControlSocket> {
        let path = dir.join(format!("{interface}.sock"));
        match Self::try_bind(dir, &path) {
            Ok(listener) => Some(ControlSocket {
                listener,
                path,
                clients: Rc::new(Cell::new(0)),
            }),
            Err(e) => {
                log::warn!(
                    "no WireGuard control socket at {}: {e}; `wg show {interface}` will not \
                     see this agent (`edgewire status` still does)",
                    path.display()
                );
                None
            }
        }
    }

    fn try_bind(dir: &Path, path: &Path) -> io::Result<Async<UnixListener>> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
        // A live socket belongs to another process (wireguard-go or another agent with
        // the same interface name): leave it alone. A dead one is ours to replace.
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process answers on it",
            ));
        }
        let _ = std::fs::remove_file(path);
        // umask rather than a chmod after bind: no moment where others may connect.
        // SAFETY: umask only swaps the process's file-mode mask; it cannot fail.
        let old = unsafe { libc::umask(0o077) };
        let listener = UnixListener::bind(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        Async::new(listener?)
    }

    pub async fn accept(&self) -> io::Result<Async<UnixStream>> {
        // Readiness first: the agent's loop polls this afresh on every wake-up, and
        // accept itself would make a system call each time (see `Agent::run`).
        self.listener.readable().await?;
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    /// The task that answers `stream` with `device` (rendered piece by piece for
    /// `get=1`), or `None` when too many clients are already being served (the stream
    /// is closed).
    pub fn serve(
        &self,
        stream: Async<UnixStream>,
        device: uapi::Device,
    ) -> Option<impl std::future::Future<Output = ()> + 'static> {
        if self.clients.get() >= MAX_CLIENTS {
            log::debug!("control socket: {MAX_CLIENTS} clients already; closing one more");
            return None;
        }
        let guard = ClientGuard::new(&self.clients);
        let path = self.path.clone();
        Some(async move {
            let _guard = guard;
            let work = answer(&stream, &device, &path);
            work.or(async {
                Timer::after(DEADLINE).await;
            })
            .await;
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Counts a client while its task lives.
struct ClientGuard(Rc<Cell<usize>>);

impl ClientGuard {
    fn new(count: &Rc<Cell<usize>>) -> ClientGuard {
        count.set(count.get() + 1);
        ClientGuard(count.clone())
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn answer(stream: &Async<UnixStream>, device: &uapi::Device, path: &Path) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match uapi::parse_request(&request) {
            Request::Incomplete => {}
            Request::Get => return answer_get(stream, device).await,
            Request::Set => {
                log::warn!(
                    "refused a change through the WireGuard control socket {} (`wg set` or \
                     `wg setconf`): the signed manifest is the source of truth for this \
                     agent's peers; change the manifest instead",
                    path.display()
                );
                let _ = write_all(stream, uapi::render_set_refused().as_bytes()).await;
                return;
            }
            Request::Invalid => {
                log::debug!(
                    "control socket {}: dropped a client that sent neither get=1 nor set=1",
                    path.display()
                );
                return;
            }
        }
        let want = chunk.len().min(uapi::MAX_REQUEST - request.len());
        match stream.read_with(|s| (&*s).read(&mut chunk[..want])).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The `get=1` answer, exactly `uapi::render_get(device)`, a piece at a time.
async fn answer_get(stream: &Async<UnixStream>, device: &uapi::Device) {
    let mut text = String::new();
    uapi::render_head(device, &mut text);
    let mut pieces = device.peers.chunks(pace::PEERS_PER_PIECE).peekable();
    while let Some(piece) = pieces.next() {
        for peer in piece {
            uapi::render_peer(peer, &mut text);
        }
        if pieces.peek().is_none() {
            break;
        }
        if write_all(stream, text.as_bytes()).await.is_err() {
            return;
        }
        text.clear();
        pace::let_the_loop_run().await;
    }
    uapi::render_tail(&mut text);
    let _ = write_all(stream, text.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_get_answer_written_in_pieces_is_the_answer_rendered_whole() {
        for n in [0, 3, 2 * pace::PEERS_PER_PIECE + 7] {
            let device = uapi::Device {
                listen_port: 51820,
                peers: (0..n)
                    .map(|i| uapi::Peer {
                        public_key: [i as u8; 32],
                        endpoint: Some(([203, 0, 113, 10], 51820).into()),
                        rx_bytes: i as u64,
                        allowed_ips: vec![
                            format!("10.42.{}.{}/32", i / 250, i % 250).parse().unwrap(),
                        ],
                        ..uapi::Peer::default()
                    })
                    .collect(),
            };
            let (ours, theirs) = UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = String::new();
                (&theirs).read_to_string(&mut got).unwrap();
                got
            });
            let ours = Async::new(ours).unwrap();
            smol::block_on(answer_get(&ours, &device));
            drop(ours);
            assert_eq!(
                reader.join().unwrap(),
                uapi::render_get(&device),
                "{n} peers"
            );
        }
    }
}
