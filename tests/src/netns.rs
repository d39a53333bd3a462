//! Code of the test process itself inside a host's namespace: a thread joins the
//! namespace (setns) before it runs, so the sockets it opens belong there and stay there
//! after the thread ends. Used for a TCP server that accepts and never answers, and for
//! the ping stream.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::thread::{self, JoinHandle};

use crate::host::Host;

/// Runs `f` on a new thread that has joined `host`'s network namespace.
pub fn spawn_in_netns<T: Send + 'static>(
    host: &Host,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{}", host.netns());
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            join_netns(&ns, &path);
            f()
        })
        .expect("spawning a thread")
}

/// Runs `f` on a thread that has entered `host`'s network namespace and returns its
/// result. Sockets it opens belong to that namespace for their whole life, whichever
/// thread uses them later, so a test can drive client code with plain std sockets. `f`
/// may borrow from the caller (a scoped thread).
pub fn in_netns<T: Send>(host: &Host, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{}", host.netns());
    let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    thread::scope(|s| {
        thread::Builder::new()
            .name("in-netns".into())
            .spawn_scoped(s, || {
                join_netns(&ns, &path);
                f()
            })
            .expect("spawning a thread")
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn join_netns(ns: &File, path: &str) {
    // SAFETY: setns on the calling thread only; the fd is open for the call.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns into {path}: {}",
        std::io::Error::last_os_error()
    );
}

/// A TCP server in `host` on `addr` (`ip:port`) that never accepts: the kernel completes
/// the TCP handshake and queues what clients send, and nothing ever answers. Clients see
/// a server that stalls. It closes when dropped.
pub fn stalled_tcp_server(host: &Host, addr: &str) -> TcpListener {
    let addr = addr.to_owned();
    in_netns(host, move || {
        TcpListener::bind(&addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"))
    })
}
