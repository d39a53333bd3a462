//! Pacing for answers too large to render in one go on the event loop (`wg show` and
//! `edgewire status` at 10,000 peers): the client's task renders them a piece at a
//! time, writes each piece, and lets the loop run in between, so packets never wait
//! behind an operator's command. Rendered whole on the loop, 10,000 peers' `wg show`
//! held every packet for 25 ms.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use smol::{Async, Timer};

/// About 2.5 µs a peer (10,000 took 25 ms): 256 hold the loop well under a
/// millisecond, and 10,000 peers take 40 pieces.
pub const PEERS_PER_PIECE: usize = 256;

/// Lets the event loop run before the next piece. Not `yield_now`: the executor runs
/// up to 200 ready tasks in a row before it polls the loop again, and a task that
/// yields is ready again at once; a timer is due only after the reactor has turned,
/// which is when the loop is polled. The reactor counts in milliseconds, so 10,000
/// peers arrive about 40 ms later, for a person reading them.
pub async fn let_the_loop_run() {
    Timer::after(Duration::from_millis(1)).await;
}

/// All of `rest`; an error when the client went away.
pub async fn write_all(stream: &Async<UnixStream>, mut rest: &[u8]) -> io::Result<()> {
    while !rest.is_empty() {
        match stream.write_with(|s| (&*s).write(rest)).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => rest = &rest[n..],
        }
    }
    Ok(())
}

/// Hands memory freed by a large answer back to the system. glibc's malloc keeps it: once
/// a big block is freed its mmap threshold grows, the next big blocks come from the heap,
/// and a 10,000-peer hub that answered `wg show`, `status` and a metrics scrape held
/// 25 MB more for good (29.7 -> 54.7 MB in bench-scale). musl returns it by itself.
pub fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
