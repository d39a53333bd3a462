//! Reading a body of unknown size without trusting the sender: at most `max` bytes are
//! ever held, and memory grows with what arrived, not with what was announced.

use std::io::{self, Read};

/// The first read's room; later ones double it, as `Vec` would.
const FIRST_CHUNK: usize = 16 * 1024;

/// `Ok(None)` when the body goes past `max` (reading stops there).
pub fn read_capped(mut reader: impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    // Read straight into the result: no chunk on the stack (16 KB of a thread's stack
    // that stayed resident) and no copy out of it. One byte past `max` is room enough
    // to see that a body is too long.
    let mut out = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            // Always more than `filled`: a body past `max` has returned below.
            out.resize((out.len() * 2).max(FIRST_CHUNK).min(max + 1), 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => {
                // The body is kept (the manifest's bytes, to compare with the next
                // poll's): not the 16 KiB the first read was given room for.
                out.truncate(filled);
                out.shrink_to_fit();
                return Ok(Some(out));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if filled > max {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_up_to_the_cap_is_read_whole() {
        let data = vec![7u8; 40_000];
        assert_eq!(read_capped(&data[..], 40_000).unwrap(), Some(data));
    }

    #[test]
    fn a_small_body_keeps_no_room_past_its_end() {
        let body = read_capped(&[7u8; 1_500][..], 40_000).unwrap().unwrap();
        assert_eq!((body.len(), body.capacity()), (1_500, 1_500));
    }

    #[test]
    fn a_body_over_the_cap_stops_without_growing_past_it() {
        let mut endless = io::repeat(1);
        assert_eq!(read_capped(&mut endless, 100_000).unwrap(), None);
    }

    #[test]
    fn a_body_one_byte_over_the_cap_is_refused() {
        let data = vec![7u8; 40_001];
        assert_eq!(read_capped(&data[..], 40_000).unwrap(), None);
    }

    /// A reader that hands over at most `step` bytes a call, as a socket does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_are_gathered_in_order() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let got = read_capped(
            Trickle {
                data: &data,
                step: 1_000,
            },
            1 << 20,
        )
        .unwrap();
        assert_eq!(got, Some(data));
    }

    #[test]
    fn an_empty_body_is_empty() {
        assert_eq!(read_capped(&[][..], 10).unwrap(), Some(Vec::new()));
    }
}
