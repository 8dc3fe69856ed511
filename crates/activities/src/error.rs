//! How activity failures reach Temporal, one place for every activity: failures only a person can
//! fix are non-retryable application failures typed with `chum_core::activity_contract::error_types`
//! (the workflows match the type, never the text); everything else is retryable.
//!
//! The typed errors of the rooms (`AgentSetupError`, `CommandError`, `RepoProblem`, `StoreError`,
//! `BeadsError`) turn into an `ActivityError` here, so each room's errors say what went wrong and
//! this module alone decides whether a retry can help.

use chum_core::activity_contract::error_types;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

use crate::agent::AgentSetupError;
use crate::exec::CommandError;
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

pub(crate) fn setup_error(err: AgentSetupError) -> ActivityError {
    match err {
        AgentSetupError::Config(m) => permanent(error_types::CONFIG, m),
        AgentSetupError::MissingBinary(m) => permanent(error_types::MISSING_BINARY, m),
        AgentSetupError::Budget(m) => permanent(error_types::BUDGET_EXHAUSTED, format!("budget exhausted: {m}")),
        AgentSetupError::Storage(m) => retryable(m),
    }
}

pub(crate) fn command_error(err: CommandError) -> ActivityError {
    match err {
        CommandError::Config(m) => permanent(error_types::CONFIG, m),
        CommandError::Storage(m) | CommandError::Start(m) => retryable(m),
    }
}

pub(crate) fn repo_error(err: RepoProblem) -> ActivityError {
    if err.is_permanent() {
        permanent(error_types::INVALID_INPUT, err.to_string())
    } else {
        retryable(err.to_string())
    }
}
