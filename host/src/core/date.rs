//! [`Date`] and [`utc_timestamp`]: calendar days and instants in UTC, for key expiry and for
//! the times messages show, without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A calendar day (UTC), for key expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Date {
    year: i32,
    month: u32,
    day: u32,
}

impl Date {
    pub fn parse(text: &str) -> Option<Date> {
        let mut parts = text.trim().splitn(3, '-');
        let year = parts.next()?.parse().ok()?;
        let month = parts.next()?.parse().ok()?;
        let day = parts.next()?.parse().ok()?;
        ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(Date { year, month, day })
    }

    /// Today in UTC.
    pub fn today() -> Date {
        let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Date::from_days_since_epoch(i64::try_from(seconds / 86_400).unwrap_or(0))
    }

    /// Howard Hinnant's civil-from-days algorithm.
    fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// `at` as RFC 3339 in UTC, to the second: `2026-12-02T04:05:06Z`.
pub fn utc_timestamp(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let date = Date::from_days_since_epoch(i64::try_from(seconds / 86_400).unwrap_or(0));
    let of_day = seconds % 86_400;
    format!("{date}T{:02}:{:02}:{:02}Z", of_day / 3600, of_day / 60 % 60, of_day % 60)
}

/// A timestamp as a database prints it, as RFC 3339: PostgreSQL's `2026-12-02 04:05:06.123+00`
/// and SQLite's `2026-12-02 04:05:06` (UTC, no offset) both become `2026-12-02T04:05:06.123Z`
/// style text, so that every timestamp wasmig shows or writes as JSON reads the same whatever
/// the backend or the session's time zone. Text in no such shape is returned as it came.
pub fn rfc3339(text: &str) -> String {
    let text = text.trim();
    let Some((date, rest)) = text.split_once([' ', 'T']) else { return text.to_owned() };
    if Date::parse(date).is_none() || date.len() != 10 {
        return text.to_owned();
    }
    let offset_at = rest.find(['+', '-', 'Z']).unwrap_or(rest.len());
    let (time, offset) = rest.split_at(offset_at);
    let clock_ok = time.len() >= 8 && time.as_bytes()[2] == b':' && time.as_bytes()[5] == b':';
    if !clock_ok {
        return text.to_owned();
    }
    let offset = match offset {
        "" | "Z" | "+00" | "+00:00" | "-00" => "Z".to_owned(),
        hours if hours.len() == 3 => format!("{hours}:00"),
        hours_minutes if hours_minutes.len() == 5 && !hours_minutes.contains(':') => {
            format!("{}:{}", &hours_minutes[..3], &hours_minutes[3..])
        }
        other => other.to_owned(),
    };
    format!("{date}T{time}{offset}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn civil_from_days_matches_known_dates() {
        assert_eq!(Date::from_days_since_epoch(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_days_since_epoch(20_513).to_string(), "2026-03-01");
        assert_eq!(Date::from_days_since_epoch(11_016).to_string(), "2000-02-29");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(20_513 * 86_400 + 4 * 3600 + 5 * 60 + 6);
        assert_eq!(utc_timestamp(at), "2026-03-01T04:05:06Z");
    }

    #[test]
    fn database_timestamps_become_rfc3339() {
        assert_eq!(rfc3339("2026-12-02 04:05:06"), "2026-12-02T04:05:06Z");
        assert_eq!(rfc3339("2026-12-02 04:05:06.123456+00"), "2026-12-02T04:05:06.123456Z");
        assert_eq!(rfc3339("2026-12-02 05:05:06+01"), "2026-12-02T05:05:06+01:00");
        assert_eq!(rfc3339("2026-12-02 00:35:06-0430"), "2026-12-02T00:35:06-04:30");
        assert_eq!(rfc3339("2026-12-02T04:05:06Z"), "2026-12-02T04:05:06Z");
        assert_eq!(rfc3339("yesterday"), "yesterday");
    }
}
