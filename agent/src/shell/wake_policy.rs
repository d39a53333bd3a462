//! While an application streams small packets into the TUN, the loop stops preempting
//! it on each wakeup (the scheduler's `SCHED_BATCH` policy), and goes back to a normal
//! task when the stream ends.
//!
//! An application sending one datagram per `sendto` wakes the loop with each datagram
//! it queues on the TUN. A normal task woken with an earlier deadline preempts the one
//! running, so on a core the two share (a one-core device; `bench --pin`) the loop
//! takes the CPU from the sender every few datagrams, reads them, sends them and sleeps
//! again: two context switches for every handful of packets. A batch task's wakeup
//! preempts nobody: it runs when the sender sleeps or its slice ends, and then finds
//! dozens of datagrams waiting, read in one turn and sent as one GSO batch.
//!
//! Measured with `bench --pin` at 1,100 Mbit/s of iperf3 UDP (3 s in the middle of a
//! probe, both agents switched from outside with `chrt -b`): the sending loop woke 7,043
//! times a second and preempted iperf3 6,325 times as a normal task; as a batch task it
//! woke 1,014 times, preempted iperf3 5 times, and took 29 % of the core instead of
//! 41 %. With this module, `bench --pin --only edgewire --udp-at 1100,1300,1500`, two
//! rounds alternating with the build before, per cent lost: at 1,300 Mbit/s 0.87 and 0.99
//! against 14.92 and 16.02; at 1,500 31.57 and 0.74 against 26.20 and 20.30, all of it at
//! the sending TUN's queue. (At 1,100, 4.07 and 3.18 against 0.62 and 9.70, nearly all at
//! the receiving application's socket, which this does not touch: the first probe of a
//! run loses there most.)
//!
//! Not for good, because a batch task's wakeup waits for a CPU-bound task's slice to
//! end (or the next scheduler tick): beside two busy threads (`bench --busy 2`) the idle
//! ping through the tunnel took 5.96 ms with both agents batch all the time, 0.37 ms as
//! normal tasks. So the loop is a batch task only while the TUN gives it more than
//! `TO_BATCH` packets a second, as no interactive flow does, and a normal one again
//! within a `WINDOW` of the stream's end; under such a stream a packet waits behind the
//! others anyway (ping under TCP load beside the busy threads, one run each: 2.17 ms
//! with this module, 5.10 without).
//!
//! A scheduling policy the loop was started with other than the normal one (systemd's
//! `CPUSchedulingPolicy=`, `chrt`) is the operator's and is left alone.

use std::io;
use std::time::{Duration, Instant};

use super::clock;

/// Decides the loop thread's scheduling policy from the rate of packets read from the
/// TUN, reviewed once a `WINDOW`.
pub struct WakePolicy {
    state: State,
    window_start: Instant,
    /// TUN reads that returned a packet since `window_start`.
    reads: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    Batch,
    /// Not ours to change: the operator chose the policy, or the kernel refused.
    Left,
}

/// Long enough to see a stream, not a burst; short enough that the loop is a normal
/// task again within a tenth of a second of the stream ending.
const WINDOW: Duration = Duration::from_millis(100);

/// Reads a second that make a stream: 20,000 datagrams of 1,400 bytes are 224 Mbit/s.
/// A TCP flow's segments come as super-packets (TUN offload), 64 KiB a read, and stay
/// below it up to several Gbit/s; pings and interactive sessions are far below.
const TO_BATCH: u64 = 20_000;

/// Reads a second below which the stream has ended. Below `TO_BATCH` by a margin, so a
/// stream near the threshold does not switch the policy back and forth.
const TO_NORMAL: u64 = 5_000;

impl WakePolicy {
    pub fn new() -> WakePolicy {
        let policy = policy_now();
        let state = if policy == libc::SCHED_OTHER {
            State::Normal
        } else {
            log::info!(
                "the event loop keeps the scheduling policy it was started with ({})",
                policy_name(policy)
            );
            State::Left
        };
        WakePolicy {
            state,
            window_start: clock::now(),
            reads: 0,
        }
    }

    /// After a read from the TUN that returned a packet (a super-packet counts once: it
    /// woke the loop once).
    pub fn count_read(&mut self) {
        self.reads += 1;
    }

    /// When the loop must review even if nothing wakes it: as a batch task, at the end of
    /// the window, so that the end of a stream makes it a normal task again on time.
    pub fn due(&self) -> Option<Instant> {
        (self.state == State::Batch).then_some(self.window_start + WINDOW)
    }

    /// Once a window has passed, sets the policy its rate of reads calls for. Called at
    /// the end of every turn of the loop.
    pub fn review(&mut self) {
        self.review_with(clock::now(), set_batch);
    }

    /// `review` with the setting given: `set(true)` makes the loop thread a batch task,
    /// `set(false)` a normal one.
    fn review_with(&mut self, now: Instant, set: impl FnOnce(bool) -> io::Result<()>) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let per_second = self.reads.saturating_mul(1_000_000) / elapsed.as_micros().max(1) as u64;
        self.window_start = now;
        self.reads = 0;
        let batch = match self.state {
            State::Normal if per_second >= TO_BATCH => true,
            State::Batch if per_second < TO_NORMAL => false,
            _ => return,
        };
        match set(batch) {
            Ok(()) => {
                self.state = if batch { State::Batch } else { State::Normal };
                log::debug!(
                    "{} TUN reads a second: the event loop is now a {} task",
                    per_second,
                    if batch { "batch" } else { "normal" }
                );
            }
            Err(e) => {
                log::info!(
                    "cannot change the event loop's scheduling policy ({e}); it stays as it \
                     is, and waking it preempts other tasks even under a stream of packets"
                );
                self.state = State::Left;
            }
        }
    }
}

