//! The project's git repository: the git CLI, one worktree per attempt and integration, and the
//! ranked repo map the agents' prompts carry.

mod gc;
mod git;
mod integrate;
mod land;
mod map;
mod own_change;
mod remote;
mod tags;
mod workspace;
mod worktree;

#[cfg(test)]
pub(crate) use git::testing;

pub use gc::{GcPlan, KeptBranch, apply_gc, plan_bead_cleanup, plan_gc};
pub use git::{GitError, WorktreeEntry, WorktreeGit, common_dir, git, git_ok, resolve, worktrees};
pub use integrate::integrate;
pub use land::{follow_remote_base, landed_by_run};
pub use land::{land, update_to_base};
pub use map::{
    MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, RepoTags, map_for_prompt, ranked_repo_map, repo_tags, tags_cache_dir,
};
pub use own_change::{OwnChange, OwnChangeOutcome, commit_own_change};
pub use remote::{BranchPush, PushOutcome, RemoteError, fetch_base, push_base, push_branch, tracking_ref};
pub use tags::{Lang, extract_tags};
pub use workspace::{RepoProblem, check_repository};
pub use worktree::{
    AttemptChanges, AttemptWorktree, WorktreeOwner, discard_candidates, drift, hold_to_tree, prepare_owned_worktree,
    prepare_plan_worktree, prepare_worktree, record_candidate, remove_worktree, restore, resume_worktree,
    stage_changes, worktree_path,
};
