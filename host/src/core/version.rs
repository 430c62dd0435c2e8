//! [`Version`]: a migration's number, the key every layer names a migration by.

use std::fmt;

/// The most digits a version may have: every number of 38 digits fits in a `u128`. Other
/// tools' timestamps run to 14 (goose, Rails) and 20 digits (popx), past a `u64`.
pub const MAX_DIGITS: usize = 38;

/// A migration's version: the number its folder name starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u128);

/// As a string of its digits (`"3"`, `"20150100000001000000"`): the versions other tools use
/// run to 20 digits and more, past what a JSON reader's numbers hold exactly.
impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// From a number (`needs_backfills = [3]`) or, for a version past what TOML's integers hold, a
/// string of digits (`needs_backfills = ["20150100000001000000"]`).
impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a migration version: a number, or a string of at most {MAX_DIGITS} digits")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Version, E> {
                Ok(Version(v.into()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Version, E> {
                u128::try_from(v).map(Version).map_err(|_| E::custom("a version cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Version, E> {
                Version::from_digits(v).ok_or_else(|| E::custom(format!("`{v}` is not a version of at most {MAX_DIGITS} digits")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Version {
    /// `digits` as a version: ASCII digits only, 1 to [`MAX_DIGITS`] of them.
    pub fn from_digits(digits: &str) -> Option<Version> {
        let valid = !digits.is_empty() && digits.len() <= MAX_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| digits.parse().ok().map(Version)).flatten()
    }

    /// The version as the ledger stores it: its digits, without leading zeros, as text, since
    /// neither backend's integers hold every version.
    pub fn key(self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl std::str::FromStr for Version {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_run_to_38_digits() {
        let popx = Version::from_digits("20150100000001000000").unwrap();
        assert_eq!(popx.0, 20_150_100_000_001_000_000);
        assert_eq!(popx.key(), "20150100000001000000");
        assert!(Version::from_digits(&"9".repeat(38)).is_some());
        assert_eq!(Version::from_digits(&"9".repeat(39)), None);
        assert_eq!(Version::from_digits(""), None);
        assert_eq!(Version::from_digits("12a"), None);
        assert_eq!(Version::from_digits("0003").map(Version::key).as_deref(), Some("3"));
    }
}
