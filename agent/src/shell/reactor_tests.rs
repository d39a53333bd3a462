//! The reactor the agent's threads share (our async-io, vendor/async-io/EDGEWIRE.md):
//! several threads in `block_on` at once, each woken by I/O and timers that another
//! thread's wait may pick up, all finish. A lost hand-over once left every thread parked
//! with no one in epoll: `edgewire netcheck` (whose relay probes and TURN legs each block
//! on their own thread) hung in 2 of 20 runs of operator_tools' netcheck tests. This test
//! did not reproduce that hang with the fault put back (8 threads, 3 runs); it covers the
//! common case, and those lab tests the fault.

use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::Duration;

use smol::{Async, Timer};

/// Threads blocked at once, and the round trips each makes.
const THREADS: usize = 4;
const ROUNDS: usize = 1000;

/// One thread's work: datagrams bounced off a partner socket with short timers between,
/// so the reactor's events are spread over every thread's wakers.
fn ping_pong(seed: usize, rounds: usize) {
    smol::block_on(async {
        let a = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).expect("bind a");
        let b = Async::<UdpSocket>::bind(([127, 0, 0, 1], 0)).expect("bind b");
        let to_b = b.get_ref().local_addr().expect("b's address");
        let mut buf = [0u8; 16];
        for i in 0..rounds {
            a.send_to(&[i as u8], to_b).await.expect("send");
            let (n, from) = b.recv_from(&mut buf).await.expect("receive");
            assert_eq!((n, buf[0]), (1, i as u8));
            b.send_to(&buf[..n], from).await.expect("answer");
            a.recv_from(&mut buf).await.expect("answer back");
            // Waits of 0 to 1.9 ms, different on every thread: a thread waiting in epoll
            // for its timer gets the others' events, and after 500 µs of those hands the
            // reactor over (the path that lost its wake-up).
            let wait = (i * 7919 + seed * 104_729) % 20;
            Timer::after(Duration::from_micros(wait as u64 * 100)).await;
        }
    })
}

#[test]
fn threads_blocked_on_the_shared_reactor_all_finish() {
    let (done, finished) = mpsc::channel();
    for seed in 0..THREADS {
        let done = done.clone();
        std::thread::spawn(move || {
            ping_pong(seed, ROUNDS);
            done.send(()).expect("the test waits");
        });
    }
    // Generous: the rounds take about a second; a hang never ends.
    for n in 0..THREADS {
        finished
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{n} of {THREADS} threads finished in 60 s"));
    }
}
