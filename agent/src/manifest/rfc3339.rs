//! RFC 3339 timestamps (`2027-01-01T00:00:00Z`) to and from unix seconds, by hand: the
//! manifest needs one field of it, not a date library in a 2.5 MB binary.

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)` into unix seconds. Fractional seconds
/// are dropped (expiry has second resolution); times before 1970 are refused.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let bad =
        |why: &str| format!("{text:?} is not an RFC 3339 time such as 2027-01-01T00:00:00Z: {why}");
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &b[range];
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("expected digits"));
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| {
        if allowed.contains(&b[at]) {
            Ok(())
        } else {
            Err(bad("wrong separator"))
        }
    };
    let year = num(0..4)?;
    sep(4, b"-")?;
    let month = num(5..7)?;
    sep(7, b"-")?;
    let day = num(8..10)?;
    sep(10, b"Tt ")?;
    let hour = num(11..13)?;
    sep(13, b":")?;
    let minute = num(14..16)?;
    sep(16, b":")?;
    let second = num(17..19)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    // 60 is a leap second; it simply lands on the next second.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("no such time of day"));
    }
    let mut rest = 19;
    if b[rest] == b'.' {
        rest += 1;
        let digits = b[rest..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad("expected digits after '.'"));
        }
        rest += digits;
    }
    let offset = match &b[rest..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(rest + 1..rest + 3)?, num(rest + 4..rest + 6)?);
            if h > 23 || m > 59 {
                return Err(bad("no such UTC offset"));
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return Err(bad("expected Z or an offset such as +02:00 at the end")),
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(local - offset).map_err(|_| bad("before 1970"))
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (http://howardhinnant.github.io/date_algorithms.html):
// exact for the proleptic Gregorian calendar, no tables.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_parse_to_the_unix_seconds_date_gives() {
        // `date -u -d 2027-01-01T00:00:00Z +%s`
        assert_eq!(parse_rfc3339("2027-01-01T00:00:00Z"), Ok(1_798_761_600));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56Z"), Ok(1_709_210_096));
    }

    #[test]
    fn offsets_and_fractional_seconds_are_accepted() {
        assert_eq!(
            parse_rfc3339("2027-01-01T02:00:00+02:00"),
            Ok(1_798_761_600)
        );
        assert_eq!(
            parse_rfc3339("2026-12-31T19:30:00-04:30"),
            Ok(1_798_761_600)
        );
        assert_eq!(parse_rfc3339("2027-01-01T00:00:00.999Z"), Ok(1_798_761_600));
        assert_eq!(parse_rfc3339("2027-01-01t00:00:00z"), Ok(1_798_761_600));
    }

    #[test]
    fn impossible_dates_and_missing_zones_are_refused() {
        for bad in [
            "2027-02-29T00:00:00Z",
            "2027-13-01T00:00:00Z",
            "2027-01-01T24:00:00Z",
            "2027-01-01T00:00:00",
            "2027-01-01T00:00:00+0200",
            "2027-01-01T00:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2027-01-01",
            "２０２7-01-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_inverts_parsing() {
        for t in [0, 951_782_400, 1_709_210_096, 1_798_761_600, 4_102_444_800] {
            assert_eq!(
                parse_rfc3339(&format_rfc3339(t)),
                Ok(t),
                "{}",
                format_rfc3339(t)
            );
        }
        assert_eq!(format_rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
    }
}
