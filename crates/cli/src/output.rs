//! What `chum` prints and how it ends: read commands print text for people or JSON for scripts
//! (`--output`), and every failure ends with a documented exit code (see `chum --help`).

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::args::OutputFormat;

/// The exit codes `chum --help` documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// What was asked about failed or was refused.
    Failed = 1,
    /// A usage or configuration error.
    Usage = 2,
    /// Temporal (or a worker) did not answer.
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A failure with its exit code; the message says what to do next.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

pub fn failed(message: impl std::fmt::Display) -> anyhow::Error {
    CliError {
        exit: Exit::Failed,
        message: message.to_string(),
    }
    .into()
}

pub fn usage(message: impl std::fmt::Display) -> anyhow::Error {
    CliError {
        exit: Exit::Usage,
        message: message.to_string(),
    }
    .into()
}

pub fn not_answered(message: impl std::fmt::Display) -> anyhow::Error {
    CliError {
        exit: Exit::Unreachable,
        message: message.to_string(),
    }
    .into()
}

/// The exit code of an error: its [`CliError`], a configuration error (2), else 1.
pub fn exit_of(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.exit;
        }
        if cause.downcast_ref::<chum_core::config::ConfigError>().is_some() {
            return Exit::Usage;
        }
    }
    Exit::Failed
}

/// Prints what a read command found in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: OutputFormat,
}

impl Out {
    pub fn text(&self) -> bool {
        self.format == OutputFormat::Text
    }

    /// One value: a pretty document (json) or one line (jsonl).
    pub fn one<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        match self.format {
            OutputFormat::Jsonl => println!("{}", serde_json::to_string(value)?),
            _ => println!("{}", serde_json::to_string_pretty(value)?),
        }
        Ok(())
    }

    /// A list: an array (json) or one line per item (jsonl).
    pub fn list<T: Serialize>(&self, items: &[T]) -> Result<()> {
        match self.format {
            OutputFormat::Jsonl => {
                for item in items {
                    println!("{}", serde_json::to_string(item)?);
                }
                Ok(())
            }
            _ => self.one(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_ends_with_the_code_of_its_kind() {
        assert_eq!(exit_of(&usage("bad option")), Exit::Usage);
        assert_eq!(exit_of(&not_answered("no server")), Exit::Unreachable);
        assert_eq!(exit_of(&failed("escalated")), Exit::Failed);
        // Context on top keeps the code.
        let wrapped = not_answered("no server").context("reading the status");
        assert_eq!(exit_of(&wrapped), Exit::Unreachable);
        let config = chum_core::config::ConfigError::Missing { file: "x.toml".into() };
        assert_eq!(exit_of(&anyhow::Error::new(config)), Exit::Usage);
        assert_eq!(exit_of(&anyhow::anyhow!("anything else")), Exit::Failed);
    }
}
