//! The Shark's activities as typed declarations: name, input and output, no implementation.
//!
//! The workflows crate calls these; the activities crate implements them with
//! `#[activity(definition = ...)]`, which makes the compiler check that both sides agree on the
//! types. Keeping the declarations here lets the workflows crate stay free of I/O dependencies.

#![allow(unreachable_pub, clippy::unimplemented)]

use temporalio_common::ActivityError;
use temporalio_macros::activity_definitions;

use crate::proto::{
    ApplyMutationsReport, ApplyMutationsRequest, BriefingReport, BriefingRequest, CrystallizeRequest,
    DiscardCandidatesReport, DiscardCandidatesRequest, DispatchReport, DispatchRequest, DodReport, DodRequest,
    ExecuteReport, ExecuteRequest, GroomProposal, GroomRequest, HostClaim, HostClaimRequest, IntegrateRequest,
    IntegrationReport, LandReport, LandRequest, LearnerInput, LessonsReport, LoadBeadRequest, LoadBeadResult,
    NamedGateRequest, NotifyEvent, NotifyReport, PlanDraft, PlanRequest, PullRequestCheck, PullRequestReport,
    PullRequestRequest, PullRequestStatus, ReviewReport, ReviewRequest, RuleReport, RunOpenReport, RunOpenRequest,
    RunRecord, RunRecorded, SemgrepReport, SemgrepRequest, SlotAnswer, SlotAsk, UpdateBeadRequest, UpdateBeadResult,
    UpdateToBaseReport, UpdateToBaseRequest,
};

pub struct SharkActivities;

#[activity_definitions]
impl SharkActivities {
    /// Reads the bead from the project's backlog and checks it can be worked on.
    #[activity(name = "load_bead")]
    pub fn load_bead(_req: LoadBeadRequest) -> Result<LoadBeadResult, ActivityError> {
        unimplemented!()
    }

    /// Runs the planner agent once and parses its answer.
    #[activity(name = "plan")]
    pub fn plan(_req: PlanRequest) -> Result<PlanDraft, ActivityError> {
        unimplemented!()
    }

    /// Prepares the attempt's worktree and runs the executor agent in it.
    #[activity(name = "execute")]
    pub fn execute(_req: ExecuteRequest) -> Result<ExecuteReport, ActivityError> {
        unimplemented!()
    }

    /// Runs the reviewer agent (a different provider from the executor) on the attempt's diff.
    #[activity(name = "review")]
    pub fn review(_req: ReviewRequest) -> Result<ReviewReport, ActivityError> {
        unimplemented!()
    }

    /// Scans the attempt's changed files with the project's and CHUM's Semgrep rules.
    #[activity(name = "semgrep")]
    pub fn semgrep(_req: SemgrepRequest) -> Result<SemgrepReport, ActivityError> {
        unimplemented!()
    }

    /// Runs the project's definition-of-done commands in the attempt's worktree.
    #[activity(name = "run_dod")]
    pub fn run_dod(_req: DodRequest) -> Result<DodReport, ActivityError> {
        unimplemented!()
    }

    /// Runs one of the project's named gates (its command) in the work's worktree; answered like
    /// a definition of done with one command.
    #[activity(name = "run_named_gate")]
    pub fn run_named_gate(_req: NamedGateRequest) -> Result<DodReport, ActivityError> {
        unimplemented!()
    }

    /// Commits the attempt on the bead's branch (once) and integrates it per the project policy.
    #[activity(name = "integrate")]
    pub fn integrate(_req: IntegrateRequest) -> Result<IntegrationReport, ActivityError> {
        unimplemented!()
    }

    /// Claims the host an attempt runs on (`[worker] several_hosts`): the worker that picks it up
    /// answers with its host and the task queue only it polls; after a lost host, it first looks
    /// for the run's work on the remote's base.
    #[activity(name = "claim_host")]
    pub fn claim_host(_req: HostClaimRequest) -> Result<HostClaim, ActivityError> {
        unimplemented!()
    }

    /// Changes the bead's status and appends a note (once per run and note).
    #[activity(name = "update_bead")]
    pub fn update_bead(_req: UpdateBeadRequest) -> Result<UpdateBeadResult, ActivityError> {
        unimplemented!()
    }

    /// Stores the finished run (outcome, phases, gate results, usage), once per run.
    #[activity(name = "record_run")]
    pub fn record_run(_req: RunRecord) -> Result<RunRecorded, ActivityError> {
        unimplemented!()
    }

    /// Removes the losing Monte Carlo candidates' worktrees and branches (artifacts stay).
    #[activity(name = "discard_candidates")]
    pub fn discard_candidates(_req: DiscardCandidatesRequest) -> Result<DiscardCandidatesReport, ActivityError> {
        unimplemented!()
    }

    /// Under the merge queue's turn: brings the bead's commit up to the base's tip in its worktree
    /// (rebase or merge), or says it is already there, or which files conflict (the update is
    /// aborted, the branch left as it was).
    #[activity(name = "update_to_base")]
    pub fn update_to_base(_req: UpdateToBaseRequest) -> Result<UpdateToBaseReport, ActivityError> {
        unimplemented!()
    }

    /// Under the merge queue's turn: fast-forwards the base branch to the verified commit if the
    /// base is still the tip it was verified on (compare-and-swap, under the repository's lock).
    #[activity(name = "land")]
    pub fn land(_req: LandRequest) -> Result<LandReport, ActivityError> {
        unimplemented!()
    }

