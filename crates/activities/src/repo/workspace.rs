//! Git for the Shark: one worktree per attempt on the bead's branch, the attempt's changes, and
//! integration (commit once, then merge per policy). Every step is idempotent per
//! (run, attempt): a retried activity finds its earlier work instead of doing it twice.

use std::path::{Path, PathBuf};

use chum_core::config::{IntegrationPolicy, ProjectConfig};
use chum_core::ids::candidate_branch;
use chum_core::proto::{IntegrateRequest, IntegrationReport};

use crate::repo::{GitError, WorktreeGit, git, git_ok, resolve, worktrees};

/// Why the repository cannot be worked in. Not retried: a person has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum RepoProblem {
    #[error("{0} is not a git repository; set `repo` of the project in chum.toml to a git checkout")]
    NotARepository(String),
    #[error("base branch `{branch}` does not exist in {repo}; create it or set `base_branch` of the project")]
    MissingBaseBranch { branch: String, repo: String },
    #[error(
        "copy_files names {file}, which is not a file in {repo}; create it there or remove it from the project's copy_files"
    )]
    MissingCopyFile { file: String, repo: String },
    #[error(transparent)]
    Git(#[from] GitError),
}

impl RepoProblem {
    /// Problems a retry cannot fix. A lock file another git holds (or a git killed with its
    /// worker left behind, until git or a person clears it) is worth retrying; so is git not
    /// starting at all.
    pub fn is_permanent(&self) -> bool {
        match self {
            RepoProblem::Git(GitError::Spawn(_)) => false,
            RepoProblem::Git(GitError::Failed { stderr, .. }) => !is_lock_contention(stderr),
            _ => true,
        }
    }
}

fn is_lock_contention(stderr: &str) -> bool {
    (stderr.contains(".lock") && (stderr.contains("File exists") || stderr.contains("Unable to create")))
        || stderr.contains("cannot lock ref")
        // Worktree bookkeeping (`.git/worktrees/<name>/...`) that another git changed under this
        // one (CHUM serializes its own, see `RepoLock::worktrees`; a person's git may not).
        || stderr.contains(".git/worktrees/")
}

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

/// Checks the project repository and returns its base branch's commit.
pub async fn check_repository(project: &ProjectConfig) -> Result<String, RepoProblem> {
    let repo = &project.repo;
    let shown = repo.display().to_string();
    if !repo.is_dir() {
        return Err(RepoProblem::NotARepository(shown));
    }
    if git_ok(repo, &["rev-parse", "--git-dir"]).await?.is_none() {
        return Err(RepoProblem::NotARepository(shown));
    }
    resolve(repo, &format!("refs/heads/{}", project.base_branch))
        .await?
        .ok_or(RepoProblem::MissingBaseBranch {
            branch: project.base_branch.clone(),
            repo: shown,
        })
}

fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Keeps CHUM's own directory out of the project's `git status` without touching tracked files.
async fn exclude_chum_dir(repo: &Path) -> Result<(), RepoProblem> {
    let common = git(repo, &["rev-parse", "--git-common-dir"]).await?;
    let common = if Path::new(&common).is_absolute() {
        PathBuf::from(common)
    } else {
        repo.join(common)
    };
    let exclude = common.join("info").join("exclude");
    let current = std::fs::read_to_string(&exclude).unwrap_or_default();
    if !current.lines().any(|l| l.trim() == "/.chum/") {
        let _ = std::fs::create_dir_all(common.join("info"));
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("/.chum/\n");
        std::fs::write(&exclude, text).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
    }
    Ok(())
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
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
    }
    git(
        repo,
        &[
            "worktree",
            "add",
            "--force",
            "--detach",
            &path.display().to_string(),
            &base_commit,
        ],
    )
    .await?;
    Ok(path)
}

/// Removes a worktree and its directory, if they exist.
pub async fn remove_worktree(repo: &Path, path: &Path) -> Result<(), RepoProblem> {
    let _lock = RepoLock::worktrees(repo).await?;
    remove_worktree_locked(repo, path).await
}

