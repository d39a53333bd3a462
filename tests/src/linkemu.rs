//! A link emulator of our own, because this kernel has no `sch_netem`: a namespace in the
//! middle of a link whose two interfaces are joined by a thread of the test process that
//! moves Ethernet frames between them through AF_PACKET sockets, and on the way applies
//! loss, delay, jitter, reordering, duplication and a rate limit, per direction, from a
//! seeded generator (the same seed drops the same packets of the same sequence).
//!
//! Only IPv4 frames are impaired; ARP passes at once, so a lossy link stays a link and
//! not a neighbour-discovery failure. The neighbours' transmit checksum offload is turned
//! off (legacy ethtool ioctl), because a frame read from a packet socket carries only a
//! partial checksum when its sender left it to the hardware, and the same switch turns
//! off TSO and UDP GSO, so no frame is larger than the MTU.
//!
//! Shape of one direction: a packet arrives at `t`; loss drops it; otherwise it leaves
//! the rate limiter at `max(t, busy) + len/rate` (a FIFO queue of at most
//! [`Impairment::queue_limit`] packets; more are tail-dropped), then waits `delay ±
//! jitter` (uniform), unless it is picked for reordering, in which case it skips the
//! delay and overtakes the packets ahead of it. A duplicate is a second copy with its own
//! delay draw.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::host::Host;
use crate::netns::{in_netns, spawn_in_netns};

/// What one direction of a link does to the packets that cross it.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Probability (0..=1) that a packet is dropped.
    pub loss: f64,
    /// One-way delay added to every packet.
    pub delay: Duration,
    /// Uniform spread around `delay` (± jitter); may reorder packets by itself.
    pub jitter: Duration,
    /// Probability that a packet skips the delay and overtakes the ones before it.
    pub reorder: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Bits per second the link carries; `None` for no limit.
    pub rate_bps: Option<u64>,
    /// Packets the rate limiter queues before it drops (a router's buffer).
    pub queue_limit: usize,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment::none()
    }
}

impl Impairment {
    /// A clean link.
    pub fn none() -> Impairment {
        Impairment {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            duplicate: 0.0,
            rate_bps: None,
            queue_limit: 1000,
        }
    }

    pub fn loss(mut self, probability: f64) -> Self {
        assert!((0.0..=1.0).contains(&probability), "loss is a probability");
        self.loss = probability;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    pub fn reorder(mut self, probability: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&probability),
            "reorder is a probability"
        );
        self.reorder = probability;
        self
    }

    pub fn duplicate(mut self, probability: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&probability),
            "duplicate is a probability"
        );
        self.duplicate = probability;
        self
    }

    pub fn rate_kbit(mut self, kbit: u64) -> Self {
        assert!(kbit > 0, "a rate limit of zero is a cut cable");
        self.rate_bps = Some(kbit * 1000);
        self
    }

    pub fn queue_limit(mut self, packets: usize) -> Self {
        self.queue_limit = packets;
        self
    }
}

/// The two directions, named from the side the emulator was put in front of (the host
/// or site behind the link): `Up` leaves it, `Down` comes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Up => 0,
            Direction::Down => 1,
        }
    }
}

/// What one direction has done so far (IPv4 frames only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub received: u64,
    pub lost: u64,
    pub queue_drops: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub sent: u64,
}

struct Shared {
    impairments: Mutex<[Impairment; 2]>,
    stats: Mutex<[DirectionStats; 2]>,
    stop: AtomicBool,
}

/// A running emulator; it stops (and the link is cut) when dropped.
pub struct LinkEmulator {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<()>>>,
    host: Host,
}

impl LinkEmulator {
    /// Starts moving frames between `site_iface` (toward the host or site behind the
    /// link: what is read there travels [`Direction::Up`]) and `wan_iface` of `host`,
    /// both already up and in `host`'s namespace, with no impairment yet.
    pub(crate) fn start(host: &Host, site_iface: &str, wan_iface: &str, seed: u64) -> Self {
        let shared = Arc::new(Shared {
            impairments: Mutex::new([Impairment::none(), Impairment::none()]),
            stats: Mutex::new([DirectionStats::default(); 2]),
            stop: AtomicBool::new(false),
        });
        // Sockets are opened here so a failure shows at once, not in a thread later.
        let (site, wan) = (site_iface.to_owned(), wan_iface.to_owned());
        let sockets = in_netns(host, move || -> io::Result<[(OwnedFd, i32); 2]> {
            Ok([packet_socket(&site)?, packet_socket(&wan)?])
        })
        .unwrap_or_else(|e| panic!("{host:?}: opening packet sockets: {e}"));
        let s = shared.clone();
        let thread = spawn_in_netns(host, "link-emulator", move || run(sockets, &s, seed));
        LinkEmulator {
            shared,
            thread: Some(thread),
            host: host.clone(),
        }
    }

