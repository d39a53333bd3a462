//! Many packets per TUN system call. With offload on (IFF_VNET_HDR + TUNSETOFFLOAD TSO4/
//! TSO6, and USO4/USO6 where the kernel has them, 6.2+, asked of tun-rs), one read brings
//! a TCP super-packet of up to 64 KiB behind a virtio-net header (or a UDP one, from an
//! application sending with `UDP_SEGMENT`), split here into MTU-sized packets for the
//! core to encrypt one by one; on the way back, the decrypted packets of one flight are
//! coalesced again (GRO, tun-rs's `GROTable`) so the kernel takes a flight in a few
//! writes. Without offload (`EDGEWIRE_OFFLOAD=off`, or a descriptor systemd passed
//! without the header) each read is one packet and each write one packet, through the
//! same code.
//!
//! The splitting is ours, not tun-rs's `recv_multiple`: it is the same work on top of
//! tun-rs's public `gso_split`, with the header checks in one place we can test with
//! crafted frames. A frame we cannot split (flags we do not know, a header that lies about
//! lengths, more segments than the batch holds) is dropped and counted; nothing panics.

use std::io;

use crate::core::TUN_HEADROOM;

use super::pages::Pages;
use super::tun_room::Room;

use tun_rs::{
    AsyncDevice, GROTable, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4, VIRTIO_NET_HDR_LEN, VirtioNetHdr,
};

// From linux/virtio_net.h; tun-rs does not export these.
pub(super) const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub(super) const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
pub(super) const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// Packets one super-packet may split into: 64 KiB of TCP payload at the smallest MSS
/// the kernel uses for it (536) is 123.
pub const SEGMENTS: usize = 128;
/// UDP datagrams of one flow coalesced into one write at most. The kernel splits such a
/// write into its datagrams and queues them all at once on the receiving socket, so a
/// long run fills an application's socket buffer in one go (a default one holds about
/// 90 datagrams of 1400 bytes). Measured with `bench --udp-at 500,550,600,650`, rounds
/// alternating 8, 16, 32 and 64, only rounds with under 3 % of the CPU stolen: loss at
/// 550-600 Mbit/s 1.2-4.6 % with 8, 0.9-1.8 % with 16, 0.6-2.9 % with 32, 1.4-2.6 %
/// with 64; every lost datagram was the receiving iperf3's (its socket's drops; none on
/// the agent's). Sixteen, and fifteen writes saved in sixteen. The loop now gives way
/// after every run (give_way.rs); measured again with that, `--udp-at 1250`, 4 rounds
/// alternating: median loss 1.2 % with 16, 3.2 % with 8, 2.5 % with 32. Coalescing at
/// all pays even for a reader that takes one datagram a call: with the TUN's UDP offload
/// refused (a throwaway build, as on a kernel before 6.2, so no runs), same rate, 4
/// rounds alternating, loss was 4.15, 4.67, 5.15 and 0.13 % against 2.23, 0.78, 2.20 and
/// 0.41 %.
const UDP_RUN: usize = 16;
/// A read holds the virtio-net header and the largest IP packet.
const FRAME: usize = VIRTIO_NET_HDR_LEN + MAX_PACKET;
/// The largest IP packet the device can hand over (an IPv4 total length's limit).
const MAX_PACKET: usize = 65_535;

// The core leaves exactly the header's room in front of the packets it decrypts.
const _: () = assert!(TUN_HEADROOM == VIRTIO_NET_HDR_LEN);

/// Why a frame from the TUN was dropped.
#[derive(Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// Shorter than the virtio-net header.
    Short,
    /// Header flags other than "needs checksum" and "checksum valid".
    Flags(u8),
    /// A GSO type we did not ask for, or one that does not match the IP version.
    GsoType(u8),
    /// The header's sizes and offsets do not fit the packet, or it splits into more
    /// segments than a batch holds.
    Malformed(&'static str),
}

