//! The Shark: one durable workflow per bead.
//!
//! ```text
//! LOAD the bead and the project's gates
//!   -> PLAN -> validate -> human GATE (`approve` update or signal | timeout)  gate.rs
//!   -> attempts (fanout > 1: candidates as child Sharks, one winner)         fanout.rs
//!        EXECUTE in a worktree -> REVIEW -> SEMGREP -> DOD, in the           attempt.rs
//!        project's order; a rejection or findings redo within the attempt,   checks.rs
//!        a failed DoD ends it and the next starts with the real output
//!   -> INTEGRATE the gated tree (commit once, merge per policy) -> close     ending.rs
//!   -> LEARN and GROOM as child workflows that outlive the run               ending.rs
//! ```
//!
//! `status.rs` keeps the state the `status` query shows (phases, gate results, usage) and builds
//! the result from it; `options.rs` holds every activity option and retry policy.
//!
//! Everything here is deterministic: all I/O happens in the activities declared in
//! `chum_core::activity_contract`. The status query reads only workflow state. Every path has a
//! recorded history in `tests/histories/current/`; a change to which activities run, or in what order,
//! goes behind a `ctx.patched(..)` marker (docs/ARCHITECTURE.md lists them).

mod attempt;
mod checks;
mod ending;
mod fanout;
mod gate;
mod hosts;
mod land;
mod named_gates;
mod notify;
mod options;
mod pull_request;
mod result_gate;
mod slots;
mod status;

use std::error::Error;

use chum_core::config::Limits;
use chum_core::gate::{parse_gate_payload, signal_excerpt, signal_json};
use chum_core::ids::bead_branch;
use chum_core::proto::{
    Bead, BeadStatus, GateDecision, GateName, GateReceipt, LeaseMode, LoadBeadRequest, Outcome, Phase, Plan,
    RejectedSignal, ReviewVerdict, RunRecord, RunRef, SelectMode, SharkInput, SharkResult, SharkStatus, UpdateMode,
};
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};

use attempt::{AttemptEnd, AttemptSpec};
use checks::GatesVerdict;
use ending::{Partial, is_budget_exhausted};
use gate::GateOutcome;
pub use gate::{approve_payload, json_payload};
use hosts::HostPin;
use land::Landing;
use result_gate::ResultDecision;
use slots::SlotProblem;

use chum_core::activity_contract::SharkActivities;

/// Refused signals kept for the status query; older ones are dropped.
const MAX_REJECTED_SIGNALS: usize = 20;

#[workflow]
#[derive(Default)]
pub struct SharkWorkflow {
    status: SharkStatus,
    /// Quick bookkeeping runs as local activities (runs started after patch "local-bookkeeping").
    local_bookkeeping: bool,
    /// The diff artifact of every execution, for the learner.
    diff_artifacts: Vec<String>,
    /// A person's decision on the plan currently at the gate, taken by the run loop.
    decision: Option<GateDecision>,
    /// The merge queue gave this run its turn at the base branch.
    merge_turn: bool,
    /// This run asked the Coordinator for an execution slot, and got it.
    slot_asked: bool,
    slot_granted: bool,
    /// The Coordinator's time of a slot it granted by update (0: none); `now_ms` never reads
    /// earlier than it.
    clock_floor_ms: i64,
    /// The review verdict the work last passed (its criteria and evidence go on a pull request).
    passed_verdict: Option<ReviewVerdict>,
    /// What this run pushed to its branch on the remote last (the lease of the next push).
    pushed_head: String,
    /// The forge told the worker something happened to this run's pull request (a webhook): look.
    forge_event: bool,
    /// Tell the project's `[[notify]]` targets about gates and the end (runs started after patch
    /// "notify", in projects with targets).
    notify: bool,
    /// Several hosts: where this attempt's host-bound steps run (none: wherever the task queue
    /// sends them, as with one host).
    host: Option<hosts::HostBinding>,
}

/// One Shark run as its steps see it: the workflow context, which run, its limits. In the style of
/// the SDK's saga sample, steps are methods on this instead of functions of nine arguments.
struct Shark<'a> {
    ctx: &'a WorkflowContext<SharkWorkflow>,
    run: RunRef,
    limits: Limits,
}

