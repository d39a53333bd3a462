//! Buffers the kernel backs only where they are written: anonymous pages mapped for
//! each, not a block of the heap. The allocator promises no such thing. glibc's
//! `calloc` clears a heap block whole when its memory was used before, and a block
//! below the mmap threshold comes from the heap; the threshold grows each time a large
//! block is freed. So the TUN's 64 KiB frame, allocated with `vec![0; n]`, was 68 KiB
//! resident from the start, while idle traffic writes only its first page. Mapped, a
//! buffer costs the pages the largest packet so far has touched, on every libc.

use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

/// `len` bytes, zero until written.
pub struct Pages {
    backing: Backing,
    len: usize,
}

enum Backing {
    /// From `mmap`, unmapped on drop.
    Mapped(NonNull<u8>),
    /// When nothing is asked for, or the kernel refused a mapping: the buffer still
    /// works, it only costs its whole size.
    Heap(Box<[u8]>),
}

// SAFETY: the mapping is owned by this value alone, as a `Vec`'s memory is.
unsafe impl Send for Pages {}
// SAFETY: shared access only ever reads.
unsafe impl Sync for Pages {}

impl Pages {
    pub fn zeroed(len: usize) -> Pages {
        if len == 0 {
            return Pages::on_heap(0);
        }
        // SAFETY: a fresh private anonymous mapping; no address is given, so none of
        // ours is replaced.
        let mapped = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match NonNull::new(mapped.cast::<u8>()) {
            Some(p) if mapped != libc::MAP_FAILED => Pages {
                backing: Backing::Mapped(p),
                len,
            },
            _ => {
                log::warn!(
                    "cannot map {len} bytes for a packet buffer ({}); using the heap",
                    std::io::Error::last_os_error()
                );
                Pages::on_heap(len)
            }
        }
    }

    fn on_heap(len: usize) -> Pages {
        Pages {
            backing: Backing::Heap(vec![0; len].into_boxed_slice()),
            len,
        }
    }
}

impl Deref for Pages {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.backing {
            // SAFETY: `len` bytes mapped readable and writable until drop.
            Backing::Mapped(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), self.len) },
            Backing::Heap(b) => b,
        }
    }
}

impl DerefMut for Pages {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.backing {
            // SAFETY: as in `deref`, and `&mut self` makes this the only borrow.
            Backing::Mapped(p) => unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), self.len) },
            Backing::Heap(b) => b,
        }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Backing::Mapped(p) = self.backing {
            // SAFETY: the mapping made in `zeroed`, with its length; no borrow outlives
            // `self`.
            unsafe {
                libc::munmap(p.as_ptr().cast(), self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of the buffer's pages are resident, by `mincore`.
    fn resident_pages(buf: &Pages) -> usize {
        let page = 4096;
        let pages = buf.len().div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: the mapping is page-aligned and `vec` has a byte per page.
        let rc = unsafe { libc::mincore(buf.as_ptr() as *mut _, buf.len(), vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|b| **b & 1 == 1).count()
    }

    #[test]
    fn a_buffer_reads_zero_and_keeps_what_is_written() {
        let mut buf = Pages::zeroed(70_000);
        assert_eq!(buf.len(), 70_000);
        assert!(buf.iter().all(|b| *b == 0));
        buf[69_999] = 7;
        buf[..3].copy_from_slice(b"abc");
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(buf[69_999], 7);
    }

    #[test]
    fn only_the_pages_written_are_resident() {
        let mut buf = Pages::zeroed(1 << 20);
        assert!(matches!(buf.backing, Backing::Mapped(_)));
        buf[0] = 1;
        buf[5000] = 1;
        let resident = resident_pages(&buf);
        // 2 of 256 pages written; a kernel that backs anonymous memory in 64 KiB
        // folios could make that 32, still far from the whole buffer.
        assert!(
            (2..=32).contains(&resident),
            "{resident} of 256 pages resident"
        );
    }

    #[test]
    fn an_empty_buffer_is_empty() {
        let buf = Pages::zeroed(0);
        assert!(buf.is_empty());
    }
}
