//! The TUN's write and read paths run without a device on input a peer chose, with every
//! check of what would reach the device: for the randomized tests beside this file
//! (`tun_hostile_tests.rs`) and for the fuzz targets `tun_write` and `tun_read` (fuzz/,
//! built with the `fuzzing` feature). Not part of the agent.
//!
//! A peer's packets pass WireGuard's authentication, boringtun's one check (an IP length
//! no longer than what was decrypted, the packet cut to it) and the core's (no shorter
//! than an IPv4 header); everything else in them is the peer's choice, and goes through `Room`'s plan and tun-rs's GRO (trusting
//! checksums, as the agent runs it) on the way to the device. A panic there takes the
//! agent down, and a hub with it, for every peer; a packet whose IP length no longer
//! matches what is written is dropped by the kernel, with the packets coalesced into it.
//! On a hub the kernel forwards what peers sent back into the TUN, so the read path's
//! `split_frame` meets frames made from their bytes too.

use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN, VirtioNetHdr};

use super::ring_probe::{self, RingProbe};
use super::sent_wait::SentWaits;
use super::tun_batch::{Frame, SEGMENTS, VIRTIO_NET_HDR_GSO_NONE, runs, split_frame, udp_last};
use super::tun_room::Room;

/// What the core's buffers hold (its pool's size).
pub const CORE_CAPACITY: usize = 2048;

/// A decrypted packet as the core hands it to the TUN, behind room for the virtio
/// header in a buffer like the core's; `None` where boringtun refuses it (it claims more
/// bytes than it has, or is no IP packet at all) or the core drops it (boringtun cut it
/// shorter than an IPv4 header: see `Peer::receive`).
pub fn decrypted(packet: &[u8]) -> Option<Vec<u8>> {
    let claimed = claimed_len(packet)?;
    let packet = packet.get(..claimed).filter(|p| p.len() >= 20)?;
    let mut buf = Vec::with_capacity(CORE_CAPACITY.max(VIRTIO_NET_HDR_LEN + packet.len()));
    buf.resize(VIRTIO_NET_HDR_LEN, 0);
    buf.extend_from_slice(packet);
    Some(buf)
}

/// The IP length a packet claims, where it has one.
pub fn claimed_len(ip: &[u8]) -> Option<usize> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => Some(usize::from(u16::from_be_bytes([ip[2], ip[3]]))),
        6 if ip.len() >= 40 => Some(40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))),
        _ => None,
    }
}

/// The write path with what it keeps from one write to the next, as `TunBatch` has it.
pub struct Writer {
    room: Room,
    gro: GROTable,
    /// Packets that would have been written, and how many of them were coalesced.
    pub written: usize,
    pub coalesced: usize,
}

impl Default for Writer {
    fn default() -> Writer {
        let mut gro = GROTable::default();
        gro.trust_checksums();
        Writer {
            room: Room::default(),
            gro,
            written: 0,
            coalesced: 0,
        }
    }
}

impl Writer {
    /// Takes one batch of decrypted packets (each as `decrypted` makes them) through what
    /// `TunBatch::write` does, and panics unless every packet that would be written has
    /// the IP length its buffer has and a virtio header whose sizes lie inside it, the
    /// packets written carry as many as came in, and the core's buffers, all and only
    /// them, are back afterwards.
    pub fn write(&mut self, bufs: &mut [Vec<u8>]) {
        let mut core: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        let used = bufs.len();
        let udp_from = udp_last(bufs);
        for run in runs(udp_from, used) {
            let run = &mut bufs[run];
            self.room.lend(run);
            if let Err(e) = self.gro.apply_gro(run, VIRTIO_NET_HDR_LEN, true) {
                panic!("tun-rs refused a batch: {e}");
            }
            let mut packets = 0;
            for &i in self.gro.to_write() {
                let frame = &run[i];
                let ip = &frame[VIRTIO_NET_HDR_LEN..];
                if let Some(claimed) = claimed_len(ip) {
                    assert_eq!(claimed, ip.len(), "a written IP length");
                }
                let n = carried(frame);
                self.coalesced += usize::from(n > 1);
                packets += n;
            }
            self.written += self.gro.to_write().len();
            assert_eq!(packets, run.len(), "packets in and out");
            self.room.take_back(run);
        }
        let mut back: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        core.sort();
        back.sort();
        assert_eq!(back, core, "the core's buffers are the ones back");
    }
}

