//! Integration: the approved work committed once on the bead's branch (a trailer makes a retry
//! find it), then merged into the base branch per the project's policy.

use std::path::PathBuf;

use chum_core::config::{IntegrationPolicy, ProjectConfig};
use chum_core::ids::candidate_branch;
use chum_core::proto::{IntegrateRequest, IntegrationReport};

use super::workspace::*;
use crate::repo::{GitError, WorktreeGit, git, git_ok, resolve, worktrees};

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
    // As `git commit` would clean it (`commit-tree` takes the text as it is): no trailing
    // whitespace, no runs of blank lines.
    let mut clean = String::new();
    for line in msg.lines().map(str::trim_end) {
        if !(line.is_empty() && (clean.is_empty() || clean.ends_with("\n\n"))) {
            clean.push_str(line);
            clean.push('\n');
        }
    }
    clean
}

pub async fn integrate(project: &ProjectConfig, req: &IntegrateRequest) -> Result<IntegrationReport, RepoProblem> {
    check_repository(project).await?;
    let run = req.run.clone().unwrap_or_default();
    let repo = &project.repo;
    let worktree = PathBuf::from(&req.worktree);
    let mut report = IntegrationReport {
        base_branch: project.landing_branch(),
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
        let message = commit_message(req, &key);
        if req.tree.is_empty() {
            // A run from before the gates recorded their tree: the index as the attempt's
            // execution staged it (`stage_changes`).
            wt.git(&["commit", "-q", "--allow-empty", "--no-verify", "-m", &message])
                .await?;
            wt.git(&["rev-parse", "HEAD"]).await?
        } else {
            match commit_verified_tree(wt, &req.tree, &message).await? {
                Ok(commit) => commit,
                Err(problem) => {
                    report.problem = problem;
                    return Ok(report);
                }
            }
        }
    };
    report.commit = commit.clone();
    // Held for the merge queue (which brings it up to the base and lands it), kept as partial
    // work, or left on its branch by policy.
    if req.hold || req.partial || project.integration == IntegrationPolicy::Branch {
        return Ok(report);
    }
    if matches!(
        project.integration,
        IntegrationPolicy::Push | IntegrationPolicy::PullRequest
    ) {
        // Only the merge queue pushes, and only a pull request's merge lands a `pr` bead (a run
        // started before either cannot have such a project).
        report.problem = format!(
            "the `{}` policy does not merge locally; the work is on branch {branch}",
            project.integration.as_str()
        );
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

/// Commits `tree`, the tree every gate passed, on the worktree's branch: the merged tree is the
/// reviewed tree is the tested tree, whatever the index holds now. The commit is made from the
/// tree itself (`commit-tree`), not from the index: an earlier try of a step that the server
/// timed out while it still ran (a starved worker's missed heartbeats) may have remade the
/// worktree under the run, and its index then holds the base, not the work. The worktree is then
/// set to the commit (in the usual case it already is), for a merge of the moved base into it.
/// `Err(problem)` when the tree cannot be committed (not in the repository): nothing was.
async fn commit_verified_tree(
    wt: &WorktreeGit,
    tree: &str,
    message: &str,
) -> Result<Result<String, String>, RepoProblem> {
    let commit = match wt.git(&["commit-tree", tree, "-p", "HEAD", "-m", message]).await {
        Ok(commit) => commit,
        Err(GitError::Failed { stderr, .. }) => {
            return Ok(Err(format!(
                "the tree the gates passed ({}) cannot be committed ({}); nothing was committed",
                short_hash(tree),
                stderr.trim()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    // Compare-and-swap: HEAD (the branch) moves only from the parent the commit names.
    let parent = format!("{commit}^");
    wt.git(&["update-ref", "-m", "chum: integrate", "HEAD", &commit, &parent])
        .await?;
    let staged = wt.git(&["write-tree"]).await?;
    if staged != tree {
        tracing::warn!(
            staged = %short_hash(&staged),
            verified = %short_hash(tree),
            "the worktree's index was not the tree the gates passed (an earlier try of a step ran beside this run?); committed the verified tree"
        );
        wt.git(&["reset", "-q", "--hard", "HEAD"]).await?;
    }
    Ok(Ok(commit))
}

/// Fast-forwards the base branch from `from` to `tip`: through its checkout when it is checked
/// out (so the checkout follows), otherwise by moving the ref with a compare-and-swap. The inner
/// error says why it could not (local changes in the checkout).
pub(super) async fn fast_forward_base(
    project: &ProjectConfig,
    tip: &str,
    from: &str,
) -> Result<Result<(), String>, RepoProblem> {
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
