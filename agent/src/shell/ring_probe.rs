//! How long packets wait in the TUN's queue when they carry no clock of their own: the
//! agent sends itself a probe through that queue and times it.
//!
//! `sent_wait.rs` reads a TCP segment's wait from its timestamp. UDP has none, so an
//! upload over QUIC, or any UDP flow that sends faster than the agent encrypts, stands
//! in the TUN's ring unmeasured: 2,000 entries, each up to 64 KiB where the application
//! sends with UDP GSO. The ring keeps no times, and the kernel counts nothing on the way
//! in that would give its depth.
//!
//! So while the TUN is busy the agent sends, every `PACE`, a small UDP datagram of its
//! own into that queue: to 192.0.0.8 (RFC 7600's dummy address, never a real host),
//! out of the TUN by `IP_PKTINFO`'s interface index (with no route to it, Linux takes
//! the destination for on-link on the interface named). It waits behind whatever the
//! applications queued before it, and when the agent reads it back (recognised by a
//! secret drawn at start) the time since it was sent is the queue's wait at that moment.
//! The probe goes no further: it is never encrypted, nor sent anywhere.
//!
//! That wait stands for packets read until the next probe comes back (at most
//! `SAMPLE_LIFE`), or until the agent reads the queue empty, which shows it holds
//! nothing. A probe the ring had no room for, or a firewall dropped, never comes
//! back and says nothing; with no probes at all, nothing is dropped for this queue.
//!
//! Measured in the lab test (tests/tests/queue_control.rs: the aarch64 build under
//! qemu-user on the device, two rounds alternating with the build before): pings beside
//! a CUBIC upload without TCP timestamps 14.5 and 13.5 ms on average against 61.1 and
//! 35.3, at the same throughput; in a first upload's first 2 s (its clock not yet
//! proven) 13.1 and 12.1 against 32.8 and 33.9. Against a UDP flood that does not slow
//! down for a loss the probes measure and CoDel drops (about 1,650 in 8 s), but pings
//! stayed at 70-120 ms: CoDel cannot shorten a queue its sender ignores (blue.rs can,
//! from the same probes). At this machine's own speed (`bench --only edgewire`, four
//! rounds alternating) no figure moved beyond the noise: UDP under 1 % loss median
//! 1,008 Mbit/s against 985, CPU 6.04 s per GB against 6.08.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// RFC 7600's IPv4 dummy address, 192.0.0.8.
const DUMMY: [u8; 4] = [192, 0, 0, 8];
/// The probe's destination port: discard (RFC 863), in case one is ever seen outside.
const PORT: u16 = 9;
/// How often a probe is sent while the TUN is busy: often enough that CoDel's 100 ms
/// interval sees ten samples, seldom enough to cost nothing (100 small packets a second
/// against tens of thousands).
const PACE: Duration = Duration::from_millis(10);
/// Probes followed at once; an older one that never came back is forgotten.
const IN_FLIGHT: usize = 32;
/// How long a returned probe's wait stands for the queue's.
const SAMPLE_LIFE: Duration = Duration::from_secs(1);
/// The probe's payload: the secret, then the probe's number.
const PAYLOAD: usize = 16;

/// The probes in the TUN's queue, and what the last one to come back measured.
#[derive(Debug)]
pub struct RingProbe {
    /// None where the socket could not be made: then nothing is measured.
    socket: Option<UdpSocket>,
    ifindex: u32,
    secret: [u8; 8],
    next: u64,
    in_flight: Vec<(u64, Instant)>,
    last_sent: Option<Instant>,
    /// The last returned probe's wait, and when it came back.
    sample: Option<(Duration, Instant)>,
    /// Whether a failed send was logged: once is enough.
    said: bool,
}

