//! Landing under the merge queue's turn: a bead's committed work brought up to the base's tip in
//! its worktree (rebase or merge), and the base fast-forwarded to it only if the base is still the
//! tip it was verified on. Both are safe to retry: an update already done is found, a landing
//! already done is found. With the `push` policy the base is the remote's: fetched for the
//! update, and landing is a push that is never forced (git refuses one that is not a fast-forward
//! of what the remote has: the compare-and-swap).

use std::path::PathBuf;

use chum_core::config::{IntegrationPolicy, ProjectConfig};
use chum_core::proto::{LandReport, LandRequest, UpdateMode, UpdateToBaseReport, UpdateToBaseRequest};
use chum_core::text::excerpt;

use super::integrate::fast_forward_base;
use super::remote::{PushOutcome, fetch_base, push_base};
use super::workspace::{RepoLock, RepoProblem, check_repository};
use crate::repo::{GitError, WorktreeGit, git_ok, resolve};

/// How much of the conflicting hunks the next attempt's executor is shown.
const CONFLICT_EXCERPT_CHARS: usize = 4000;

/// Brings the bead's branch (checked out in its worktree) up to the base's tip. Already there:
/// `up_to_date`. A conflict is aborted and reported with its files and hunks; the branch stays as
/// it was.
pub async fn update_to_base(
    project: &ProjectConfig,
    req: &UpdateToBaseRequest,
) -> Result<UpdateToBaseReport, RepoProblem> {
    let mut base_tip = check_repository(project).await?;
    if project.integration == IntegrationPolicy::Push {
        base_tip = fetch_base(project).await?;
        follow_remote(project, &base_tip).await;
    }
    let repo = &project.repo;
    let mut report = UpdateToBaseReport {
        base_tip: base_tip.clone(),
        ..UpdateToBaseReport::default()
    };
    let worktree = PathBuf::from(&req.worktree);
    let wt = match WorktreeGit::open(repo, &worktree).await {
        Ok(wt) => wt,
        Err(e @ GitError::Tampered { .. }) => {
            report.problem = e.to_string();
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    };
    abort_unfinished(&wt).await?;
    let head = wt.git(&["rev-parse", "HEAD"]).await?;
    // The held commit, or what an earlier try of this update made of it: a merge of it, or the same
    // commit rebased (its message, with its unique `Chum-Run:` trailer, is the same).
    if head != req.commit
        && !is_ancestor_in(&wt, &req.commit, &head).await?
        && !same_message(&wt, &head, &req.commit).await?
    {
        report.problem = format!(
            "{} is at {head}, which does not hold the committed work {}; nothing was landed",
            req.branch, req.commit
        );
        return Ok(report);
    }
    if !is_ancestor_in(&wt, &base_tip, &head).await? {
        let base_branch = &project.landing_branch();
        let updated = match req.mode() {
            UpdateMode::Merge => {
                let message = format!("Merge {base_branch} into {}", req.branch);
                wt.git(&["merge", "--no-edit", "--no-verify", "-m", &message, &base_tip])
                    .await
            }
            _ => wt.git(&["rebase", "--no-autosquash", &base_tip]).await,
        };
        if updated.is_err() {
            report.conflict_files = conflicting_files(&wt).await?;
            report.conflict_excerpt = excerpt(
                &wt.git_ok(&["diff", "--no-color", "--no-ext-diff"])
                    .await?
                    .unwrap_or_default(),
                CONFLICT_EXCERPT_CHARS,
            );
            let abort: &[&str] = match req.mode() {
                UpdateMode::Merge => &["merge", "--abort"],
                _ => &["rebase", "--abort"],
            };
            let _ = wt.git(abort).await;
            if report.conflict_files.is_empty() {
                // Not a conflict (git failed otherwise): say what git said.
                report.problem = format!(
                    "bringing {} up to {base_branch} failed: {}",
                    req.branch,
                    updated.err().map(|e| e.to_string()).unwrap_or_default()
                );
            }
            return Ok(report);
        }
    }
    let tip = wt.git(&["rev-parse", "HEAD"]).await?;
    if project.integration == IntegrationPolicy::Push {
        let foreign = not_chums(&wt, &base_tip, &tip).await?;
        if !foreign.is_empty() {
            let bead = req.run.as_ref().map(|r| r.bead_id.as_str()).unwrap_or_default();
            report.problem = format!(
                "landing would push {} commit(s) that are not CHUM's work ({}): they are on the local {} but not on {}; push or drop them there, then `chum retry {bead}`",
                foreign.len(),
                foreign.join("; "),
                project.base_branch,
                project.landing_branch()
            );
            return Ok(report);
        }
    }
    report.up_to_date = tip == req.commit;
    report.tree = wt.git(&["rev-parse", "HEAD^{tree}"]).await?;
    let names = wt
        .git(&["diff", "--name-only", "-z", "--no-renames", &base_tip, &tip])
        .await?;
    report.changed_files = names.split('\0').filter(|n| !n.is_empty()).map(String::from).collect();
    report.commit = tip;
    Ok(report)
}

/// Fast-forwards the base branch to the verified commit if the base is still the tip it was
/// verified on (under the repository's base lock, so nothing moves it in between).
pub async fn land(project: &ProjectConfig, req: &LandRequest) -> Result<LandReport, RepoProblem> {
    check_repository(project).await?;
    if project.integration == IntegrationPolicy::Push {
        return land_on_remote(project, req).await;
    }
    let repo = &project.repo;
    let base_ref = format!("refs/heads/{}", project.base_branch);
    let _lock = RepoLock::base_branch(repo).await?;
    let now = resolve(repo, &base_ref).await?.unwrap_or_default();
    if let Some(decided) = before_landing(project, req, &now).await? {
        return Ok(decided);
    }
    let mut report = LandReport::default();
    match fast_forward_base(project, &req.commit, &req.base_tip).await? {
        Ok(()) => report.landed = true,
        Err(problem) => {
            if resolve(repo, &base_ref).await?.unwrap_or_default() != req.base_tip {
                report.base_moved = true;
            } else {
                report.problem = format!("{problem}, then merge {} by hand", req.branch);
            }
        }
    }
    Ok(report)
}

/// The `push` policy's landing: the remote's base moves to the verified commit only if it is still
/// the tip the commit was verified on. Under the base lock, so the local base follows in order.
async fn land_on_remote(project: &ProjectConfig, req: &LandRequest) -> Result<LandReport, RepoProblem> {
    let repo = &project.repo;
    let _lock = RepoLock::base_branch(repo).await?;
    let now = fetch_base(project).await?;
    if let Some(decided) = before_landing(project, req, &now).await? {
        if decided.landed {
            follow_remote(project, &now).await;
        }
        return Ok(decided);
    }
    let mut report = LandReport::default();
    match push_base(project, &req.commit).await? {
        PushOutcome::Pushed => {
            report.landed = true;
            follow_remote(project, &req.commit).await;
        }
        PushOutcome::Moved => report.base_moved = true,
        PushOutcome::Refused(said) => {
            report.problem = format!(
                "{} refused the push to {}: {said}; the work is on branch {}",
                project.remote, project.base_branch, req.branch
            );
        }
    }
    Ok(report)
}

/// What is decided before the base is touched, with the base at `now`: landed already (a retried
/// activity), moved since the commit was verified, or a commit that does not stand on the tip it
/// was verified on. None: land it.
async fn before_landing(
    project: &ProjectConfig,
    req: &LandRequest,
    now: &str,
) -> Result<Option<LandReport>, RepoProblem> {
    let repo = &project.repo;
    let mut report = LandReport::default();
    if is_ancestor(repo, &req.commit, now).await? {
        report.landed = true;
    } else if now != req.base_tip {
        report.base_moved = true;
    } else if !is_ancestor(repo, &req.base_tip, &req.commit).await? {
        report.problem = format!(
            "{} does not stand on {} {}; nothing was landed",
            req.commit,
            project.landing_branch(),
            req.base_tip
        );
    } else {
        return Ok(None);
    }
    Ok(Some(report))
}

/// With the `push` policy the local base follows the remote's when it can (a fast-forward, its
/// checkout clean), so the next attempts start from what the remote has. When it cannot, nothing
/// is lost: updates rebase onto the remote's base anyway.
/// The remote's base fetched and the local base fast-forwarded to it when it can (a pull request
/// was merged on the forge: the next bead starts from what it merged). Returns the remote's tip.
pub async fn follow_remote_base(project: &ProjectConfig) -> Result<String, RepoProblem> {
    let _lock = RepoLock::base_branch(&project.repo).await?;
    let tip = fetch_base(project).await?;
    follow_remote(project, &tip).await;
    Ok(tip)
}

/// The run's commit on the remote's base (the `push` policy), found by its `Chum-Run:
/// <workflow>/<run>/` trailer: work that landed before the host that pushed it stopped answering.
/// The local base follows the remote's on the way.
pub async fn landed_by_run(
    project: &ProjectConfig,
    workflow_id: &str,
    run_id: &str,
) -> Result<Option<String>, RepoProblem> {
    if project.integration != IntegrationPolicy::Push || workflow_id.is_empty() || run_id.is_empty() {
        return Ok(None);
    }
    let tip = follow_remote_base(project).await?;
    let grep = format!("--grep=^Chum-Run: {workflow_id}/{run_id}/");
    let found = crate::repo::git(&project.repo, &["log", "--format=%H", "-n", "1", &grep, &tip]).await?;
    Ok(Some(found.trim().to_string()).filter(|c| !c.is_empty()))
}

async fn follow_remote(project: &ProjectConfig, remote_tip: &str) {
    let repo = &project.repo;
    let base_ref = format!("refs/heads/{}", project.base_branch);
    let Ok(Some(local)) = resolve(repo, &base_ref).await else {
        return;
    };
    if local == remote_tip || !matches!(is_ancestor(repo, &local, remote_tip).await, Ok(true)) {
        return;
    }
    match fast_forward_base(project, remote_tip, &local).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => tracing::info!(project = %project.name, "the local base stays behind the remote's: {why}"),
        Err(e) => tracing::info!(project = %project.name, "the local base stays behind the remote's: {e}"),
    }
}

