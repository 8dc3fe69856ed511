//! What CHUM leaves in a project, and `chum gc`, which takes away what no run needs any more:
//! the worktrees under `.chum/` (attempts and planning checkouts), the `chum/*` branches already
//! merged into the base branch, and the `refs/chum/candidates/*` refs that kept reviewed trees
//! alive. Work that is not on the base branch (an escalated run's WIP commit) is kept and named;
//! an uncommitted `.beads/issues.jsonl` (CHUM writes bead updates there and never commits them)
//! is reported, not touched.
//!
//! Nothing of a bead whose Shark is running is touched: the caller passes the running beads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chum_core::config::ProjectConfig;

use super::workspace::{RepoLock, RepoProblem};
use super::worktree::remove_worktree_locked;
use crate::repo::{git, git_ok};

/// What `chum gc` would do (or did) in one project.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GcPlan {
    pub project: String,
    /// Worktree directories under `.chum/worktrees/` and `.chum/plans/` of beads not running.
    pub worktrees: Vec<PathBuf>,
    /// `chum/*` branches whose every commit is on the base branch.
    pub merged_branches: Vec<String>,
    /// `chum/*` branches with commits the base branch does not have, kept, each with what to do.
    pub kept_branches: Vec<KeptBranch>,
    /// `refs/chum/candidates/<bead>/...` of beads not running.
    pub candidate_refs: Vec<String>,
    /// Beads of this project with a running Shark, left alone.
    pub running: Vec<String>,
    /// The project's beads file has changes git has not committed.
    pub beads_file_uncommitted: bool,
    pub beads_file: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeptBranch {
    pub branch: String,
    pub why: String,
}

impl GcPlan {
    pub fn is_empty(&self) -> bool {
        self.worktrees.is_empty() && self.merged_branches.is_empty() && self.candidate_refs.is_empty()
    }
}

/// Whether a `chum/...` branch is bead `bead`'s (`chum/<bead>`) or one of its Monte Carlo
/// candidates' (`chum/<bead>-c<k>`). Compared with the bead rather than parsed, so a bead id that
/// itself ends in `-c<k>` is never mistaken for a candidate of another bead.
fn branch_of(branch: &str, bead: &str) -> bool {
    let Some(name) = branch.strip_prefix("chum/") else {
        return false;
    };
    name == bead
        || name
            .strip_prefix(bead)
            .and_then(|rest| rest.strip_prefix("-c"))
            .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
}

/// Which beads a plan covers.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// Every bead but those whose Sharks are running (`chum gc`).
    AllBut(&'a BTreeSet<String>),
    /// One bead whose run has just ended (the Shark's last step).
    Only(&'a str),
}

impl Scope<'_> {
    fn covers(self, bead: &str) -> bool {
        match self {
            Scope::AllBut(running) => !running.contains(bead),
            Scope::Only(only) => only == bead,
        }
    }

    fn covers_branch(self, branch: &str) -> bool {
        match self {
            Scope::AllBut(running) => !running.iter().any(|bead| branch_of(branch, bead)),
            Scope::Only(bead) => branch_of(branch, bead),
        }
    }

    /// The `for-each-ref` patterns under `prefix` (`refs/heads/chum/`) that can hold what the
    /// scope covers; the results are filtered again with `covers_branch`.
    fn ref_patterns(self, prefix: &str) -> Vec<String> {
        match self {
            Scope::AllBut(_) => vec![prefix.to_string()],
            Scope::Only(bead) => vec![format!("{prefix}{bead}"), format!("{prefix}{bead}-c*")],
        }
    }
}

/// The checkout directories under `dir` (`.chum/worktrees` or `.chum/plans`, one directory per
/// bead) of the beads the scope covers. `.chum/plans/rule-<id>` is the learner's checkout while
/// it checks a rule (it removes it itself), so it is never taken.
fn idle_checkouts(dir: &Path, scope: Scope<'_>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(beads) = std::fs::read_dir(dir) else { return out };
    let plans = dir.ends_with("plans");
    for bead in beads.flatten() {
        let name = bead.file_name().to_string_lossy().into_owned();
        if !scope.covers(&name) || !bead.path().is_dir() || (plans && name.starts_with("rule-")) {
            continue;
        }
        if let Ok(checkouts) = std::fs::read_dir(bead.path()) {
            out.extend(checkouts.flatten().map(|c| c.path()).filter(|p| p.is_dir()));
        }
    }
    out.sort();
    out
}