/// Makes the calling thread a batch task, or a normal one. Either keeps its nice value.
pub(super) fn set_batch(batch: bool) -> io::Result<()> {
    let policy = if batch {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    };
    // Zeroed, not a literal: musl's sched_param has more fields than glibc's (the
    // sporadic server's), and priority 0 is all these two policies take.
    // SAFETY: sched_param is plain integers, for which all zeroes is a valid value.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // The system call, not libc's function: musl's `sched_setscheduler` fails with
    // ENOSYS by design (POSIX means a process, Linux acts on a thread), and the static
    // musl build is what devices run.
    // SAFETY: 0 is the calling thread; `param` is a valid sched_param for the call.
    match unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, policy, &param) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The calling thread's scheduling policy, -1 if unknown (errno says why). The system
/// call, as in `set_batch`: musl's function fails with ENOSYS.
fn policy_now() -> libc::c_int {
    // SAFETY: no pointers; 0 is the calling thread.
    unsafe { libc::syscall(libc::SYS_sched_getscheduler, 0) as libc::c_int }
}

fn policy_name(policy: libc::c_int) -> String {
    match policy {
        libc::SCHED_BATCH => "batch".into(),
        libc::SCHED_IDLE => "idle".into(),
        libc::SCHED_FIFO => "fifo".into(),
        libc::SCHED_RR => "rr".into(),
        -1 => format!("unknown: {}", io::Error::last_os_error()),
        other => format!("policy {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `reads` reads over each 100 ms window in turn and says what was set after
    /// each window.
    fn run(policy: &mut WakePolicy, start: Instant, windows: &[u64]) -> Vec<Option<bool>> {
        windows
            .iter()
            .enumerate()
            .map(|(i, &reads)| {
                for _ in 0..reads {
                    policy.count_read();
                }
                let mut set = None;
                let now = start + WINDOW * (i as u32 + 1);
                policy.review_with(now, |batch| {
                    set = Some(batch);
                    Ok(())
                });
                set
            })
            .collect()
    }

    fn normal_at(start: Instant) -> WakePolicy {
        WakePolicy {
            state: State::Normal,
            window_start: start,
            reads: 0,
        }
    }

    #[test]
    fn a_stream_makes_the_loop_a_batch_task_and_its_end_a_normal_one_again() {
        let start = Instant::now();
        let mut policy = normal_at(start);
        // 100 ms windows: 1,999 reads are 19,990 a second, 2,000 are 20,000.
        let set = run(
            &mut policy,
            start,
            &[10, 1_999, 2_000, 3_000, 600, 500, 499, 2_500],
        );
        assert_eq!(
            set,
            [
                None,
                None,
                Some(true),
                None,
                None,
                None,
                Some(false),
                Some(true)
            ],
            "batch from 20,000 reads a second; normal again below 5,000, not before"
        );
        assert_eq!(
            policy.due(),
            Some(start + WINDOW * 9),
            "a batch task reviews at the end of its window, woken or not"
        );
        run(&mut policy, start + WINDOW * 8, &[0]);
        assert_eq!(
            policy.due(),
            None,
            "a normal task needs no review of its own"
        );
    }

    #[test]
    fn the_rate_counts_the_whole_time_since_the_last_review_and_not_a_part_window() {
        let start = Instant::now();
        let mut policy = normal_at(start);
        for _ in 0..1_500 {
            policy.count_read();
        }
        let mut set = Vec::new();
        // 1,500 reads in 50 ms would be 30,000 a second, but the window is not over.
        policy.review_with(start + WINDOW / 2, |b| {
            set.push(b);
            Ok(())
        });
        assert!(set.is_empty(), "reviewed before the window ended: {set:?}");
        // An idle second after a stream: one review, over the whole second, 1,500 a second.
        policy.state = State::Batch;
        policy.review_with(start + Duration::from_secs(1), |b| {
            set.push(b);
            Ok(())
        });
        assert_eq!(set, [false], "a quiet second ends the stream");
    }

    #[test]
    fn a_refused_change_is_given_up_and_not_asked_again() {
        let start = Instant::now();
        let mut policy = normal_at(start);
        let mut asked = 0;
        for i in 1..=3 {
            for _ in 0..5_000 {
                policy.count_read();
            }
            policy.review_with(start + WINDOW * i, |_| {
                asked += 1;
                Err(io::Error::from_raw_os_error(libc::EPERM))
            });
        }
        assert_eq!(asked, 1, "asked again after EPERM");
        assert_eq!(policy.state, State::Left);
    }

    #[test]
    fn the_thread_becomes_a_batch_task_and_a_normal_one_again() {
        let policies = std::thread::spawn(|| {
            let before = policy_now();
            set_batch(true).unwrap();
            let batch = policy_now();
            set_batch(false).unwrap();
            (before, batch, policy_now())
        })
        .join()
        .unwrap();
        assert_eq!(
            policies,
            (libc::SCHED_OTHER, libc::SCHED_BATCH, libc::SCHED_OTHER)
        );
    }

    #[test]
    fn a_policy_the_loop_was_started_with_is_left_alone() {
        let state = std::thread::spawn(|| {
            set_batch(true).unwrap();
            WakePolicy::new().state
        })
        .join()
        .unwrap();
        assert_eq!(state, State::Left);
    }
}
