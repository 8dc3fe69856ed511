//! What the repository rooms share: [`RepoProblem`] (why the repository cannot be worked in),
//! the repository check, and the lock that serializes git's own bookkeeping (worktrees, refs,
//! CHUM's commits) between Sharks on one repository.
//!
//! Every step in `worktree`, `integrate` and `own_change` is idempotent per (run, attempt): a
//! retried activity finds its earlier work instead of doing it twice.

use std::path::{Path, PathBuf};

use chum_core::config::ProjectConfig;

use crate::repo::{GitError, git, git_ok, resolve};

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
    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
    /// This try of a step was timed out by the server and a later try took over its worktree.
    #[error(
        "try {try_number} of this step stops: try {owner} owns the worktree {worktree} (the server had timed this one out while it still ran)"
    )]
    Superseded {
        worktree: String,
        try_number: u32,
        owner: u32,
    },
}

impl RepoProblem {
    /// Problems a retry cannot fix. A lock file another git holds (or a git killed with its
    /// worker left behind, until git or a person clears it) is worth retrying; so is git not
    /// starting at all.
    pub fn is_permanent(&self) -> bool {
        match self {
            RepoProblem::Git(GitError::Spawn(_)) => false,
            RepoProblem::Git(GitError::Failed { stderr, .. }) => !is_lock_contention(stderr),
            RepoProblem::Remote(e) => e.is_permanent(),
            _ => true,
        }
    }
}

pub(super) fn is_lock_contention(stderr: &str) -> bool {
    (stderr.contains(".lock") && (stderr.contains("File exists") || stderr.contains("Unable to create")))
        || stderr.contains("cannot lock ref")
        // Worktree bookkeeping (`.git/worktrees/<name>/...`) that another git changed under this
        // one (CHUM serializes its own, see `RepoLock::worktrees`; a person's git may not).
        || stderr.contains(".git/worktrees/")
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

pub(super) fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Keeps CHUM's own directory out of the project's `git status` without touching tracked files.
pub(super) async fn exclude_chum_dir(repo: &Path) -> Result<(), RepoProblem> {
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

/// An exclusive advisory file lock on one kind of change to a repository, in its `.git`, so it
/// holds across the worker's tasks and across worker processes, and the kernel drops it when
/// its holder dies (a SIGKILLed worker leaves no stale lock). Not reentrant: a task that holds
/// one must not ask for the same one again.
pub(super) struct RepoLock {
    _file: Option<std::fs::File>,
}

impl RepoLock {
    /// Moving the base branch: it must not move between a merge and the fast-forward.
    pub(super) async fn base_branch(repo: &Path) -> Result<RepoLock, RepoProblem> {
        RepoLock::acquire(repo, "chum-base.lock").await
    }

    /// Adding, removing and pruning worktrees: git keeps their bookkeeping in
    /// `.git/worktrees/<name>/`, and a `prune` or `add` running beside another `add` finds a
    /// half-made entry (`could not open '.git/worktrees/155/locked'`) or takes the same name.
    pub(super) async fn worktrees(repo: &Path) -> Result<RepoLock, RepoProblem> {
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
    use crate::repo::testing::{init_repo, project};
    use crate::repo::*;
    use crate::repo::{GitError, WorktreeGit};
    use chum_core::config::IntegrationPolicy;
    use chum_core::proto::IntegrateRequest;
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
            hold: false,
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
    async fn an_earlier_try_of_a_step_leaves_a_later_tries_worktree_alone() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let try_of = |n| WorktreeOwner {
            step: "run-1/7".into(),
            try_number: n,
        };
        // Try 1 made the worktree, then the server timed it out; try 2 made it afresh and worked.
        prepare_owned_worktree(&p, "tk-1", 1, 0, Some(&try_of(1)))
            .await
            .unwrap();
        let second = prepare_owned_worktree(&p, "tk-1", 1, 0, Some(&try_of(2)))
            .await
            .unwrap();
        std::fs::write(second.path.join("new.txt"), "new\n").unwrap();
        // Try 1 wakes up: it may neither remake the worktree nor stage into it.
        let late = prepare_owned_worktree(&p, "tk-1", 1, 0, Some(&try_of(1)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                late,
                RepoProblem::Superseded {
                    try_number: 1,
                    owner: 2,
                    ..
                }
            ),
            "{late}"
        );
        assert!(late.to_string().contains("try 2 owns the worktree"), "{late}");
        assert!(try_of(1).check(&second.git).is_err());
        assert!(second.path.join("new.txt").exists(), "try 2's work stays");
        try_of(2).check(&second.git).unwrap();
        // A later try, another run's step or a redo (another step) may take it over.
        let redo = WorktreeOwner {
            step: "run-1/9".into(),
            try_number: 1,
        };
        redo.claim(repo, &second.git).await.unwrap();
        let other_run = WorktreeOwner {
            step: "run-2/7".into(),
            try_number: 1,
        };
        prepare_owned_worktree(&p, "tk-1", 1, 0, Some(&other_run))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_verified_tree_is_committed_even_when_an_earlier_try_remade_the_worktree_under_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        init_repo(repo).await;
        let p = project(repo, IntegrationPolicy::Merge);
        let wt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        std::fs::write(wt.path.join("new.txt"), "new\n").unwrap();
        stage_changes(&wt.git, &wt.base_commit).await.unwrap();
        let verified = wt.git.git(&["write-tree"]).await.unwrap();
        // A try of the execute step the server had timed out (missed heartbeats) wakes up and
        // makes the attempt's worktree afresh: its index and files are the base again.
        let remade = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        assert!(!remade.path.join("new.txt").exists());
        let report = integrate(
            &p,
            &IntegrateRequest {
                tree: verified.clone(),
                ..request(&remade.path, 1)
            },
        )
        .await
        .unwrap();
        assert!(report.merged && report.problem.is_empty(), "{report:?}");
        assert_eq!(git(repo, &["rev-parse", "main^{tree}"]).await.unwrap(), verified);
        assert_eq!(std::fs::read_to_string(repo.join("new.txt")).unwrap(), "new\n");
        let msg = git(repo, &["log", "-1", "--format=%B", "main"]).await.unwrap();
        assert!(
            msg.starts_with("tk-1: Add a file\n\nPlan: add it\n") && msg.ends_with("Chum-Run: shark-demo-tk-1/r1/1"),
            "{msg:?}"
        );

        // A tree the repository does not have is a problem of the run: nothing is committed.
        let wt = prepare_worktree(&p, "tk-2", 1, 0).await.unwrap();
        let before = git(repo, &["rev-parse", "chum/tk-2"]).await.unwrap();
        let report = integrate(
            &p,
            &IntegrateRequest {
                tree: "0123456789abcdef0123456789abcdef01234567".into(),
                ..request(&wt.path, 2)
            },
        )
        .await
        .unwrap();
        assert!(
            report.problem.contains("cannot be committed") && report.commit.is_empty(),
            "{report:?}"
        );
        assert_eq!(git(repo, &["rev-parse", "chum/tk-2"]).await.unwrap(), before);
        assert_eq!(count_commits(repo, "main").await, 2);
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