/// [`remove_worktree`] for a caller that holds the repository's worktree lock.
async fn remove_worktree_locked(repo: &Path, path: &Path) -> Result<(), RepoProblem> {
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
    let base_commit = check_repository(project).await?;
    let repo = &project.repo;
    exclude_chum_dir(repo).await?;
    let branch = candidate_branch(bead_id, candidate);
    let branch_ref = format!("refs/heads/{branch}");
    let path = worktree_path(project, bead_id, attempt, candidate);
    let _lock = RepoLock::worktrees(repo).await?;
    for entry in worktrees(repo).await? {
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
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
    }
    git(
        repo,
        &[
            "worktree",
            "add",
            "--force",
            "-B",
            &branch,
            &path.display().to_string(),
            &base_commit,
        ],
    )
    .await?;
    let git = WorktreeGit::open(repo, &path).await?;
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

fn commit_message(req: &IntegrateRequest, key: &str) -> String {
    let bead = req.bead.clone().unwrap_or_default();
    let plan = req.plan.clone().unwrap_or_default();
    let mut msg = if req.partial {
        format!("WIP {}: {} (did not pass its gates)\n\n", bead.id, bead.title)
    } else {
        format!("{}: {}\n\n", bead.id, bead.title)
    };
    msg.push_str(&format!("Plan: {}\n", plan.summary));
    if !plan.acceptance_criteria.is_empty() {
        msg.push_str("\nAcceptance criteria:\n");
        for c in &plan.acceptance_criteria {
            msg.push_str(&format!("- {c}\n"));
        }
    }
    msg.push('\n');
    if !req.approved_by.is_empty() {
        msg.push_str(&format!("Plan-Approved-By: {}\n", req.approved_by));
    }
    msg.push_str(&format!("Chum-Bead: {}\nChum-Run: {key}\n", bead.id));
    msg
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

pub async fn integrate(project: &ProjectConfig, req: &IntegrateRequest) -> Result<IntegrationReport, RepoProblem> {
    check_repository(project).await?;
    let run = req.run.clone().unwrap_or_default();
    let repo = &project.repo;
    let worktree = PathBuf::from(&req.worktree);
    let mut report = IntegrationReport {
        base_branch: project.base_branch.clone(),
        ..IntegrationReport::default()
    };
    // CHUM's git in the worktree, checked first: a worktree whose link to the repository was
    // changed is a problem of the run (nothing of it is committed), not an error of git's.
    let wt = if worktree.is_dir() {
        match WorktreeGit::open(repo, &worktree).await {
            Ok(g) => Some(g),
            Err(e @ GitError::Tampered { .. }) => {
                report.problem = e.to_string();
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    // A candidate's work is on its own branch; otherwise the worktree's branch (the bead's, or a
    // candidate's kept as partial work).
    let branch = match (&wt, req.candidate) {
        (Some(wt), 0) => match wt.git_ok(&["symbolic-ref", "--short", "HEAD"]).await? {
            Some(b) if b.starts_with("chum/") => b,
            _ => candidate_branch(&run.bead_id, 0),
        },
        _ => candidate_branch(&run.bead_id, req.candidate),
    };
    report.branch = branch.clone();
    let key = format!("{}/{}/{}", run.workflow_id, run.run_id, req.attempt);

    // 1. Commit once. The trailer `Chum-Run: <workflow>/<run>/<attempt>` finds an earlier commit.
    let grep = format!("--grep=^Chum-Run: {key}$");
    let existing = git(repo, &["log", "--all", "--format=%H", "-n", "1", &grep]).await?;
    let commit = if !existing.is_empty() {
        report.already_committed = true;
        existing
    } else {
        let Some(wt) = &wt else {
            report.problem = format!(
                "the attempt's worktree {} is gone; nothing to commit",
                worktree.display()
            );
            return Ok(report);
        };
        // The merged tree is the reviewed tree is the tested tree: the index must still be it.
        if !req.tree.is_empty() {
            let staged = wt.git(&["write-tree"]).await?;
            if staged != req.tree {
                report.problem = format!(
                    "the staged tree {} is not the tree the gates passed ({}); nothing was committed",
                    short_hash(&staged),
                    short_hash(&req.tree)
                );
                return Ok(report);
            }
        }
        // The index as the attempt's execution staged it (`stage_changes`): what the reviewer
        // saw and the gates checked. Whatever the review or the DoD left in the worktree since
        // (build output, caches, edits) is not added.
        let message = commit_message(req, &key);
        wt.git(&["commit", "-q", "--allow-empty", "--no-verify", "-m", &message])
            .await?;
        let commit = wt.git(&["rev-parse", "HEAD"]).await?;
        if !req.tree.is_empty() && wt.git(&["rev-parse", "HEAD^{tree}"]).await? != req.tree {
            report.problem = format!("commit {commit} does not hold the tree the gates passed");
            return Ok(report);
        }
        commit
    };
    report.commit = commit.clone();
    if req.partial || project.integration == IntegrationPolicy::Branch {
        return Ok(report);
    }

    // 2. Merge, one integration of this repository at a time (other runs, the learner's and the
    // groomer's own commits, other workers): the base branch must not move between the merge and
    // the fast-forward. Already in the base branch (a retry after the merge): done.
    let _lock = RepoLock::base_branch(repo).await?;
    let base_ref = format!("refs/heads/{}", project.base_branch);
    let tip = resolve(repo, &branch).await?.unwrap_or(commit.clone());
    if git_ok(repo, &["merge-base", "--is-ancestor", &tip, &base_ref])
        .await?
        .is_some()
    {
        report.merged = true;
        report.commit = tip;
        return Ok(report);
    }
    // The base moved since the attempt started: merge it into the bead branch first, so the
    // base branch itself only ever fast-forwards.
    let base_commit = resolve(repo, &base_ref).await?.unwrap_or_default();
    if git_ok(repo, &["merge-base", "--is-ancestor", &base_commit, &tip])
        .await?
        .is_none()
    {
        let Some(wt) = &wt else {
            report.problem = format!(
                "{} moved on and the worktree to merge it in is gone",
                project.base_branch
            );
            return Ok(report);
        };
        // A merge a killed worker left half done (its git died with the worker's pipes) is ours
        // to throw away: the retry merges again from the start.
        if wt
            .git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .await?
            .is_some()
        {
            tracing::warn!(worktree = %worktree.display(), "aborting a merge an earlier try left unfinished");
            let _ = wt.git(&["merge", "--abort"]).await;
        }
        let merge_msg = format!("Merge {} into {branch}", project.base_branch);
        if let Err(e) = wt
            .git(&["merge", "--no-edit", "--no-verify", "-m", &merge_msg, &base_commit])
            .await
        {
            let _ = wt.git(&["merge", "--abort"]).await;
            report.problem = format!("merging {} into {branch} conflicts: {e}", project.base_branch);
            return Ok(report);
        }
    }
    let tip = resolve(repo, &branch).await?.unwrap_or_default();

    if let Err(problem) = fast_forward_base(project, &tip, &base_commit).await? {
        report.problem = format!("{problem}, then merge {branch} by hand");
        return Ok(report);
    }
    report.merged = true;
    report.commit = tip;
    Ok(report)
}

/// Fast-forwards the base branch from `from` to `tip`: through its checkout when it is checked
/// out (so the checkout follows), otherwise by moving the ref with a compare-and-swap. The inner
/// error says why it could not (local changes in the checkout).
async fn fast_forward_base(project: &ProjectConfig, tip: &str, from: &str) -> Result<Result<(), String>, RepoProblem> {
    let repo = &project.repo;
    let base_ref = format!("refs/heads/{}", project.base_branch);
    let checkout = worktrees(repo)
        .await?
        .into_iter()
        .find(|w| w.branch.as_deref() == Some(base_ref.as_str()));
    match checkout {
        Some(entry) => {
            if let Err(e) = git(&entry.path, &["merge", "--ff-only", "-q", tip]).await {
                let now = resolve(repo, &base_ref).await?.unwrap_or_default();
                if now != from {
                    return Ok(Err(format!(
                        "{} moved on (to {now}) while merging, outside CHUM",
                        project.base_branch
                    )));
                }
                return Ok(Err(format!(
                    "could not fast-forward {} in {}: {e}. Commit or stash the local changes there",
                    project.base_branch,
                    entry.path.display()
                )));
            }
        }
        None => {
            git(repo, &["update-ref", &base_ref, tip, from]).await?;
        }
    }
    Ok(Ok(()))
}

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
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
        }
        git(
            repo,
            &[
                "worktree",
                "add",
                "--force",
                "-B",
                &change.branch,
                &path.display().to_string(),
                &base_commit,
            ],
        )
        .await?;
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
    if project.integration == IntegrationPolicy::Branch {
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

/// An exclusive advisory file lock on one kind of change to a repository, in its `.git`, so it
/// holds across the worker's tasks and across worker processes, and the kernel drops it when
/// its holder dies (a SIGKILLed worker leaves no stale lock). Not reentrant: a task that holds
/// one must not ask for the same one again.
struct RepoLock {
    _file: Option<std::fs::File>,
}

impl RepoLock {
    /// Moving the base branch: it must not move between a merge and the fast-forward.
    async fn base_branch(repo: &Path) -> Result<RepoLock, RepoProblem> {
        RepoLock::acquire(repo, "chum-base.lock").await
    }

    /// Adding, removing and pruning worktrees: git keeps their bookkeeping in
    /// `.git/worktrees/<name>/`, and a `prune` or `add` running beside another `add` finds a
    /// half-made entry (`could not open '.git/worktrees/155/locked'`) or takes the same name.
    async fn worktrees(repo: &Path) -> Result<RepoLock, RepoProblem> {
        RepoLock::acquire(repo, "chum-worktrees.lock").await
    }

    async fn acquire(repo: &Path, name: &str) -> Result<RepoLock, RepoProblem> {
        let git_dir = repo.join(".git");
        if !git_dir.is_dir() {
            // Not a main checkout (check_repository said it is a repository): nothing to share.
            return Ok(RepoLock { _file: None });
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(git_dir.join(name))
            .map_err(|e| RepoProblem::Git(GitError::Spawn(e)))?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(RepoLock { _file: Some(file) }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(RepoProblem::Git(GitError::Spawn(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testing::init_repo;
    use crate::repo::{GitError, WorktreeGit};
    use chum_core::proto::{Bead, Plan, RunRef};

    #[tokio::test]
    async fn a_held_index_lock_is_worth_retrying_a_missing_branch_is_not() {
        let dir = tempfile::tempdir().unwrap();
        init_repo(dir.path()).await;
        std::fs::write(dir.path().join(".git/index.lock"), "").unwrap();
        std::fs::write(dir.path().join("new.txt"), "x").unwrap();
        let locked = RepoProblem::from(git(dir.path(), &["add", "new.txt"]).await.unwrap_err());
        assert!(!locked.is_permanent(), "{locked}");
        std::fs::remove_file(dir.path().join(".git/index.lock")).unwrap();
        let missing = RepoProblem::from(git(dir.path(), &["checkout", "no-such-branch"]).await.unwrap_err());
        assert!(missing.is_permanent(), "{missing}");
    }

    fn project(repo: &Path, integration: IntegrationPolicy) -> ProjectConfig {
        ProjectConfig {
            name: "demo".into(),
            repo: repo.to_path_buf(),
            base_branch: "main".into(),
            dod: vec![],
            integration,
            beads_file: ".beads/issues.jsonl".into(),
            enabled: true,
            gates: chum_core::config::Gate::DEFAULT_ORDER.to_vec(),
            review_fail_open: false,
            backlog: chum_core::config::BacklogBackend::Native,
            concurrency: 1,
            sandbox: chum_core::config::SandboxMode::None,
            fanout: 1,
            select: chum_core::config::SelectMode::First,
            environment: Default::default(),
        }
    }

    fn request(worktree: &Path, attempt: u32) -> IntegrateRequest {
        IntegrateRequest {
            run: Some(RunRef {
                project: "demo".into(),
                bead_id: "tk-1".into(),
                workflow_id: "shark-demo-tk-1".into(),
                run_id: "r1".into(),
            }),
            bead: Some(Bead {
                id: "tk-1".into(),
                title: "Add a file".into(),
                ..Bead::default()
            }),
            plan: Some(Plan {
                summary: "add it".into(),
                acceptance_criteria: vec!["file exists".into()],
                ..Plan::default()
            }),
            worktree: worktree.display().to_string(),
            attempt,
            approved_by: "alice".into(),
            partial: false,
            candidate: 0,
            tree: String::new(),
        }
    }

    #[tokio::test]
    async fn candidates_get_their_own_worktrees_and_branches_and_the_losers_go() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let one = prepare_worktree(&p, "tk-1", 1, 1).await.unwrap();
        let two = prepare_worktree(&p, "tk-1", 1, 2).await.unwrap();
        assert_eq!(
            (one.branch.as_str(), two.branch.as_str()),
            ("chum/tk-1-c1", "chum/tk-1-c2")
        );
        assert!(one.path.ends_with("tk-1/1-c1") && two.path.ends_with("tk-1/1-c2"));
        assert!(
            one.path.join(".git").exists() && two.path.join(".git").exists(),
            "both at once"
        );
        let removed = discard_candidates(&p, "tk-1", 1, &[2]).await.unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!two.path.exists());
        assert!(resolve(repo, "chum/tk-1-c2").await.unwrap().is_none());
        assert!(one.path.exists(), "the winner stays");
        assert!(
            discard_candidates(&p, "tk-1", 1, &[2]).await.unwrap().is_empty(),
            "idempotent"
        );
    }

    /// Twenty Sharks planning and starting their attempts at once on one repository: git's
    /// worktree bookkeeping is not safe against itself, so CHUM serializes it (`make bench` lost
    /// beads to "could not open '.git/worktrees/155/locked'" before).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_beads_at_once_all_get_their_checkouts() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().to_path_buf();
        init_repo(&repo).await;
        let p = std::sync::Arc::new(project(&repo, IntegrationPolicy::Merge));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let p = p.clone();
                tokio::spawn(async move {
                    let bead = format!("b-{i}");
                    let plan = prepare_plan_worktree(&p, &bead, 1).await?;
                    remove_worktree(&p.repo, &plan).await?;
                    let attempt = prepare_worktree(&p, &bead, 1, 0).await?;
                    let again = prepare_worktree(&p, &bead, 2, 0).await?;
                    Ok::<_, RepoProblem>((attempt, again))
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let (first, second) = task.await.unwrap().unwrap_or_else(|e| panic!("bead b-{i} failed: {e}"));
            assert!(!first.path.exists(), "attempt 1 of b-{i} was replaced by attempt 2");
            assert!(second.path.join(".git").is_file(), "b-{i} has its worktree");
        }
        let listed = worktrees(&repo).await.unwrap();
        assert_eq!(
            listed.len(),
            21,
            "the main checkout and one worktree per bead: {listed:?}"
        );
    }

    async fn count_commits(repo: &Path, rev: &str) -> usize {
        git(repo, &["rev-list", "--count", rev]).await.unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn commits_once_and_fast_forwards_the_checked_out_base() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        assert_eq!(wt.branch, "chum/tk-1");
        std::fs::write(wt.path.join("new.txt"), "new\n").unwrap();
        let changes = stage_changes(&wt.git, &wt.base_commit).await.unwrap();
        assert_eq!(changes.files, vec!["new.txt"]);
        assert!(changes.diff.contains("+new"));

        let first = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(
            first.merged && first.problem.is_empty() && !first.already_committed,
            "{first:?}"
        );
        let again = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(again.already_committed && again.merged);
        assert_eq!(again.commit, first.commit);
        assert_eq!(count_commits(repo, "main").await, 2, "exactly one new commit on main");
        assert_eq!(
            std::fs::read_to_string(repo.join("new.txt")).unwrap(),
            "new\n",
            "the checkout followed"
        );
        let msg = git(repo, &["log", "-1", "--format=%B", "main"]).await.unwrap();
        assert!(
            msg.contains("tk-1: Add a file")
                && msg.contains("Plan-Approved-By: alice")
                && msg.contains("Chum-Run: shark-demo-tk-1/r1/1"),
            "{msg}"
        );
        assert_eq!(
            git(repo, &["status", "--porcelain"]).await.unwrap(),
            "",
            ".chum/ stays out of git status"
        );
    }

    #[tokio::test]
    async fn a_moved_base_is_merged_into_the_bead_branch_first() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt.path.join("new.txt"), "new\n").unwrap();
        std::fs::write(repo.join("other.txt"), "other\n").unwrap();
        git(repo, &["add", "other.txt"]).await.unwrap();
        git(repo, &["commit", "-q", "-m", "someone else"]).await.unwrap();
        stage_changes(&wt.git, &wt.base_commit).await.unwrap();
        let report = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(report.merged, "{report:?}");
        assert!(repo.join("new.txt").exists() && repo.join("other.txt").exists());
    }

    #[tokio::test]
    async fn branch_policy_leaves_the_base_alone_and_new_attempts_start_clean() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Branch);
        let wt1 = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt1.path.join("junk.txt"), "junk\n").unwrap();
        let wt2 = prepare_worktree(&p, "tk-1", 2, 0).await.unwrap();
        assert!(!wt1.path.exists(), "the earlier attempt's worktree is removed");
        assert!(!wt2.path.join("junk.txt").exists());
        std::fs::write(wt2.path.join("good.txt"), "good\n").unwrap();
        stage_changes(&wt2.git, &wt2.base_commit).await.unwrap();
        let report = integrate(&p, &request(&wt2.path, 2)).await.unwrap();
        assert!(!report.merged && !report.commit.is_empty());
        assert_eq!(count_commits(repo, "main").await, 1);
        assert_eq!(count_commits(repo, "chum/tk-1").await, 2);
    }

    #[tokio::test]
    async fn a_base_branch_nobody_has_checked_out_is_moved_by_ref() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        git(repo, &["checkout", "-q", "-b", "elsewhere"]).await.unwrap();
        let p = project(repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt.path.join("new.txt"), "new\n").unwrap();
        stage_changes(&wt.git, &wt.base_commit).await.unwrap();
        let report = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(report.merged && report.problem.is_empty(), "{report:?}");
        assert_eq!(git(repo, &["rev-parse", "main"]).await.unwrap(), report.commit);
        assert!(
            !repo.join("new.txt").exists(),
            "the checkout on another branch is left alone"
        );
    }

    #[tokio::test]
    async fn a_merge_conflict_is_reported_and_the_branch_kept() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt.path.join("README.md"), "ours\n").unwrap();
        std::fs::write(repo.join("README.md"), "theirs\n").unwrap();
        git(repo, &["commit", "-q", "-am", "someone else edits the same line"])
            .await
            .unwrap();
        stage_changes(&wt.git, &wt.base_commit).await.unwrap();
        let report = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(!report.merged && report.problem.contains("conflicts"), "{report:?}");
        assert!(
            resolve(repo, "chum/tk-1").await.unwrap().is_some(),
            "the work stays on its branch"
        );
        assert_eq!(std::fs::read_to_string(repo.join("README.md")).unwrap(), "theirs\n");
    }

    #[tokio::test]
    async fn a_redo_resumes_the_attempts_work_and_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt.path.join("work.txt"), "so far\n").unwrap();
        std::fs::write(repo.join("later.txt"), "x\n").unwrap();
        git(repo, &["add", "later.txt"]).await.unwrap();
        git(repo, &["commit", "-q", "-m", "the base moves on"]).await.unwrap();
        let resumed = resume_worktree(&p, "tk-1", 1, 0).await.unwrap().expect("still there");
        assert_eq!(resumed.path, wt.path);
        assert_eq!(
            resumed.base_commit, wt.base_commit,
            "the attempt's base, not the moved branch"
        );
        assert!(resumed.path.join("work.txt").exists(), "the work so far stays");
        assert!(resume_worktree(&p, "tk-1", 2, 0).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn what_is_left_in_the_worktree_after_staging_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt.path.join("work.txt"), "reviewed\n").unwrap();
        stage_changes(&wt.git, &wt.base_commit).await.unwrap();
        // What a reviewer or a DoD command does afterwards: build output, an edit.
        std::fs::create_dir_all(wt.path.join("__pycache__")).unwrap();
        std::fs::write(wt.path.join("__pycache__/work.pyc"), "junk").unwrap();
        std::fs::write(wt.path.join("work.txt"), "changed after review\n").unwrap();
        let report = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(report.merged, "{report:?}");
        assert_eq!(git(repo, &["show", "main:work.txt"]).await.unwrap(), "reviewed");
        let files = git(repo, &["ls-tree", "-r", "--name-only", "main"]).await.unwrap();
        assert!(!files.contains("__pycache__"), "{files}");
    }

    #[tokio::test]
    async fn a_worktree_whose_git_pointer_was_rewritten_is_refused_and_its_hooks_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        init_repo(&repo).await;
        let p = project(&repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt.path.join("work.txt"), "x\n").unwrap();
        // An agent plants a git directory of its own, with a hook and an fsmonitor, and points
        // the worktree at it.
        let marker = dir.path().join("pwned");
        let evil = wt.path.join("evil");
        git(&wt.path, &["init", "-q", &evil.display().to_string()])
            .await
            .unwrap();
        let run = format!("touch {}", marker.display());
        std::fs::write(evil.join(".git/hooks/post-commit"), format!("#!/bin/sh\n{run}\n")).unwrap();
        std::fs::write(evil.join(".git/hooks/pre-commit"), format!("#!/bin/sh\n{run}\n")).unwrap();
        for hook in ["post-commit", "pre-commit"] {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(
                evil.join(".git/hooks").join(hook),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        let mut config = std::fs::read_to_string(evil.join(".git/config")).unwrap();
        config.push_str(&format!("[core]\n\tfsmonitor = \"{run}; false\"\n"));
        std::fs::write(evil.join(".git/config"), config).unwrap();
        std::fs::write(
            wt.path.join(".git"),
            format!("gitdir: {}\n", evil.join(".git").display()),
        )
        .unwrap();

        let err = WorktreeGit::open(&repo, &wt.path).await.unwrap_err();
        assert!(matches!(err, GitError::Tampered { .. }), "{err}");
        assert!(err.to_string().contains("points to"), "{err}");
        let report = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(!report.merged && report.problem.contains("tampered"), "{report:?}");
        // A new attempt clears it away without running anything of it.
        let fresh = prepare_worktree(&p, "tk-1", 2, 0).await.unwrap();
        assert!(fresh.path.join(".git").is_file());
        assert!(!marker.exists(), "CHUM's git ran something the agent planted");
        assert_eq!(count_commits(&repo, "main").await, 1);
    }

    #[tokio::test]
    async fn the_repositorys_own_hooks_and_filters_never_run_in_chums_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        init_repo(&repo).await;
        let marker = dir.path().join("ran");
        let run = format!("touch {}", marker.display());
        for hook in ["post-checkout", "pre-commit", "post-commit", "post-merge"] {
            use std::os::unix::fs::PermissionsExt as _;
            let path = repo.join(".git/hooks").join(hook);
            std::fs::write(&path, format!("#!/bin/sh\n{run}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        git(&repo, &["config", "filter.evil.clean", &format!("{run}; cat")])
            .await
            .unwrap();
        git(&repo, &["config", "filter.evil.required", "true"]).await.unwrap();
        let p = project(&repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        // The agent asks for the repository's filter on its files.
        std::fs::write(wt.path.join(".gitattributes"), "* filter=evil\n").unwrap();
        std::fs::write(wt.path.join("work.txt"), "x\n").unwrap();
        stage_changes(&wt.git, &wt.base_commit).await.unwrap();
        let report = integrate(&p, &request(&wt.path, 1)).await.unwrap();
        assert!(report.merged, "{report:?}");
        assert!(!marker.exists(), "a hook or filter of the repository ran");
    }

    #[tokio::test]
    async fn broken_repositories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path(), IntegrationPolicy::Merge);
        let err = check_repository(&p).await.unwrap_err();
        assert!(matches!(err, RepoProblem::NotARepository(_)), "{err}");
        init_repo(dir.path()).await;
        let mut p = p;
        p.base_branch = "develop".into();
        let err = check_repository(&p).await.unwrap_err();
        assert!(
            err.to_string().contains("base branch `develop` does not exist"),
            "{err}"
        );
    }
}
