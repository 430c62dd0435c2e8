//! [`Version`]: a migration's number, the key every layer names a migration by.

use std::fmt;

/// A migration's version: the number its folder name starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

/// As a string of its digits (`"3"`, `"20150100000001"`): the versions other tools use run to
/// 20 digits and more, past what a JSON reader's numbers hold exactly.
impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl Version {
    /// The version as the history table stores it. Folder numbers are parsed from at most
    /// 18 digits, so they always fit.
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
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