pub struct TunBatch {
    /// Whether the device carries virtio-net headers (offload is on).
    offload: bool,
    /// Whether UDP is offloaded too (Linux 6.2+): tun-rs then coalesces UDP runs, and
    /// the kernel hands over an application's `UDP_SEGMENT` sends whole. Only reported
    /// here: tun-rs decides the coalescing, and a UDP super-packet is split either way.
    udp_offload: bool,
    /// What one read took: a frame behind its virtio-net header, or without offload a
    /// packet alone.
    frame: Pages,
    /// Split packets; grown to what the largest super-packet needed (at most
    /// `SEGMENTS`), and emptied when traffic stops (`shed`).
    segments: Vec<Vec<u8>>,
    segment: usize,
    sizes: Vec<usize>,
    /// Segments of the last read.
    count: usize,
    /// The length of the last read's packet when it came whole (no GSO, or no
    /// offload): it is read from `frame` where it lies, not copied into a segment
    /// (every UDP packet and every ACK comes so).
    whole: Option<usize>,
    /// Decrypted packets waiting for `write`, each behind room for the virtio header.
    out: Vec<Vec<u8>>,
    out_used: usize,
    /// Made on the first write of more than one packet: its flow tables hold about 1 MB,
    /// which an idle agent (keepalives, pings) has no use for.
    gro: Option<GROTable>,
    /// Large buffers for the first packet of each flow, so tun-rs can coalesce.
    room: Room,
    /// Frames dropped because they could not be split, since the agent began.
    pub bad_frames: u64,
}

impl TunBatch {
    pub fn new(offload: bool, udp_offload: bool, mtu: u16) -> TunBatch {
        TunBatch {
            offload,
            udp_offload: offload && udp_offload,
            // Mapped: only the pages the largest frame so far has used are resident.
            // Without offload it must still hold whatever the device could hand over.
            frame: Pages::zeroed(if offload { FRAME } else { MAX_PACKET }),
            segments: Vec::new(),
            segment: usize::from(mtu).max(1280),
            sizes: vec![0; SEGMENTS],
            count: 0,
            whole: None,
            out: Vec::new(),
            out_used: 0,
            gro: None,
            room: Room::default(),
            bad_frames: 0,
        }
    }

    pub fn offload(&self) -> bool {
        self.offload
    }

    pub fn udp_offload(&self) -> bool {
        self.udp_offload
    }

    /// One read without waiting: `Ok(n)` packets are in `packets()` (0 when the frame
    /// was bad, which is counted); `WouldBlock` when nothing is queued.
    pub fn read(&mut self, dev: &AsyncDevice) -> io::Result<usize> {
        self.count = 0;
        self.whole = None;
        if !self.offload {
            self.whole = Some(dev.try_recv(&mut self.frame)?);
            return Ok(1);
        }
        let len = dev.try_recv(&mut self.frame)?;
        let want = segments_needed(&self.frame[..len]).min(SEGMENTS);
        while self.segments.len() < want {
            self.segments.push(vec![0; self.segment]);
        }
        match split_frame(&mut self.frame[..len], &mut self.segments, &mut self.sizes) {
            Ok(Frame::Whole(n)) => {
                self.whole = Some(n);
                return Ok(1);
            }
            Ok(Frame::Split(n)) => self.count = n,
            Err(why) => {
                self.bad_frames += 1;
                log::debug!("dropped a {len}-byte frame from the TUN device: {why:?}");
            }
        }
        Ok(self.count)
    }

    /// Whether the last `read`'s packet came whole, one to the read, not split from a
    /// super-packet.
    pub fn came_whole(&self) -> bool {
        self.whole.is_some()
    }

