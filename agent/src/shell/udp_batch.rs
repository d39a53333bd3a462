//! Many datagrams per system call on the agent's UDP socket: `recvmmsg` into one arena
//! (split again where the kernel coalesced a train with UDP GRO), and `sendmmsg` of
//! messages that each carry either one datagram or a run of equal-size datagrams to one
//! destination with a `UDP_SEGMENT` control message (UDP GSO).
//!
//! The kernel may refuse a level (old ARM vendor kernels; on older kernels an egress
//! device without checksum offload answers GSO with EIO, where 6.18 checksums the train
//! in software and sends it): the sender steps down once, GSO → `sendmmsg` → one
//! `sendto` per datagram, and says so once in the log.
//!
//! Each received message also carries the time the kernel took it in (`SO_TIMESTAMP`),
//! so the loop knows how long it waited in the socket (codel.rs); `recv_one` reads it
//! for the one-datagram path too.
//!
//! Why our own module and not quinn-udp: quinn-udp is well kept, but it brings ECN, IP
//! packet info, Windows and macOS paths and its own `Transmit`/`RecvMeta` types, and
//! receives into one `IoSliceMut` per message that the caller must size; what the agent
//! needs is the Linux half only, with one fixed arena and a per-datagram TTL it already
//! handles apart. This file is that half in a few hundred lines of `libc`, tested below
//! against real sockets on loopback.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::pages::Pages;

/// Not in every libc target module (musl, armv7): the values from linux/udp.h.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Datagrams in one GSO message: the kernel's UDP_MAX_SEGMENTS.
const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO message: an IP datagram's payload must fit in 64 KiB.
const MAX_GSO_BYTES: usize = 65_000;
/// `SO_TIMESTAMP_OLD` (x86, arm and arm64 alike; every kernel the agent runs on, and
/// qemu-user passes it through, which the agent's slow-device lab runs need): the
/// arrival time as a `timeval` of two `long`s, 64-bit or 32-bit with the architecture,
/// told apart by the message's length. Only a wait is read from it, so a 32-bit second
/// count that wrapped in 2038 still gives the right difference (`waited`).
const SO_TIMESTAMP_OLD: libc::c_int = 29;
/// Room for the control messages of one message, aligned: GRO's segment size (one int)
/// and the arrival time (up to 16 bytes) on receive, GSO's u16 on send.
const CMSG_ROOM: usize = 64;
/// A wait longer than this is a step of the wall clock between the kernel's stamp and
/// the loop's reading, not a queue: no socket buffer holds a second of traffic.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// How many datagrams a send system call may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `sendmmsg`, runs of equal-size datagrams to one destination as one GSO message.
    Gso,
    /// `sendmmsg`, one datagram per message.
    Mmsg,
    /// One `sendto` per datagram: the fallback, and `EDGEWIRE_OFFLOAD=off`.
    Single,
}

impl Level {
    fn down(self) -> Level {
        match self {
            Level::Gso => Level::Mmsg,
            Level::Mmsg | Level::Single => Level::Single,
        }
    }
}

/// Asks the kernel to coalesce received trains (UDP GRO, Linux 5.0). False when refused.
pub fn enable_gro(fd: RawFd) -> bool {
    setsockopt_int(fd, libc::SOL_UDP, UDP_GRO, 1)
}

/// Asks the kernel to stamp each datagram's arrival. False when refused: waits are then
/// unknown, and nothing is dropped for them.
pub fn enable_timestamps(fd: RawFd) -> bool {
    setsockopt_int(fd, libc::SOL_SOCKET, SO_TIMESTAMP_OLD, 1)
}

/// Whether the kernel knows UDP GSO (Linux 4.18): reading the option fails without it.
pub fn kernel_has_gso(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads an int option of our own socket into a local of that size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            UDP_SEGMENT,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    rc == 0
}

pub(super) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: a plain int option on a socket the caller owns.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Received datagrams, one `recvmmsg` at a time, in one arena allocated once.
pub struct RecvBatch {
    arena: Pages,
    slot: usize,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_ROOM / 8]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Per message of the last call: its length, GRO segment size (0: one datagram) and
    /// how long it waited in the socket (zero when the kernel did not stamp it).
    got: Vec<(usize, usize, Duration)>,
    /// Messages the kernel cut short (bigger than a slot), dropped since the agent began.
    pub truncated: u64,
}

