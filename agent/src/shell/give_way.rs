//! The loop thread goes after the applications it hands packets to. Those applications
//! read what the agent writes to the TUN from their sockets, and a socket overflows if
//! its reader waits behind the agent: at 1.2 Gbit/s a default receive buffer (212,992
//! bytes) lasts under a millisecond. That was where nearly all of the benchmark's UDP
//! loss was, with a core to spare.
//!
//! So after each run of packets written to the TUN the loop gives way (`GiveWay`): the
//! reader that write woke, if it waits for this CPU, runs before the next run lands,
//! instead of when the agent's turn ends. Under EEVDF yielding moves the agent's deadline
//! one slice on (and with it alone on the CPU, returns at once); before 6.6, CFS skips it
//! once. Not while a CPU-bound task shares the CPU (see `GiveWay`). Giving way at all
//! (then once per batch), measured with `--udp-at`, runs alternating with the build
//! before it (both with the slice below): loss at 1,250 Mbit/s 4.2 % (1.7-8.2, 6 runs)
//! without, 1.9 % (0.6-3.5) with; at 1,400 Mbit/s 6.8 % (3.6-15.2, 5 runs) without,
//! 3.7 % (1.3-6.7) with.
//!
//! After each run (`TunBatch::write`: up to 16 UDP datagrams), not once after the whole
//! batch: the datagrams of one turn (up to 128) are more than an application's default
//! socket holds (about 90 of 1400 bytes), and a reader woken onto this CPU read none of
//! them before the last run had landed. The whole benchmark (5 s runs), three rounds
//! alternating with giving way once per batch: UDP under 1 % loss with default buffers
//! 1,227, 1,272 and 1,253 Mbit/s against 1,040, 1,014 and 1,021 (boringtun-cli 717, 701
//! and 658 in the same rounds); TCP one stream 5,030, 5,315 and 5,025 against 4,797,
//! 5,487 and 4,657; beside two CPU-bound threads (`--busy 2`, two rounds) TCP one
//! stream 2,389 and 2,512 against 2,537 and 2,505. In a noisier hour, with 8 s runs
//! (TCP one stream 3,356-4,689 Mbit/s), three rounds showed no difference: UDP 1,068,
//! 793 and 899 against 1,027, 764 and 921.
//!
//! The loop once also asked for a 10 ms scheduler slice (`sched_setattr`, Linux 6.12+),
//! so that an application it woke would run first; that came before `GiveWay`, which now
//! does the same job. With `GiveWay` in place the slice bought nothing and cost the
//! sending side: `bench --only edgewire --udp-at`, runs alternating, loss with iperf3's
//! default buffers at 1,100 Mbit/s 0.59 % with it, 0.57 % without (4 runs each), at
//! 1,250 2.69 % and 2.80 %; with 4 MiB buffers (the receiving application no longer the
//! limit) at 1,500 Mbit/s 1.74 % with it, 0.52 % without (6 runs each), at 1,650 4.24 %
//! and 2.43 % (3 runs). The loss it added was at the sending TUN's queue: a woken agent
//! with a long slice does not preempt the task on its CPU, so it came late to read.

use std::time::{Duration, Instant};

use super::clock;

/// Gives way after each write of a burst to the TUN (see the module's comment), unless
/// that has lately cost the loop its CPU for long. A few packets cannot overflow a
/// socket, so a lone ping reply does not give way.
///
/// A reader woken for one write's packets is done in microseconds: at 1,250 Mbit/s in
/// the benchmark, of 4,347 give-ways in 5 s 94 % got the CPU back within 10 µs, 1 %
/// after 0.25-1 ms, 3 after more. A CPU-bound task sharing the core instead takes a
/// whole slice of its own at every give-way (over 3 ms each, with two busy threads on
/// the two cores), and giving way at every write then cut TCP through the tunnel from
/// 1,638 to 73 Mbit/s and put the idle ping at 8 ms instead of 0.3. So when giving way
/// has cost more than `AWAY_LIMIT` on average, it stops for `PAUSE`.
///
/// The average also pauses it where it helps: at 1,400 Mbit/s of UDP (giving way after
/// each run, about 8,000 times a second) 0.25-1.5 % of give-ways cost over 0.5 ms (the
/// longest 2.9 ms), enough to pause it several times in 8 s. Pausing only when 6 of the
/// last 8 give-ways cost over `AWAY_LIMIT` carried more UDP under 1 % loss (whole
/// benchmark, 5 s runs, five rounds: 1,139-1,422 Mbit/s against 995-1,244), but beside
/// one CPU-bound thread (`--busy 1`, two rounds) cost TCP a tenth to a fifth (2,656 and
/// 2,227 Mbit/s against 2,992 and 2,789): there too few give-ways are long to pause it,
/// yet they add up (35-200 ms a second, measured under the average's rule). Not taken.
pub struct GiveWay {
    /// What a give-way has lately cost, on average (the newest weighs 1/8).
    away: Duration,
    paused_until: Option<Instant>,
}

/// The fewest packets in one write that make a burst.
const BURST: usize = 8;

/// Well above what woken readers cost on average, below the least slice the scheduler
/// gives a CPU-bound task (0.75 ms); one 3 ms wait among readers stays under it.
const AWAY_LIMIT: Duration = Duration::from_micros(500);

