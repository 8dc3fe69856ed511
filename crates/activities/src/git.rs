//! The git CLI, run as a subprocess. Errors carry the command and git's own stderr.

use std::path::{Path, PathBuf};

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not run git: {0}; is git installed and on PATH?")]
    Spawn(#[from] std::io::Error),
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed {
        args: String,
        dir: String,
        stderr: String,
        code: i32,
    },
}

/// The identity CHUM commits with.
const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "CHUM"),
    ("GIT_AUTHOR_EMAIL", "chum@localhost"),
    ("GIT_COMMITTER_NAME", "CHUM"),
    ("GIT_COMMITTER_EMAIL", "chum@localhost"),
];

/// Runs `git <args>` in `dir` and returns its trimmed stdout.
pub async fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        // Messages in English: some are told apart by their text (lock contention, conflicts).
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(IDENTITY)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_string())
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.display().to_string(),
            stderr,
            code: output.status.code().unwrap_or(-1),
        })
    }
}

/// Like [`git`], but a failure is an answer (`None`), not an error.
pub async fn git_ok(dir: &Path, args: &[&str]) -> Result<Option<String>, GitError> {
    match git(dir, args).await {
        Ok(out) => Ok(Some(out)),
        Err(GitError::Failed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The commit a ref points at, if it exists.
pub async fn resolve(dir: &Path, rev: &str) -> Result<Option<String>, GitError> {
    git_ok(dir, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).await
}

/// A worktree as listed by `git worktree list --porcelain`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorktreeEntry {
    pub path: PathBuf,
    /// Full ref name, e.g. `refs/heads/main`, if a branch is checked out.
    pub branch: Option<String>,
}

pub async fn worktrees(repo: &Path) -> Result<Vec<WorktreeEntry>, GitError> {
    let listing = git(repo, &["worktree", "list", "--porcelain"]).await?;
    let mut entries = Vec::new();
    let mut current: Option<WorktreeEntry> = None;
    for line in listing.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            if let Some(done) = current.take() {
                entries.push(done);
            }
            current = Some(WorktreeEntry {
                path: PathBuf::from(path),
                branch: None,
            });
        } else if let (Some(branch), Some(entry)) = (line.strip_prefix("branch "), current.as_mut()) {
            entry.branch = Some(branch.to_string());
        }
    }
    entries.extend(current);
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A repository with one commit on `main`.
    pub async fn init_repo(dir: &Path) {
        git(dir, &["init", "-q", "-b", "main"]).await.unwrap();
        std::fs::write(dir.join("README.md"), "hello\n").unwrap();
        git(dir, &["add", "."]).await.unwrap();
        git(dir, &["commit", "-q", "-m", "initial"]).await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_carry_gits_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let err = git(dir.path(), &["rev-parse", "HEAD"]).await.unwrap_err();
        assert!(err.to_string().contains("not a git repository"), "{err}");
    }

    #[tokio::test]
    async fn lists_worktrees_with_their_branches() {
        let dir = tempfile::tempdir().unwrap();
        testing::init_repo(dir.path()).await;
        let wt = dir.path().join("wt");
        git(
            dir.path(),
            &["worktree", "add", "-q", "-b", "feature", wt.to_str().unwrap()],
        )
        .await
        .unwrap();
        let list = worktrees(dir.path()).await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].branch.as_deref(), Some("refs/heads/main"));
        assert_eq!(list[1].branch.as_deref(), Some("refs/heads/feature"));
        assert!(resolve(dir.path(), "main").await.unwrap().is_some());
        assert!(resolve(dir.path(), "nope").await.unwrap().is_none());
    }
}