impl RecvBatch {
    /// `slots` messages of `slot` bytes each: with GRO a slot must hold a 64 KiB train.
    pub fn new(slots: usize, slot: usize) -> RecvBatch {
        let slots = slots.max(1);
        RecvBatch {
            // Mapped: a slot is resident once a message has filled it, not before.
            arena: Pages::zeroed(slots * slot),
            slot,
            // SAFETY: all-zero sockaddr_storage, iovec and mmsghdr are valid values.
            names: vec![unsafe { zeroed() }; slots],
            cmsgs: vec![[0; CMSG_ROOM / 8]; slots],
            iovs: vec![unsafe { zeroed() }; slots],
            msgs: vec![unsafe { zeroed() }; slots],
            got: Vec::with_capacity(slots),
            truncated: 0,
        }
    }

    /// Gives the arena's pages back; the next messages fault in what they fill.
    pub fn shed(&mut self) {
        self.arena.discard();
    }

    /// One `recvmmsg` without waiting; `WouldBlock` when nothing is queued. Returns how
    /// many messages came (each may be a train of datagrams: see `datagrams`).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let slots = self.msgs.len();
        for i in 0..slots {
            self.iovs[i] = libc::iovec {
                iov_base: self.arena[i * self.slot..].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.slot,
            };
            // SAFETY: an all-zero msghdr is valid; every pointer set below lives in self.
            let mut hdr: libc::msghdr = unsafe { zeroed() };
            hdr.msg_name = &mut self.names[i] as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = CMSG_ROOM as _;
            self.msgs[i] = libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            };
        }
        // SAFETY: `msgs` holds `slots` headers whose buffers all live in self and stay
        // put for the call; MSG_DONTWAIT keeps the one thread from blocking.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                slots as _,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.got.clear();
        let taken = SystemTime::now();
        for i in 0..n as usize {
            let hdr = &self.msgs[i].msg_hdr;
            if hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated += 1;
                log::debug!(
                    "dropped a UDP datagram bigger than the {}-byte slot",
                    self.slot
                );
                self.got.push((0, 0, Duration::ZERO));
                continue;
            }
            let controls = controls(hdr);
            let waited = (controls.arrived)
                .and_then(|at| waited(taken, at))
                .unwrap_or_default();
            self.got
                .push((self.msgs[i].msg_len as usize, controls.segment, waited));
        }
        Ok(n as usize)
    }

    /// The datagrams of the last `recv`, trains split at their segment size, in order,
    /// each with how long it waited in the socket.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8], Duration)> + '_ {
        self.got
            .iter()
            .enumerate()
            .filter(|(_, (len, _, _))| *len > 0)
            .filter_map(|(i, &(len, segment, waited))| {
                let from = decode_addr(&self.names[i])?;
                let bytes = &self.arena[i * self.slot..i * self.slot + len];
                Some(split_train(bytes, segment).map(move |d| (from, d, waited)))
            })
            .flatten()
    }
}

/// One `recvmsg` without waiting, into `buf`: the path without batching
/// (`EDGEWIRE_OFFLOAD=off`). The datagram's length (`None` if it was bigger than `buf`
/// and the kernel cut it), its sender, and how long it waited in the socket, so this
/// path keeps its queue short as the batched one does (codel.rs).
pub fn recv_one(fd: RawFd, buf: &mut [u8]) -> io::Result<(Option<usize>, SocketAddr, Duration)> {
    // SAFETY: all-zero sockaddr_storage, iovec and msghdr are valid values.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut cmsgs = [0u64; CMSG_ROOM / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = &mut name as *mut _ as *mut libc::c_void;
    hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cmsgs.as_mut_ptr() as *mut libc::c_void;
    hdr.msg_controllen = CMSG_ROOM as _;
    // SAFETY: every pointer in `hdr` is to a local or to `buf`, all alive for the call;
    // MSG_DONTWAIT keeps the one thread from blocking.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let taken = SystemTime::now();
    let from = decode_addr(&name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a sender of no IP family"))?;
    let len = (hdr.msg_flags & libc::MSG_TRUNC == 0).then_some(n as usize);
    let waited = (controls(&hdr).arrived)
        .and_then(|at| waited(taken, at))
        .unwrap_or_default();
    Ok((len, from, waited))
}

/// A GRO train's datagrams: every one `segment` bytes but the last, which may be shorter.
/// A segment size of 0 (no GRO) or past the length is one datagram.
pub fn split_train(bytes: &[u8], segment: usize) -> std::slice::Chunks<'_, u8> {
    let size = if segment == 0 || segment >= bytes.len() {
        bytes.len().max(1)
    } else {
        segment
    };
    bytes.chunks(size)
}

