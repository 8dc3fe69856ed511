//! The project's forge (GitHub or GitLab): the `pr` policy's pull (merge) requests and issues as
//! intake. [`Forge`] is what the activities speak, one client per forge behind it (`github.rs`,
//! `gitlab.rs`, sharing `http.rs`); `pull_request.rs` is the two activities' work: the bead's
//! branch pushed with a lease and its pull request opened or updated (keyed by the branch, so a
//! retry never opens a second one), and what became of it read back. The token is read from the
//! worker's environment when a call is made and travels only in an HTTP header: never in argv, a
//! log, or a history. `intake.rs` takes the project's labelled issues as beads and shows each
//! bead's state on its issue.

#[cfg(test)]
mod against_gitlab;
mod github;
mod gitlab;
mod http;
mod intake;
mod pull_request;
#[cfg(test)]
mod testing;

use chum_core::config::{ForgeConfig, ForgeKind};
use chum_core::proto::PullRequestStatus;

pub use github::GitHub;
pub use gitlab::GitLab;
pub use http::install_crypto_provider;
pub use intake::{IntakeError, IntakeReport, sync_issues};
pub use pull_request::{PullRequestError, check_pull_request, open_pull_request};

/// A pull request (GitLab: a merge request), as either forge tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgePull {
    /// GitHub's number, GitLab's `iid`: what people write after `#` (`!` on GitLab).
    pub number: u64,
    pub url: String,
    pub title: String,
    pub body: String,
}

/// An issue, as either forge tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgeIssue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub open: bool,
    pub labels: Vec<String>,
}

/// The project's forge, with the token from the worker's environment.
pub enum Forge {
    GitHub(GitHub),
    GitLab(GitLab),
}

/// The same call on whichever forge it is.
macro_rules! on_forge {
    ($self:ident, $f:ident => $call:expr) => {
        match $self {
            Forge::GitHub($f) => $call.await,
            Forge::GitLab($f) => $call.await,
        }
    };
}

impl Forge {
    pub fn new(config: &ForgeConfig) -> Result<Forge, ForgeError> {
        let token = std::env::var(&config.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ForgeError::MissingToken {
                name: config.token_env.clone(),
            })?;
        Ok(match config.kind {
            ForgeKind::GitHub => Forge::GitHub(GitHub::new(config, token)?),
            ForgeKind::GitLab => Forge::GitLab(GitLab::new(config, token)?),
        })
    }

    pub fn kind(&self) -> ForgeKind {
        match self {
            Forge::GitHub(_) => ForgeKind::GitHub,
            Forge::GitLab(_) => ForgeKind::GitLab,
        }
    }

    /// The open pull request whose head is `branch`, if there is one.
    pub async fn open_pull_for(&self, branch: &str) -> Result<Option<ForgePull>, ForgeError> {
        on_forge!(self, f => f.open_pull_for(branch))
    }

    pub async fn create_pull(
        &self,
        title: &str,
        branch: &str,
        base: &str,
        body: &str,
    ) -> Result<ForgePull, ForgeError> {
        on_forge!(self, f => f.create_pull(title, branch, base, body))
    }

    pub async fn update_pull(&self, number: u64, title: &str, body: &str) -> Result<ForgePull, ForgeError> {
        on_forge!(self, f => f.update_pull(number, title, body))
    }

    /// What became of pull request `number`: merged, closed, changes asked for on `head` (the
    /// commit CHUM pushed last), or open.
    pub async fn pull_status(&self, number: u64, head: &str) -> Result<PullRequestStatus, ForgeError> {
        on_forge!(self, f => f.pull_status(number, head))
    }

    /// The project's issues carrying `label`, open and closed.
    pub async fn labelled_issues(&self, label: &str) -> Result<Vec<ForgeIssue>, ForgeError> {
        on_forge!(self, f => f.labelled_issues(label))
    }

    pub async fn comment(&self, issue: u64, body: &str) -> Result<(), ForgeError> {
        on_forge!(self, f => f.comment(issue, body))
    }

    /// Replaces the issue's labels.
    pub async fn set_labels(&self, issue: u64, labels: &[String]) -> Result<(), ForgeError> {
        on_forge!(self, f => f.set_labels(issue, labels))
    }
}

/// Why the forge could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(
        "the forge token variable {name} is not set in the worker's environment; export it where the worker starts (GitHub: a token with pull_requests, contents and issues: write; GitLab: a token with the api scope)"
    )]
    MissingToken { name: String },
    #[error("the forge could not be reached ({url}): {reason}; it is asked again")]
    Unreachable { url: String, reason: String },
    #[error("the forge answered {what} with HTTP {status}; it is asked again")]
    Server { what: String, status: u16 },
    #[error("the forge's rate limit is used up; it may be asked again in {wait_secs}s")]
    RateLimited { wait_secs: u64 },
    #[error(
        "the forge refused {what} with HTTP {status} ({message}); check that the token in the project's forge.token_env may read and write pull (merge) requests and issues of the repository"
    )]
    Unauthorized { what: String, status: u16, message: String },
    #[error("the forge has no {what}; check the project's forge.repo and that its token can see the repository")]
    NotFound { what: String },
    #[error("the forge refused {what} with HTTP {status}: {message}")]
    Refused { what: String, status: u16, message: String },
    #[error("the forge's answer to {what} could not be read: {reason}")]
    Unreadable { what: String, reason: String },
    #[error("the project has no forge configured; add [projects.<name>.forge] (integration = \"pr\" needs it)")]
    NotConfigured,
}

impl ForgeError {
    /// Trouble that passes (the forge down or busy) is retried; the rest needs a person.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            ForgeError::Unreachable { .. } | ForgeError::Server { .. } | ForgeError::RateLimited { .. }
        )
    }
}