    /// Sets what `direction` does from now on (packets already queued keep their times).
    pub fn set(&self, direction: Direction, impairment: Impairment) {
        self.shared.impairments.lock().unwrap()[direction.index()] = impairment;
    }

    /// The same impairment both ways.
    pub fn set_both(&self, impairment: Impairment) {
        self.set(Direction::Up, impairment.clone());
        self.set(Direction::Down, impairment);
    }

    pub fn stats(&self, direction: Direction) -> DirectionStats {
        self.shared.stats.lock().unwrap()[direction.index()]
    }

    /// The namespace in the middle.
    pub fn host(&self) -> &Host {
        &self.host
    }
}

impl Drop for LinkEmulator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                // The lab removed the namespace first: nothing is left to emulate.
                Ok(Err(e))
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENETDOWN | libc::ENODEV | libc::ENXIO)
                    ) => {}
                Ok(Err(e)) => eprintln!("link emulator in {:?} failed: {e}", self.host),
                Err(_) => eprintln!("link emulator in {:?} panicked", self.host),
            }
        }
    }
}

/// Turns off transmit checksum offload (and with it TSO and UDP GSO) on `iface` of
/// `host`, so the frames it sends into an emulator are complete and at most one MTU.
pub(crate) fn disable_tx_offload(host: &Host, iface: &str) {
    let name = iface.to_owned();
    in_netns(host, move || set_tx_checksum(&name, false))
        .unwrap_or_else(|e| panic!("{host:?}: turning off tx checksum offload on {iface}: {e}"));
}

// ---------------------------------------------------------------------- the loop

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const PACKET_OUTGOING: u8 = 4;
const MAX_FRAME: usize = 65536;