/// How many of the peer's packets a written one carries, from its virtio header.
fn carried(frame: &[u8]) -> usize {
    let hdr = VirtioNetHdr::decode(frame).expect("a whole header");
    let packet = frame.len() - VIRTIO_NET_HDR_LEN;
    if hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE {
        return 1;
    }
    let (headers, segment) = (usize::from(hdr.hdr_len), usize::from(hdr.gso_size));
    assert!(segment > 0, "a GSO packet with no segment size: {hdr:?}");
    assert!(
        headers < packet,
        "headers {headers} of a {packet}-byte packet"
    );
    let checksum_end = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset) + 2;
    assert!(
        checksum_end <= packet,
        "checksum field past the end: {hdr:?}"
    );
    (packet - headers).div_ceil(segment)
}

/// The read path's split, with segment buffers of the MTU's size as the agent has them.
pub struct Reader {
    segments: Vec<Vec<u8>>,
    /// The agent reads each frame's first packet for its TCP timestamp (sent_wait.rs)
    /// and for its own probe (ring_probe.rs; the secret all zeros, so fuzzed bytes can
    /// reach it).
    waits: SentWaits,
    probe: RingProbe,
    sizes: Vec<usize>,
    /// Frames split, and frames refused.
    pub split: usize,
    pub refused: usize,
}

impl Reader {
    pub fn new(mtu: usize) -> Reader {
        Reader {
            segments: vec![vec![0; mtu]; SEGMENTS],
            waits: SentWaits::new(std::time::Instant::now()),
            probe: RingProbe::detached([0; 8]),
            sizes: vec![0; SEGMENTS],
            split: 0,
            refused: 0,
        }
    }

    /// Takes one frame as the TUN hands it over (virtio-net header, then the packet) and
    /// panics unless it comes back whole, or split into segments whose IP length is
    /// their size, or refused. The first packet is read for a probe and its TCP
    /// timestamp, as the agent does (which must not panic either).
    pub fn read(&mut self, frame: &mut [u8]) {
        let now = std::time::Instant::now();
        match split_frame(frame, &mut self.segments, &mut self.sizes) {
            Ok(Frame::Whole(n)) => {
                assert_eq!(n, frame.len() - VIRTIO_NET_HDR_LEN);
                first(
                    &mut self.waits,
                    &mut self.probe,
                    &frame[VIRTIO_NET_HDR_LEN..],
                    now,
                );
            }
            Ok(Frame::Split(n)) => {
                self.split += 1;
                assert!(n <= SEGMENTS, "{n} segments");
                let packet = &self.segments[0][..self.sizes[0]];
                first(&mut self.waits, &mut self.probe, packet, now);
                for (segment, &size) in self.segments.iter().zip(&self.sizes).take(n) {
                    let ip = &segment[..size];
                    assert_eq!(claimed_len(ip), Some(size), "a segment's IP length");
                }
            }
            Err(_) => self.refused += 1,
        }
    }
}

/// What the agent reads of a frame's first packet: its own probe, or the packet's wait.
fn first(waits: &mut SentWaits, probe: &mut RingProbe, packet: &[u8], now: std::time::Instant) {
    if !probe.take(packet, now) {
        waits.wait(packet, now);
        ring_probe::bulk(packet);
        ring_probe::bulk_udp(packet);
    }
}

#[cfg(test)]
#[path = "tun_hostile_tests.rs"]
mod tests;
