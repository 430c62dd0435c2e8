//! `migration.toml`: what kind a migration is, which component file it runs, its backfill
//! settings and its limit overrides.
//!
//! The manifest is part of the migration's digest, so a reviewer signs exactly what the
//! migration may do. Unknown keys are errors: a typo must never silently drop a setting.

use serde::Deserialize;

use crate::core::Version;
use crate::core::limits::LimitOverrides;
use crate::guard::{Grants, GrantsSection};

use super::backfill::{BackfillSettings, BackfillSettingsError};
use super::layout::DEFAULT_COMPONENT_FILE;


#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: Kind,
    /// What the migration does, for humans reading `status`.
    #[serde(default)]
    pub description: Option<String>,
    /// The component file in the migration's folder (component migrations only).
    #[serde(default)]
    pub component: Option<String>,
    /// Present when the component's `backfill` export should run after `up`.
    #[serde(default)]
    pub backfill: Option<BackfillSettings>,
    /// Expand/contract: earlier migrations whose backfills must be finished before this one
    /// is applied (`up` stops before it until they are).
    #[serde(default)]
    pub needs_backfills: Vec<Version>,
    /// `false` runs a SQL migration's `up.sql` and `down.sql` outside a transaction, one
    /// statement at a time, for statements that refuse one (`CREATE INDEX CONCURRENTLY`).
    #[serde(default)]
    pub transactional: Option<bool>,
    #[serde(default)]
    pub limits: LimitOverrides,
    /// What the component may touch; the default grants nothing.
    #[serde(default)]
    pub grants: GrantsSection,
}

/// How a migration's step meets transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionMode {
    /// The step and its history row commit together, or not at all (invariant 1).
    #[default]
    OneTransaction,
    /// `transactional = false`: the script runs outside a transaction, each statement
    /// committing as it ends. The step is recorded as started before it runs and as applied
    /// after, so an interrupted one is seen and stops the next run.
    Autocommit,
}

/// What a migration is: plain SQL, or a component. The history records it as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sql,
    Component,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sql => "sql",
            Kind::Component => "component",
        }
    }

    /// The kind the history records as `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        [Kind::Sql, Kind::Component].into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that tables can align it.
        f.pad(self.as_str())
    }
}

/// Why a manifest was refused; the caller adds the file's path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Syntax(String),
    #[error("kind = \"sql\" takes no component, backfill, limits or grants; those are for components")]
    SqlWithComponentSettings,
    #[error(
        "transactional = false is for SQL migrations (kind = \"sql\"): a component's calls run in a \
         transaction, which holds the database's walls around it (SET LOCAL ROLE, search_path, timeouts)"
    )]
    ComponentOutsideTransaction,
    #[error("component file {0:?} must be a plain file name inside the migration's folder")]
    ComponentOutsideFolder(String),
    #[error("{0}")]
    Backfill(#[from] BackfillSettingsError),
    #[error("{0}")]
    BadGrant(#[from] crate::guard::BadGrant),
    #[error("{0}")]
    OutOfRange(#[from] crate::core::limits::OutOfRange),
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if self.kind == Kind::Sql
            && (self.component.is_some()
                || self.backfill.is_some()
                || self.limits != LimitOverrides::default()
                || self.grants != GrantsSection::default())
        {
            return Err(ManifestError::SqlWithComponentSettings);
        }
        if self.kind == Kind::Component && self.transactional == Some(false) {
            return Err(ManifestError::ComponentOutsideTransaction);
        }
        if let Some(file) = &self.component
            && (file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.'))
        {
            return Err(ManifestError::ComponentOutsideFolder(file.clone()));
        }
        self.limits.validate()?;
        let grants = Grants::from_section(&self.grants)?;
        if let Some(backfill) = &self.backfill {
            backfill.validate(&grants)?;
        }
        Ok(())
    }

    /// The validated grants (checked when the manifest was parsed).
    pub fn grants(&self) -> Grants {
        Grants::from_section(&self.grants).unwrap_or_default()
    }

    /// How the migration's steps meet transactions.
    pub fn mode(&self) -> TransactionMode {
        if self.transactional == Some(false) { TransactionMode::Autocommit } else { TransactionMode::OneTransaction }
    }

    pub fn component_file(&self) -> &str {
        self.component.as_deref().unwrap_or(DEFAULT_COMPONENT_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::backfill::DEFAULT_BATCH_SIZE;

    #[test]
    fn parses_a_component_manifest_with_backfill_and_limits() {
        let manifest =
            Manifest::parse("kind = \"component\"\n[backfill]\nbatch_size = 500\n[limits]\nfuel = 1000\n").unwrap();
        assert_eq!(manifest.kind, Kind::Component);
        assert_eq!(manifest.backfill.as_ref().map(|b| b.batch_size), Some(500));
        assert_eq!(manifest.limits.fuel, Some(1000));
        assert_eq!(manifest.component_file(), "migration.wasm");
    }

    #[test]
    fn default_batch_size_applies() {
        let manifest = Manifest::parse("kind = \"component\"\n[backfill]\n").unwrap();
        assert_eq!(manifest.backfill.map(|b| b.batch_size), Some(DEFAULT_BATCH_SIZE));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = Manifest::parse("kind = \"component\"\nfule = 5\n").unwrap_err();
        assert!(error.to_string().contains("fule"), "{error}");
    }

    #[test]
    fn grants_parse_and_bad_names_are_refused() {
        let manifest =
            Manifest::parse("kind = \"component\"\n[grants]\nread = [\"users\"]\nupdate = [\"users\"]\n").unwrap();
        assert_eq!(manifest.grants.update, vec!["users".to_owned()]);
        let error = Manifest::parse("kind = \"component\"\n[grants]\nread = [\"users; --\"]\n").unwrap_err();
        assert!(error.to_string().contains("grants.read"), "{error}");
        assert!(Manifest::parse("kind = \"component\"\n[grants]\nselect = [\"users\"]\n").is_err());
    }

    #[test]
    fn unknown_kind_is_refused() {
        assert!(Manifest::parse("kind = \"python\"\n").is_err());
    }

    #[test]
    fn component_must_stay_inside_the_folder() {
        let error = Manifest::parse("kind = \"component\"\ncomponent = \"../other/x.wasm\"\n").unwrap_err();
        assert_eq!(error, ManifestError::ComponentOutsideFolder("../other/x.wasm".into()));
    }

    #[test]
    fn sql_kind_takes_no_component_settings() {
        let error = Manifest::parse("kind = \"sql\"\n[backfill]\n").unwrap_err();
        assert_eq!(error, ManifestError::SqlWithComponentSettings);
    }
}
