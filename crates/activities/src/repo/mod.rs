//! The project's git repository: the git CLI, one worktree per attempt and integration, and the
//! repo map for the strategic groomer.

mod git;
mod map;
mod workspace;

#[cfg(test)]
pub(crate) use git::testing;

pub use git::{GitError, WorktreeEntry, WorktreeGit, common_dir, git, git_ok, resolve, worktrees};
pub use map::{Lang, RepoMap, outline, repo_map};
pub use workspace::{
    AttemptChanges, AttemptWorktree, OwnChange, OwnChangeOutcome, RepoProblem, check_repository, commit_own_change,
    discard_candidates, drift, hold_to_tree, integrate, prepare_plan_worktree, prepare_worktree, record_candidate,
    remove_worktree, restore, resume_worktree, stage_changes, worktree_path,
};
