//! CHUM's own commits to a project (a learned rule, a strategic briefing): made in a worktree
//! off the base branch under the repository lock, so they never mix with anyone's work tree.

use chum_core::config::{IntegrationPolicy, ProjectConfig};

use super::integrate::fast_forward_base;
use super::workspace::*;
use super::worktree::{Checkout, add_worktree_locked, remove_worktree, remove_worktree_locked};
use crate::repo::{GitError, WorktreeGit, git, git_ok, resolve};

/// A change CHUM itself makes to a project (a rule it learned, a rule it retires): files to write
/// (`Some`) or remove (`None`), committed once on `branch` from the base branch and, with the
/// `merge` policy, fast-forwarded into it.
pub struct OwnChange<'a> {
    pub branch: String,
    pub files: Vec<(String, Option<String>)>,
    pub message: String,
    /// A trailer line (`Key: value`) that makes the commit findable, so it is made once.
    pub trailer: String,
    pub project: &'a ProjectConfig,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnChangeOutcome {
    pub commit: String,
    pub merged: bool,
    /// Set when the base branch could not be fast-forwarded; the commit stays on its branch.
    pub problem: String,
}

pub async fn commit_own_change(change: OwnChange<'_>) -> Result<OwnChangeOutcome, RepoProblem> {
    let project = change.project;
    let base_commit = check_repository(project).await?;
    let repo = &project.repo;
    exclude_chum_dir(repo).await?;
    let base_ref = format!("refs/heads/{}", project.base_branch);
    let grep = format!("--grep=^{}$", change.trailer);
    let existing = git(repo, &["log", "--all", "--format=%H", "-n", "1", &grep]).await?;
    let commit = if !existing.is_empty() {
        existing
    } else {
        let path = repo.join(".chum").join("own").join(change.branch.replace('/', "-"));
        let lock = RepoLock::worktrees(repo).await?;
        remove_worktree_locked(repo, &path).await?;
        add_worktree_locked(repo, &path, &base_commit, Checkout::Branch(&change.branch)).await?;
        drop(lock);
        for (file, content) in &change.files {
            let target = path.join(file);
            match content {
                Some(text) => {
                    if let Some(dir) = target.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
                    }
                    std::fs::write(&target, text).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
                }
                None => {
                    let _ = std::fs::remove_file(&target);
                }
            }
        }
        let own = WorktreeGit::open(repo, &path).await?;
        own.git(&["add", "-A", "--", "."]).await?;
        let message = format!("{}\n\n{}\n", change.message.trim_end(), change.trailer);
        own.git(&["commit", "-q", "--allow-empty", "--no-verify", "-m", &message])
            .await?;
        let commit = own.git(&["rev-parse", "HEAD"]).await?;
        remove_worktree(repo, &path).await?;
        commit
    };
    let mut outcome = OwnChangeOutcome {
        commit: commit.clone(),
        ..OwnChangeOutcome::default()
    };
    // With `push`, the base is the remote's and only the merge queue pushes to it: CHUM's own
    // change waits on its branch for a person, as with `branch`.
    if matches!(
        project.integration,
        IntegrationPolicy::Branch | IntegrationPolicy::Push | IntegrationPolicy::PullRequest
    ) {
        return Ok(outcome);
    }
    let _lock = RepoLock::base_branch(repo).await?;
    if git_ok(repo, &["merge-base", "--is-ancestor", &commit, &base_ref])
        .await?
        .is_some()
    {
        outcome.merged = true;
        return Ok(outcome);
    }
    let current = resolve(repo, &base_ref).await?.unwrap_or_default();
    if git_ok(repo, &["merge-base", "--is-ancestor", &current, &commit])
        .await?
        .is_none()
    {
        outcome.problem = format!(
            "{} moved on since the change was made; merge {} by hand",
            project.base_branch, change.branch
        );
        return Ok(outcome);
    }
    match fast_forward_base(project, &commit, &current).await? {
        Ok(()) => outcome.merged = true,
        Err(problem) => outcome.problem = problem,
    }
    Ok(outcome)
}
