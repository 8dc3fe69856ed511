//! `[projects.<name>.forge]`: the forge a project's repository lives on (GitHub or GitLab), where the
//! `pr` policy opens its pull requests. Names of environment variables only: the token and the
//! webhook secret are read from the worker's environment when used, never written in the file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Validator;
use super::{ConfigError, IntegrationPolicy};

/// The forge as the file writes it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RawForge {
    pub kind: Option<String>,
    pub repo: Option<String>,
    pub api_url: Option<String>,
    pub token_env: Option<String>,
    pub webhook_secret_env: Option<String>,
    pub poll: Option<String>,
    pub wait: Option<String>,
}

/// Forge issues as intake, as the file writes it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RawIntake {
    pub forge: Option<String>,
    pub label: Option<String>,
}

/// Issues carrying `label` on the project's forge become beads.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeConfig {
    pub label: String,
}

/// Which forge's API CHUM speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    GitHub,
    GitLab,
}

impl ForgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
            ForgeKind::GitLab => "gitlab",
        }
    }

    fn parse(name: &str) -> Option<ForgeKind> {
        match name {
            "github" => Some(ForgeKind::GitHub),
            "gitlab" => Some(ForgeKind::GitLab),
            _ => None,
        }
    }

    /// The REST API's root on the public forge.
    pub fn default_api_url(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "https://api.github.com",
            ForgeKind::GitLab => "https://gitlab.com/api/v4",
        }
    }

    /// What the forge calls a pull request (GitLab: a merge request), for messages.
    pub fn pull_request_name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "pull request",
            ForgeKind::GitLab => "merge request",
        }
    }

    /// The start of the id of a bead taken from one of its issues (`gh-12`, `gl-12`).
    pub fn issue_prefix(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "gh",
            ForgeKind::GitLab => "gl",
        }
    }
}

/// A project's forge, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgeConfig {
    pub kind: ForgeKind,
    /// `owner/name` on the forge.
    pub repo: String,
    /// The REST API's root, without a trailing slash (`https://api.github.com`, `https://gitlab.com/api/v4`; GitHub
    /// Enterprise Server: `https://<host>/api/v3`).
    pub api_url: String,
    /// The worker's environment variable holding the API token.
    pub token_env: String,
    /// The worker's environment variable holding the webhook secret; None: no webhook, polling only.
    pub webhook_secret_env: Option<String>,
    /// How often a waiting run asks the forge at first (it backs off to [`MAX_POLL`]).
    pub poll: Duration,
    /// How long a run waits for its pull request to be merged or closed.
    pub wait: Duration,
}

/// The longest a waiting run goes without asking the forge.
pub const MAX_POLL: Duration = Duration::from_secs(15 * 60);

impl ForgeConfig {
    /// The pull request's owner-qualified head, as GitHub's `head` filter takes it.
    pub fn owner(&self) -> &str {
        self.repo.split('/').next().unwrap_or_default()
    }
}

impl Validator {
    /// `[projects.<name>.intake]`: issues with a label on the project's forge become beads.
    pub(super) fn intake(
        &self,
        project: &str,
        raw: Option<RawIntake>,
        forge: Option<&ForgeConfig>,
    ) -> Result<Option<IntakeConfig>, ConfigError> {
        let key = |k: &str| format!("projects.{project}.intake.{k}");
        let Some(raw) = raw else { return Ok(None) };
        let kind = match raw.forge.as_deref() {
            Some(name) => ForgeKind::parse(name).ok_or_else(|| {
                self.invalid(
                    key("forge"),
                    format!("{name:?} is not a forge CHUM speaks; use \"github\" or \"gitlab\""),
                )
            })?,
            None => return Err(self.invalid(key("forge"), "is required: \"github\" or \"gitlab\"")),
        };
        let Some(forge) = forge else {
            return Err(self.invalid(
                key("forge"),
                format!("issues come from the project's forge: add forge = {{ kind = \"{}\", repo = \"<owner>/<name>\", token_env = \"...\" }} to the project", kind.as_str()),
            ));
        };
        if forge.kind != kind {
            return Err(self.invalid(
                key("forge"),
                format!(
                    "is {:?} but the project's forge.kind is {:?}: issues come from the project's own forge",
                    kind.as_str(),
                    forge.kind.as_str()
                ),
            ));
        }
        let label = raw.label.unwrap_or_else(|| "chum".to_string());
        if label.trim().is_empty() || label.starts_with("chum:") || label.contains(',') {
            return Err(self.invalid(
                key("label"),
                format!("{label:?} cannot be the intake label (not empty, no comma, not one of CHUM's own chum:<state> labels)"),
            ));
        }
        Ok(Some(IntakeConfig { label }))
    }

