//! [`CiRun`]: the CI job wasmig runs in, when the environment says (GitHub Actions, GitLab CI,
//! Buildkite, CircleCI, Jenkins), for the audit trail's "who": the account that triggered it,
//! the workflow and the run's id. The audit trail keeps it as a JSON object, so that a
//! pipeline reading `history --audit` gets the fields rather than words to split.

use serde::{Deserialize, Serialize};

/// The CI job running wasmig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiRun {
    /// `github-actions`, `gitlab-ci`, `buildkite`, `circleci` or `jenkins`.
    pub system: String,
    pub actor: Option<String>,
    pub workflow: Option<String>,
    pub run_id: Option<String>,
}

/// Per system: the variable that says it is running, and those naming actor, workflow, run.
const SYSTEMS: [(&str, &str, &str, &str, &str); 5] = [
    ("github-actions", "GITHUB_ACTIONS", "GITHUB_ACTOR", "GITHUB_WORKFLOW", "GITHUB_RUN_ID"),
    ("gitlab-ci", "GITLAB_CI", "GITLAB_USER_LOGIN", "CI_PROJECT_PATH", "CI_PIPELINE_ID"),
    ("buildkite", "BUILDKITE", "BUILDKITE_BUILD_CREATOR", "BUILDKITE_PIPELINE_SLUG", "BUILDKITE_BUILD_ID"),
    ("circleci", "CIRCLECI", "CIRCLE_USERNAME", "CIRCLE_PROJECT_REPONAME", "CIRCLE_WORKFLOW_ID"),
    ("jenkins", "JENKINS_URL", "BUILD_USER_ID", "JOB_NAME", "BUILD_ID"),
];

impl CiRun {
    /// The CI job this process runs in, from `lookup` (the environment in production).
    pub fn detect(lookup: impl Fn(&str) -> Option<String>) -> Option<CiRun> {
        let present = |name: &str| lookup(name).filter(|value| !value.is_empty());
        SYSTEMS.iter().find(|(_, marker, ..)| present(marker).is_some()).map(|&(system, _, actor, workflow, run)| {
            CiRun { system: system.to_owned(), actor: present(actor), workflow: present(workflow), run_id: present(run) }
        })
    }

    /// As the audit trail stores it: a JSON object.
    pub fn stored(&self) -> String {
        // Serializing a struct of strings cannot fail; the words are kept if it ever did.
        serde_json::to_string(self).unwrap_or_else(|_| self.to_string())
    }

    /// Read back from the audit trail. A row in words (as the first audit trails kept it,
    /// `github-actions (octocat, deploy, 123)`) keeps its words as the system.
    pub fn from_stored(text: &str) -> CiRun {
        serde_json::from_str(text).unwrap_or_else(|_| CiRun {
            system: text.to_owned(),
            actor: None,
            workflow: None,
            run_id: None,
        })
    }

    /// The CI job of this process's environment.
    pub fn from_environment() -> Option<CiRun> {
        CiRun::detect(|name| std::env::var(name).ok())
    }
}

impl std::fmt::Display for CiRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.system)?;
        let parts: Vec<&str> =
            [&self.actor, &self.workflow, &self.run_id].into_iter().filter_map(|p| p.as_deref()).collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_actions_is_recognised_with_its_actor_workflow_and_run() {
        let env = |name: &str| {
            let value = match name {
                "GITHUB_ACTIONS" => "true",
                "GITHUB_ACTOR" => "octocat",
                "GITHUB_WORKFLOW" => "deploy",
                "GITHUB_RUN_ID" => "123",
                _ => return None,
            };
            Some(value.to_owned())
        };
        let run = CiRun::detect(env).expect("a CI run");
        assert_eq!(run.to_string(), "github-actions (octocat, deploy, 123)");
        assert_eq!(CiRun::detect(|_| None), None);
    }

    #[test]
    fn it_is_stored_as_json_and_read_back() {
        let run = CiRun {
            system: "gitlab-ci".into(),
            actor: Some("ada".into()),
            workflow: None,
            run_id: Some("77".into()),
        };
        assert_eq!(run.stored(), r#"{"system":"gitlab-ci","actor":"ada","workflow":null,"run_id":"77"}"#);
        assert_eq!(CiRun::from_stored(&run.stored()), run);
        let words = CiRun::from_stored("github-actions (octocat, deploy, 123)");
        assert_eq!((words.system.as_str(), words.actor), ("github-actions (octocat, deploy, 123)", None));
    }
}