    /// The `pr` policy: pushes the bead's gated commit to its branch on the remote (with a lease
    /// on what CHUM pushed there last) and opens the pull request, or updates the one already
    /// open for the branch. Safe to retry: a push already done and a pull request already open
    /// are found, never made twice.
    #[activity(name = "open_pull_request")]
    pub fn open_pull_request(_req: PullRequestRequest) -> Result<PullRequestReport, ActivityError> {
        unimplemented!()
    }

    /// The `pr` policy: what became of the pull request (merged, closed, changes requested on the
    /// commit CHUM pushed last, or still open), read from the forge.
    #[activity(name = "check_pull_request")]
    pub fn check_pull_request(_req: PullRequestCheck) -> Result<PullRequestStatus, ActivityError> {
        unimplemented!()
    }
}

/// The merge queue's activity.
pub struct CoordinatorActivities;

#[activity_definitions]
impl CoordinatorActivities {
    /// Whether a run is still open (asked of Temporal).
    #[activity(name = "run_open")]
    pub fn run_open(_req: RunOpenRequest) -> Result<RunOpenReport, ActivityError> {
        unimplemented!()
    }

    /// A Shark's ask for an execution slot, as the Coordinator's `acquire_now` update (the
    /// Coordinator is started if it is not running): granted now, or in line.
    #[activity(name = "ask_for_slot")]
    pub fn ask_for_slot(_ask: SlotAsk) -> Result<SlotAnswer, ActivityError> {
        unimplemented!()
    }
}

/// Activity failure types the workflow treats as final (never retried).
pub mod error_types {
    /// The configuration cannot serve this request (unknown project, no provider for a role).
    pub const CONFIG: &str = "ConfigError";
    /// An agent program is not installed.
    pub const MISSING_BINARY: &str = "MissingBinary";
    /// The request itself is invalid (bad bead id, repository missing).
    pub const INVALID_INPUT: &str = "InvalidInput";

    /// A spending cap is reached ([budget]); the run stops with outcome `budget_exhausted`.
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";

    pub const NON_RETRYABLE: [&str; 4] = [CONFIG, MISSING_BINARY, INVALID_INPUT, BUDGET_EXHAUSTED];
}

/// The ContinuousLearner's activities.
pub struct LearnerActivities;

#[activity_definitions]
impl LearnerActivities {
    /// Runs the learner agent on a finished run's journal and stores the new lessons.
    #[activity(name = "extract_lessons")]
    pub fn extract_lessons(_input: LearnerInput) -> Result<LessonsReport, ActivityError> {
        unimplemented!()
    }

    /// Asks for a Semgrep rule for a lesson, checks it with real semgrep, and commits it if it
    /// passes every check.
    #[activity(name = "crystallize_rule")]
    pub fn crystallize_rule(_req: CrystallizeRequest) -> Result<RuleReport, ActivityError> {
        unimplemented!()
    }
}

/// The Dispatcher's activity.
pub struct DispatcherActivities;

#[activity_definitions]
impl DispatcherActivities {
    /// Lists the project's ready beads, counts its running Sharks, and claims the beads to start
    /// within the project's concurrency.
    #[activity(name = "dispatch_round")]
    pub fn dispatch_round(_req: DispatchRequest) -> Result<DispatchReport, ActivityError> {
        unimplemented!()
    }
}

/// The groomers' activities (TacticalGroom and StrategicGroom).
pub struct GroomActivities;

#[activity_definitions]
impl GroomActivities {
    /// Shows the groomer agent the backlog (and the finished bead, or the repo map) and parses the
    /// mutations it proposes. Nothing is changed yet.
    #[activity(name = "propose_mutations")]
    pub fn propose_mutations(_req: GroomRequest) -> Result<GroomProposal, ActivityError> {
        unimplemented!()
    }

    /// Validates each proposed mutation against the backlog as it is now and applies the valid ones;
    /// every outcome (applied, or rejected with the reason) is recorded in the store, once.
    #[activity(name = "apply_mutations")]
    pub fn apply_mutations(_req: ApplyMutationsRequest) -> Result<ApplyMutationsReport, ActivityError> {
        unimplemented!()
    }

    /// Writes `.beads/briefing.md` and commits it to the project (once per groom run).
    #[activity(name = "commit_briefing")]
    pub fn commit_briefing(_req: BriefingRequest) -> Result<BriefingReport, ActivityError> {
        unimplemented!()
    }
}

/// The Notifier's activity.
pub struct NotifyActivities;

#[activity_definitions]
impl NotifyActivities {
    /// Sends one event to every `[[notify]]` target that wants it and has not had it yet; fails
    /// (to be retried) while a target cannot be reached.
    #[activity(name = "deliver_notification")]
    pub fn deliver(_event: NotifyEvent) -> Result<NotifyReport, ActivityError> {
        unimplemented!()
    }
}

/// The activity marker types, for `#[activity(definition = ...)]` in the activities crate.
pub mod definitions {
    pub use super::coordinator_activities::*;
    pub use super::dispatcher_activities::*;
    pub use super::groom_activities::*;
    pub use super::learner_activities::*;
    pub use super::notify_activities::*;
    pub use super::shark_activities::*;
}