/// What a received message's control messages said.
struct Controls {
    /// A coalesced train's segment size (`UDP_GRO`); 0 if none.
    segment: usize,
    /// When the kernel took it in (`SO_TIMESTAMP_OLD`), as (seconds, microseconds) since
    /// the epoch, if it said.
    arrived: Option<(i64, i64)>,
}

/// How long before `taken` a datagram stamped `arrived` came in; none for a stamp after
/// it or over `LONGEST_WAIT` before (the wall clock stepped). Seconds are compared
/// modulo 2^32, as a 32-bit `timeval` holds them.
fn waited(taken: SystemTime, (secs, micros): (i64, i64)) -> Option<Duration> {
    let now = taken.duration_since(UNIX_EPOCH).ok()?;
    let whole = (now.as_secs() as u32).wrapping_sub(secs as u32);
    if whole > LONGEST_WAIT.as_secs() as u32 + 1 {
        return None;
    }
    let stamp =
        Duration::from_secs(u64::from(whole)) + Duration::from_micros(now.subsec_micros().into());
    stamp
        .checked_sub(Duration::from_micros(micros.clamp(0, 999_999) as u64))
        .filter(|w| *w <= LONGEST_WAIT)
}

fn controls(hdr: &libc::msghdr) -> Controls {
    let mut found = Controls {
        segment: 0,
        arrived: None,
    };
    // SAFETY: the CMSG_* walk stays inside msg_control/msg_controllen, which the kernel
    // filled; the data of a UDP_GRO message is one int, of a timestamp two longs (their
    // size read from the message's length).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, UDP_GRO) => {
                    let segment = std::ptr::read_unaligned(data as *const libc::c_int);
                    found.segment = segment.max(0) as usize;
                }
                (libc::SOL_SOCKET, SO_TIMESTAMP_OLD) => {
                    let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                    found.arrived = match len {
                        16 => {
                            let [s, us] = std::ptr::read_unaligned(data as *const [i64; 2]);
                            Some((s, us))
                        }
                        8 => {
                            let [s, us] = std::ptr::read_unaligned(data as *const [i32; 2]);
                            Some((s.into(), us.into()))
                        }
                        _ => None,
                    };
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    found
}

/// Sends batches of datagrams; keeps the level the kernel accepted.
pub struct SendBatch {
    level: Level,
    names: Vec<libc::sockaddr_storage>,
    name_lens: Vec<libc::socklen_t>,
    cmsgs: Vec<[u64; CMSG_ROOM / 8]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Datagrams carried by each message of the call being built.
    counts: Vec<usize>,
}

impl SendBatch {
    pub fn new(level: Level) -> SendBatch {
        SendBatch {
            level,
            names: Vec::new(),
            name_lens: Vec::new(),
            cmsgs: Vec::new(),
            iovs: Vec::new(),
            msgs: Vec::new(),
            counts: Vec::new(),
        }
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Sends from the front of `batch` with one system call (GSO or `sendmmsg`) or a few
    /// (`sendto` each), without waiting. Returns how many datagrams left; `WouldBlock`
    /// when the socket's buffer is full before the first. An error that names one
    /// datagram (no route to its address) is returned for it: the caller skips it.
    /// `v4_mapped`: the socket is dual-stack, so IPv4 destinations are given as
    /// `::ffff:a.b.c.d`.
    pub fn send<B: AsRef<[u8]>>(
        &mut self,
        fd: RawFd,
        v4_mapped: bool,
        batch: &[(SocketAddr, B)],
    ) -> io::Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        loop {
            let result = match self.level {
                Level::Single => send_one(fd, v4_mapped, &batch[0].0, batch[0].1.as_ref()),
                level => self.send_mmsg(fd, v4_mapped, batch, level == Level::Gso),
            };
            match result {
                Err(e) if self.refused(&e) => {
                    let down = self.level.down();
                    log::info!(
                        "UDP: the kernel refused {:?} sends ({e}); using {down:?} from now on",
                        self.level
                    );
                    self.level = down;
                }
                other => return other,
            }
        }
    }

    /// Errors that mean "this kernel or device cannot do this level", not "this
    /// datagram": EIO is what UDP GSO gives on older kernels where the egress device
    /// lacks checksum offload; ENOSYS a kernel without sendmmsg. A GSO refusal counts only when the
    /// message that failed (the first: sendmmsg reports an error only for it) carried
    /// segments; a lone datagram's EINVAL says something about that datagram.
    fn refused(&self, e: &io::Error) -> bool {
        let code = e.raw_os_error();
        match self.level {
            Level::Gso => {
                self.counts.first().is_some_and(|&n| n > 1)
                    && matches!(
                        code,
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    )
            }
            Level::Mmsg => code == Some(libc::ENOSYS),
            Level::Single => false,
        }
    }

