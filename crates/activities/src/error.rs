//! How activity failures reach Temporal, one place for every activity: failures only a person can
//! fix are non-retryable application failures typed with `chum_core::activity_contract::error_types`
//! (the workflows match the type, never the text); everything else is retryable.
//!
//! The typed errors of the rooms (`AgentSetupError`, `CommandError`, `RepoProblem`, `StoreError`,
//! `BeadsError`) turn into an `ActivityError` here, so each room's errors say what went wrong and
//! this module alone decides whether a retry can help.

use chum_core::activity_contract::error_types;
use chum_core::config::NotConfigured;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

use crate::agent::AgentSetupError;
use crate::exec::{CommandError, ProgramError};
use crate::forge::{ForgeError, PullRequestError};
use crate::repo::RepoProblem;

/// A failure only a person can fix, of type `kind` (one of `error_types`); logged as an error.
pub(crate) fn permanent(kind: &str, message: impl Into<String>) -> ActivityError {
    let message = message.into();
    tracing::error!(kind, "{message}");
    ActivityError::application(
        ApplicationFailure::builder(anyhow::anyhow!(message))
            .type_name(kind.to_string())
            .non_retryable(true)
            .build(),
    )
}

/// A failure a retry may fix (a busy store, a flaky process start); logged as a warning. Takes
/// any error (or text) that says what went wrong.
pub(crate) fn retryable(message: impl std::fmt::Display) -> ActivityError {
    let message = message.to_string();
    tracing::warn!("{message}");
    anyhow::anyhow!(message).into()
}

/// A project, role or tier the run names is not in the worker's configuration.
pub(crate) fn config_error(err: NotConfigured) -> ActivityError {
    permanent(error_types::CONFIG, err.to_string())
}

pub(crate) fn setup_error(err: AgentSetupError) -> ActivityError {
    match err {
        AgentSetupError::Config(e) => config_error(e),
        AgentSetupError::Sandbox(e) => permanent(error_types::CONFIG, e.to_string()),
        AgentSetupError::MissingBinary(m) => permanent(error_types::MISSING_BINARY, m),
        AgentSetupError::Budget(m) => permanent(error_types::BUDGET_EXHAUSTED, format!("budget exhausted: {m}")),
        AgentSetupError::Storage(m) => retryable(m),
    }
}

pub(crate) fn command_error(err: CommandError) -> ActivityError {
    match err {
        CommandError::Sandbox(e) => permanent(error_types::CONFIG, e.to_string()),
        CommandError::Storage(m) | CommandError::Start(m) => retryable(m),
    }
}

/// A program CHUM needs is missing or cannot run here: a person must install or configure it.
pub(crate) fn program_error(err: ProgramError) -> ActivityError {
    permanent(error_types::MISSING_BINARY, err.to_string())
}

pub(crate) fn repo_error(err: RepoProblem) -> ActivityError {
    if err.is_permanent() {
        permanent(error_types::INVALID_INPUT, err.to_string())
    } else {
        retryable(err.to_string())
    }
}

/// The forge: passing trouble (down, busy, rate-limited) is retried; a token, a repository or an
/// answer a person must fix is not.
pub(crate) fn forge_error(err: PullRequestError) -> ActivityError {
    match err {
        PullRequestError::Repo(e) => repo_error(e),
        PullRequestError::Forge(e) if !e.is_permanent() => retryable(e.to_string()),
        PullRequestError::Forge(
            e @ (ForgeError::MissingToken { .. }
            | ForgeError::Unauthorized { .. }
            | ForgeError::NotFound { .. }
            | ForgeError::NotConfigured),
        ) => permanent(error_types::CONFIG, e.to_string()),
        PullRequestError::Forge(e) => permanent(error_types::INVALID_INPUT, e.to_string()),
    }
}
