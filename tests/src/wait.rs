//! Polling with a deadline: the only way the lab waits. Nothing sleeps a fixed time for a
//! result; it checks a condition every few tens of milliseconds until a deadline.

use std::thread::sleep;
use std::time::{Duration, Instant};

const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Some`, or `None` once `timeout` has passed.
/// `check` runs at least once, also with a zero timeout.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Like [`poll_until`], but panics with "timed out after … waiting for {what}".
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_returns_the_first_value_the_check_yields() {
        let mut calls = 0;
        let got = poll_until(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn poll_until_gives_up_at_the_deadline_after_checking_at_least_once() {
        let mut calls = 0;
        let got: Option<()> = poll_until(Duration::ZERO, || {
            calls += 1;
            None
        });
        assert_eq!((got, calls), (None, 1));
    }
}
