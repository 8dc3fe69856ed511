//! Replay tests: every recorded Shark, learner, dispatcher and groom path must replay against the current workflow code.
//!
//! The histories in `tests/histories/` were recorded from real runs by
//! `scripts/record-histories.sh`. A change to the Shark that would break runs already in flight
//! (a different activity, order or timer) fails here. Re-record only on purpose, with the change.

use std::path::PathBuf;
use std::time::Duration;

use chum_core::activity_contract::SharkActivities;
use chum_core::proto::{PlanRequest, SharkInput, SharkResult};
use chum_workflows::{
    DispatcherWorkflow, LearnerWorkflow, SharkWorkflow, StrategicGroomWorkflow, TacticalGroomWorkflow,
};
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayFailure, WorkflowReplayer, WorkflowReplayerOptions};
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

/// Every Shark and ContinuousLearner path; each must have a recorded history.
const PATHS: [&str; 48] = [
    "approved_pass",
    // Recorded before a finished Shark recorded its run for the metrics (patch "record-run").
    "approved_pass_before_record_run",
    "reject_replan_approve",
    "gate_timeout",
    "gate_rejected",
    "dod_fail_retry_pass",
    "escalated",
    "bad_plan_replan",
    "plan_failed",
    "bad_signals_then_approve",
    "hang_then_pass",
    "agent_missing",
    "bead_unavailable",
    "cancelled_while_executing",
    "integration_failed",
    "review_swap_redo_approve",
    "review_unavailable",
    "review_fail_open",
    "handoffs_exhausted",
    "semgrep_redo",
    "semgrep_quarantine",
    "learned_from_dod_failure",
    "learned_rule_stops_mistake",
    "learner_rule_accepted",
    "budget_exhausted",
    "budget_exhausted_while_planning",
    // Monte Carlo: the parent with select "first" (a winner, a failure, a cancelled hang), with
    // select "best", and one candidate child run.
    "fanout_first",
    "fanout_best",
    "fanout_candidate",
    "dispatcher_rounds",
    // Recorded before dispatchers took their interval and limits from each round: runs started
    // then must go on after the upgrade.
    "dispatcher_rounds_fixed_settings",
    "shark_then_groom",
    "tactical_groom",
    "strategic_groom",
    // The fault suite: agents that flood, delete their worktree, exit non-zero; a full disk, then
    // space back, then a read-only artifact store.
    "agent_faults",
    "disk_full",
    "after_disk_full",
    "read_only_artifacts",
    // The gates cannot be fooled: the real `temporal` CLI at the gate (a repeated key, a null
    // name, a misspelled signal, then an approval), a pre-existing Semgrep finding left out, a
    // reviewer and a DoD whose writes are discarded,
    // and the agent's world: a rewritten .git pointer, a memory hog killed at its limit.
    "cli_signals",
    "semgrep_baseline",
    "tree_integrity",
    "sandbox_git_tamper",
    "sandbox_memory_hog",
    // A ContinuousLearner whose id was taken: the start fails, the run goes on and says so.
    "learner_did_not_start",
    // Recorded before quick bookkeeping became local activities (patch "local-bookkeeping"):
    // a plain pass, Monte Carlo candidates, a Semgrep catch, an integration that failed.
    "approved_pass_before_local_bookkeeping",
    "fanout_first_before_local_bookkeeping",
    "learned_rule_stops_mistake_before_local_bookkeeping",
    "integration_failed_before_local_bookkeeping",
];

fn history_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/histories")
        .join(format!("{name}.json"))
}

fn load(name: &str) -> WorkflowHistory {
    let path = history_path(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; record it with scripts/record-histories.sh", path.display()));
    WorkflowHistory::from_json(&bytes).unwrap_or_else(|e| panic!("{}: not a history: {e}", path.display()))
}

#[tokio::test]
async fn every_recorded_shark_path_replays_deterministically() {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<SharkWorkflow>()
        .expect("registers")
        .register_workflow::<LearnerWorkflow>()
        .expect("registers")
        .register_workflow::<DispatcherWorkflow>()
        .expect("registers")
        .register_workflow::<TacticalGroomWorkflow>()
        .expect("registers")
        .register_workflow::<StrategicGroomWorkflow>()
        .expect("registers")
        .build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    let results = replayer
        .replay_workflows(PATHS.iter().map(|n| load(n)))
        .await
        .expect("replay runs");
    assert_eq!(results.len(), PATHS.len());
    for (name, result) in PATHS.iter().zip(&results) {
        assert!(
            result.history.events().len() > 5,
            "{name}: history too short to mean anything"
        );
        assert!(result.replay_failure.is_none(), "{name}: {:?}", result.replay_failure);
    }
}

#[test]
fn no_history_is_left_without_a_path() {
    let dir = history_path("x").parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".json")
            .to_string();
        assert!(
            PATHS.contains(&name.as_str()),
            "history {name} is not replayed; add it to PATHS"
        );
    }
}

/// A Shark that changed its first step: it plans before loading the bead. Registered under the
/// same workflow type, it must be reported as nondeterministic against a recorded run.
#[workflow]
#[derive(Default)]
struct ReorderedShark;

#[workflow_methods]
impl ReorderedShark {
    #[run(name = "Shark")]
    async fn run(ctx: &mut WorkflowContext<Self>, _input: SharkInput) -> WorkflowResult<SharkResult> {
        ctx.execute_activity(
            SharkActivities::plan,
            PlanRequest::default(),
            ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
        )
        .await?;
        Ok(SharkResult::default())
    }
}

#[tokio::test]
async fn a_changed_workflow_is_reported_as_nondeterministic() {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<ReorderedShark>()
        .expect("registers")
        .build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    let results = replayer
        .replay_workflows([load("approved_pass")])
        .await
        .expect("replay runs");
    match &results[0].replay_failure {
        Some(WorkflowReplayFailure::Nondeterminism { message }) => {
            assert!(message.contains("Nondeterminism"), "{message}");
        }
        other => panic!("expected a nondeterminism failure, got {other:?}"),
    }
}