/// The bead and what the project says about running it (recorded by `load_bead`, so a replay
/// sees what the run saw).
struct Setup {
    bead: Bead,
    gates: Vec<GateName>,
    /// The project's own gates, one per `GateName::Named` entry of `gates`, in order.
    named_gates: Vec<chum_core::proto::NamedGate>,
    fail_open: bool,
    /// Start the ContinuousLearner / the TacticalGroom when the run ends.
    learn: bool,
    groom: bool,
    /// Monte Carlo candidates per attempt (1: none) and whether the best one wins, not the first.
    fanout: u32,
    select_best: bool,
    /// Land through the project's merge queue, bringing the work up to the base by `update`.
    merge_queue: bool,
    /// Propose the work as a pull request on the project's forge and wait for a person to merge it
    /// (`poll`: how often to ask the forge at first; `wait`: for how long at most).
    pull_request: Option<pull_request::Waiting>,
    update: UpdateMode,
    /// Execution slots of the project (0: none asked, a run from before them) and how its planned
    /// files are leased.
    concurrency: u32,
    leases: LeaseMode,
    /// Review again under the merge turn when the base had moved (Semgrep and the DoD always).
    rereview_on_update: bool,
    /// A person approves the result before it is integrated.
    approve_result: bool,
    /// Several workers on several hosts: each attempt claims one, and its host-bound steps wait
    /// at most `host_wait` for it.
    several_hosts: bool,
    host_wait: std::time::Duration,
}

/// The plan a person approved, and who.
struct Approved {
    plan: Plan,
    by: String,
}

#[workflow_methods]
impl SharkWorkflow {
    #[run(name = "Shark")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: SharkInput) -> WorkflowResult<SharkResult> {
        // Runs started before this patch replay with the regular activities they recorded.
        let local = ctx.patched("local-bookkeeping");
        ctx.state_mut(|s| s.local_bookkeeping = local);
        // A Monte Carlo candidate of a parent Shark: one attempt of an approved plan, nothing else.
        if input.candidate.is_some() {
            return fanout::run_candidate(ctx, input).await;
        }
        let outcome = run_shark(&Shark::new(ctx, &input)).await;
        // The run has ended, whatever its outcome: its execution slot and leases are free.
        Shark::new(ctx, &input).release_slot().await;
        let result = outcome?;
        // Runs started before this step existed replay without it (the patch marker says which).
        if ctx.patched("record-run") {
            let shark = Shark::new(ctx, &input);
            let record = RunRecord {
                run: Some(shark.run.clone()),
                result: Some(result.clone()),
            };
            // The record is for metrics and reports; the run's outcome never depends on it.
            let _ = shark.quick(SharkActivities::record_run, record).await;
        }
        Shark::new(ctx, &input).notify_end(&result).await;
        Ok(result)
    }

    /// The human gate as a signal (for the Temporal UI and CLI). The payloads are taken raw and
    /// validated here: a malformed payload (or none at all) is recorded (see `status`) and never
    /// approves. A typed handler would fail to decode it on every workflow task and wedge the run.
    #[signal(name = "approve")]
    pub fn approve(&mut self, _ctx: &mut SyncWorkflowContext<Self>, raw: RawValue) {
        match self.check_decision(&raw) {
            Ok(decision) => self.decision = Some(decision),
            Err(reason) => {
                let rejected = &mut self.status.rejected_signals;
                if rejected.len() >= MAX_REJECTED_SIGNALS {
                    rejected.remove(0);
                }
                rejected.push(RejectedSignal {
                    payload_excerpt: signal_excerpt(&raw.payloads),
                    reason,
                });
            }
        }
    }

    /// Refuses a malformed or out-of-gate decision before anything is written to history: the
    /// caller of the `approve` update gets the reason at once.
    #[update_validator(decide)]
    fn validate_decide(&self, _ctx: &WorkflowContextView, raw: &RawValue) -> Result<(), Box<dyn Error + Send + Sync>> {
        if !self.status.approve_update {
            return Err("this run started before CHUM took decisions as an update; send the `approve` signal".into());
        }
        self.check_decision(raw).map(|_| ()).map_err(Into::into)
    }

    /// The human gate as an update (`chum approve`, the API): the same decision as the signal,
    /// answered with the round it decided once the run has taken it.
    #[update(name = "approve")]
    pub fn decide(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        raw: RawValue,
    ) -> Result<GateReceipt, Box<dyn Error + Send + Sync>> {
        // The validator ran before this (it is skipped on replay, where the same state gives the
        // same answer).
        let decision = self.check_decision(&raw)?;
        // The plan's round, or the attempt whose result is at the gate.
        let round = if self.status.phase() == Phase::AwaitingResultApproval {
            self.status.attempt
        } else {
            self.status.plan_round
        };
        let receipt = GateReceipt {
            round,
            approved: decision.approved,
        };
        self.decision = Some(decision);
        Ok(receipt)
    }

    /// The merge queue's turn at the base branch (from `merge-queue-<project>`). The payload is
    /// ignored; a turn this run did not ask for changes only when it lands, never what.
    #[signal(name = "merge_turn")]
    pub fn merge_turn(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _raw: RawValue) {
        self.merge_turn = true;
    }

    /// An execution slot (and the leases on the plan's files), from `merge-queue-<project>`. The
    /// payload is ignored.
    #[signal(name = "slot_granted")]
    pub fn slot_granted(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _raw: RawValue) {
        self.slot_granted = true;
    }

    /// Something happened to this run's pull request on the forge (from the API's webhook route).
    /// The payload is ignored: the run reads what happened from the forge itself, so a forged
    /// signal changes when it looks, never what it finds.
    #[signal(name = "forge_event")]
    pub fn forge_event(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _raw: RawValue) {
        self.forge_event = true;
    }

    /// Phase, plan, attempt, gate results so far, refused signals, outcome.
    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> SharkStatus {
        self.status.clone()
    }
}

