//! The loop thread's slice of the CPU. Linux's EEVDF scheduler (6.6 and later) picks
//! the runnable task with the earliest virtual deadline, a task's deadline lying one
//! slice ahead of its virtual runtime; from 6.12 a task may ask for its own slice
//! (`sched_runtime` under SCHED_OTHER), and a task that wakes with a shorter slice than
//! the running one may preempt it. The agent asks for a long one. Its share of the CPU
//! stays what it was; what changes is that an application the agent has just handed
//! packets to (default slice, 0.7 ms × (1 + log2 of the CPUs)) runs first, instead of
//! waiting behind the agent while its socket overflows. That was where nearly all of the
//! benchmark's UDP loss was: at 1.2 Gbit/s a default receive buffer (212,992 bytes)
//! lasts under a millisecond, and the agent's turns on a shared core were longer.
//! Measured with `scripts/bench --only edgewire --udp-at 1100`, runs alternating: loss
//! 2.3-9.4 % (mean 5.1 %, 9 runs) with the default slice, 0.6-6.4 % (mean 2.3 %, 7
//! runs) with 10 ms. Kernels before 6.12 take the request and ignore it.

use std::io;
use std::time::Duration;

/// The loop's slice. 3 ms gave about half the default's loss in 6 runs; 10 ms less.
pub const LOOP_SLICE: Duration = Duration::from_millis(10);

/// `struct sched_attr` as the kernel first defined it (`SCHED_ATTR_SIZE_VER0`).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// Asks for `slice` as the calling thread's, keeping its policy and nice value.
/// `Ok(false)` when the thread runs under another policy (an operator's real-time
/// setting), which is left alone.
pub fn lengthen(slice: Duration) -> io::Result<bool> {
    let mut attr = attributes()?;
    if attr.policy != SCHED_OTHER && attr.policy != SCHED_BATCH {
        return Ok(false);
    }
    attr.runtime = slice.as_nanos() as u64;
    // SAFETY: `attr` is a whole `sched_attr` (its `size` says how large); pid 0 is the
    // calling thread; the kernel only reads it.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// The calling thread's slice as the kernel holds it: what `lengthen` asked for on 6.12
/// and later, the default (or 0) before.
#[cfg(test)]
pub fn current() -> io::Result<Duration> {
    Ok(Duration::from_nanos(attributes()?.runtime))
}

fn attributes() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as libc::c_uint;
    // SAFETY: `attr` is a `sched_attr` of `size` bytes; pid 0 is the calling thread.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    attr.size = size;
    Ok(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's version as (major, minor), from /proc/sys/kernel/osrelease.
    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: plain calls on the calling thread.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) };
            assert!(lengthen(LOOP_SLICE).unwrap());
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(nice, 5, "the nice value the thread had");
            if kernel() >= (6, 12) {
                assert_eq!(current().unwrap(), LOOP_SLICE);
            }
        })
        .join()
        .unwrap();
    }
}
