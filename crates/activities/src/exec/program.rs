//! Finding the programs CHUM runs (bubblewrap, chum-netbridge, semgrep, an agent's CLI), with an
//! error that says where CHUM looked and which key or variable would point it elsewhere.

use std::path::PathBuf;

/// A program CHUM needs that it cannot find, or that cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// A path the configuration or the environment gave is not a file.
    #[error("{program} {} does not exist ({given_by})", path.display())]
    Missing {
        program: String,
        path: PathBuf,
        /// The config key or environment variable that named it.
        given_by: String,
    },
    /// Nothing named it, and it is not where CHUM looks.
    #[error("{program} {looked}; {fix}")]
    NotFound {
        program: String,
        /// Where CHUM looked, as a phrase: "is not on PATH".
        looked: String,
        /// What to do about it.
        fix: String,
    },
    /// Found, but it cannot do its job on this machine.
    #[error("{} {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
}

impl ProgramError {
    pub fn not_found(program: impl Into<String>, looked: impl Into<String>, fix: impl Into<String>) -> ProgramError {
        ProgramError::NotFound {
            program: program.into(),
            looked: looked.into(),
            fix: fix.into(),
        }
    }
}

/// The path given for `program` by the config key `key` (`configured`) or else the environment
/// variable `env`, if either gives one; it must be a file.
pub fn given_path(
    program: &str,
    configured: Option<PathBuf>,
    key: &str,
    env: Option<&str>,
) -> Option<Result<PathBuf, ProgramError>> {
    let (path, given_by) = match configured {
        Some(path) => (path, key.to_string()),
        None => (PathBuf::from(std::env::var_os(env?)?), env?.to_string()),
    };
    Some(if path.is_file() {
        Ok(path)
    } else {
        Err(ProgramError::Missing {
            program: program.to_string(),
            path,
            given_by,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_path_must_be_a_file_and_the_error_names_who_gave_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tool");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            given_path("tool", Some(file.clone()), "[x] tool", Some("CHUM_TEST_UNSET_TOOL")),
            Some(Ok(file))
        );
        let err = given_path(
            "tool",
            Some(dir.path().join("nope")),
            "[x] tool",
            Some("CHUM_TEST_UNSET_TOOL"),
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("tool {} does not exist ([x] tool)", dir.path().join("nope").display())
        );
        assert_eq!(given_path("tool", None, "[x] tool", Some("CHUM_TEST_UNSET_TOOL")), None);
    }
}
