//! The agent's one UDP socket: dual-stack where the kernel allows it, with IPv4 peers'
//! addresses kept in their plain form inside the core.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use smol::{Async, Timer};

use super::clock;
use super::udp_batch::{self, Level, RecvBatch, SendBatch};
use crate::human::Human;

/// How long `run` waits for its UDP port while another agent (the one a restart is
/// replacing) is still exiting: systemd starts the new one as soon as the old one is
/// signalled, and closing the old one's sockets and TUN takes a moment.
pub const PORT_WAIT: Duration = Duration::from_secs(5);
const PORT_RETRY: Duration = Duration::from_millis(100);
/// The receive buffer asked for: 2 MiB, about 2,700 full datagrams or 130 ms of a
/// 20,000/s flood (see `Udp::size_receive_buffer`).
const RECEIVE_BUFFER: libc::c_int = 2 << 20;

/// recvmmsg slots with GRO on: each holds a coalesced train of up to 64 KiB.
const GRO_SLOTS: usize = 8;
const GRO_SLOT: usize = 65_536;
/// recvmmsg slots without GRO: one datagram each, a jumbo frame at most.
const SLOTS: usize = 32;
const SLOT: usize = 9_216;

pub struct Udp {
    socket: Async<UdpSocket>,
    dual_stack: bool,
    /// `recvmmsg` into one arena; none while batching is off (`EDGEWIRE_OFFLOAD=off`).
    recv: Option<RecvBatch>,
    send: SendBatch,
    gro: bool,
    /// Datagrams `try_recv` dropped for being bigger than its buffer.
    truncated: u64,
}

