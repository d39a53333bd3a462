//! Buffers the kernel backs only where they are written: anonymous pages mapped for
//! each, not a block of the heap. The allocator promises no such thing. glibc's
//! `calloc` clears a heap block whole when its memory was used before, and a block
//! below the mmap threshold comes from the heap; the threshold grows each time a large
//! block is freed. So the TUN's 64 KiB frame, allocated with `vec![0; n]`, was 68 KiB
//! resident from the start, while idle traffic writes only its first page. Mapped, a
//! buffer costs the pages the largest packet so far has touched, on every libc.
//!
//! And a thread's stack, which keeps every page its deepest call touched until the
//! thread ends: `release_stack_below_caller` gives those back while a helper sleeps.

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

    /// Gives the pages back: the next write finds a zeroed page, faulted in anew. What
    /// the buffer held is not kept.
    pub fn discard(&mut self) {
        if let Backing::Mapped(p) = self.backing {
            // SAFETY: our own mapping, whole; `&mut self` means nothing reads it meanwhile.
            unsafe {
                libc::madvise(p.as_ptr().cast(), self.len, libc::MADV_DONTNEED);
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

/// Gives back the pages of the calling thread's stack below the caller's frame. What
/// deeper calls touched stays resident otherwise for as long as the thread lives: on
/// the manifest thread, 56 KB after an HTTPS fetch (the TLS handshake), 12 KB after a
/// file. glibc does the same for a thread that ends. A thread calls this before it
/// sleeps; its next calls find zeroed pages, faulted in again as they go.
pub fn release_stack_below_caller() {
    let Some((low, _)) = stack_bounds() else {
        return;
    };
    let here = std::hint::black_box(&low) as *const usize as usize;
    let from = low.next_multiple_of(PAGE);
    // A page of margin below this frame: the madvise call's own frame lives there.
    let to = here.saturating_sub(2 * PAGE) & !(PAGE - 1);
    if to > from {
        // SAFETY: the range lies in this thread's own stack, wholly below the stack
        // pointer, where a thread keeps nothing (x86-64's red zone is 128 bytes).
        unsafe {
            libc::madvise(from as *mut _, to - from, libc::MADV_DONTNEED);
        }
    }
}

const PAGE: usize = 4096;

/// The calling thread's stack, lowest address first; `None` if the C library cannot
/// tell or the answer does not hold this frame.
fn stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: `attr` is filled by pthread_getattr_np before it is read, and destroyed
    // once.
    let (got, low, size) = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut low: *mut libc::c_void = ptr::null_mut();
        let mut size = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got, low as usize, size)
    };
    let here = std::hint::black_box(&low) as *const usize as usize;
    (got == 0 && (low..low + size).contains(&here)).then_some((low, low + size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident kB of this thread's stack, by `mincore`.
    fn stack_resident_kb() -> usize {
        let (low, high) = stack_bounds().expect("the thread's stack");
        let low = low.next_multiple_of(PAGE);
        let mut vec = vec![0u8; (high - low).div_ceil(PAGE)];
        // SAFETY: a page-aligned range of this thread's stack; a byte per page.
        let rc = unsafe { libc::mincore(low as *mut _, high - low, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|b| **b & 1 == 1).count() * PAGE / 1024
    }

    /// Touches `kb` kB of stack below the caller, as a deep call would.
    #[inline(never)]
    fn go_deep(kb: usize) -> usize {
        let mut block = [0u8; 1024];
        std::hint::black_box(&mut block)[0] = 1;
        let this = usize::from(block[0]);
        if kb <= 1 {
            this
        } else {
            this + go_deep(kb - 1)
        }
    }

    #[test]
    fn a_thread_gives_back_the_stack_a_deep_call_touched_and_runs_on() {
        let (before, deep, after, again) = std::thread::spawn(|| {
            let before = stack_resident_kb();
            std::hint::black_box(go_deep(400));
            let deep = stack_resident_kb();
            release_stack_below_caller();
            let after = stack_resident_kb();
            // The released pages work as fresh ones.
            let again = go_deep(400);
            (before, deep, after, again)
        })
        .join()
        .unwrap();
        assert!(
            deep >= before + 380,
            "the deep call touched {before} -> {deep} kB"
        );
        assert!(
            after <= before + 16,
            "{deep} kB resident after the release: {after}"
        );
        assert_eq!(again, 400, "each of the 400 frames counts itself");
    }

    /// How many of the buffer's pages are resident, by `mincore`.
    fn resident_pages(buf: &Pages) -> usize {
        let pages = buf.len().div_ceil(PAGE);
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
    fn a_discarded_buffer_gives_its_pages_back_and_works_on() {
        let mut buf = Pages::zeroed(256 * 1024);
        buf.fill(9);
        assert_eq!(resident_pages(&buf), 64);
        buf.discard();
        assert_eq!(resident_pages(&buf), 0);
        assert!(buf.iter().all(|b| *b == 0), "reads zero again");
        buf[100_000] = 5;
        assert_eq!(buf[100_000], 5);
    }

    #[test]
    fn an_empty_buffer_is_empty() {
        let buf = Pages::zeroed(0);
        assert!(buf.is_empty());
    }
}
