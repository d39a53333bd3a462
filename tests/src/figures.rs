//! What the figures and benchmark commands share: the line that says what machine the
//! numbers come from, min/median/max of repeated runs, a process's resident memory and
//! its write calls.

use std::time::Duration;

/// "host: N CPUs, load average a b c": shared machines are noisy, so every figure says
/// how busy this one was.
pub fn host_line() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "host: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// (min, median, max) of some durations; `runs` must not be empty.
pub fn min_median_max(mut runs: Vec<Duration>) -> (Duration, Duration, Duration) {
    runs.sort();
    (runs[0], runs[runs.len() / 2], runs[runs.len() - 1])
}

/// VmRSS of a process in kB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS").unwrap_or(0)
}

/// A kB field of /proc/PID/status (`VmRSS`, `VmHWM`, `RssAnon`, …); `None` when the
/// process is gone.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Write system calls `pid` has made so far (`syscw` of /proc/PID/io): for an agent,
/// its TUN writes and little else (datagrams go out with sendmmsg, which this does not
/// count; log lines and status answers are a handful).
pub fn write_calls(pid: u32) -> u64 {
    io_counter(pid, "syscw")
}

/// Read system calls `pid` has made so far (`syscr`): for an agent, its TUN reads, each
/// ending with one that finds nothing, and little else (datagrams come in with
/// recvmmsg, which this does not count; status requests are a few).
pub fn read_calls(pid: u32) -> u64 {
    io_counter(pid, "syscr")
}

fn io_counter(pid: u32, field: &str) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/io: {e}"));
    io.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(": "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/io: {io}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_run() {
        let s = |n| Duration::from_secs(n);
        assert_eq!(min_median_max(vec![s(5), s(1), s(3)]), (s(1), s(3), s(5)));
    }
}