    /// The packets of the last `read`.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        let header = if self.offload { VIRTIO_NET_HDR_LEN } else { 0 };
        let whole = self.whole.map(|n| &self.frame[header..][..n]);
        let split = (self.segments[..self.count].iter())
            .zip(&self.sizes)
            .map(|(b, &n)| &b[..n]);
        whole.into_iter().chain(split)
    }

    /// Queues a packet for the next `write`: `buf` holds it behind `TUN_HEADROOM` bytes,
    /// where the virtio-net header goes, so it is written from there without a copy.
    /// Returns a spare buffer (the one `buf` takes the place of) for the caller's pool.
    pub fn queue(&mut self, mut buf: Vec<u8>) -> Vec<u8> {
        // The header of a packet written alone: no GSO, checksum complete.
        buf[..VIRTIO_NET_HDR_LEN].fill(0);
        let spare = if self.out_used == self.out.len() {
            self.out.push(buf);
            Vec::new()
        } else {
            std::mem::replace(&mut self.out[self.out_used], buf)
        };
        self.out_used += 1;
        spare
    }

    /// Gives back what a burst grew, for an agent whose traffic has stopped: the
    /// frame's pages, the segments, the buffers kept for writes, the GRO
    /// tables and the room for coalescing. The next burst grows them again.
    pub fn shed(&mut self) {
        self.frame.discard();
        self.segments = Vec::new();
        // Packets still waiting for a write stay; the spares behind them go.
        self.out.truncate(self.out_used);
        self.out.shrink_to_fit();
        self.gro = None;
        self.room.shed();
    }

    pub fn queued(&self) -> usize {
        self.out_used
    }

    /// Writes what was queued, coalesced where offload allows, in runs (see `runs`);
    /// `written` hears how many packets each run held as soon as it is written, so that
    /// the loop can give way before the next (give_way.rs).
    pub async fn write(
        &mut self,
        dev: &AsyncDevice,
        mut written: impl FnMut(usize),
    ) -> io::Result<()> {
        if self.out_used == 0 {
            return Ok(());
        }
        let used = std::mem::take(&mut self.out_used);
        if self.offload && used > 1 {
            // Every packet here passed WireGuard's authentication on its way in, so
            // coalescing skips checking its checksum first (see `trust_checksums`).
            let gro = self.gro.get_or_insert_with(|| {
                let mut gro = GROTable::default();
                gro.trust_checksums();
                gro
            });
            // TCP (and anything else) in one go, coalesced as far as it will; UDP after
            // it, in short runs (see `UDP_RUN`).
            let udp_from = udp_last(&mut self.out[..used]);
            let mut result = Ok(());
            for run in runs(udp_from, used) {
                let run = &mut self.out[run];
                self.room.lend(run);
                if let Err(e) = dev.send_multiple(gro, run, VIRTIO_NET_HDR_LEN).await {
                    result = Err(e);
                }
                self.room.take_back(run);
                written(run.len());
            }
            result
        } else {
            // One packet (or no offload): written as it is, behind an all-zero header
            // (no GSO, checksum complete) when the device expects one; heard of in runs
            // as long as offload's UDP runs.
            let skip = if self.offload { 0 } else { VIRTIO_NET_HDR_LEN };
            let mut result = Ok(());
            for run in self.out[..used].chunks(UDP_RUN) {
                for buf in run {
                    if let Err(e) = dev.send(&buf[skip..]).await {
                        result = Err(e);
                    }
                }
                written(run.len());
            }
            result
        }
    }
}

/// The writes of `used` queued packets whose UDP ones begin at `udp_from`: the others
/// in one, then the UDP ones in runs of `UDP_RUN`.
pub(super) fn runs(udp_from: usize, used: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let udp = (udp_from..used).step_by(UDP_RUN);
    std::iter::once(0..udp_from)
        .filter(|others| !others.is_empty())
        .chain(udp.map(move |start| start..(start + UDP_RUN).min(used)))
}

/// Moves the UDP packets among `bufs` (each behind room for the virtio header) after
/// the others, keeping the order within each group; where the UDP ones begin.
pub(super) fn udp_last(bufs: &mut [Vec<u8>]) -> usize {
    let mut others = 0;
    for i in 0..bufs.len() {
        if !is_udp(&bufs[i][VIRTIO_NET_HDR_LEN..]) {
            bufs[others..=i].rotate_right(1);
            others += 1;
        }
    }
    others
}

/// Whether an IP packet carries UDP (IPv6 extension headers are not followed: such a
/// packet is simply not taken for UDP, and is written with the others).
fn is_udp(packet: &[u8]) -> bool {
    const UDP: u8 = 17;
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(9) == Some(&UDP),
        Some(6) => packet.get(6) == Some(&UDP),
        _ => false,
    }
}

/// How many segment buffers a frame read from an offloading TUN will split into, from
/// its header alone: none for a lone packet (it stays in the frame) or a header that
/// cannot be read (`split_frame` judges the rest).
fn segments_needed(frame: &[u8]) -> usize {
    match VirtioNetHdr::decode(frame) {
        Ok(hdr) if hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE && hdr.gso_size != 0 => {
            frame.len().div_ceil(usize::from(hdr.gso_size))
        }
        _ => 0,
    }
}