    fn send_mmsg<B: AsRef<[u8]>>(
        &mut self,
        fd: RawFd,
        v4_mapped: bool,
        batch: &[(SocketAddr, B)],
        gso: bool,
    ) -> io::Result<usize> {
        // Each message: a run of datagrams (one without GSO). Vectors keep their capacity
        // from call to call, so a steady flow allocates nothing.
        self.counts.clear();
        let mut i = 0;
        while i < batch.len() {
            let run = if gso { gso_run(&batch[i..]) } else { 1 };
            self.counts.push(run);
            i += run;
        }
        let messages = self.counts.len();
        // SAFETY: all-zero values of these C structs are valid; filled in below.
        self.names.resize(messages, unsafe { zeroed() });
        self.name_lens.resize(messages, 0);
        self.cmsgs.resize(messages, [0; CMSG_ROOM / 8]);
        self.iovs.clear();
        for (_, bytes) in &batch[..i] {
            let bytes = bytes.as_ref();
            self.iovs.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        self.msgs.clear();
        let mut first = 0;
        for m in 0..messages {
            let count = self.counts[m];
            self.name_lens[m] = encode_addr(&batch[first].0, v4_mapped, &mut self.names[m]);
            // SAFETY: an all-zero msghdr is valid; its pointers go to vectors that are not
            // touched again before the call.
            let mut hdr: libc::msghdr = unsafe { zeroed() };
            hdr.msg_name = &mut self.names[m] as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = self.name_lens[m];
            hdr.msg_iov = &mut self.iovs[first];
            hdr.msg_iovlen = count as _;
            if count > 1 {
                let segment = batch[first].1.as_ref().len() as u16;
                hdr.msg_control = self.cmsgs[m].as_mut_ptr() as *mut libc::c_void;
                // SAFETY: CMSG_SPACE of a u16 fits in CMSG_ROOM; the header is written
                // inside our buffer.
                unsafe {
                    hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                    let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment);
                }
            }
            self.msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
            first += count;
        }
        // SAFETY: `msgs` holds `messages` headers pointing into `iovs`, `names` and
        // `cmsgs` (all sized above and not moved since) and into the caller's buffers,
        // which `batch` borrows for the call.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                messages as _,
                libc::MSG_DONTWAIT as _,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.counts[..sent as usize].iter().sum())
    }
}

/// How many datagrams from the front of `batch` one GSO message can carry: same
/// destination, same size, except that the last may be shorter (the kernel's rule).
fn gso_run<B: AsRef<[u8]>>(batch: &[(SocketAddr, B)]) -> usize {
    let (to, first) = (&batch[0].0, batch[0].1.as_ref().len());
    if first == 0 {
        return 1;
    }
    let mut run = 1;
    let mut bytes = first;
    for (addr, b) in &batch[1..] {
        let len = b.as_ref().len();
        if addr != to || len > first || len == 0 || run == MAX_SEGMENTS {
            break;
        }
        if bytes + len > MAX_GSO_BYTES {
            break;
        }
        run += 1;
        bytes += len;
        if len < first {
            break;
        }
    }
    run
}

fn send_one(fd: RawFd, v4_mapped: bool, to: &SocketAddr, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: an all-zero sockaddr_storage is valid; encode_addr fills it.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let len = encode_addr(to, v4_mapped, &mut name);
    // SAFETY: `bytes` and `name` live across the call; len is what encode_addr wrote.
    let rc = unsafe {
        libc::sendto(
            fd,
            bytes.as_ptr() as *const libc::c_void,
            bytes.len(),
            libc::MSG_DONTWAIT,
            &name as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(1)
}

fn encode_addr(
    to: &SocketAddr,
    v4_mapped: bool,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    let v6 = match to {
        SocketAddr::V4(v4) if !v4_mapped => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            return size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
        SocketAddr::V6(v6) => *v6,
    };
    // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
    let sin6 = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in6) };
    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sin6.sin6_port = v6.port().to_be();
    sin6.sin6_flowinfo = 0;
    sin6.sin6_addr = libc::in6_addr {
        s6_addr: v6.ip().octets(),
    };
    sin6.sin6_scope_id = v6.scope_id();
    size_of::<libc::sockaddr_in6>() as libc::socklen_t
}

/// The sender's address, IPv4 peers in their plain form (`::ffff:a.b.c.d` unwrapped).
fn decode_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match name.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(name as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(name as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddrV4::new(v4, port).into(),
                None => SocketAddrV6::new(ip, port, 0, sin6.sin6_scope_id).into(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "udp_batch_tests.rs"]
mod tests;