/// What can go, given the beads whose Sharks are running (`chum gc`).
pub async fn plan_gc(project: &ProjectConfig, running: &BTreeSet<String>) -> Result<GcPlan, RepoProblem> {
    let mut plan = plan_scope(project, Scope::AllBut(running)).await?;
    plan.running = running.iter().cloned().collect();
    // A backlog kept outside the checkout (several hosts' shared file) is nothing git tracks.
    if project.beads_file.is_relative() {
        let status = git(&project.repo, &["status", "--porcelain", "--", &plan.beads_file]).await?;
        plan.beads_file_uncommitted = !status.trim().is_empty();
    }
    Ok(plan)
}

/// What one bead's finished run left: its worktrees, its merged branches (its own and its
/// candidates') and its candidate refs. The Shark's last step takes them away; it looks at that
/// bead's branches and refs only, not the whole repository's.
pub async fn plan_bead_cleanup(project: &ProjectConfig, bead_id: &str) -> Result<GcPlan, RepoProblem> {
    plan_scope(project, Scope::Only(bead_id)).await
}

async fn plan_scope(project: &ProjectConfig, scope: Scope<'_>) -> Result<GcPlan, RepoProblem> {
    let repo = &project.repo;
    let chum_dir = repo.join(".chum");
    let mut plan = GcPlan {
        project: project.name.clone(),
        beads_file: project.beads_file.display().to_string(),
        ..GcPlan::default()
    };
    plan.worktrees = idle_checkouts(&chum_dir.join("worktrees"), scope);
    plan.worktrees.extend(idle_checkouts(&chum_dir.join("plans"), scope));

    let base = format!("refs/heads/{}", project.base_branch);
    let mut list = vec!["for-each-ref".to_string(), "--format=%(refname:short)".to_string()];
    list.extend(scope.ref_patterns("refs/heads/chum/"));
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let branches = git(repo, &list).await?;
    for branch in branches.lines().map(str::trim).filter(|b| !b.is_empty()) {
        if !scope.covers_branch(branch) {
            continue;
        }
        let merged = git_ok(
            repo,
            &["merge-base", "--is-ancestor", &format!("refs/heads/{branch}"), &base],
        )
        .await?
        .is_some();
        if merged {
            plan.merged_branches.push(branch.to_string());
        } else {
            plan.kept_branches.push(KeptBranch {
                branch: branch.to_string(),
                why: format!(
                    "has commits {} does not have (an escalated run's work?); `git log {} ^{}` shows them, \
                     `git branch -D {branch}` drops them",
                    project.base_branch, branch, project.base_branch
                ),
            });
        }
    }

    let prefix = match scope {
        Scope::AllBut(_) => "refs/chum/candidates/".to_string(),
        Scope::Only(bead) => format!("refs/chum/candidates/{bead}/"),
    };
    let refs = git(repo, &["for-each-ref", "--format=%(refname)", &prefix]).await?;
    for name in refs.lines().map(str::trim).filter(|r| !r.is_empty()) {
        let bead = name
            .strip_prefix("refs/chum/candidates/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        if scope.covers(bead) {
            plan.candidate_refs.push(name.to_string());
        }
    }
    Ok(plan)
}

