//! One worktree per attempt on the bead's branch (and one per planning round, detached): made,
//! resumed after a crash, held to the tree the reviewers approved, removed; the attempt's staged
//! changes; Monte Carlo candidates recorded and discarded.

use std::path::{Path, PathBuf};

use chum_core::config::ProjectConfig;
use chum_core::ids::candidate_branch;

use super::workspace::*;
use crate::repo::{GitError, WorktreeGit, git, git_ok, resolve, worktrees};

/// The worktree of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptWorktree {
    pub path: PathBuf,
    pub branch: String,
    pub base_commit: String,
    /// CHUM's own git in it, pinned to the git directory it was made with.
    pub git: WorktreeGit,
}

/// The changes an attempt made, staged in its worktree.
#[derive(Debug, Clone, Default)]
pub struct AttemptChanges {
    pub files: Vec<String>,
    pub stat: String,
    pub diff: String,
}

/// `<repo>/.chum/worktrees/<bead>/<attempt>`, or `<attempt>-c<k>` for Monte Carlo candidate k.
pub fn worktree_path(project: &ProjectConfig, bead_id: &str, attempt: u32, candidate: u32) -> PathBuf {
    let name = if candidate == 0 {
        attempt.to_string()
    } else {
        format!("{attempt}-c{candidate}")
    };
    project.repo.join(".chum").join("worktrees").join(bead_id).join(name)
}

/// A throwaway checkout of the base branch (detached, no branch) where the planner looks at the
/// code. The planner is told not to change files; running it here means the project's checkout
/// stays untouched even when it does, because nothing may touch the code before approval.
pub async fn prepare_plan_worktree(project: &ProjectConfig, bead_id: &str, round: u32) -> Result<PathBuf, RepoProblem> {
    let base_commit = check_repository(project).await?;
    let repo = &project.repo;
    exclude_chum_dir(repo).await?;
    let path = project
        .repo
        .join(".chum")
        .join("plans")
        .join(bead_id)
        .join(round.to_string());
    let _lock = RepoLock::worktrees(repo).await?;
    remove_worktree_locked(repo, &path).await?;
    add_worktree_locked(repo, &path, &base_commit, Checkout::Detached).await?;
    Ok(path)
}

/// What a new worktree has checked out.
pub(super) enum Checkout<'a> {
    /// The commit, no branch.
    Detached,
    /// This branch, made or reset to the commit.
    Branch(&'a str),
}

/// Adds a worktree at `path` (where nothing may be left: see [`remove_worktree_locked`]) with
/// `commit` checked out as `checkout`. The caller holds the repository's worktree lock.
pub(super) async fn add_worktree_locked(
    repo: &Path,
    path: &Path,
    commit: &str,
    checkout: Checkout<'_>,
) -> Result<(), RepoProblem> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
    }
    let shown = path.display().to_string();
    let mut args = vec!["worktree", "add", "--force"];
    match checkout {
        Checkout::Detached => args.push("--detach"),
        Checkout::Branch(branch) => args.extend(["-B", branch]),
    }
    args.extend([shown.as_str(), commit]);
    git(repo, &args).await?;
    Ok(())
}

/// Removes a worktree and its directory, if they exist.
pub async fn remove_worktree(repo: &Path, path: &Path) -> Result<(), RepoProblem> {
    let _lock = RepoLock::worktrees(repo).await?;
    remove_worktree_locked(repo, path).await
}

/// [`remove_worktree`] for a caller that holds the repository's worktree lock.
pub(super) async fn remove_worktree_locked(repo: &Path, path: &Path) -> Result<(), RepoProblem> {
    // git refuses a worktree whose `.git` was changed (or emptied): the directory then goes by
    // hand and `prune` forgets it.
    if worktrees(repo).await?.iter().any(|w| w.path == path) {
        git_ok(repo, &["worktree", "remove", "--force", &path.display().to_string()]).await?;
    }
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
    }
    git(repo, &["worktree", "prune"]).await?;
    Ok(())
}

