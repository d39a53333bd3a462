//! What the figures commands (`figures_manifest`, `figures_relay`) share: the line that
//! says what machine the numbers come from, and min/median/max of repeated runs.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_run() {
        let s = |n| Duration::from_secs(n);
        assert_eq!(min_median_max(vec![s(5), s(1), s(3)]), (s(1), s(3), s(5)));
    }
}