impl SharkWorkflow {
    /// A decision the gate can take now, or why not: a well-formed payload, a plan waiting, no
    /// decision on it yet.
    fn check_decision(&self, raw: &RawValue) -> Result<GateDecision, String> {
        let decision = signal_json(&raw.payloads).and_then(parse_gate_payload)?;
        if !matches!(
            self.status.phase(),
            Phase::AwaitingApproval | Phase::AwaitingResultApproval
        ) {
            return Err(format!(
                "no plan and no result is waiting for approval (phase: {}); nothing was approved",
                self.status.phase()
            ));
        }
        if self.decision.is_some() {
            return Err("a decision on this was already received; this one was ignored".to_string());
        }
        Ok(decision)
    }
}

impl<'a> Shark<'a> {
    fn new(ctx: &'a WorkflowContext<SharkWorkflow>, input: &SharkInput) -> Self {
        Shark {
            ctx,
            run: RunRef {
                project: input.project.clone(),
                bead_id: input.bead_id.clone(),
                workflow_id: ctx.workflow_id().to_string(),
                run_id: ctx.run_id().to_string(),
            },
            limits: Limits::from_proto(input.limits.as_ref()),
        }
    }
}

/// The Shark's pipeline, from loading the bead to its outcome.
async fn run_shark(shark: &Shark<'_>) -> WorkflowResult<SharkResult> {
    shark.begin(bead_branch(&shark.run.bead_id));

    // LOAD
    let setup = match shark.load().await {
        Ok(Ok(setup)) => setup,
        Ok(Err(problem)) => return Ok(shark.finish(Outcome::BeadUnavailable, problem, None)),
        Err(err) => return shark.fail(err).await,
    };

    // PLAN -> GATE: nothing touches the code until a person approves.
    let approved = match shark.plan_until_approved(&setup.bead).await {
        Ok(GateOutcome::Approved(approved)) => approved,
        Ok(GateOutcome::Ended { outcome, reason }) => {
            let note = format!("CHUM run {}: {outcome}: {reason}", shark.run.workflow_id);
            let _ = shark.update_bead(BeadStatus::Blocked, &note, "").await;
            return Ok(shark.conclude(&setup, outcome, reason, None).await);
        }
        Err(err) if is_budget_exhausted(&err) => return Ok(shark.stop_for_budget(&setup, &err, None).await),
        Err(err) => return shark.fail(err).await,
    };

    // SLOT: an execution slot, and leases on the planned files (runs from before them go on).
    if setup.concurrency > 0 && shark.ctx.patched("execution-slots") {
        match shark.acquire_slot(&setup, &approved.plan).await {
            Ok(()) => {}
            Err(SlotProblem::Cancelled) => return shark.end_cancelled().await,
            Err(SlotProblem::Unreachable(why)) => {
                let note = format!("CHUM run {}: {why}", shark.run.workflow_id);
                let _ = shark.update_bead(BeadStatus::Blocked, &note, "").await;
                return Ok(shark.conclude(&setup, Outcome::Failed, why, None).await);
            }
        }
    }

    // ATTEMPTS: EXECUTE -> gates in order; a review rejection or Semgrep findings send the work
    // back within the attempt (a rejection swaps executor and reviewer), a failed DoD ends it.
    // With fanout, each attempt runs its candidates as child Sharks and the winner goes on.
    let mut feedback = String::new();
    let mut last_worktree = String::new();
    // Several hosts: an attempt whose host stopped answering starts over on another, and does not
    // count against the attempts.
    let mut lost_host: Option<String> = None;
    let mut host_moves = 0;
    let mut attempt = 0;
    while attempt < shark.limits.max_attempts + host_moves {
        attempt += 1;
        // HOST: with several hosts, the worker that claims the attempt runs its host-bound steps.
        match shark.pin_host(&setup, lost_host.take()).await {
            Ok(HostPin::Pinned) => {}
            Ok(HostPin::Landed(landed)) => return shark.close_integrated(&setup, &approved, &landed, attempt).await,
            Err(err) => return shark.fail(err).await,
        }
        let spec = AttemptSpec {
            setup: &setup,
            plan: &approved.plan,
            attempt,
            candidate: 0,
        };
        let end = if setup.fanout > 1 {
            shark.run_candidates(&spec, &mut feedback, &mut last_worktree).await
        } else {
            shark.run_attempt(&spec, &mut feedback, &mut last_worktree).await
        };
        match end {
            // INTEGRATE -> close the bead -> learn, groom
            AttemptEnd::Passed { report, candidate } => {
                // BEFORE INTEGRATION: the project's `before_integration` gates, on this tree (before a
                // person is asked to approve the result, so they see work that passed everything).
                match shark
                    .gates_before_integration(&setup, &approved.plan, &report, attempt)
                    .await
                {
                    Ok(None | Some(GatesVerdict::Passed)) => {}
                    Ok(Some(GatesVerdict::Blocked { gate, feedback: why })) => {
                        let partial = Partial {
                            approved: &approved,
                            worktree: &report.worktree,
                            attempt,
                        };
                        return Ok(shark.block_at_gate(&setup, partial, &gate, &why).await);
                    }
                    Ok(Some(GatesVerdict::Redo { feedback: why, .. } | GatesVerdict::Failed { feedback: why })) => {
                        feedback = why;
                        last_worktree = report.worktree.clone();
                        continue;
                    }
                    Err(err) if is_budget_exhausted(&err) => {
                        return Ok(shark.stop_for_budget(&setup, &err, None).await);
                    }
                    Err(err) => match shark.moves_host(&err, &mut host_moves) {
                        Some(lost) => {
                            lost_host = Some(lost);
                            continue;
                        }
                        None => return shark.fail(err).await,
                    },
                }
                // With a pull request, the result gate waits on it (runs started after patch
                // "result-on-pull-request"), so people see the result where they review code.
                let result_on_pull_request =
                    setup.approve_result && setup.pull_request.is_some() && shark.ctx.patched("result-on-pull-request");
                // RESULT GATE: a person approves what the work became before it is integrated.
                if setup.approve_result && !result_on_pull_request && shark.ctx.patched("approve-result") {
                    match shark.wait_for_result(&setup, &approved, &report, attempt).await {
                        ResultDecision::Approved => {}
                        ResultDecision::Rejected(why) => {
                            feedback = why;
                            last_worktree = report.worktree.clone();
                            continue;
                        }
                        ResultDecision::TimedOut(reason) => {
                            let partial = Partial {
                                approved: &approved,
                                worktree: &report.worktree,
                                attempt,
                            };
                            return Ok(shark.end_without_decision(&setup, partial, reason).await);
                        }
                        ResultDecision::Cancelled => return shark.end_cancelled().await,
                        ResultDecision::Unreachable(why) => {
                            let note = format!("CHUM run {}: {why}", shark.run.workflow_id);
                            let _ = shark.update_bead(BeadStatus::Blocked, &note, "").await;
                            return Ok(shark.conclude(&setup, Outcome::Failed, why, None).await);
                        }
                    }
                }
                // The `pr` policy exists only in runs started after its patch marker.
                let pull_request = setup
                    .pull_request
                    .as_ref()
                    .filter(|_| shark.ctx.patched("pull-requests"));
                let landing = if let Some(waiting) = pull_request {
                    shark
                        .propose_pull_request(
                            &setup,
                            &approved,
                            &report,
                            attempt,
                            candidate,
                            &pull_request::Waiting {
                                result_gate: result_on_pull_request,
                                ..*waiting
                            },
                        )
                        .await
                } else if setup.merge_queue && shark.ctx.patched("merge-queue") {
                    shark
                        .land_through_queue(&setup, &approved, &report, attempt, candidate)
                        .await
                } else {
                    // Runs started before the merge queue integrate as they always did.
                    return shark
                        .integrate_and_close(&setup, &approved, &report, attempt, candidate)
                        .await;
                };
                match landing {
                    Landing::Landed(landed) => {
                        return shark.close_integrated(&setup, &approved, &landed, attempt).await;
                    }
                    Landing::Redo { feedback: why } => {
                        feedback = why;
                        last_worktree = report.worktree.clone();
                        continue;
                    }
                    Landing::Failed(failed) => {
                        return shark.close_integrated(&setup, &approved, &failed, attempt).await;
                    }
                    Landing::Error(err) => match shark.moves_host(&err, &mut host_moves) {
                        Some(lost) => {
                            lost_host = Some(lost);
                            continue;
                        }
                        None => return shark.fail(*err).await,
                    },
                    Landing::Cancelled => return shark.end_cancelled().await,
                }
            }
            AttemptEnd::Failed => continue,
            AttemptEnd::Blocked { gate } => {
                let partial = Partial {
                    approved: &approved,
                    worktree: &last_worktree,
                    attempt,
                };
                return Ok(shark.block_at_gate(&setup, partial, &gate, &feedback).await);
            }
            AttemptEnd::BudgetExhausted(err) => {
                let partial = Partial {
                    approved: &approved,
                    worktree: &last_worktree,
                    attempt,
                };
                return Ok(shark.stop_for_budget(&setup, &err, Some(partial)).await);
            }
            AttemptEnd::Error(err) => match shark.moves_host(&err, &mut host_moves) {
                Some(lost) => lost_host = Some(lost),
                None => return shark.fail(err).await,
            },
        }
    }

    // ESCALATE: keep the partial work on its branch, block the bead with the evidence.
    Ok(shark.escalate(&setup, &approved, &last_worktree, &feedback).await)
}

