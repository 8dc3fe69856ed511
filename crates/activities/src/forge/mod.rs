//! The project's forge (GitHub): the `pr` policy's pull requests. `github.rs` is the REST client;
//! `pull_request.rs` the two activities' work: the bead's branch pushed with a lease and its pull
//! request opened or updated (keyed by the branch, so a retry never opens a second one), and
//! what became of it read back. The token is read from the worker's environment when a call is
//! made and travels only in an HTTP header: never in argv, a log, or a history. `intake.rs` takes
//! the project's labelled issues as beads and shows each bead's state on its issue.

mod github;
mod intake;
mod pull_request;

pub use github::{GitHub, Issue, Label, PullRequest, Review, ReviewComment, install_crypto_provider};
pub use intake::{IntakeError, IntakeReport, sync_issues};
pub use pull_request::{PullRequestError, check_pull_request, open_pull_request};

/// Why the forge could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(
        "the forge token variable {name} is not set in the worker's environment; export it where the worker starts (a GitHub token with pull_requests: write and contents: write)"
    )]
    MissingToken { name: String },
    #[error("the forge could not be reached ({url}): {reason}; it is asked again")]
    Unreachable { url: String, reason: String },
    #[error("the forge answered {what} with HTTP {status}; it is asked again")]
    Server { what: String, status: u16 },
    #[error("the forge's rate limit is used up; it may be asked again in {wait_secs}s")]
    RateLimited { wait_secs: u64 },
    #[error(
        "the forge refused {what} with HTTP {status} ({message}); check that the token in the project's forge.token_env may read and write pull requests of the repository"
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