/// Carries out a plan from [`plan_gc`] under the repository's worktree lock. A branch is deleted
/// only if it is still merged (the check is repeated: the plan may be old).
pub async fn apply_gc(project: &ProjectConfig, plan: &GcPlan) -> Result<(), RepoProblem> {
    let repo = &project.repo;
    let _lock = RepoLock::worktrees(repo).await?;
    for path in &plan.worktrees {
        remove_worktree_locked(repo, path).await?;
    }
    // Bead directories left empty go too.
    for dir in ["worktrees", "plans"] {
        if let Ok(beads) = std::fs::read_dir(repo.join(".chum").join(dir)) {
            for bead in beads.flatten() {
                let _ = std::fs::remove_dir(bead.path());
            }
        }
    }
    let base = format!("refs/heads/{}", project.base_branch);
    for branch in &plan.merged_branches {
        let full = format!("refs/heads/{branch}");
        if git_ok(repo, &["merge-base", "--is-ancestor", &full, &base])
            .await?
            .is_some()
        {
            git(repo, &["update-ref", "-d", &full]).await?;
        }
    }
    for name in &plan.candidate_refs {
        git(repo, &["update-ref", "-d", name]).await?;
    }
    git(repo, &["worktree", "prune"]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testing::{init_repo, project};
    use crate::repo::{prepare_worktree, resolve};
    use chum_core::config::IntegrationPolicy;

    #[tokio::test]
    async fn a_finished_beads_leftovers_go_and_nobody_elses() {
        let dir = tempfile::tempdir().unwrap();
        init_repo(dir.path()).await;
        let p = project(dir.path(), IntegrationPolicy::Merge);
        let one = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        let two = prepare_worktree(&p, "tk-2", 1, 0).await.unwrap();

        let plan = plan_bead_cleanup(&p, "tk-1").await.unwrap();
        assert_eq!(plan.worktrees, std::slice::from_ref(&one.path));
        assert_eq!(
            plan.merged_branches,
            ["chum/tk-1"],
            "a branch with nothing new is merged"
        );
        apply_gc(&p, &plan).await.unwrap();
        assert!(!one.path.exists() && two.path.is_dir());
        assert!(resolve(dir.path(), "refs/heads/chum/tk-1").await.unwrap().is_none());
        assert!(resolve(dir.path(), "refs/heads/chum/tk-2").await.unwrap().is_some());

        // tk-2 is running: a gc leaves it alone.
        let running: BTreeSet<String> = ["tk-2".to_string()].into();
        let plan = plan_gc(&p, &running).await.unwrap();
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.running, ["tk-2"]);
    }

    #[test]
    fn a_beads_branches_are_its_own_and_its_candidates() {
        assert!(branch_of("chum/tk-1", "tk-1"));
        assert!(branch_of("chum/tk-1-c3", "tk-1"));
        assert!(branch_of("chum/x-c2", "x-c2"));
        assert!(!branch_of("chum/tk-10", "tk-1"), "another bead");
        assert!(!branch_of("chum/tk-1-cx", "tk-1"), "not a candidate suffix");
        assert!(
            !branch_of("chum/x", "x-c2"),
            "x-c2 is a bead of its own, not x's candidate"
        );
        assert!(!branch_of("main", "main"));
        let running: BTreeSet<String> = ["tk-1".to_string(), "x-c2".to_string()].into();
        let gc = Scope::AllBut(&running);
        assert!(!gc.covers_branch("chum/tk-1-c3") && !gc.covers_branch("chum/x-c2"));
        assert!(gc.covers_branch("chum/tk-10") && gc.covers_branch("chum/x"));
    }

    #[tokio::test]
    async fn a_beads_cleanup_takes_its_candidates_and_not_a_bead_whose_id_starts_like_it() {
        let dir = tempfile::tempdir().unwrap();
        init_repo(dir.path()).await;
        let p = project(dir.path(), IntegrationPolicy::Merge);
        prepare_worktree(&p, "tk-1", 1, 2).await.unwrap();
        prepare_worktree(&p, "tk-10", 1, 0).await.unwrap();
        let plan = plan_bead_cleanup(&p, "tk-1").await.unwrap();
        assert_eq!(plan.merged_branches, ["chum/tk-1-c2"], "{plan:?}");
        assert_eq!(plan.worktrees.len(), 1, "{plan:?}");
        assert!(plan.worktrees[0].ends_with("tk-1/1-c2"), "{plan:?}");
    }
}