    /// The project's forge, required by `integration = "pr"`.
    pub(super) fn forge(
        &self,
        project: &str,
        raw: Option<RawForge>,
        integration: IntegrationPolicy,
        tokens_env: &str,
    ) -> Result<Option<ForgeConfig>, ConfigError> {
        let key = |k: &str| format!("projects.{project}.forge.{k}");
        let Some(raw) = raw else {
            if integration == IntegrationPolicy::PullRequest {
                return Err(self.invalid(
                    format!("projects.{project}.forge"),
                    "integration = \"pr\" needs the forge the pull requests go to: add forge = { kind = \"github\", repo = \"<owner>/<name>\", token_env = \"GITHUB_TOKEN\" } (or kind = \"gitlab\", token_env = \"GITLAB_TOKEN\")",
                ));
            }
            return Ok(None);
        };
        let name = raw.kind.as_deref().unwrap_or("github");
        let kind = ForgeKind::parse(name).ok_or_else(|| {
            self.invalid(
                key("kind"),
                format!("{name:?} is not a forge CHUM speaks; use \"github\" or \"gitlab\""),
            )
        })?;
        let repo = raw.repo.ok_or_else(|| {
            self.invalid(
                key("repo"),
                "is required: the repository on the forge, as \"<owner>/<name>\" (GitLab: \"<group>/<subgroup>/<name>\")",
            )
        })?;
        let well_formed = |part: &str| {
            !part.is_empty()
                && !part.starts_with('.')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        // GitLab nests groups: group/subgroup/name.
        let parts: Vec<&str> = repo.split('/').collect();
        let nested_ok = kind == ForgeKind::GitLab || parts.len() == 2;
        match parts.as_slice() {
            [_, _, ..] if nested_ok && parts.iter().all(|p| well_formed(p)) => {}
            _ => {
                return Err(self.invalid(
                    key("repo"),
                    format!("{repo:?} is not \"<owner>/<name>\", e.g. \"octo-org/app\""),
                ));
            }
        }
        let api_url = raw.api_url.unwrap_or_else(|| kind.default_api_url().to_string());
        let authority = api_url
            .strip_prefix("https://")
            .or_else(|| api_url.strip_prefix("http://"))
            .map(|rest| rest.split('/').next().unwrap_or_default());
        match authority {
            Some(host) if !host.is_empty() && !host.contains('@') && !host.contains(char::is_whitespace) => {}
            _ => {
                return Err(self.invalid(
                    key("api_url"),
                    format!(
                        "{api_url:?} is not an http(s) URL without credentials in it (the token comes from token_env), e.g. \"{}\"",
                        kind.default_api_url()
                    ),
                ));
            }
        }
        let token_env = raw.token_env.ok_or_else(|| {
            self.invalid(
                key("token_env"),
                "is required: the NAME of the worker's environment variable holding the forge token, e.g. \"GITHUB_TOKEN\"",
            )
        })?;
        let mut names = self.env_names(&key("token_env"), std::slice::from_ref(&token_env), tokens_env)?;
        let token_env = names.remove(0);
        let webhook_secret_env = match raw.webhook_secret_env {
            None => None,
            Some(name) => self
                .env_names(&key("webhook_secret_env"), std::slice::from_ref(&name), tokens_env)?
                .into_iter()
                .next(),
        };
        let poll = self.duration(&key("poll"), raw.poll.as_deref(), Duration::from_secs(60))?;
        if poll > MAX_POLL {
            return Err(self.invalid(key("poll"), "must be at most 15m (runs back off to 15m on their own)"));
        }
        let wait = self.duration(&key("wait"), raw.wait.as_deref(), Duration::from_secs(14 * 24 * 3600))?;
        Ok(Some(ForgeConfig {
            kind,
            repo,
            api_url: api_url.trim_end_matches('/').to_string(),
            token_env,
            webhook_secret_env,
            poll,
            wait,
        }))
    }
}
