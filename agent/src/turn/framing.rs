//! Stream framing for TURN over TCP and TLS (RFC 8656 §12.5): the byte stream is a
//! sequence of STUN messages and ChannelData frames padded to 4 bytes, told apart by their
//! first two bits. [`StreamBuffer`] reassembles them from chunks of any size.
//!
//! Memory stays bounded whatever the server sends: a partial frame is kept only up to
//! [`MAX_FRAME`]; a larger frame is counted and skipped as it streams by. A first byte
//! that starts neither kind of frame means we lost sync, which no amount of reading
//! repairs: the connection has to be replaced.

use super::channel::HEADER_LEN as CHANNEL_HEADER_LEN;
use super::stun::{HEADER_LEN as STUN_HEADER_LEN, padded};

/// The largest frame kept: WireGuard packets over a 1500-byte path plus headers fit with
/// a wide margin; jumbo frames on the relay's far side are dropped rather than buffered.
pub const MAX_FRAME: usize = 9216;

/// What the next complete frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Stun,
    ChannelData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete frame, padding excluded.
    Complete { kind: FrameKind, bytes: &'a [u8] },
    /// A frame longer than [`MAX_FRAME`] is being skipped.
    Skipped,
    /// The stream is not TURN framing any more; nothing more comes out of this buffer.
    Corrupt,
}

/// Reassembly buffer: push a chunk, then take frames until `None`.
#[derive(Debug, Default)]
pub struct StreamBuffer {
    buf: Vec<u8>,
    /// Start of the bytes not handed out yet.
    start: usize,
    /// Bytes still to drop from an oversized frame.
    skip: usize,
    corrupt: bool,
}

impl StreamBuffer {
    pub fn new() -> StreamBuffer {
        StreamBuffer::default()
    }

    /// Appends a chunk read from the stream. Frames handed out earlier are dropped first,
    /// so the buffer holds at most one partial frame (< [`MAX_FRAME`]) plus `chunk`.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.corrupt {
            return;
        }
        let skipped = self.skip.min(chunk.len());
        self.skip -= skipped;
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(&chunk[skipped..]);
    }

    /// The next frame, or `None` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        if self.corrupt {
            return None;
        }
        if self.start == self.buf.len() {
            // All handed out: reuse the allocation from the start.
            self.buf.clear();
            self.start = 0;
        }
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return None;
        }
        let len_field = u16::from_be_bytes([avail[2], avail[3]]) as usize;
        let (kind, len) = match avail[0] >> 6 {
            0b00 => (FrameKind::Stun, STUN_HEADER_LEN + len_field),
            0b01 => (FrameKind::ChannelData, CHANNEL_HEADER_LEN + len_field),
            _ => {
                self.corrupt = true;
                self.buf = Vec::new();
                self.start = 0;
                return Some(Frame::Corrupt);
            }
        };
        let framed = padded(len);
        if framed > MAX_FRAME {
            let have = avail.len().min(framed);
            self.start += have;
            self.skip = framed - have;
            return Some(Frame::Skipped);
        }
        if avail.len() < framed {
            return None;
        }
        let at = self.start;
        self.start += framed;
        Some(Frame::Complete {
            kind,
            bytes: &self.buf[at..at + len],
        })
    }

    /// Forgets everything: for a new connection.
    pub fn reset(&mut self) {
        *self = StreamBuffer {
            buf: std::mem::take(&mut self.buf),
            ..StreamBuffer::default()
        };
        self.buf.clear();
    }

    /// Bytes held (for tests of the bound).
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::channel::ChannelData;

    /// A STUN message (20-byte header, one 8-byte attribute) and two ChannelData frames,
    /// one needing 3 bytes of padding, as a server would write them on a stream.
    fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut stun = vec![0x01, 0x03, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        stun.extend_from_slice(&[0x00, 0x0d, 0x00, 0x04, 0, 0, 0x02, 0x58]);
        let mut cd1 = Vec::new();
        ChannelData::emit(0x4000, b"hello", true, &mut cd1);
        let mut cd2 = Vec::new();
        ChannelData::emit(0x4001, b"wire", true, &mut cd2);
        let all = [stun.clone(), cd1.clone(), cd2.clone()].concat();
        (all, vec![stun, cd1[..9].to_vec(), cd2])
    }

    fn drain(buf: &mut StreamBuffer, got: &mut Vec<Vec<u8>>) {
        while let Some(frame) = buf.next_frame() {
            match frame {
                Frame::Complete { bytes, .. } => got.push(bytes.to_vec()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn reassembles_frames_across_every_two_way_split() {
        let (all, want) = stream();
        for cut in 0..=all.len() {
            let mut buf = StreamBuffer::new();
            let mut got = Vec::new();
            buf.push(&all[..cut]);
            drain(&mut buf, &mut got);
            buf.push(&all[cut..]);
            drain(&mut buf, &mut got);
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn reassembles_frames_fed_one_byte_at_a_time() {
        // Includes a split inside the padding of the first ChannelData frame.
        let (all, want) = stream();
        let mut buf = StreamBuffer::new();
        let mut got = Vec::new();
        for b in &all {
            buf.push(std::slice::from_ref(b));
            drain(&mut buf, &mut got);
        }
        assert_eq!(got, want);
        assert_eq!(buf.buffered(), 0);
    }

    #[test]
    fn tells_stun_from_channel_data_by_the_first_two_bits() {
        let (all, _) = stream();
        let mut buf = StreamBuffer::new();
        buf.push(&all);
        let kinds: Vec<_> = std::iter::from_fn(|| match buf.next_frame()? {
            Frame::Complete { kind, .. } => Some(kind),
            _ => None,
        })
        .collect();
        assert_eq!(
            kinds,
            [
                FrameKind::Stun,
                FrameKind::ChannelData,
                FrameKind::ChannelData
            ]
        );
    }

    #[test]
    fn skips_an_oversized_frame_without_buffering_it_and_resyncs_after_it() {
        let mut big = vec![0x40, 0x00, 0xff, 0xff];
        big.resize(4 + 0xffff + 1, 0xaa); // 65535 bytes of payload, 1 of padding
        let mut after = Vec::new();
        ChannelData::emit(0x4002, b"next", true, &mut after);
        let all = [big, after].concat();
        let mut buf = StreamBuffer::new();
        let mut got = Vec::new();
        let mut skipped = 0;
        for chunk in all.chunks(1000) {
            buf.push(chunk);
            assert!(buf.buffered() <= MAX_FRAME + 1000);
            while let Some(frame) = buf.next_frame() {
                match frame {
                    Frame::Complete { bytes, .. } => got.push(bytes.to_vec()),
                    Frame::Skipped => skipped += 1,
                    Frame::Corrupt => panic!("corrupt"),
                }
            }
        }
        assert_eq!(skipped, 1);
        assert_eq!(got, vec![b"\x40\x02\x00\x04next".to_vec()]);
    }

    #[test]
    fn a_byte_that_starts_no_frame_marks_the_stream_corrupt_for_good() {
        let mut buf = StreamBuffer::new();
        buf.push(&[0x80, 0, 0, 0, 0x40, 0, 0, 0]);
        assert_eq!(buf.next_frame(), Some(Frame::Corrupt));
        buf.push(&[0x40, 0, 0, 0]);
        assert_eq!(buf.next_frame(), None);
        buf.reset();
        buf.push(&[0x40, 0, 0, 0]);
        assert!(matches!(buf.next_frame(), Some(Frame::Complete { .. })));
    }
}
