//! A continuous ping from inside a host, timed by the test process: ICMP echo requests
//! at a fixed rate on a ping socket opened in the host's namespace, every send and every
//! answer recorded with its `Instant`. Gives the time to the first answer, the longest
//! silence and the lost pings, at the resolution of the send interval (no `ping` process
//! to start and parse, no one-second granularity).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::host::Host;
use crate::netns::spawn_in_netns;

/// What a stream has seen so far.
#[derive(Debug, Clone)]
pub struct PingRecord {
    pub started: Instant,
    /// When echo request `seq` was sent (index = seq).
    pub sent: Vec<Instant>,
    /// When the answer to `seq` arrived, if it did.
    pub answered: Vec<Option<Instant>>,
    /// Sends the kernel refused (no route yet, interface missing…).
    pub send_errors: u64,
}

/// A stream of pings running on its own thread until stopped or dropped.
pub struct PingStream {
    record: Arc<Mutex<PingRecord>>,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl PingStream {
    /// Starts pinging `dst` from `host` every `interval`. Sends that fail (the route or
    /// interface does not exist yet) are counted and retried at the next tick.
    pub fn start(host: &Host, dst: &str, interval: Duration) -> PingStream {
        let dst: Ipv4Addr = dst.parse().expect("an IPv4 address to ping");
        // Ping sockets need the group in this range; per namespace, the host is untouched.
        host.sysctl("net.ipv4.ping_group_range", "0 2147483647");
        let record = Arc::new(Mutex::new(PingRecord {
            started: Instant::now(),
            sent: Vec::new(),
            answered: Vec::new(),
            send_errors: 0,
        }));
        let stop = Arc::new(Stop::default());
        let (r, s) = (record.clone(), stop.clone());
        let thread = spawn_in_netns(host, "ping-stream", move || {
            let socket = ping_socket().expect("opening an ICMP ping socket");
            run(&socket, dst, interval, &r, &s);
        });
        PingStream {
            record,
            stop,
            thread: Some(thread),
        }
    }

    /// A copy of everything so far.
    pub fn snapshot(&self) -> PingRecord {
        self.record.lock().unwrap().clone()
    }

    /// Stops sending; answers still in flight get `linger` to arrive.
    pub fn stop(mut self, linger: Duration) -> PingRecord {
        self.stop_thread(linger);
        self.snapshot()
    }

    fn stop_thread(&mut self, linger: Duration) {
        // The thread stops sending at once but keeps receiving for `linger`.
        self.stop
            .linger_ms
            .store(linger.as_millis() as u64, Ordering::Relaxed);
        self.stop.now.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PingStream {
    fn drop(&mut self) {
        self.stop_thread(Duration::ZERO);
    }
}

/// Set by the test to end the stream's thread.
#[derive(Default)]
struct Stop {
    now: AtomicBool,
    linger_ms: AtomicU64,
}

impl PingRecord {
    /// Time from the start of the stream to the first answer.
    pub fn first_answer(&self) -> Option<Duration> {
        self.answered
            .iter()
            .flatten()
            .min()
            .map(|t| t.duration_since(self.started))
    }

    /// When the first answer arrived.
    pub fn first_answer_at(&self) -> Option<Instant> {
        self.answered.iter().flatten().min().copied()
    }

    /// Answers that arrived after `t`.
    pub fn answers_after(&self, t: Instant) -> usize {
        self.answered.iter().flatten().filter(|a| **a > t).count()
    }

    /// The longest time between two answers in a row (by arrival), after the first one:
    /// how long traffic was interrupted. `None` before two answers.
    pub fn longest_silence(&self) -> Option<(Duration, Instant)> {
        let mut times: Vec<Instant> = self.answered.iter().flatten().copied().collect();
        times.sort();
        times
            .windows(2)
            .map(|w| (w[1].duration_since(w[0]), w[0]))
            .max_by_key(|(gap, _)| *gap)
    }

    /// Pings sent at least `grace` before `until` that were never answered.
    pub fn lost(&self, until: Instant, grace: Duration) -> usize {
        self.sent
            .iter()
            .zip(&self.answered)
            .filter(|(sent, answered)| **sent + grace <= until && answered.is_none())
            .count()
    }

    /// Pings sent at least `grace` before `until` (the ones [`PingRecord::lost`] judges).
    pub fn judged(&self, until: Instant, grace: Duration) -> usize {
        self.sent.iter().filter(|s| **s + grace <= until).count()
    }
}

fn ping_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn run(
    socket: &OwnedFd,
    dst: Ipv4Addr,
    interval: Duration,
    record: &Mutex<PingRecord>,
    stop: &Stop,
) {
    let started = record.lock().unwrap().started;
    let mut next_send = started;
    let mut stop_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stop_at.is_none() && stop.now.load(Ordering::Relaxed) {
            stop_at = Some(now + Duration::from_millis(stop.linger_ms.load(Ordering::Relaxed)));
        }
        if let Some(at) = stop_at {
            if now >= at {
                return;
            }
        } else if now >= next_send {
            let mut r = record.lock().unwrap();
            let seq = r.sent.len() as u16;
            r.sent.push(now);
            r.answered.push(None);
            if send_echo(socket, dst, seq).is_err() {
                r.send_errors += 1;
            }
            drop(r);
            next_send += interval;
            if next_send < now {
                next_send = now + interval;
            }
        }
        let wait_until = stop_at.unwrap_or(next_send);
        let timeout = wait_until.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready > 0 {
            while let Some(seq) = recv_echo_reply(socket) {
                let now = Instant::now();
                let mut r = record.lock().unwrap();
                // seq wraps at 65536: map it to the most recent send with that number.
                let n = r.sent.len();
                let candidates = (0..n).rev().filter(|i| (*i as u16) == seq);
                if let Some(i) = candidates.into_iter().next()
                    && r.answered[i].is_none()
                {
                    r.answered[i] = Some(now);
                }
            }
        }
    }
}

fn send_echo(socket: &OwnedFd, dst: Ipv4Addr, seq: u16) -> io::Result<()> {
    // Type 8 (echo request), code 0; the kernel fills in the checksum and identifier.
    let mut packet = [0u8; 64];
    packet[0] = 8;
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].iter_mut().enumerate().for_each(|(i, b)| {
        *b = i as u8;
    });
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid buffer and address for their stated lengths.
    let n = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The sequence number of one queued echo reply, `None` when nothing is queued.
fn recv_echo_reply(socket: &OwnedFd) -> Option<u16> {
    loop {
        let mut buf = [0u8; 1500];
        // SAFETY: valid buffer of the stated length.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return None;
        }
        let n = n as usize;
        // Type 0 (echo reply); a ping socket receives only its own identifier's replies.
        if n >= 8 && buf[0] == 0 {
            return Some(u16::from_be_bytes([buf[6], buf[7]]));
        }
    }
}