/// An earlier try of this update that died halfway (its worker killed with its git) may have left
/// a rebase or a merge in progress, with HEAD somewhere on the base: it is aborted, which puts the
/// branch back where it was, and the update starts over.
async fn abort_unfinished(wt: &WorktreeGit) -> Result<(), RepoProblem> {
    let rebasing = ["rebase-merge", "rebase-apply"]
        .iter()
        .any(|state| wt.git_dir.join(state).exists());
    if rebasing {
        tracing::warn!(worktree = %wt.work_tree.display(), "aborting a rebase an earlier try left unfinished");
        wt.git(&["rebase", "--abort"]).await?;
    }
    if wt.git_dir.join("MERGE_HEAD").exists() {
        tracing::warn!(worktree = %wt.work_tree.display(), "aborting a merge an earlier try left unfinished");
        wt.git(&["merge", "--abort"]).await?;
    }
    Ok(())
}

/// The subjects of the commits between `base` and `tip` that CHUM did not make (no `Chum-Bead:`
/// trailer; merges aside): with the `push` policy, commits someone made on the local base and never
/// pushed, which a landing must not publish in their name.
async fn not_chums(wt: &WorktreeGit, base: &str, tip: &str) -> Result<Vec<String>, RepoProblem> {
    let range = format!("{base}..{tip}");
    let listing = wt
        .git(&[
            "log",
            "--no-merges",
            "--format=%s%x1f%(trailers:key=Chum-Bead,valueonly)%x1e",
            &range,
        ])
        .await?;
    Ok(listing
        .split('\x1e')
        .filter_map(|entry| entry.trim().split_once('\x1f'))
        .filter(|(_, bead)| bead.trim().is_empty())
        .map(|(subject, _)| subject.to_string())
        .collect())
}