/// What a frame from an offloading TUN held, once checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One packet of this length, left in the frame behind the header (its checksum
    /// finished there when the kernel left it to us).
    Whole(usize),
    /// A super-packet, split into this many packets in the segments.
    Split(usize),
}

/// Splits one frame read from an offloading TUN (virtio-net header, then an IP packet,
/// maybe a TCP or UDP super-packet) into `segments`, or leaves a lone packet where it is.
/// After wireguard-go's `handleVirtioRead`, with the checks made before anything is cut.
pub fn split_frame(
    frame: &mut [u8],
    segments: &mut [Vec<u8>],
    sizes: &mut [usize],
) -> Result<Frame, BadFrame> {
    if frame.len() <= VIRTIO_NET_HDR_LEN {
        return Err(BadFrame::Short);
    }
    let mut hdr =
        VirtioNetHdr::decode(&frame[..VIRTIO_NET_HDR_LEN]).map_err(|_| BadFrame::Short)?;
    let known = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
    if hdr.flags & !known != 0 {
        return Err(BadFrame::Flags(hdr.flags));
    }
    let packet = &mut frame[VIRTIO_NET_HDR_LEN..];
    let len = packet.len();
    let csum_at = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset);
    let needs_csum = hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
    if needs_csum && csum_at + 2 > len {
        return Err(BadFrame::Malformed("checksum field past the packet"));
    }
    if hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE {
        if needs_csum {
            // CHECKSUM_PARTIAL: the kernel left the transport checksum to us.
            finish_checksum(packet, usize::from(hdr.csum_start), csum_at);
        }
        return Ok(Frame::Whole(len));
    }
    if hdr.gso_size == 0 {
        return Err(BadFrame::Malformed("GSO segment size 0"));
    }
    let is_v6 = match packet[0] >> 4 {
        4 => false,
        6 => true,
        _ => return Err(BadFrame::Malformed("not IPv4 or IPv6")),
    };
    let base = hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN;
    let tcp = match base {
        VIRTIO_NET_HDR_GSO_TCPV4 if !is_v6 => true,
        VIRTIO_NET_HDR_GSO_TCPV6 if is_v6 => true,
        VIRTIO_NET_HDR_GSO_UDP_L4 if base == hdr.gso_type => false,
        _ => return Err(BadFrame::GsoType(hdr.gso_type)),
    };
    if !needs_csum {
        return Err(BadFrame::Malformed("GSO without a partial checksum"));
    }
    // Do not trust hdr_len (on the forward path it can be the whole first packet): the
    // transport header's own length, after csum_start (the IP header's length).
    let start = usize::from(hdr.csum_start);
    let transport = if tcp {
        let Some(&off) = packet.get(start + 12) else {
            return Err(BadFrame::Malformed("TCP header past the packet"));
        };
        let n = usize::from(off >> 4) * 4;
        if !(20..=60).contains(&n) {
            return Err(BadFrame::Malformed("TCP header length"));
        }
        n
    } else {
        8
    };
    let hdr_len = start + transport;
    if hdr_len > len || start < if is_v6 { 40 } else { 20 } {
        return Err(BadFrame::Malformed("headers past the packet"));
    }
    hdr.hdr_len = hdr_len as u16;
    let payload = len - hdr_len;
    let count = payload.div_ceil(usize::from(hdr.gso_size));
    if count > segments.len() || count > sizes.len() {
        return Err(BadFrame::Malformed("more segments than the batch holds"));
    }
    tun_rs::gso_split(packet, hdr, segments, sizes, 0, is_v6)
        .map(Frame::Split)
        .map_err(|_| BadFrame::Malformed("tun-rs could not split it"))
}

/// Completes a transport checksum the kernel left partial (CHECKSUM_PARTIAL): the field
/// holds the pseudo-header sum; the rest is summed from `start`. The caller checked that
/// the field lies inside the packet.
fn finish_checksum(packet: &mut [u8], start: usize, at: usize) {
    let initial = u16::from_be_bytes([packet[at], packet[at + 1]]);
    packet[at..at + 2].fill(0);
    let sum = tun_rs::checksum(&packet[start..], u64::from(initial));
    packet[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
}

#[cfg(test)]
#[path = "tun_batch_tests.rs"]
mod tests;
