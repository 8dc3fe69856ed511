//! Names derived from a bead: workflow ids, branches, worktree paths. Bead ids end up in all of
//! them, so they are checked before use.

/// Every Shark workflow id starts with this; nothing else CHUM starts does.
const SHARK_PREFIX: &str = "shark-";
/// Every Monte Carlo candidate's workflow id starts with this.
const CANDIDATE_PREFIX: &str = "candidate-";

/// The Shark workflow id of a bead. One running Shark per bead and project.
pub fn shark_workflow_id(project: &str, bead_id: &str) -> String {
    format!("{SHARK_PREFIX}{project}-{bead_id}")
}

/// Whether a workflow id names a Shark run (`shark-<project>-<bead>`).
pub fn is_shark_workflow_id(id: &str) -> bool {
    id.starts_with(SHARK_PREFIX)
}

/// Whether a workflow id names a Monte Carlo candidate (a child of a Shark, not a run of its own).
pub fn is_candidate_workflow_id(id: &str) -> bool {
    id.starts_with(CANDIDATE_PREFIX)
}

/// The Dispatcher workflow id of a project (one per project, started by the worker).
pub fn dispatcher_workflow_id(project: &str) -> String {
    format!("dispatcher-{project}")
}

/// The id of a project's Coordinator (execution slots, leases, the merge queue),
/// `merge-queue-<project>`: the id (and the Temporal type, `MergeQueue`) it was first released
/// under, when it kept only the merge queue; a Shark in flight since then finds it by that name.
pub fn coordinator_workflow_id(project: &str) -> String {
    format!("merge-queue-{project}")
}

/// The id of a project's StrategicGroom schedule (and the prefix of the workflows it starts).
pub fn strategic_schedule_id(project: &str) -> String {
    format!("strategic-groom-{project}")
}

/// The memo key a Shark sets while it waits for people outside CHUM (value "pull_request": its
/// pull request on the forge); the dispatcher leaves such Sharks out of the project's capacity.
pub const WAITING_MEMO: &str = "chum_waiting_for";

/// The branch a bead's work is committed on.
pub fn bead_branch(bead_id: &str) -> String {
    format!("chum/{bead_id}")
}

/// The branch of a Monte Carlo candidate's work (`chum/<bead>-c<k>`), or the bead's branch for 0.
/// A sibling of `chum/<bead>`, not a child: git cannot have both `chum/x` and `chum/x/...`.
pub fn candidate_branch(bead_id: &str, candidate: u32) -> String {
    if candidate == 0 {
        bead_branch(bead_id)
    } else {
        format!("chum/{bead_id}-c{candidate}")
    }
}

/// The workflow id of a Monte Carlo candidate of a Shark run.
pub fn candidate_workflow_id(project: &str, bead_id: &str, run_id: &str, attempt: u32, candidate: u32) -> String {
    format!("{CANDIDATE_PREFIX}{project}-{bead_id}-{run_id}-{attempt}-{candidate}")
}

/// The ContinuousLearner a Shark run starts as it ends (derived from the run, so a replayed or
/// retried start is the same child).
pub fn learner_workflow_id(project: &str, bead_id: &str, run_id: &str) -> String {
    format!("learner-{project}-{bead_id}-{run_id}")
}

/// The Notifier a Shark run starts for one event (`kind`: gate_waiting, gate_expiring, run_ended;
/// `at`: the gate and round, e.g. "plan-2", or "end").
pub fn notify_workflow_id(project: &str, bead_id: &str, run_id: &str, kind: &str, at: &str) -> String {
    format!("notify-{project}-{bead_id}-{run_id}-{kind}-{at}")
}

/// The TacticalGroom a Shark run starts as it ends.
pub fn groom_workflow_id(project: &str, bead_id: &str, run_id: &str) -> String {
    format!("groom-{project}-{bead_id}-{run_id}")
}

/// Bead ids are `<prefix>-<suffix>` in Beads; we accept letters, digits, `-`, `_` and `.`, which
/// keeps them safe in paths, git refs and workflow ids.
pub fn check_bead_id(bead_id: &str) -> Result<(), String> {
    if bead_id.is_empty() {
        return Err("the bead id is empty".to_string());
    }
    if bead_id.len() > 100 {
        return Err(format!("bead id is {} bytes long; the limit is 100", bead_id.len()));
    }
    if let Some(bad) = bead_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "bead id {bead_id:?} contains {bad:?}; ids may only use ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    if bead_id.starts_with(['.', '-']) || bead_id.contains("..") || bead_id.ends_with(".lock") {
        return Err(format!(
            "bead id {bead_id:?} is not usable as a branch or directory name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beads_style_ids_are_accepted() {
        for id in ["tk-1a", "demo-3kt", "proj_x.12"] {
            assert!(check_bead_id(id).is_ok(), "{id}");
        }
        assert_eq!(shark_workflow_id("demo", "tk-1a"), "shark-demo-tk-1a");
        assert_eq!(bead_branch("tk-1a"), "chum/tk-1a");
    }

    #[test]
    fn ids_that_escape_paths_or_break_refs_are_refused() {
        for id in [
            "",
            "../etc",
            "a/b",
            "a b",
            "ünï",
            "-x",
            ".hidden",
            "a..b",
            "x.lock",
            &"a".repeat(101),
        ] {
            assert!(check_bead_id(id).is_err(), "{id:?} should be refused");
        }
    }
}
