//! Numbers as a person reads them in a log line or `status`: durations without
//! nanosecond noise (`14 s`, `1.5 s`, `250 ms`, `3 min 20 s`) and byte counts in binary
//! units (`1.2 MiB`).

use std::fmt;
use std::time::Duration;

/// A duration rounded to what matters at its size. `Display` it: `format!("{}", Human(d))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if ms < 1 && !d.is_zero() {
            return write!(f, "{} µs", d.as_micros());
        }
        if ms < 1000 {
            return write!(f, "{ms} ms");
        }
        if ms < 10_000 {
            // One decimal below ten seconds: 1.5 s says more than 1 s or 1500 ms.
            let tenths = (ms + 50) / 100;
            return if tenths.is_multiple_of(10) {
                write!(f, "{} s", tenths / 10)
            } else {
                write!(f, "{}.{} s", tenths / 10, tenths % 10)
            };
        }
        let secs = (ms + 500) / 1000;
        if secs < 120 {
            return write!(f, "{secs} s");
        }
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        match (h, m, s) {
            (0, m, 0) => write!(f, "{m} min"),
            (0, m, s) => write!(f, "{m} min {s} s"),
            (h, 0, _) => write!(f, "{h} h"),
            (h, m, _) => write!(f, "{h} h {m} min"),
        }
    }
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `230 MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if value < 10.0 {
            write!(f, "{value:.1} {}", UNITS[unit])
        } else {
            write!(f, "{value:.0} {}", UNITS[unit])
        }
    }
}

/// At most this many items in one listed line, the rest counted: a line a person reads,
/// far under journald's line limit (48 KiB by default) whatever the fleet's size.
pub const LIST_SHOWN: usize = 8;

/// `a, b, c`, or the first [`LIST_SHOWN`] items and "and N more".
pub fn list_capped<T: fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let total = items.len();
    let mut line = String::new();
    for (i, item) in items.take(LIST_SHOWN).enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        line.push_str(&item.to_string());
    }
    if total > LIST_SHOWN {
        line.push_str(&format!(" and {} more", total - LIST_SHOWN));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(d: Duration) -> String {
        Human(d).to_string()
    }

    #[test]
    fn durations_lose_their_nanosecond_noise() {
        assert_eq!(h(Duration::from_nanos(14_000_258_639)), "14 s");
        assert_eq!(h(Duration::from_nanos(1_000_172_238)), "1 s");
        assert_eq!(h(Duration::from_millis(1_460)), "1.5 s");
        assert_eq!(h(Duration::from_millis(250)), "250 ms");
        assert_eq!(h(Duration::from_micros(40)), "40 µs");
        assert_eq!(h(Duration::ZERO), "0 ms");
        assert_eq!(h(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(h(Duration::from_secs(300)), "5 min");
        assert_eq!(h(Duration::from_secs(3 * 3600 + 125)), "3 h 2 min");
    }

    #[test]
    fn bytes_are_scaled_to_binary_units() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(230 * 1024 * 1024).to_string(), "230 MiB");
        assert_eq!(Bytes(u64::MAX).to_string(), "16384 PiB");
    }
}