impl RingProbe {
    /// Probes for the TUN with interface index `ifindex`.
    pub fn new(ifindex: u32, secret: [u8; 8]) -> RingProbe {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).and_then(|s| {
            s.set_nonblocking(true)?;
            Ok(s)
        });
        let socket = match socket {
            Ok(socket) => Some(socket),
            Err(e) => {
                log::info!(
                    "no probe socket ({e}): a queue of UDP in front of the agent is not \
                     kept short"
                );
                None
            }
        };
        RingProbe {
            socket,
            ifindex,
            ..RingProbe::detached(secret)
        }
    }

    /// One that sends nothing, but knows its probes when it reads them: for the tests
    /// and the fuzzed read path (tun_hostile.rs).
    pub fn detached(secret: [u8; 8]) -> RingProbe {
        RingProbe {
            socket: None,
            ifindex: 0,
            secret,
            next: 0,
            in_flight: Vec::with_capacity(IN_FLIGHT),
            last_sent: None,
            sample: None,
            said: false,
        }
    }

    /// Sends a probe into the TUN's queue if `PACE` has passed since the last one. For
    /// when the TUN is busy: an idle device sends none.
    pub fn send(&mut self, now: Instant) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let ifindex = self.ifindex;
        self.launch(now, |payload| send_out_of(&socket, ifindex, payload));
        self.socket = Some(socket);
    }

    /// `send`, the sending given: what the tests call with a simulated TUN.
    fn launch(&mut self, now: Instant, send: impl FnOnce(&[u8]) -> io::Result<()>) {
        if self.last_sent.is_some_and(|at| now < at + PACE) {
            return;
        }
        self.last_sent = Some(now);
        let number = self.next;
        self.next += 1;
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&self.secret);
        payload[8..].copy_from_slice(&number.to_be_bytes());
        match send(&payload) {
            Ok(()) => {
                if self.in_flight.len() == IN_FLIGHT {
                    self.in_flight.remove(0);
                }
                self.in_flight.push((number, now));
            }
            // A full socket buffer or a firewall: this probe is skipped, the next tried.
            Err(e) if !self.said => {
                self.said = true;
                log::debug!("a probe into the TUN's queue was refused (not said again): {e}");
            }
            Err(_) => {}
        }
    }

    /// Whether `packet`, read from the TUN at `now`, is one of the agent's probes: then
    /// its wait is taken, and the packet is to go no further.
    pub fn take(&mut self, packet: &[u8], now: Instant) -> bool {
        let Some(number) = self.probe_number(packet) else {
            return false;
        };
        if let Some(i) = self.in_flight.iter().position(|(n, _)| *n == number) {
            let (_, sent) = self.in_flight.remove(i);
            self.sample = Some((now.saturating_duration_since(sent), now));
        }
        true
    }

    /// The agent read the TUN's queue empty at `now`: nothing waits there, whatever the
    /// last probe measured.
    pub fn drained(&mut self, now: Instant) {
        self.sample = Some((Duration::ZERO, now));
    }

    /// How long a packet read now waited in the TUN's queue, as the last probe to come
    /// back measured it (zero once the queue was read empty since); none without a
    /// recent one.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.sample(now).map(|(wait, _)| wait)
    }

    /// `wait`, with when that probe came back (or the queue was read empty).
    pub fn sample(&self, now: Instant) -> Option<(Duration, Instant)> {
        self.sample
            .filter(|&(_, at)| now.saturating_duration_since(at) <= SAMPLE_LIFE)
    }

    /// The probe's number if `packet` is an IPv4 UDP datagram to the dummy address and
    /// port that carries this agent's secret.
    fn probe_number(&self, packet: &[u8]) -> Option<u64> {
        if packet.len() != 20 + 8 + PAYLOAD || packet[0] != 0x45 || packet[9] != 17 {
            return None;
        }
        if packet[16..20] != DUMMY || packet[22..24] != PORT.to_be_bytes() {
            return None;
        }
        let payload = &packet[28..];
        (payload[..8] == self.secret).then(|| u64::from_be_bytes(payload[8..].try_into().unwrap()))
    }
}

/// Whether `packet` is bulk data whose queue wait the probes stand for: an IPv4 or IPv6
/// packet of 1,000 bytes or more, not ICMP. Pings, DNS and keystrokes are small and are
/// not dropped for a queue they did not build.
pub fn bulk(packet: &[u8]) -> bool {
    packet.len() >= 1000 && matches!(protocol(packet), Some(6 | 17))
}

/// Whether `packet` is bulk UDP (see `bulk`): what blue.rs may drop.
pub fn bulk_udp(packet: &[u8]) -> bool {
    bulk(packet) && protocol(packet) == Some(17)
}

/// The IP protocol of an IPv4 packet, or the first next header of an IPv6 one.
fn protocol(packet: &[u8]) -> Option<u8> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(9).copied(),
        Some(6) => packet.get(6).copied(),
        _ => None,
    }
}

/// `sendmsg` of `payload` to the dummy address, out of interface `ifindex`
/// (`IP_PKTINFO`): no capability is needed, unlike `SO_BINDTODEVICE` before Linux 5.7.
fn send_out_of(socket: &UdpSocket, ifindex: u32, payload: &[u8]) -> io::Result<()> {
    // SAFETY: all-zero sockaddr_in, msghdr and in_pktinfo are valid values.
    let mut to: libc::sockaddr_in = unsafe { zeroed() };
    to.sin_family = libc::AF_INET as libc::sa_family_t;
    to.sin_port = PORT.to_be();
    to.sin_addr.s_addr = u32::from_ne_bytes(DUMMY);
    let mut info: libc::in_pktinfo = unsafe { zeroed() };
    info.ipi_ifindex = ifindex as libc::c_int;
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = &mut to as *mut _ as *mut libc::c_void;
    hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE of a small struct; the buffer above holds 64 bytes.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as _;
    // SAFETY: the control buffer is aligned (u64s) and large enough for one
    // in_pktinfo message; every pointer in `hdr` lives until the call returns.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in_pktinfo, info);
        libc::sendmsg(socket.as_raw_fd(), &hdr, libc::MSG_DONTWAIT)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[path = "ring_probe_tests.rs"]
mod tests;
