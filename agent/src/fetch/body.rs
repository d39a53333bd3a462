//! Reading a body of unknown size without trusting the sender: at most `max` bytes are
//! ever held, and memory grows with what arrived, not with what was announced.

use std::io::{self, Read};

/// `Ok(None)` when the body goes past `max` (reading stops there).
pub fn read_capped(mut reader: impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(Some(out)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.len() + n > max {
            return Ok(None);
        }
        if out.capacity() < out.len() + n {
            // Doubling as Vec would, but never past the cap.
            let want = (out.capacity() * 2).max(out.len() + n).min(max);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
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
    fn a_body_over_the_cap_stops_without_growing_past_it() {
        let mut endless = io::repeat(1);
        assert_eq!(read_capped(&mut endless, 100_000).unwrap(), None);
    }
}
