//! Hand-rolled date handling for tweet timestamps (no clock, no time zone database: only fixed
//! formats with explicit UTC offsets).

const MS_PER_DAY: i64 = 86_400_000;

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Shift the year to start in March so that the leap day ends it.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Milliseconds since the epoch of a local date-time with a UTC offset in minutes, after
/// checking every field's range.
fn to_epoch_millis(
    (year, month, day): (i64, u32, u32),
    (hour, minute, second, millis): (u32, u32, u32, u32),
    offset_minutes: i64,
) -> Option<i64> {
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
        || millis > 999
    {
        return None;
    }
    // A leap second is folded into the next second, as most systems do.
    let seconds = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let local = days_from_civil(year, month, day) * MS_PER_DAY + seconds * 1000 + i64::from(millis);
    Some(local - offset_minutes * 60_000)
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (years 0000 to 9999 only).
pub(crate) fn format_iso_millis(epoch_millis: i64) -> Option<String> {
    let days = epoch_millis.div_euclid(MS_PER_DAY);
    let ms_of_day = epoch_millis.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let secs = ms_of_day / 1000;
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    ))
}

/// A fixed-width run of ASCII digits as a number.
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `+hhmm`, `-hhmm`, `+hh:mm` or `-hh:mm` as minutes east of UTC.
fn parse_offset(s: &str) -> Option<i64> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &s[1..];
    let (h, m) = match rest.len() {
        4 => (&rest[..2], &rest[2..]),
        5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
        _ => return None,
    };
    let (h, m) = (digits(h)?, digits(m)?);
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * i64::from(h * 60 + m))
}

/// `HH:MM:SS` as numbers.
fn parse_clock(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    Some((digits(&s[..2])?, digits(&s[3..5])?, digits(&s[6..])?))
}

/// Parses Twitter API v1.1's `created_at`, e.g. `Wed Oct 10 20:19:24 +0000 2018`, into epoch
/// milliseconds. The weekday is checked for form only (three letters).
pub(crate) fn parse_twitter_v1(s: &str) -> Option<i64> {
    let mut parts = s.split(' ');
    let weekday = parts.next()?;
    let month = parts.next()?;
    let day = parts.next()?;
    let clock = parts.next()?;
    let offset = parts.next()?;
    let year = parts.next()?;
    if parts.next().is_some()
        || weekday.len() != 3
        || !weekday.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    if day.len() > 2 || year.len() != 4 {
        return None;
    }
    let (hour, minute, second) = parse_clock(clock)?;
    to_epoch_millis(
        (i64::from(digits(year)?), month, digits(day)?),
        (hour, minute, second, 0),
        parse_offset(offset)?,
    )
}

/// Parses an RFC 3339 timestamp, as in Twitter API v2's `created_at`
/// (`2018-10-10T20:19:24.000Z`), into epoch milliseconds. Fractions beyond milliseconds are
/// truncated; the offset may be `Z` or `±hh:mm`.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = i64::from(digits(s.get(..4)?)?);
    let month = digits(s.get(5..7)?)?;
    let day = digits(s.get(8..10)?)?;
    let (hour, minute, second) = parse_clock(s.get(11..19)?)?;
    let mut rest = s.get(19..)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let mut scaled = fraction[..len.min(3)].to_string();
        while scaled.len() < 3 {
            scaled.push('0');
        }
        millis = digits(&scaled)?;
        rest = &fraction[len..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => parse_offset(rest)?,
    };
    to_epoch_millis((year, month, day), (hour, minute, second, millis), offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: Option<i64>) -> Option<String> {
        ms.and_then(format_iso_millis)
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 17_814, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn twitter_v1_dates() {
        assert_eq!(
            iso(parse_twitter_v1("Wed Oct 10 20:19:24 +0000 2018")).unwrap(),
            "2018-10-10T20:19:24.000Z"
        );
        assert_eq!(
            parse_twitter_v1("Wed Oct 10 20:19:24 +0000 2018"),
            Some(1_539_202_764_000)
        );
        // Offsets are subtracted to get UTC, across day, month and year boundaries.
        assert_eq!(
            iso(parse_twitter_v1("Thu Jan 01 01:30:00 +0200 2015")).unwrap(),
            "2014-12-31T23:30:00.000Z"
        );
        assert_eq!(
            iso(parse_twitter_v1("Sat Feb 28 22:00:00 -0330 2016")).unwrap(),
            "2016-02-29T01:30:00.000Z"
        );
        for bad in [
            "",
            "Wed Oct 10 20:19:24 2018",
            "Wed Foo 10 20:19:24 +0000 2018",
            "Wed Feb 30 20:19:24 +0000 2018",
            "Wed Oct 10 24:00:00 +0000 2018",
            "Wed Oct 10 20:19:24 0000 2018",
            "Wed Oct 10 20:19:24 +0000 18",
            "2018-10-10T20:19:24.000Z",
            "Wed Oct 10 20:19:24 +0000 2018 extra",
        ] {
            assert_eq!(parse_twitter_v1(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(
            iso(parse_rfc3339("2018-10-10T20:19:24.000Z")).unwrap(),
            "2018-10-10T20:19:24.000Z"
        );
        assert_eq!(
            iso(parse_rfc3339("2024-02-29T23:59:59.123456Z")).unwrap(),
            "2024-02-29T23:59:59.123Z"
        );
        assert_eq!(
            iso(parse_rfc3339("2023-05-01T08:00:00+09:00")).unwrap(),
            "2023-04-30T23:00:00.000Z"
        );
        assert_eq!(
            iso(parse_rfc3339("2023-05-01T08:00:00.5-00:30")).unwrap(),
            "2023-05-01T08:30:00.500Z"
        );
        for bad in [
            "",
            "2023-05-01",
            "2023-05-01T08:00:00",
            "2023-13-01T08:00:00Z",
            "2023-02-29T08:00:00Z",
            "2023-05-01T08:00:00.Z",
            "2023-05-01T08:00:00ZZ",
            "Wed Oct 10 20:19:24 +0000 2018",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formatting_range() {
        assert_eq!(format_iso_millis(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso_millis(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_iso_millis(i64::MAX / 2), None);
    }
}