/// Which try of which step made a worktree (`step`: the run and the activity; `try_number`:
/// Temporal's attempt). The server may time out a step that still runs (a starved worker's
/// heartbeats arrive late) and start a later try beside it: the earlier try must then neither
/// remake the later one's worktree nor stage into it. Kept in the worktree's git directory, where
/// the agent cannot write.
#[derive(Debug, Clone, PartialEq)]
pub struct WorktreeOwner {
    pub step: String,
    pub try_number: u32,
}

/// The file in a worktree's git directory naming its [`WorktreeOwner`].
const OWNER: &str = "chum-owner";

impl WorktreeOwner {
    fn read(git_dir: &Path) -> Option<WorktreeOwner> {
        let text = std::fs::read_to_string(git_dir.join(OWNER)).ok()?;
        let (number, step) = text.trim().split_once(' ')?;
        Some(WorktreeOwner {
            step: step.to_string(),
            try_number: number.parse().ok()?,
        })
    }

    fn write(&self, git_dir: &Path) -> Result<(), RepoProblem> {
        std::fs::write(git_dir.join(OWNER), format!("{} {}\n", self.try_number, self.step))
            .map_err(|e| RepoProblem::Git(GitError::Spawn(e)))
    }

    /// `Err(Superseded)` when a later try of this step owns the worktree of `git`.
    pub fn check(&self, git: &WorktreeGit) -> Result<(), RepoProblem> {
        match WorktreeOwner::read(&git.git_dir) {
            Some(owner) if owner.step == self.step && owner.try_number > self.try_number => {
                Err(RepoProblem::Superseded {
                    worktree: git.work_tree.display().to_string(),
                    try_number: self.try_number,
                    owner: owner.try_number,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks, then makes this try the worktree's owner (a redo taking over a worktree, say).
    pub async fn claim(&self, repo: &Path, git: &WorktreeGit) -> Result<(), RepoProblem> {
        let _lock = RepoLock::worktrees(repo).await?;
        self.check(git)?;
        self.write(&git.git_dir)
    }
}

/// A fresh worktree for this attempt on branch `chum/<bead>`, reset to the base branch, with the
/// project's `copy_files` copied in from the main checkout (and never staged). Earlier attempts'
/// worktrees of the bead are removed (their branch is the same one); a retried activity simply
/// gets a clean worktree again.
pub async fn prepare_worktree(
    project: &ProjectConfig,
    bead_id: &str,
    attempt: u32,
    candidate: u32,
) -> Result<AttemptWorktree, RepoProblem> {
    prepare_owned_worktree(project, bead_id, attempt, candidate, None).await
}

/// [`prepare_worktree`] for a try of a step: a worktree a later try of the same step owns is left
/// alone (`RepoProblem::Superseded`), and the new one is this try's.
pub async fn prepare_owned_worktree(
    project: &ProjectConfig,
    bead_id: &str,
    attempt: u32,
    candidate: u32,
    owner: Option<&WorktreeOwner>,
) -> Result<AttemptWorktree, RepoProblem> {
    let base_commit = check_repository(project).await?;
    let repo = &project.repo;
    exclude_chum_dir(repo).await?;
    let branch = candidate_branch(bead_id, candidate);
    let branch_ref = format!("refs/heads/{branch}");
    let path = worktree_path(project, bead_id, attempt, candidate);
    let _lock = RepoLock::worktrees(repo).await?;
    let current = worktrees(repo).await?;
    if let Some(owner) = owner {
        for entry in current.iter().filter(|e| e.path == path) {
            if let Ok(git) = WorktreeGit::open(repo, &entry.path).await {
                owner.check(&git)?;
            }
        }
    }
    for entry in current {
        if entry.branch.as_deref() == Some(branch_ref.as_str()) || entry.path == path {
            let shown = entry.path.display().to_string();
            // An agent may have emptied it (its `.git` file gone): git no longer calls it a
            // worktree, so the directory goes by hand and `prune` forgets it.
            if git_ok(repo, &["worktree", "remove", "--force", &shown])
                .await?
                .is_none()
            {
                let _ = std::fs::remove_dir_all(&entry.path);
            }
        }
    }
    if path.exists() {
        std::fs::remove_dir_all(&path).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
    }
    git(repo, &["worktree", "prune"]).await?;
    add_worktree_locked(repo, &path, &base_commit, Checkout::Branch(&branch)).await?;
    let git = WorktreeGit::open(repo, &path).await?;
    if let Some(owner) = owner {
        owner.write(&git.git_dir)?;
    }
    copy_files(project, &git)?;
    Ok(AttemptWorktree {
        path,
        branch,
        base_commit,
        git,
    })
}

/// Copies the project's `copy_files` from the main checkout into a fresh worktree and keeps git
/// from staging them there.
fn copy_files(project: &ProjectConfig, git: &WorktreeGit) -> Result<(), RepoProblem> {
    let files = &project.environment.copy_files;
    for file in files {
        let from = project.repo.join(file);
        let to = git.work_tree.join(file);
        if !from.is_file() {
            return Err(RepoProblem::MissingCopyFile {
                file: file.clone(),
                repo: project.repo.display().to_string(),
            });
        }
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
        }
        std::fs::copy(&from, &to).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
    }
    git.exclude(files).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))
}

/// The worktree of an attempt in progress, for a redo: the work so far stays. `None` when it is
/// gone (the redo then starts from a fresh one). The base commit is where the branch left the base.
pub async fn resume_worktree(
    project: &ProjectConfig,
    bead_id: &str,
    attempt: u32,
    candidate: u32,
) -> Result<Option<AttemptWorktree>, RepoProblem> {
    let path = worktree_path(project, bead_id, attempt, candidate);
    if !path.join(".git").exists() && std::fs::symlink_metadata(path.join(".git")).is_err() {
        return Ok(None);
    }
    let git = WorktreeGit::open(&project.repo, &path).await?;
    let base_ref = format!("refs/heads/{}", project.base_branch);
    let Some(base_commit) = git.git_ok(&["merge-base", "HEAD", &base_ref]).await? else {
        return Ok(None);
    };
    Ok(Some(AttemptWorktree {
        path,
        branch: candidate_branch(bead_id, candidate),
        base_commit,
        git,
    }))
}

/// Stages everything the agent changed (except the backlog, which CHUM manages) and describes it
/// relative to the attempt's base commit. Agents that commit on their own are covered too.
pub async fn stage_changes(worktree: &WorktreeGit, base_commit: &str) -> Result<AttemptChanges, RepoProblem> {
    worktree.git(&["add", "-A", "--", ".", ":(exclude).beads"]).await?;
    // -z: file names as they are (non-ASCII ones are not quoted).
    let names = worktree
        .git(&["diff", "--cached", "--name-only", "-z", base_commit])
        .await?;
    Ok(AttemptChanges {
        files: names
            .split('\0')
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect(),
        stat: worktree.git(&["diff", "--cached", "--stat", base_commit]).await?,
        diff: worktree
            .git(&["diff", "--cached", "--no-textconv", "--no-ext-diff", base_commit])
            .await?,
    })
}

/// Records the tree the attempt's execution staged: a commit of it on top of the base, under
/// `refs/chum/candidates/<bead>/...` (so the tree outlives the worktree), and returns the tree's
/// hash. The gates check exactly this tree and integration commits exactly it.
pub async fn record_candidate(
    wt: &WorktreeGit,
    bead_id: &str,
    attempt: u32,
    handoff: u32,
    candidate: u32,
    base_commit: &str,
) -> Result<String, RepoProblem> {
    let tree = wt.git(&["write-tree"]).await?;
    let message = format!("CHUM candidate: {bead_id} attempt {attempt} redo {handoff}");
    let commit = wt
        .git(&["commit-tree", &tree, "-p", base_commit, "-m", &message])
        .await?;
    let name = format!("refs/chum/candidates/{bead_id}/{attempt}-{handoff}-c{candidate}");
    wt.git(&["update-ref", &name, &commit]).await?;
    Ok(tree)
}

/// What differs between the worktree and `tree`: changed, deleted and new paths (what git
/// ignores, CHUM's `.beads/` and the project's excluded files aside). Empty when it is the tree.
pub async fn drift(wt: &WorktreeGit, tree: &str) -> Result<Vec<String>, RepoProblem> {
    let mut changed = Vec::new();
    if wt.git(&["write-tree"]).await? != tree {
        changed.push("(the staged index)".to_string());
    }
    let status = wt
        .git(&[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            "--",
            ".",
        ])
        .await?;
    // New files (the staged work shows as index-vs-HEAD changes, which are not drift).
    for entry in status.split('\0').filter(|e| e.len() > 3 && e.starts_with("??")) {
        let path = &entry[3..];
        if !path.starts_with(".beads/") {
            changed.push(path.to_string());
        }
    }
    // Against the tree, not only the index (the index itself may have moved).
    let diff = wt
        .git(&[
            "diff",
            "--name-only",
            "-z",
            "--no-renames",
            "--no-textconv",
            "--no-ext-diff",
            tree,
        ])
        .await?;
    for path in diff.split('\0').filter(|p| !p.is_empty() && !p.starts_with(".beads/")) {
        if !changed.iter().any(|c| c == path) {
            changed.push(path.to_string());
        }
    }
    changed.sort();
    Ok(changed)
}

/// Puts the worktree back to `tree`: index and tracked files from it, new files removed (what git
/// ignores and what CHUM excludes, e.g. a setup's venv, stay).
pub async fn restore(wt: &WorktreeGit, tree: &str) -> Result<(), RepoProblem> {
    wt.git(&["read-tree", "--reset", "-u", tree]).await?;
    wt.git(&["checkout-index", "-a", "-f"]).await?;
    wt.git(&["clean", "-f", "-d", "-q", "--", ".", ":(exclude).beads"])
        .await?;
    Ok(())
}

/// Checks the worktree is `tree` and, where it is not, says what differed and puts it back. An
/// empty `tree` (a run recorded before trees were kept) is not checked.
pub async fn hold_to_tree(repo: &Path, worktree: &Path, tree: &str) -> Result<Vec<String>, RepoProblem> {
    if tree.is_empty() || !worktree.is_dir() {
        return Ok(Vec::new());
    }
    let wt = WorktreeGit::open(repo, worktree).await?;
    let changed = drift(&wt, tree).await?;
    if !changed.is_empty() {
        restore(&wt, tree).await?;
    }
    Ok(changed)
}

/// Commits the attempt on its branch (once per run and attempt) and, with the `merge` policy,
/// brings it into the base branch.
/// Removes Monte Carlo candidates' worktrees and branches (the losers of an attempt). Idempotent:
/// what is already gone is skipped. Returns what was removed.
pub async fn discard_candidates(
    project: &ProjectConfig,
    bead_id: &str,
    attempt: u32,
    candidates: &[u32],
) -> Result<Vec<String>, RepoProblem> {
    let repo = &project.repo;
    let mut removed = Vec::new();
    for &k in candidates.iter().filter(|k| **k > 0) {
        let path = worktree_path(project, bead_id, attempt, k);
        let existed = path.exists();
        // Also prunes a registration whose directory is gone, so the branch can be deleted.
        remove_worktree(repo, &path).await?;
        if existed {
            removed.push(path.display().to_string());
        }
        let branch = candidate_branch(bead_id, k);
        if resolve(repo, &branch).await?.is_some() {
            git(repo, &["branch", "-D", &branch]).await?;
            removed.push(branch);
        }
    }
    Ok(removed)
}