impl Udp {
    /// Binds `[::]:port` (IPv4 and IPv6); falls back to `0.0.0.0:port` on kernels built
    /// without IPv6, which small boards sometimes are.
    pub fn bind(port: u16) -> io::Result<Udp> {
        let udp = match Async::<UdpSocket>::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(socket) => Udp::new(socket, true),
            Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
                let socket = Async::<UdpSocket>::bind(([0, 0, 0, 0], port))?;
                Udp::new(socket, false)
            }
            Err(e) => return Err(e),
        };
        udp.size_receive_buffer();
        if !udp_batch::enable_timestamps(udp.raw_fd()) {
            log::info!(
                "the kernel does not stamp datagrams' arrival (SO_TIMESTAMP): a queue that \
                 builds up in front of the agent is not kept short"
            );
        }
        Ok(udp)
    }

    fn new(socket: Async<UdpSocket>, dual_stack: bool) -> Udp {
        Udp {
            socket,
            dual_stack,
            recv: None,
            send: SendBatch::new(Level::Single),
            gro: false,
            truncated: 0,
        }
    }

    /// Many datagrams per system call from now on: GSO and GRO where the kernel has them,
    /// else `sendmmsg`/`recvmmsg` (what it got: `levels`).
    pub fn enable_batching(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.socket.get_ref().as_raw_fd();
        self.gro = udp_batch::enable_gro(fd);
        self.recv = Some(if self.gro {
            RecvBatch::new(GRO_SLOTS, GRO_SLOT)
        } else {
            RecvBatch::new(SLOTS, SLOT)
        });
        let level = if udp_batch::kernel_has_gso(fd) {
            Level::Gso
        } else {
            Level::Mmsg
        };
        self.send = SendBatch::new(level);
    }

    /// How sends and receives go now, as the status names them: `gso`, `sendmmsg` or
    /// `single`; `gro`, `recvmmsg` or `single`. The send level can still step down at
    /// run time, so this is asked afresh each time.
    pub fn levels(&self) -> (&'static str, &'static str) {
        let send = match self.send.level() {
            Level::Gso => "gso",
            Level::Mmsg => "sendmmsg",
            Level::Single => "single",
        };
        let recv = match (&self.recv, self.gro) {
            (Some(_), true) => "gro",
            (Some(_), false) => "recvmmsg",
            (None, _) => "single",
        };
        (send, recv)
    }

    pub fn batching(&self) -> bool {
        self.recv.is_some()
    }

    /// Datagrams dropped because they did not fit a receive slot (or, batching off, the
    /// receive buffer).
    pub fn truncated(&self) -> u64 {
        self.truncated + self.recv.as_ref().map_or(0, |r| r.truncated)
    }

    /// Gives back the pages of the receive arena that bursts filled.
    pub fn shed(&mut self) {
        if let Some(batch) = self.recv.as_mut() {
            batch.shed();
        }
    }

    /// One `recvmmsg` without waiting (batching on); the datagrams are in `datagrams`.
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = self.socket.get_ref().as_raw_fd();
        match self.recv.as_mut() {
            Some(batch) => batch.recv(fd),
            None => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// The datagrams of the last `recv_batch`, GRO trains split, senders canonical, each
    /// with how long it waited in the socket.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8], Duration)> + '_ {
        self.recv.iter().flat_map(|b| b.datagrams())
    }

    /// Sends every datagram of `batch` with as few system calls as the kernel allows,
    /// waiting while the socket's buffer is full. A datagram the kernel refuses (no route
    /// to its address) is skipped and logged at debug.
    pub async fn send_batch(&mut self, batch: &[(SocketAddr, Vec<u8>)]) {
        use std::os::fd::AsRawFd;
        let fd = self.socket.get_ref().as_raw_fd();
        let mut done = 0;
        while done < batch.len() {
            match self.send.send(fd, self.dual_stack, &batch[done..]) {
                Ok(n) => done += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.socket.writable().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    log::debug!("UDP send to {}: {e}", batch[done].0);
                    done += 1;
                }
            }
        }
    }

    /// Room in the kernel for bursts while the one thread is busy or descheduled. The
    /// default (net.core.rmem_default, 208 KiB) holds about 270 datagrams: 13 ms of a
    /// 20,000/s handshake flood, after which the kernel drops whatever comes, a known
    /// peer's data as much as the flood's (measured: 7 % of all datagrams, pings lost
    /// alike). SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN, which the agent has;
    /// without it SO_RCVBUF gets what rmem_max allows. Kernel memory is used only while
    /// datagrams wait, so an idle device pays nothing. wireguard-go asks for 7 MiB.
    fn size_receive_buffer(&self) {
        use std::os::fd::AsRawFd;
        let fd = self.socket.get_ref().as_raw_fd();
        let want: libc::c_int = RECEIVE_BUFFER;
        let value = &want as *const libc::c_int as *const libc::c_void;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a plain int option on our own socket.
        let forced =
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value, len) };
        if forced != 0 {
            // SAFETY: as above.
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value, len) };
        }
    }

    /// The receive buffer the kernel gave the socket, in bytes (it doubles what was
    /// asked, for its own bookkeeping).
    pub fn receive_buffer(&self) -> usize {
        use std::os::fd::AsRawFd;
        let fd = self.socket.get_ref().as_raw_fd();
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads an int option of our own socket into a local of that size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        if rc == 0 { value.max(0) as usize } else { 0 }
    }

    /// [`Udp::bind`], waiting up to `wait` while the port is in use (an agent still
    /// exiting holds it), then failing with an error that says what to do.
    pub async fn bind_waiting(port: u16, wait: Duration) -> io::Result<Udp> {
        let deadline = clock::now() + wait;
        let mut said = false;
        loop {
            match Udp::bind(port) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    if clock::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!(
                                "the port is still in use after waiting {}: another \
                                 edgewire or WireGuard listens on it; stop it, or give this \
                                 agent another port with --listen-port",
                                Human(wait)
                            ),
                        ));
                    }
                    if !said {
                        log::info!(
                            "UDP port {port} is in use (an agent still exiting?); waiting up \
                             to {} for it",
                            Human(wait)
                        );
                        said = true;
                    }
                    Timer::after(PORT_RETRY).await;
                }
                other => return other,
            }
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// The socket's descriptor, for the loop's short direct wait (`agent::wait_packets`).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.get_ref().as_raw_fd()
    }

    /// Reads one datagram without waiting (batching off); `WouldBlock` when there is
    /// none. Its length, sender (canonical) and how long it waited in the socket; `None`
    /// for the length of one bigger than `buf`, which is dropped and counted.
    pub fn try_recv(
        &mut self,
        buf: &mut [u8],
    ) -> io::Result<(Option<usize>, SocketAddr, Duration)> {
        let got = udp_batch::recv_one(self.raw_fd(), buf)?;
        if got.0.is_none() {
            self.truncated += 1;
            log::debug!(
                "dropped a UDP datagram bigger than the {}-byte buffer",
                buf.len()
            );
        }
        Ok(got)
    }

    /// `send_to` with an IP TTL (hop limit) for this datagram only: a punch that must
    /// pass our own NAT and die before the other side's. Rare, so two extra setsockopt
    /// calls around it cost nothing that matters.
    pub async fn send_to_with_ttl(
        &self,
        buf: &[u8],
        to: SocketAddr,
        ttl: Option<u8>,
    ) -> io::Result<usize> {
        let Some(ttl) = ttl else {
            return self.send_to(buf, to).await;
        };
        self.set_ttl(i32::from(ttl));
        let sent = self.send_to(buf, to).await;
        // -1 is the system's default for both options.
        self.set_ttl(-1);
        sent
    }

    fn set_ttl(&self, ttl: i32) {
        use std::os::fd::AsRawFd;
        let fd = self.socket.get_ref().as_raw_fd();
        let value = &ttl as *const i32 as *const libc::c_void;
        let len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: a plain int option on our own socket. An IPv4 destination on the
        // dual-stack socket takes IP_TTL, an IPv6 one IPV6_UNICAST_HOPS: set both.
        unsafe {
            libc::setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, value, len);
            if self.dual_stack {
                libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, value, len);
            }
        }
    }

    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = match to {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        };
        self.socket.send_to(buf, to).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A socket holding a free port the way `Udp::bind` would take it.
    fn hold_a_port() -> (UdpSocket, u16) {
        let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
            .or_else(|_| UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    #[test]
    fn the_receive_buffer_is_raised_past_the_default() {
        let udp = Udp::bind(0).unwrap();
        // As root (CAP_NET_ADMIN) the full 2 MiB (doubled by the kernel); otherwise what
        // rmem_max allows, at least the 208 KiB default.
        let got = udp.receive_buffer();
        if unsafe { libc::geteuid() } == 0 {
            assert!(got >= 2 * RECEIVE_BUFFER as usize, "{got} bytes");
        } else {
            assert!(got >= 200 * 1024, "{got} bytes");
        }
    }

    #[test]
    fn the_levels_the_status_shows_follow_a_step_down_at_run_time() {
        let mut udp = Udp::bind(0).unwrap();
        assert_eq!(udp.levels(), ("single", "single"), "before batching");
        udp.enable_batching();
        assert_eq!(udp.levels(), ("gso", "gro"));
        // SO_NO_CHECK makes Linux answer UDP_SEGMENT sends with EINVAL: a kernel that
        // refuses GSO only once traffic flows.
        assert!(udp_batch::setsockopt_int(
            udp.raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            1
        ));
        let peer = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        let to = peer.local_addr().unwrap();
        let train: Vec<(SocketAddr, Vec<u8>)> = (0..8u8).map(|i| (to, vec![i; 1000])).collect();
        smol::block_on(udp.send_batch(&train));
        assert_eq!(
            udp.levels(),
            ("sendmmsg", "gro"),
            "stepped down, and says so"
        );
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..8u8 {
            let n = peer.recv(&mut buf).unwrap();
            assert_eq!(
                &buf[..n],
                &[i; 1000][..],
                "datagram {i}, in order and whole"
            );
        }
    }

    #[test]
    fn a_port_freed_while_waiting_is_taken() {
        let (held, port) = hold_a_port();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let start = Instant::now();
        let udp = smol::block_on(Udp::bind_waiting(port, Duration::from_secs(5)));
        releaser.join().unwrap();
        assert!(udp.is_ok(), "{:?}", udp.err());
        assert!(start.elapsed() >= Duration::from_millis(250));
    }

    #[test]
    fn a_port_still_held_after_the_wait_is_a_clear_error() {
        let (_held, port) = hold_a_port();
        let start = Instant::now();
        let err = smol::block_on(Udp::bind_waiting(port, Duration::from_millis(300)))
            .err()
            .expect("the port is held");
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let text = err.to_string();
        assert!(
            text.starts_with("the port is still in use after waiting 300 ms: another edgewire"),
            "{text}"
        );
        assert!(text.contains("--listen-port"), "{text}");
    }
}