impl Shark<'_> {
    /// LOAD: the bead and the project's gates, as the worker's config has them (recorded, so a
    /// replay sees the same). `Ok(Err(problem))`: the bead cannot be worked on.
    async fn load(&self) -> Result<Result<Setup, String>, temporalio_sdk::ActivityExecutionError> {
        self.enter_phase(Phase::Loading, 0);
        let request = LoadBeadRequest {
            run: Some(self.run.clone()),
        };
        let loaded = self.quick(SharkActivities::load_bead, request).await?;
        let Some(bead) = loaded.bead else {
            return Ok(Err(loaded.problem));
        };
        let project = loaded.gates.unwrap_or_default();
        // A load that answers no order is from before projects had `gates` (a recorded history);
        // the config's default (`GateName::DEFAULT_ORDER`) comes in the answer itself.
        let gates: Vec<GateName> = if project.order.is_empty() {
            GateName::ORDER_BEFORE_PROJECT_GATES.to_vec()
        } else {
            project.order().collect()
        };
        // Runs started before notifications replay without them (the marker is asked only
        // where there are targets, so other runs' histories are unchanged).
        let notify = project.notify && self.ctx.patched("notify");
        self.ctx.state_mut(|s| {
            s.status.gates = gates.iter().map(|g| *g as i32).collect();
            s.status.review_fail_open = project.review_fail_open;
            s.notify = notify;
        });
        Ok(Ok(Setup {
            bead,
            gates,
            named_gates: project.named.clone(),
            fail_open: project.review_fail_open,
            learn: project.learn,
            groom: project.groom,
            fanout: project.fanout,
            select_best: project.select() == SelectMode::Best,
            merge_queue: project.merge_queue,
            pull_request: project.pull_request.then(|| pull_request::Waiting {
                poll: std::time::Duration::from_secs(u64::from(project.pull_request_poll_secs.max(1))),
                wait: std::time::Duration::from_secs(project.pull_request_wait_secs.max(1)),
                result_gate: false,
            }),
            update: project.update(),
            rereview_on_update: project.rereview_on_update,
            approve_result: project.approve_result,
            concurrency: project.concurrency,
            leases: project.leases(),
            several_hosts: project.several_hosts,
            host_wait: std::time::Duration::from_secs(project.host_wait_secs.max(1)),
        }))
    }
}