async fn is_ancestor(repo: &std::path::Path, ancestor: &str, of: &str) -> Result<bool, RepoProblem> {
    Ok(git_ok(repo, &["merge-base", "--is-ancestor", ancestor, of])
        .await?
        .is_some())
}

async fn is_ancestor_in(wt: &WorktreeGit, ancestor: &str, of: &str) -> Result<bool, RepoProblem> {
    Ok(wt
        .git_ok(&["merge-base", "--is-ancestor", ancestor, of])
        .await?
        .is_some())
}

async fn same_message(wt: &WorktreeGit, a: &str, b: &str) -> Result<bool, RepoProblem> {
    let of_a = wt.git(&["log", "-1", "--format=%B", a]).await?;
    let of_b = wt.git(&["log", "-1", "--format=%B", b]).await?;
    Ok(of_a == of_b)
}

async fn conflicting_files(wt: &WorktreeGit) -> Result<Vec<String>, RepoProblem> {
    let names = wt
        .git_ok(&["diff", "--name-only", "-z", "--diff-filter=U"])
        .await?
        .unwrap_or_default();
    Ok(names.split('\0').filter(|n| !n.is_empty()).map(String::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testing::{init_repo, project};
    use crate::repo::{git, prepare_worktree};
    use chum_core::config::IntegrationPolicy;

    /// Commits `file` = `text` on the bead's worktree branch; returns the commit.
    async fn commit_in(wt: &WorktreeGit, file: &str, text: &str) -> String {
        std::fs::write(wt.work_tree.join(file), text).unwrap();
        wt.git(&["add", file]).await.unwrap();
        wt.git(&["commit", "-q", "-m", file]).await.unwrap();
        wt.git(&["rev-parse", "HEAD"]).await.unwrap()
    }

    /// Moves main on with a commit of its own (what another bead's landing does).
    async fn advance_main(repo: &std::path::Path, file: &str, text: &str) -> String {
        std::fs::write(repo.join(file), text).unwrap();
        git(repo, &["add", file]).await.unwrap();
        git(repo, &["commit", "-q", "-m", file]).await.unwrap();
        git(repo, &["rev-parse", "HEAD"]).await.unwrap()
    }

    fn request(wt: &std::path::Path, commit: &str, mode: UpdateMode) -> UpdateToBaseRequest {
        UpdateToBaseRequest {
            branch: "chum/tk-1".into(),
            worktree: wt.display().to_string(),
            commit: commit.into(),
            mode: mode as i32,
            ..UpdateToBaseRequest::default()
        }
    }

    #[tokio::test]
    async fn work_on_a_moved_base_is_rebased_then_lands_only_on_the_tip_it_was_verified_on() {
        let dir = tempfile::tempdir().unwrap();
        init_repo(dir.path()).await;
        let p = project(dir.path(), IntegrationPolicy::Merge);
        let attempt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        let commit = commit_in(&attempt.git, "mine.txt", "mine\n").await;
        // Nothing moved: up to date, nothing to verify again.
        let same = update_to_base(&p, &request(&attempt.path, &commit, UpdateMode::Rebase))
            .await
            .unwrap();
        assert!(same.up_to_date && same.commit == commit, "{same:?}");
        let tip = advance_main(dir.path(), "theirs.txt", "theirs\n").await;
        let moved = update_to_base(&p, &request(&attempt.path, &commit, UpdateMode::Rebase))
            .await
            .unwrap();
        assert!(!moved.up_to_date && moved.base_tip == tip, "{moved:?}");
        assert_eq!(moved.changed_files, ["mine.txt"]);
        // A retry finds the rebase done.
        let again = update_to_base(&p, &request(&attempt.path, &commit, UpdateMode::Rebase))
            .await
            .unwrap();
        assert_eq!(
            (again.commit.as_str(), again.tree.as_str()),
            (moved.commit.as_str(), moved.tree.as_str())
        );
        // The base moves again before landing: refused, the caller verifies again.
        let stale = LandRequest {
            branch: "chum/tk-1".into(),
            commit: moved.commit.clone(),
            base_tip: tip.clone(),
            ..LandRequest::default()
        };
        advance_main(dir.path(), "later.txt", "later\n").await;
        let refused = land(&p, &stale).await.unwrap();
        assert!(refused.base_moved && !refused.landed, "{refused:?}");
        let fresh = update_to_base(&p, &request(&attempt.path, &moved.commit, UpdateMode::Rebase))
            .await
            .unwrap();
        let landing = LandRequest {
            commit: fresh.commit.clone(),
            base_tip: fresh.base_tip.clone(),
            ..stale
        };
        assert!(land(&p, &landing).await.unwrap().landed);
        let main = git(dir.path(), &["rev-parse", "main"]).await.unwrap();
        assert_eq!(main, fresh.commit, "main moved to exactly the verified commit");
        assert!(land(&p, &landing).await.unwrap().landed, "a retry finds it landed");
    }

    #[tokio::test]
    async fn an_update_left_halfway_by_a_killed_worker_is_aborted_and_done_again() {
        let dir = tempfile::tempdir().unwrap();
        init_repo(dir.path()).await;
        let p = project(dir.path(), IntegrationPolicy::Merge);
        for mode in [UpdateMode::Rebase, UpdateMode::Merge] {
            let attempt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
            let commit = commit_in(&attempt.git, "README.md", "mine\n").await;
            let tip = advance_main(dir.path(), "README.md", &format!("theirs {mode:?}\n")).await;
            // The earlier try died in the conflict, before it could abort: HEAD is on the base.
            let started: &[&str] = match mode {
                UpdateMode::Merge => &["merge", "--no-edit", &tip],
                _ => &["rebase", &tip],
            };
            assert!(attempt.git.git(started).await.is_err(), "{mode:?} conflicts");
            let report = update_to_base(&p, &request(&attempt.path, &commit, mode))
                .await
                .unwrap();
            assert!(report.problem.is_empty(), "{mode:?}: {report:?}");
            assert_eq!(report.conflict_files, ["README.md"], "{mode:?}: {report:?}");
            assert_eq!(
                attempt.git.git(&["rev-parse", "HEAD"]).await.unwrap(),
                commit,
                "{mode:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_conflict_is_aborted_and_names_the_files_and_hunks() {
        let dir = tempfile::tempdir().unwrap();
        init_repo(dir.path()).await;
        let p = project(dir.path(), IntegrationPolicy::Merge);
        let attempt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        let commit = commit_in(&attempt.git, "README.md", "mine\n").await;
        advance_main(dir.path(), "README.md", "theirs\n").await;
        for mode in [UpdateMode::Rebase, UpdateMode::Merge] {
            let report = update_to_base(&p, &request(&attempt.path, &commit, mode))
                .await
                .unwrap();
            assert_eq!(report.conflict_files, ["README.md"], "{mode:?}: {report:?}");
            assert!(
                report.conflict_excerpt.contains("mine") && report.conflict_excerpt.contains("theirs"),
                "{report:?}"
            );
            assert_eq!(
                attempt.git.git(&["rev-parse", "HEAD"]).await.unwrap(),
                commit,
                "aborted"
            );
            assert!(attempt.git.git(&["status", "--porcelain"]).await.unwrap().is_empty());
        }
    }
}