struct Queued {
    at: Instant,
    /// Tie-breaker: equal times leave in arrival order.
    seq: u64,
    out: usize,
    frame: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Per-direction state: the rate limiter's busy time and its queue length.
#[derive(Default)]
struct Lane {
    busy_until: Option<Instant>,
    /// Departure times from the limiter of the packets still in it.
    in_limiter: std::collections::VecDeque<Instant>,
}

/// `sockets[0]` faces the site (frames read there travel up and leave by `sockets[1]`),
/// `sockets[1]` faces the wan.
fn run(sockets: [(OwnedFd, i32); 2], shared: &Shared, seed: u64) -> io::Result<()> {
    let mut rngs = [Rng::new(seed), Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15)];
    let mut lanes = [Lane::default(), Lane::default()];
    let mut heap: BinaryHeap<Reverse<Queued>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; MAX_FRAME];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(q)| q.at <= now) {
            let Reverse(q) = heap.pop().unwrap();
            let (fd, ifindex) = &sockets[q.out];
            // A full socket buffer or a down link drops the frame, as a wire would.
            let _ = send_frame(fd, *ifindex, &q.frame);
        }
        let timeout = heap
            .peek()
            .map(|Reverse(q)| q.at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        let mut pfds = [
            libc::pollfd {
                fd: sockets[0].0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sockets[1].0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: two valid pollfds, a valid timespec, no signal mask.
        let ready = unsafe { libc::ppoll(pfds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (side, pfd) in pfds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            // Frames read on the site side (0) travel up and leave on the wan side (1).
            let out = 1 - side;
            let direction = side; // 0 = Up, 1 = Down
            // Bounded per wake-up so one busy side cannot starve the other or the timer.
            for _ in 0..64 {
                let Some(len) = recv_frame(&sockets[side].0, &mut buf)? else {
                    break;
                };
                let frame = &buf[..len];
                let now = Instant::now();
                let is_ipv4 = len >= 14 && u16::from_be_bytes([frame[12], frame[13]]) == ETH_P_IP;
                if !is_ipv4 {
                    seq += 1;
                    heap.push(Reverse(Queued {
                        at: now,
                        seq,
                        out,
                        frame: frame.to_vec(),
                    }));
                    continue;
                }
                let imp = shared.impairments.lock().unwrap()[direction].clone();
                let mut stats = shared.stats.lock().unwrap();
                let st = &mut stats[direction];
                st.received += 1;
                let rng = &mut rngs[direction];
                if rng.chance(imp.loss) {
                    st.lost += 1;
                    continue;
                }
                let copies = if rng.chance(imp.duplicate) {
                    st.duplicated += 1;
                    2
                } else {
                    1
                };
                let lane = &mut lanes[direction];
                while lane.in_limiter.front().is_some_and(|t| *t <= now) {
                    lane.in_limiter.pop_front();
                }
                for _ in 0..copies {
                    let mut leave = now;
                    if let Some(rate) = imp.rate_bps {
                        if lane.in_limiter.len() >= imp.queue_limit {
                            st.queue_drops += 1;
                            continue;
                        }
                        let wire = Duration::from_nanos(
                            (len as u64 * 8).saturating_mul(1_000_000_000) / rate,
                        );
                        let start = lane.busy_until.filter(|b| *b > now).unwrap_or(now);
                        leave = start + wire;
                        lane.busy_until = Some(leave);
                        lane.in_limiter.push_back(leave);
                    }
                    let at = if rng.chance(imp.reorder) {
                        st.reordered += 1;
                        leave
                    } else {
                        leave + rng.spread(imp.delay, imp.jitter)
                    };
                    st.sent += 1;
                    seq += 1;
                    heap.push(Reverse(Queued {
                        at,
                        seq,
                        out,
                        frame: frame.to_vec(),
                    }));
                }
            }
        }
    }
    Ok(())
}

/// xorshift64*: small, seeded, good enough to draw losses.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so seeds 0, 1, 2… give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// `base ± spread`, uniform, never negative.
    fn spread(&mut self, base: Duration, spread: Duration) -> Duration {
        if spread.is_zero() {
            return base;
        }
        let offset = (self.unit() * 2.0 - 1.0) * spread.as_secs_f64();
        Duration::from_secs_f64((base.as_secs_f64() + offset).max(0.0))
    }
}

// ---------------------------------------------------------------------- sockets

fn packet_socket(iface: &str) -> io::Result<(OwnedFd, i32)> {
    let ifindex = if_index(iface)?;
    // SAFETY: plain socket(2); checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ALL.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is new and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: a valid sockaddr_ll of the stated size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // Room for bursts (a flood, a rate-limited backlog) without kernel drops.
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: a valid int option.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    Ok((fd, ifindex))
}

fn if_index(iface: &str) -> io::Result<i32> {
    let name = std::ffi::CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index as i32)
}

/// One frame that arrived on the interface (frames it sent, ours included, are skipped);
/// `None` when nothing is queued.
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: valid buffer and address of the stated sizes.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        if from.sll_pkttype == PACKET_OUTGOING || n as usize > buf.len() {
            continue;
        }
        return Ok(Some(n as usize));
    }
}

fn send_frame(fd: &OwnedFd, ifindex: i32, frame: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&frame[..6.min(frame.len())]);
    // SAFETY: valid buffer and address of the stated sizes.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ETHTOOL_STXCSUM` through `SIOCETHTOOL`, what `ethtool -K IFACE tx off` does, without
/// needing ethtool installed.
fn set_tx_checksum(iface: &str, on: bool) -> io::Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::other(format!("interface name {iface} too long")));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: plain socket(2).
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sock is new and ours.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: a valid ifreq whose data points at a live ethtool_value.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_losses() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..1000).map(|_| rng.chance(0.2)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let lost = draw(7).iter().filter(|l| **l).count();
        assert!((150..250).contains(&lost), "{lost} of 1000 at 20 %");
    }

    #[test]
    fn a_spread_stays_within_its_bounds_and_never_goes_negative() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let d = rng.spread(Duration::from_millis(10), Duration::from_millis(20));
            assert!(d <= Duration::from_millis(30));
        }
    }
}