/// How long the loop keeps its CPU once giving way costs too much: a CPU-bound
/// neighbour then costs it a few of its slices a second.
const PAUSE: Duration = Duration::from_secs(1);

impl GiveWay {
    pub fn new() -> GiveWay {
        GiveWay {
            away: Duration::ZERO,
            paused_until: None,
        }
    }

    /// After a write of `packets` to the TUN.
    pub fn after_write(&mut self, packets: usize) {
        self.after_write_with(clock::now(), packets, || {
            // SAFETY: no arguments; it cannot fail on Linux.
            unsafe { libc::sched_yield() };
            clock::now()
        });
    }

    /// `after_write` with the yield given: `give_way` yields and says when it got the
    /// CPU back.
    fn after_write_with(
        &mut self,
        now: Instant,
        packets: usize,
        give_way: impl FnOnce() -> Instant,
    ) {
        if packets < BURST || self.paused_until.is_some_and(|until| now < until) {
            return;
        }
        let back = give_way();
        let away = back.saturating_duration_since(now);
        self.away = self.away - self.away / 8 + away / 8;
        if self.away > AWAY_LIMIT {
            self.away = Duration::ZERO;
            self.paused_until = Some(back + PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_reader_woken_on_the_same_cpu_runs_before_the_writer_gives_way_and_not_before() {
        // Other load on the CPU preempts the writer too, and then the reader runs first
        // without any giving way: such a round cannot tell, and is measured again.
        let mut withouts = Vec::new();
        for _ in 0..3 {
            let without = times_the_reader_ran_first(false);
            withouts.push(without);
            if without > TRIALS / 2 {
                continue;
            }
            let with = times_the_reader_ran_first(true);
            assert!(
                with >= TRIALS * 9 / 10,
                "giving way, the reader ran first {with} times of {TRIALS} (without: {without})"
            );
            return;
        }
        panic!(
            "without giving way the reader ran first {withouts:?} times of {TRIALS}: the \
             CPU is too busy for the test to tell"
        );
    }

    const TRIALS: u32 = 40;

    #[test]
    fn giving_way_pauses_for_a_second_once_it_costs_a_slice_on_average() {
        let start = Instant::now();
        let at = |us: u64| start + Duration::from_micros(us);
        let mut give_way = GiveWay::new();
        let mut given = Vec::new();
        let mut write = |give_way: &mut GiveWay, now: u64, packets: usize, away: u64| {
            give_way.after_write_with(at(now), packets, || {
                given.push(now);
                at(now + away)
            });
        };
        // Readers (50 µs), one wait of 3 ms among them, then a CPU-bound task (1 ms):
        // the average passes 500 µs at its second slice, 7 ms in.
        for (now, away) in [
            (0, 50),
            (100, 50),
            (200, 3_000),
            (4_000, 1_000),
            (6_000, 1_000),
        ] {
            write(&mut give_way, now, BURST, away);
        }
        write(&mut give_way, 8_000, BURST, 50);
        write(&mut give_way, 1_006_900, BURST, 50);
        write(&mut give_way, 1_007_100, BURST, 50);
        write(&mut give_way, 1_008_000, BURST - 1, 50);
        assert_eq!(
            given,
            [0, 100, 200, 4_000, 6_000, 1_007_100],
            "paused from 7 ms to 1.007 s; fewer packets than a burst never give way"
        );
    }

    /// A writer and a reader pinned to one CPU, the reader SCHED_BATCH so that waking it
    /// does not preempt the writer by itself (as a reader's wakeup may not: that is the
    /// case `GiveWay` is for). Of `TRIALS` one-byte writes, how many the reader had
    /// read when the writer looked right after (giving way first if `give`).
    fn times_the_reader_ran_first(give: bool) -> u32 {
        let cpu = first_allowed_cpu();
        let (mut to_reader, mut from_writer) = UnixStream::pair().unwrap();
        let read = Arc::new(AtomicU32::new(0));
        let reader = std::thread::spawn({
            let read = read.clone();
            move || {
                pin(cpu);
                super::super::wake_policy::set_batch(true).expect("SCHED_BATCH");
                let mut byte = [0];
                for i in 0..=TRIALS {
                    from_writer.read_exact(&mut byte).unwrap();
                    read.store(i, Ordering::SeqCst);
                }
            }
        });
        std::thread::spawn(move || {
            pin(cpu);
            let mut first = 0;
            // Write 0 only starts the reader; it is not counted.
            for i in 0..=TRIALS {
                to_reader.write_all(&[1]).unwrap();
                if give {
                    GiveWay::new().after_write(BURST);
                }
                if i > 0 && read.load(Ordering::SeqCst) == i {
                    first += 1;
                }
                while read.load(Ordering::SeqCst) < i {
                    // SAFETY: no arguments.
                    unsafe { libc::sched_yield() };
                }
            }
            reader.join().unwrap();
            first
        })
        .join()
        .unwrap()
    }

    fn first_allowed_cpu() -> usize {
        // SAFETY: an all-zero cpu_set_t is an empty set; the kernel fills it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `set` is a cpu_set_t of `size` bytes; pid 0 is the calling thread.
        assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut set) }, 0);
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE.
            .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .unwrap()
    }

    fn pin(cpu: usize) {
        // SAFETY: as in `first_allowed_cpu`; the set holds one CPU we may run on.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut set) };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(unsafe { libc::sched_setaffinity(0, size, &set) }, 0);
    }
}
