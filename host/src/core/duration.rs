//! Durations as people write and read them: [`parse_duration`] for settings and flags
//! (`30s`, `500ms`, `2m`, `1h30m`), and [`Human`], which rounds one for a message (`29.8s`,
//! `9ms`, `2m05s`) instead of printing `29.812345678s`.

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration: write a number and a unit, such as 500ms, 30s, 2m or 1h30m")]
pub struct BadDuration {
    pub text: String,
}

/// Parses `30s`, `500ms`, `2m`, `1h30m`, `1.5s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let bad = || BadDuration { text: text.to_owned() };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (number, after) = rest.split_at(number_end);
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = next;
    }
    Ok(total)
}

/// A duration shown for people: milliseconds under a second, tenths of a second under a
/// minute, then minutes and seconds, then hours and minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let text = if millis < 1 {
            format!("{}µs", self.0.as_micros())
        } else if millis < 1_000 {
            format!("{millis}ms")
        } else if millis < 59_950 {
            format!("{:.1}s", self.0.as_secs_f64()).replace(".0s", "s")
        } else {
            let seconds = (self.0.as_secs_f64()).round() as u64;
            let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
            match (hours, seconds) {
                (0, 0) => format!("{minutes}m"),
                (0, _) => format!("{minutes}m{seconds:02}s"),
                (_, _) if minutes == 0 && seconds == 0 => format!("{hours}h"),
                _ => format!("{hours}h{minutes:02}m"),
            }
        };
        f.pad(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "s", "10 parsecs", "1d", "-5s", "1e400s", "ms"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.to_string().contains("500ms, 30s"), "{text}: {error}");
        }
    }

    #[test]
    fn rounds_for_people() {
        let cases = [
            (Duration::from_micros(9_400), "9ms"),
            (Duration::from_millis(29_812), "29.8s"),
            (Duration::from_millis(9_812), "9.8s"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(125), "2m05s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(3600 * 2 + 60 * 5), "2h05m"),
            (Duration::from_micros(40), "40µs"),
        ];
        for (duration, shown) in cases {
            assert_eq!(Human(duration).to_string(), shown);
        }
    }
}
