//! The Shark: one durable workflow per bead.
//!
//! ```text
//! load bead -> PLAN -> validate -> GATE (signal `approve` | durable timeout)
//!           -> attempts: EXECUTE in a worktree -> DOD -> (fail: redo with the real output)
//!           -> INTEGRATE (commit once, merge per policy) -> close the bead
//! ```
//!
//! Everything here is deterministic: all I/O happens in the activities declared in
//! `chum_core::activity_contract`. The status query reads only workflow state.

use std::time::{Duration, UNIX_EPOCH};

use crate::groom::TacticalGroomWorkflow;
use crate::learner::LearnerWorkflow;
use chum_core::activity_contract::{SharkActivities, error_types};
use chum_core::config::Limits;
use chum_core::gate::{MAX_SIGNAL_BYTES, parse_gate_payload};
use chum_core::ids::{bead_branch, candidate_branch, candidate_workflow_id};
use chum_core::plan::validate_plan;
use chum_core::proto::{
    Bead, CandidateInput, DiscardCandidatesRequest, DodReport, DodRequest, ExecuteReport, ExecuteRequest, GateDecision,
    GateResult, IntegrateRequest, IntegrationReport, LearnerInput, LoadBeadRequest, Outcome, Phase, PhaseSpan, Plan,
    PlanRequest, RejectedSignal, ReviewRequest, RunRecord, RunRef, SemgrepRequest, SharkInput, SharkResult,
    SharkStatus, TacticalGroomInput, UpdateBeadRequest,
};
use chum_core::review::{findings_for_redo, rejection_reasons};
use chum_core::text::{excerpt, tail_excerpt};
use temporalio_common::data_converters::RawValue;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_common::{ActivityDefinition, RetryPolicy};
use temporalio_sdk::workflows::select;
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, CancellableFuture, ChildWorkflowOptions,
    LocalActivityOptions, ParentClosePolicy, SyncWorkflowContext, WorkflowCancellationToken, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

/// The gates when the project does not say (`projects.<name>.gates`).
const DEFAULT_GATES: [&str; 3] = ["review", "semgrep", "dod"];
/// Refused signals kept for the status query; older ones are dropped.
const MAX_REJECTED_SIGNALS: usize = 20;
/// Long activities heartbeat every few seconds; the SDK sends at most one heartbeat per 80% of this,
/// which bounds how late a cancellation reaches a running agent.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// Length of the excerpts kept in workflow state and history.
const EXCERPT_CHARS: usize = 1500;

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
}

/// How the plan-and-gate stage ended.
enum GateOutcome {
    Approved { plan: Plan, by: String },
    Ended { outcome: Outcome, reason: String },
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
            return run_candidate(ctx, input).await;
        }
        let run = RunRef {
            project: input.project.clone(),
            bead_id: input.bead_id.clone(),
            workflow_id: ctx.workflow_id().to_string(),
            run_id: ctx.run_id().to_string(),
        };
        let result = run_shark(ctx, input).await?;
        // Runs started before this step existed replay without it (the patch marker says which).
        if ctx.patched("record-run") {
            let record = RunRecord {
                run: Some(run),
                result: Some(result.clone()),
            };
            // The record is for metrics and reports; the run's outcome never depends on it.
            let _ = quick(ctx, SharkActivities::record_run, record).await;
        }
        Ok(result)
    }

    /// The human gate. The payloads are taken raw and validated here: a malformed payload (or none
    /// at all) is recorded (see `status`) and never approves. A typed handler would fail to decode
    /// it on every workflow task and wedge the run instead.
    #[signal(name = "approve")]
    pub fn approve(&mut self, _ctx: &mut SyncWorkflowContext<Self>, raw: RawValue) {
        let shown = signal_excerpt(&raw);
        let refusal = match signal_bytes(&raw).and_then(parse_gate_payload) {
            Err(reason) => Some(reason),
            Ok(_) if self.status.phase() != Phase::AwaitingApproval => Some(format!(
                "no plan is waiting for approval (phase: {}); nothing was approved",
                self.status.phase()
            )),
            Ok(_) if self.decision.is_some() => {
                Some("a decision on this plan was already received; this one was ignored".to_string())
            }
            Ok(decision) => {
                self.decision = Some(decision);
                None
            }
        };
        if let Some(reason) = refusal {
            let rejected = &mut self.status.rejected_signals;
            if rejected.len() >= MAX_REJECTED_SIGNALS {
                rejected.remove(0);
            }
            rejected.push(RejectedSignal {
                payload_excerpt: shown,
                reason,
            });
        }
    }

    /// Phase, plan, attempt, gate results so far, refused signals, outcome.
    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> SharkStatus {
        self.status.clone()
    }
}

/// The JSON an `approve` signal carries, as sent: exactly one `json/plain` payload.
fn signal_bytes(raw: &RawValue) -> Result<&[u8], String> {
    let payload = match raw.payloads.as_slice() {
        [] => {
            return Err(
                "the signal carried no payload; send --input '{\"approved\": true, \"by\": \"<you>\"}'".to_string(),
            );
        }
        [one] => one,
        many => {
            return Err(format!(
                "the signal carried {} payloads; send exactly one JSON object",
                many.len()
            ));
        }
    };
    if payload.data.len() > MAX_SIGNAL_BYTES {
        return Err(format!(
            "payload is {} bytes; the limit is {MAX_SIGNAL_BYTES}",
            payload.data.len()
        ));
    }
    let encoding = payload
        .metadata
        .get("encoding")
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap_or_default();
    match encoding.as_str() {
        "json/plain" => Ok(&payload.data),
        "binary/null" => Ok(b"null"),
        other => Err(format!(
            "payload encoding {other:?} is not supported; send a JSON object"
        )),
    }
}

fn signal_excerpt(raw: &RawValue) -> String {
    match raw.payloads.as_slice() {
        [] => "(no payload)".to_string(),
        [one, ..] => excerpt(&String::from_utf8_lossy(&one.data), 200),
    }
}

/// The payload of an `approve` signal carrying `decision`, for clients (`chum approve`, tests).
pub fn approve_payload(decision: &serde_json::Value) -> RawValue {
    json_payload(decision)
}

/// A signal payload carrying `value` as JSON (the signals take raw payloads; see `approve`).
pub fn json_payload(value: &serde_json::Value) -> RawValue {
    let decision = value;
    let mut payload = Payload {
        data: decision.to_string().into_bytes(),
        ..Payload::default()
    };
    payload.metadata.insert("encoding".to_string(), b"json/plain".to_vec());
    RawValue::new(vec![payload])
}

/// Plans, validates and waits at the gate until a person approves a valid plan, or the run must end.
async fn plan_until_approved(
    ctx: &WorkflowContext<SharkWorkflow>,
    run: &RunRef,
    bead: &Bead,
    limits: &Limits,
) -> Result<GateOutcome, ActivityExecutionError> {
    let mut feedback = String::new();
    let mut invalid_in_a_row = 0;
    let mut rejections = 0;
    let mut round = 0;
    loop {
        round += 1;
        ctx.state_mut(|s| s.status.plan_round = round);
        enter_phase(ctx, Phase::Planning, round);
        let request = PlanRequest {
            run: Some(run.clone()),
            bead: Some(bead.clone()),
            round,
            feedback: feedback.clone(),
            timeout_secs: limits.agent_timeout.as_secs(),
        };
        let draft = ctx
            .execute_activity(SharkActivities::plan, request, agent_options(limits.agent_timeout))
            .await?;
        add_usage(ctx, draft.agent.as_ref());
        let artifact = draft
            .agent
            .as_ref()
            .map(|a| a.stdout_artifact.clone())
            .unwrap_or_default();

        let checked = match draft.plan {
            None => Err(draft.error.clone()),
            Some(plan) => validate_plan(&plan)
                .map(|()| plan)
                .map_err(|problems| problems.join("; ")),
        };
        let plan = match checked {
            Ok(plan) => plan,
            Err(problem) => {
                record_gate(ctx, "plan_validation", round, false, 0, &problem, &artifact);
                invalid_in_a_row += 1;
                if invalid_in_a_row >= limits.max_plan_rounds {
                    return Ok(GateOutcome::Ended {
                        outcome: Outcome::PlanFailed,
                        reason: format!("no valid plan after {invalid_in_a_row} rounds; last problem: {problem}"),
                    });
                }
                feedback = format!("Your previous answer was not a valid plan: {problem}");
                continue;
            }
        };
        invalid_in_a_row = 0;
        record_gate(ctx, "plan_validation", round, true, 0, &plan.summary, &artifact);

        // GATE: nothing touches the code until a person approves this plan.
        ctx.state_mut(|s| {
            s.status.plan = Some(plan.clone());
            s.decision = None;
        });
        enter_phase(ctx, Phase::AwaitingApproval, round);
        let waited_from = now_ms(ctx);
        let decision = wait_for_decision(ctx, limits.gate_timeout).await;
        let waited = (now_ms(ctx) - waited_from).max(0) as u64;
        let Some(decision) = decision else {
            let reason = format!(
                "no decision within the gate timeout of {}s; nothing was executed",
                limits.gate_timeout.as_secs()
            );
            record_gate(ctx, "human", round, false, waited, &reason, "");
            return Ok(GateOutcome::Ended {
                outcome: Outcome::GateTimeout,
                reason,
            });
        };
        let who = if decision.by.is_empty() {
            "someone".to_string()
        } else {
            decision.by.clone()
        };
        ctx.state_mut(|s| s.status.decisions.push(decision.clone()));
        if decision.approved {
            let note = if decision.feedback.is_empty() {
                format!("approved by {who}")
            } else {
                format!("approved by {who}: {}", decision.feedback)
            };
            record_gate(ctx, "human", round, true, waited, &note, "");
            return Ok(GateOutcome::Approved { plan, by: who });
        }
        rejections += 1;
        let said = if decision.feedback.is_empty() {
            "(no feedback given)".to_string()
        } else {
            decision.feedback.clone()
        };
        record_gate(
            ctx,
            "human",
            round,
            false,
            waited,
            &format!("rejected by {who}: {said}"),
            "",
        );
        if rejections >= limits.max_gate_rejections {
            return Ok(GateOutcome::Ended {
                outcome: Outcome::GateRejected,
                reason: format!("the plan was rejected {rejections} times; last feedback from {who}: {said}"),
            });
        }
        feedback = format!("A person ({who}) rejected the previous plan: {said}");
    }
}

/// What the gates of one execution decided.
enum GatesVerdict {
    Passed,
    /// Back to the executor within the attempt, with the findings; a review rejection also swaps
    /// executor and reviewer.
    Redo {
        feedback: String,
        swap: bool,
    },
    /// The attempt has failed (the definition of done did not pass).
    Failed {
        feedback: String,
    },
}

/// One execution, as the gates see it.
struct Step<'a> {
    run: &'a RunRef,
    bead: &'a Bead,
    plan: &'a Plan,
    report: &'a ExecuteReport,
    attempt: u32,
    handoff: u32,
    swapped: bool,
    /// Monte Carlo candidate (0 without fanout).
    candidate: u32,
}

/// Runs the project's gates in order on one execution; the first that fails decides.
async fn run_gates(
    ctx: &WorkflowContext<SharkWorkflow>,
    step: &Step<'_>,
    gates: &[String],
    limits: &Limits,
    fail_open: bool,
) -> Result<GatesVerdict, ActivityExecutionError> {
    let mut so_far: Vec<String> = Vec::new();
    for gate in gates {
        let verdict = match gate.as_str() {
            "review" => review_gate(ctx, step, &so_far, limits, fail_open).await?,
            "semgrep" => semgrep_gate(ctx, step).await?,
            "dod" => dod_gate(ctx, step, limits).await?,
            other => {
                // The config is validated at start; an unknown name can only come from a hand-made
                // history. Skip it visibly rather than pass or fail on it.
                push_gate(
                    ctx,
                    GateResult {
                        gate: other.to_string(),
                        round: step.attempt,
                        handoff: step.handoff,
                        passed: true,
                        excerpt: "unknown gate: skipped".into(),
                        ..GateResult::default()
                    },
                );
                None
            }
        };
        if let Some(verdict) = verdict {
            return Ok(verdict);
        }
        if let Some(last) = ctx.state(|s| s.status.gate_results.last().cloned()) {
            so_far.push(format!(
                "{}: {}",
                last.gate,
                last.excerpt.lines().next().unwrap_or_default()
            ));
        }
    }
    Ok(GatesVerdict::Passed)
}

/// REVIEW: a different model checks the diff against the plan; fail-closed.
async fn review_gate(
    ctx: &WorkflowContext<SharkWorkflow>,
    step: &Step<'_>,
    so_far: &[String],
    limits: &Limits,
    fail_open: bool,
) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
    enter_phase(ctx, Phase::Review, step.attempt);
    let mut request = ReviewRequest {
        run: Some(step.run.clone()),
        bead: Some(step.bead.clone()),
        plan: Some(step.plan.clone()),
        worktree: step.report.worktree.clone(),
        base_commit: step.report.base_commit.clone(),
        attempt: step.attempt,
        handoff: step.handoff,
        swapped: step.swapped,
        gates_so_far: so_far.join("\n"),
        retry_error: String::new(),
        timeout_secs: limits.agent_timeout.as_secs(),
        candidate: step.candidate,
        tree: step.report.tree.clone(),
    };
    let mut review = ctx
        .execute_activity(
            SharkActivities::review,
            request.clone(),
            agent_options(limits.agent_timeout),
        )
        .await?;
    add_usage(ctx, review.agent.as_ref());
    if review.verdict.is_none() {
        // One retry, told what was wrong with the answer.
        request.retry_error = review.error.clone();
        review = ctx
            .execute_activity(SharkActivities::review, request, agent_options(limits.agent_timeout))
            .await?;
        add_usage(ctx, review.agent.as_ref());
    }
    let agent = review.agent.clone().unwrap_or_default();
    let mut result = GateResult {
        gate: "review".into(),
        round: step.attempt,
        handoff: step.handoff,
        duration_ms: agent.duration_ms,
        artifact: agent.stdout_artifact.clone(),
        provider: agent.provider.clone(),
        ..GateResult::default()
    };
    let Some(verdict) = review.verdict else {
        let reason = format!("review unavailable: {}", review.error);
        if fail_open {
            result.passed = true;
            result.excerpt = format!("{reason}; passed because review_fail_open = true");
            push_gate(ctx, result);
            return Ok(None);
        }
        result.excerpt = reason.clone();
        push_gate(ctx, result);
        return Ok(Some(GatesVerdict::Redo {
            feedback: format!("The review could not be done ({reason}); the redo is reviewed by the other model."),
            swap: true,
        }));
    };
    let reasons = rejection_reasons(&verdict, step.plan);
    let discarded = discarded_note("the reviewer", &review.discarded);
    if reasons.is_empty() {
        result.passed = true;
        result.excerpt = format!(
            "approved by {}: {} criteria met, {} finding(s){discarded}",
            agent.provider,
            verdict.criteria.len(),
            verdict.findings.len()
        );
        push_gate(ctx, result);
        return Ok(None);
    }
    let findings = findings_for_redo(&verdict, &reasons);
    result.excerpt = format!("rejected by {}{discarded}\n{findings}", agent.provider);
    push_gate(ctx, result);
    Ok(Some(GatesVerdict::Redo {
        feedback: findings,
        swap: true,
    }))
}

/// SEMGREP: known mistakes, in milliseconds; findings go back to the executor.
async fn semgrep_gate(
    ctx: &WorkflowContext<SharkWorkflow>,
    step: &Step<'_>,
) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
    enter_phase(ctx, Phase::Semgrep, step.attempt);
    let request = SemgrepRequest {
        run: Some(step.run.clone()),
        worktree: step.report.worktree.clone(),
        changed_files: step.report.changed_files.clone(),
        attempt: step.attempt,
        handoff: step.handoff,
        tree: step.report.tree.clone(),
    };
    let scan = quick(ctx, SharkActivities::semgrep, request).await?;
    ctx.state_mut(|s| {
        for q in &scan.quarantined {
            if !s.status.quarantined_rules.iter().any(|known| known.file == q.file) {
                s.status.quarantined_rules.push(q.clone());
            }
        }
    });
    let mut quarantine = if scan.quarantined.is_empty() {
        String::new()
    } else {
        format!("; {} rule file(s) quarantined", scan.quarantined.len())
    };
    // Runs recorded before the baseline report 0 here, so their excerpts are unchanged.
    if scan.preexisting_ignored > 0 {
        quarantine.push_str(&format!(
            "; {} pre-existing finding(s) on untouched lines ignored",
            scan.preexisting_ignored
        ));
    }
    let mut result = GateResult {
        gate: "semgrep".into(),
        round: step.attempt,
        handoff: step.handoff,
        passed: scan.passed,
        duration_ms: scan.duration_ms,
        artifact: scan.artifact.clone(),
        ..GateResult::default()
    };
    if scan.passed {
        result.excerpt = format!(
            "clean: {} file(s), {} rule file(s){quarantine}",
            scan.files_scanned, scan.rule_files
        );
        push_gate(ctx, result);
        return Ok(None);
    }
    let mut findings = String::from("Semgrep found known mistakes; fix each one:\n");
    for f in &scan.findings {
        findings.push_str(&format!("- {} {}:{}: {}\n", f.rule_id, f.file, f.line, f.message));
    }
    result.excerpt = format!("{} finding(s){quarantine}\n{findings}", scan.findings.len());
    push_gate(ctx, result);
    Ok(Some(GatesVerdict::Redo {
        feedback: findings,
        swap: false,
    }))
}

/// DOD: the project's own commands; a failure ends the attempt with the real output.
async fn dod_gate(
    ctx: &WorkflowContext<SharkWorkflow>,
    step: &Step<'_>,
    limits: &Limits,
) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
    enter_phase(ctx, Phase::Dod, step.attempt);
    let request = DodRequest {
        run: Some(step.run.clone()),
        worktree: step.report.worktree.clone(),
        attempt: step.attempt,
        timeout_secs: limits.dod_timeout.as_secs(),
        tree: step.report.tree.clone(),
    };
    let dod = ctx
        .execute_activity(SharkActivities::run_dod, request, dod_options(limits.dod_timeout))
        .await?;
    let (mut summary, artifact) = dod_summary(&dod);
    // Runs recorded before trees were kept discard nothing, so their excerpts are unchanged.
    summary.push_str(&discarded_note("the DoD", &dod.discarded));
    push_gate(
        ctx,
        GateResult {
            gate: "dod".into(),
            round: step.attempt,
            handoff: step.handoff,
            passed: dod.passed,
            duration_ms: dod.duration_ms,
            excerpt: summary,
            artifact,
            ..GateResult::default()
        },
    );
    if dod.passed {
        Ok(None)
    } else {
        Ok(Some(GatesVerdict::Failed {
            feedback: dod_feedback(&dod),
        }))
    }
}

/// Waits for a valid `approve` signal or the durable gate timeout, whichever comes first.
async fn wait_for_decision(ctx: &WorkflowContext<SharkWorkflow>, timeout: Duration) -> Option<GateDecision> {
    let mut timer = std::pin::pin!(ctx.timer(timeout));
    let decided = select! {
        _ = ctx.wait_condition(|s| s.decision.is_some()) => true,
        _ = timer => false,
    };
    if decided {
        // A dropped timer stays pending server-side until the run closes; cancel it explicitly.
        timer.cancel();
    }
    ctx.state_mut(|s| s.decision.take())
}

/// What an integration commits: the attempt's staged work in `worktree`, which must be `tree`
/// (the tree its gates passed) when it is known.
struct Work<'a> {
    worktree: &'a str,
    tree: &'a str,
    attempt: u32,
    candidate: u32,
    /// Kept on its branch only: it did not pass its gates.
    partial: bool,
}

async fn integrate(
    ctx: &WorkflowContext<SharkWorkflow>,
    run: &RunRef,
    bead: &Bead,
    plan: &Plan,
    approved_by: &str,
    work: Work<'_>,
) -> Result<IntegrationReport, ActivityExecutionError> {
    let request = IntegrateRequest {
        run: Some(run.clone()),
        bead: Some(bead.clone()),
        plan: Some(plan.clone()),
        worktree: work.worktree.to_string(),
        attempt: work.attempt,
        approved_by: approved_by.to_string(),
        partial: work.partial,
        candidate: work.candidate,
        tree: work.tree.to_string(),
    };
    let report = quick(ctx, SharkActivities::integrate, request).await?;
    ctx.state_mut(|s| {
        s.status.commit = report.commit.clone();
        if !report.branch.is_empty() {
            s.status.branch = report.branch.clone();
        }
    });
    Ok(report)
}

async fn update_bead(
    ctx: &WorkflowContext<SharkWorkflow>,
    run: &RunRef,
    status: &str,
    note: &str,
    close_reason: &str,
) -> Result<(), ActivityExecutionError> {
    let request = UpdateBeadRequest {
        run: Some(run.clone()),
        status: status.to_string(),
        note: note.to_string(),
        close_reason: close_reason.to_string(),
    };
    quick(ctx, SharkActivities::update_bead, request).await.map(|_| ())
}

/// The Shark's pipeline, from loading the bead to its outcome.
async fn run_shark(ctx: &mut WorkflowContext<SharkWorkflow>, input: SharkInput) -> WorkflowResult<SharkResult> {
    let limits = Limits::from_proto(input.limits.as_ref());
    let run = RunRef {
        project: input.project.clone(),
        bead_id: input.bead_id.clone(),
        workflow_id: ctx.workflow_id().to_string(),
        run_id: ctx.run_id().to_string(),
    };
    ctx.state_mut(|s| {
        s.status.project = input.project.clone();
        s.status.bead_id = input.bead_id.clone();
        s.status.max_attempts = limits.max_attempts;
        s.status.branch = bead_branch(&input.bead_id);
    });

    // LOAD
    enter_phase(ctx, Phase::Loading, 0);
    let loaded = match quick(
        ctx,
        SharkActivities::load_bead,
        LoadBeadRequest { run: Some(run.clone()) },
    )
    .await
    {
        Ok(loaded) => loaded,
        Err(err) => return fail(ctx, &run, err).await,
    };
    let Some(bead) = loaded.bead else {
        return Ok(finish(ctx, Outcome::BeadUnavailable, loaded.problem, None));
    };

    // The project's gates, as the worker's config has them (recorded, so replay sees the same).
    let project_gates = loaded.gates.unwrap_or_default();
    let gates = if project_gates.order.is_empty() {
        DEFAULT_GATES.iter().map(|g| g.to_string()).collect()
    } else {
        project_gates.order
    };
    let fail_open = project_gates.review_fail_open;
    let ending = Ending {
        run: &run,
        bead: &bead,
        learn: project_gates.learn,
        groom: project_gates.groom,
    };
    ctx.state_mut(|s| {
        s.status.gates = gates.clone();
        s.status.review_fail_open = fail_open;
    });

    // PLAN -> GATE
    let (plan, approved_by) = match plan_until_approved(ctx, &run, &bead, &limits).await {
        Ok(GateOutcome::Approved { plan, by }) => (plan, by),
        Ok(GateOutcome::Ended { outcome, reason }) => {
            let note = format!("CHUM run {}: {outcome}: {reason}", run.workflow_id);
            let _ = update_bead(ctx, &run, "blocked", &note, "").await;
            return Ok(ending.conclude(ctx, outcome, reason, None).await);
        }
        Err(err) if is_budget_exhausted(&err) => {
            return Ok(ending.stop_for_budget(ctx, &err, None).await);
        }
        Err(err) => return fail(ctx, &run, err).await,
    };

    // ATTEMPTS: EXECUTE -> gates in order; a review rejection or Semgrep findings send the work
    // back within the attempt (a rejection swaps executor and reviewer), a failed DoD ends it.
    // With fanout, each attempt runs its candidates as child Sharks and the winner goes on.
    let fanout = project_gates.fanout;
    let select_best = project_gates.select == "best";
    let mut feedback = String::new();
    let mut last_worktree = String::new();
    for attempt in 1..=limits.max_attempts {
        let spec = AttemptSpec {
            run: &run,
            bead: &bead,
            plan: &plan,
            gates: &gates,
            limits: &limits,
            fail_open,
            attempt,
            candidate: 0,
        };
        let end = if fanout > 1 {
            run_candidates(ctx, &spec, fanout, select_best, &mut feedback, &mut last_worktree).await
        } else {
            run_attempt(ctx, &spec, &mut feedback, &mut last_worktree).await
        };
        let (report, winner) = match end {
            AttemptEnd::Passed { report, candidate } => (report, candidate),
            AttemptEnd::Failed => continue,
            AttemptEnd::BudgetExhausted(err) => {
                let partial = Partial {
                    plan: &plan,
                    worktree: &last_worktree,
                    attempt,
                    approved_by: &approved_by,
                };
                return Ok(ending.stop_for_budget(ctx, &err, Some(partial)).await);
            }
            AttemptEnd::Error(err) => return fail(ctx, &run, err).await,
        };

        // INTEGRATE
        enter_phase(ctx, Phase::Integrating, attempt);
        let work = Work {
            worktree: &report.worktree,
            tree: &report.tree,
            attempt,
            candidate: winner,
            partial: false,
        };
        let integration = match integrate(ctx, &run, &bead, &plan, &approved_by, work).await {
            Ok(integration) => integration,
            Err(err) => return fail(ctx, &run, err).await,
        };
        if !integration.problem.is_empty() {
            let reason = format!(
                "the work passed its gates but was not integrated: {}",
                integration.problem
            );
            let note = format!(
                "CHUM run {}: integration failed: {}; the work is on branch {}",
                run.workflow_id, integration.problem, integration.branch
            );
            let _ = update_bead(ctx, &run, "blocked", &note, "").await;
            return Ok(ending
                .conclude(ctx, Outcome::IntegrationFailed, reason, Some(&integration))
                .await);
        }
        let reason = if integration.merged {
            format!(
                "commit {} merged into {}",
                short(&integration.commit),
                integration.base_branch
            )
        } else {
            format!("commit {} on branch {}", short(&integration.commit), integration.branch)
        };
        let close_reason = format!(
            "CHUM run {}: {reason}; plan: {}; definition of done passed on attempt {attempt}",
            run.workflow_id, plan.summary
        );
        if let Err(err) = update_bead(ctx, &run, "closed", "", &close_reason).await {
            return fail(ctx, &run, err).await;
        }
        return Ok(ending
            .conclude(ctx, Outcome::Integrated, reason, Some(&integration))
            .await);
    }

    // ESCALATE: keep the partial work on its branch, block the bead with the evidence.
    let mut kept = None;
    if !last_worktree.is_empty() {
        enter_phase(ctx, Phase::Integrating, limits.max_attempts);
        let work = Work {
            worktree: &last_worktree,
            tree: "",
            attempt: limits.max_attempts,
            candidate: 0,
            partial: true,
        };
        if let Ok(partial) = integrate(ctx, &run, &bead, &plan, &approved_by, work).await {
            kept = Some(partial);
        }
    }
    let reason = format!(
        "all {} attempts failed their gates; last failure: {}",
        limits.max_attempts,
        excerpt(&feedback, 600)
    );
    let branch_note = match &kept {
        Some(k) if !k.commit.is_empty() => {
            format!("partial work kept on branch {} at {}", k.branch, short(&k.commit))
        }
        _ => "no partial work to keep".to_string(),
    };
    let note = format!(
        "CHUM run {}: escalated after {} attempts; {branch_note}.\nLast failure:\n{}",
        run.workflow_id,
        limits.max_attempts,
        tail_excerpt(&feedback, EXCERPT_CHARS)
    );
    let _ = update_bead(ctx, &run, "blocked", &note, "").await;
    Ok(ending.conclude(ctx, Outcome::Escalated, reason, kept.as_ref()).await)
}

/// One attempt of the plan (or, with fanout, one candidate's attempt) as the workflow sees it.
struct AttemptSpec<'a> {
    run: &'a RunRef,
    bead: &'a Bead,
    plan: &'a Plan,
    gates: &'a [String],
    limits: &'a Limits,
    fail_open: bool,
    attempt: u32,
    /// Monte Carlo candidate (1-based) when this run is one; 0 otherwise.
    candidate: u32,
}

/// How an attempt ended.
enum AttemptEnd {
    /// The work passed every gate (`candidate`: whose work, 0 without fanout).
    Passed {
        report: ExecuteReport,
        candidate: u32,
    },
    /// The gates failed it; the feedback says why.
    Failed,
    BudgetExhausted(ActivityExecutionError),
    Error(ActivityExecutionError),
}

/// EXECUTE -> gates, with redos, for one attempt. `feedback` carries the previous failure in and
/// this attempt's out; `last_worktree` the worktree of the last execution.
async fn run_attempt(
    ctx: &WorkflowContext<SharkWorkflow>,
    spec: &AttemptSpec<'_>,
    feedback: &mut String,
    last_worktree: &mut String,
) -> AttemptEnd {
    let AttemptSpec {
        run,
        bead,
        plan,
        gates,
        limits,
        fail_open,
        attempt,
        ..
    } = *spec;
    let mut handoff = 0;
    let mut swapped = false;
    loop {
        ctx.state_mut(|s| {
            s.status.attempt = attempt;
            s.status.handoff = handoff;
        });
        enter_phase(ctx, Phase::Executing, attempt);
        let execute = ExecuteRequest {
            run: Some(run.clone()),
            bead: Some(bead.clone()),
            plan: Some(plan.clone()),
            attempt,
            feedback: feedback.clone(),
            timeout_secs: limits.agent_timeout.as_secs(),
            handoff,
            swapped,
            candidate: spec.candidate,
        };
        let report = match ctx
            .execute_activity(SharkActivities::execute, execute, agent_options(limits.agent_timeout))
            .await
        {
            Ok(report) => report,
            Err(err) if is_budget_exhausted(&err) => return AttemptEnd::BudgetExhausted(err),
            Err(err) => return AttemptEnd::Error(err),
        };
        add_usage(ctx, report.agent.as_ref());
        *last_worktree = report.worktree.clone();
        ctx.state_mut(|s| s.diff_artifacts.push(report.diff_artifact.clone()));
        let executor = report.agent.as_ref().map(|a| a.provider.clone()).unwrap_or_default();
        if !report.problem.is_empty() {
            push_gate(
                ctx,
                GateResult {
                    gate: "execute".into(),
                    round: attempt,
                    handoff,
                    passed: false,
                    excerpt: report.problem.clone(),
                    artifact: report
                        .agent
                        .as_ref()
                        .map(|a| a.stdout_artifact.clone())
                        .unwrap_or_default(),
                    provider: executor,
                    ..GateResult::default()
                },
            );
            *feedback = format!("The executor produced nothing usable: {}", report.problem);
            return AttemptEnd::Failed;
        }
        let step = Step {
            run,
            bead,
            plan,
            report: &report,
            attempt,
            handoff,
            swapped,
            candidate: spec.candidate,
        };
        match run_gates(ctx, &step, gates, limits, fail_open).await {
            Ok(GatesVerdict::Passed) => {
                return AttemptEnd::Passed {
                    report,
                    candidate: spec.candidate,
                };
            }
            Ok(GatesVerdict::Redo {
                feedback: findings,
                swap,
            }) if handoff < limits.max_handoffs => {
                handoff += 1;
                swapped ^= swap;
                *feedback = findings;
            }
            Ok(GatesVerdict::Redo { feedback: findings, .. }) => {
                *feedback = format!("{findings}\n(attempt {attempt} used all {} redos)", limits.max_handoffs);
                return AttemptEnd::Failed;
            }
            Ok(GatesVerdict::Failed { feedback: why }) => {
                *feedback = why;
                return AttemptEnd::Failed;
            }
            Err(err) if is_budget_exhausted(&err) => return AttemptEnd::BudgetExhausted(err),
            Err(err) => return AttemptEnd::Error(err),
        }
    }
}

/// Monte Carlo: the attempt's `fanout` candidates run as child Sharks at once, each in its own
/// worktree (and with the next provider of the executor's tier). `first`: the first to pass every
/// gate wins and the others are cancelled (their agents killed); `best`: all finish and the best
/// passing one wins. Every candidate's gate results join this run's (for the learner); the losers'
/// worktrees and branches are removed, their artifacts stay.
async fn run_candidates(
    ctx: &WorkflowContext<SharkWorkflow>,
    spec: &AttemptSpec<'_>,
    fanout: u32,
    select_best: bool,
    feedback: &mut String,
    last_worktree: &mut String,
) -> AttemptEnd {
    ctx.state_mut(|s| {
        s.status.attempt = spec.attempt;
        s.status.handoff = 0;
    });
    enter_phase(ctx, Phase::Executing, spec.attempt);
    let mut running = Vec::new();
    for k in 1..=fanout {
        let input = SharkInput {
            project: spec.run.project.clone(),
            bead_id: spec.run.bead_id.clone(),
            limits: Some(spec.limits.to_proto()),
            candidate: Some(CandidateInput {
                index: k,
                count: fanout,
                attempt: spec.attempt,
                bead: Some(spec.bead.clone()),
                plan: Some(spec.plan.clone()),
                feedback: feedback.clone(),
                gates: spec.gates.to_vec(),
                review_fail_open: spec.fail_open,
            }),
        };
        let id = candidate_workflow_id(&spec.run.project, &spec.run.bead_id, &spec.run.run_id, spec.attempt, k);
        let options = ChildWorkflowOptions::builder()
            .workflow_id(id)
            .parent_close_policy(ParentClosePolicy::RequestCancel)
            .build();
        match ctx.start_child_workflow(SharkWorkflow::run, input, options).await {
            Ok(started) => running.push((k, Some(Box::pin(started.result())))),
            Err(err) => push_gate(
                ctx,
                GateResult {
                    gate: "execute".into(),
                    round: spec.attempt,
                    passed: false,
                    excerpt: format!("candidate {k} did not start: {err}"),
                    candidate: k,
                    ..GateResult::default()
                },
            ),
        }
    }

    // Collect results in the order they arrive (deterministic: the order of history events).
    let mut results: Vec<(u32, SharkResult)> = Vec::new();
    let mut winner: Option<u32> = None;
    while running.iter().any(|(_, f)| f.is_some()) {
        let (k, outcome) = std::future::poll_fn(|cx| {
            for (k, slot) in running.iter_mut() {
                if let Some(fut) = slot.as_mut()
                    && let std::task::Poll::Ready(out) = fut.as_mut().poll(cx)
                {
                    *slot = None;
                    return std::task::Poll::Ready((*k, out));
                }
            }
            std::task::Poll::Pending
        })
        .await;
        match outcome {
            Ok(result) => {
                if result.outcome() == Outcome::CandidatePassed && !select_best && winner.is_none() {
                    winner = Some(k);
                    for (_, slot) in running.iter() {
                        if let Some(fut) = slot {
                            fut.cancel();
                        }
                    }
                }
                results.push((k, result));
            }
            Err(err) => {
                let lost = winner
                    .map(|w| format!("cancelled: candidate {w} passed first"))
                    .unwrap_or_else(|| format!("candidate {k} ended without a result: {err}"));
                push_gate(
                    ctx,
                    GateResult {
                        gate: "execute".into(),
                        round: spec.attempt,
                        passed: false,
                        excerpt: lost,
                        candidate: k,
                        ..GateResult::default()
                    },
                );
            }
        }
    }
    if select_best {
        winner = results
            .iter()
            .filter(|(_, r)| r.outcome() == Outcome::CandidatePassed)
            .min_by_key(|(k, r)| candidate_score(*k, r))
            .map(|(k, _)| *k);
    }

    // Every candidate's journal joins this run's: gate results (with their artifacts) and usage.
    results.sort_by_key(|(k, _)| *k);
    for (k, result) in &results {
        ctx.state_mut(|s| {
            for gate in &result.gate_results {
                let mut gate = gate.clone();
                gate.candidate = *k;
                s.status.gate_results.push(gate);
            }
            let usage = result.usage.unwrap_or_default();
            let total = s.status.usage.get_or_insert_with(Default::default);
            total.input_tokens += usage.input_tokens;
            total.output_tokens += usage.output_tokens;
            total.cost_usd += usage.cost_usd;
        });
    }
    let winning = winner.and_then(|w| results.iter().find(|(k, _)| *k == w));
    // Without a winner the first candidate's work is kept (for the partial branch at the end).
    let keep = winning
        .map(|(k, _)| *k)
        .or_else(|| results.iter().find(|(_, r)| !r.worktree.is_empty()).map(|(k, _)| *k));
    let losers: Vec<u32> = (1..=fanout).filter(|k| Some(*k) != keep).collect();
    if !losers.is_empty() {
        let request = DiscardCandidatesRequest {
            run: Some(spec.run.clone()),
            attempt: spec.attempt,
            candidates: losers,
        };
        // Leftover worktrees cost disk, not correctness: a failure here never fails the run.
        let _ = ctx
            .execute_activity(SharkActivities::discard_candidates, request, quick_options())
            .await;
    }
    if let Some((_, kept)) = keep.and_then(|k| results.iter().find(|(c, _)| *c == k)) {
        *last_worktree = kept.worktree.clone();
    }
    match winning {
        Some((k, result)) => AttemptEnd::Passed {
            report: ExecuteReport {
                worktree: result.worktree.clone(),
                branch: result.branch.clone(),
                ..ExecuteReport::default()
            },
            candidate: *k,
        },
        None => {
            let why: Vec<String> = results
                .iter()
                .map(|(k, r)| format!("Candidate {k}: {}", excerpt(&r.reason, 800)))
                .collect();
            *feedback = if why.is_empty() {
                "no candidate produced a result".to_string()
            } else {
                why.join("\n")
            };
            AttemptEnd::Failed
        }
    }
}

/// The `best` order among passing candidates (smaller is better): fewest failed gate runs on the
/// way (review rejections and Semgrep findings that forced redos), then the smallest diff, then
/// the quickest definition of done, then the lowest number.
fn candidate_score(k: u32, result: &SharkResult) -> (usize, u64, u64, u32) {
    let failed = result.gate_results.iter().filter(|g| !g.passed).count();
    let dod_ms = result
        .gate_results
        .iter()
        .filter(|g| g.gate == "dod")
        .map(|g| g.duration_ms)
        .sum();
    (failed, result.diff_lines, dod_ms, k)
}

/// A Monte Carlo candidate (a child Shark): one attempt of the approved plan, with its redos and
/// gates, in its own worktree. It never plans, integrates or touches the bead; its parent does.
async fn run_candidate(ctx: &mut WorkflowContext<SharkWorkflow>, input: SharkInput) -> WorkflowResult<SharkResult> {
    let c = input.candidate.clone().unwrap_or_default();
    let limits = Limits::from_proto(input.limits.as_ref());
    let run = RunRef {
        project: input.project.clone(),
        bead_id: input.bead_id.clone(),
        workflow_id: ctx.workflow_id().to_string(),
        run_id: ctx.run_id().to_string(),
    };
    let bead = c.bead.clone().unwrap_or_default();
    let plan = c.plan.clone().unwrap_or_default();
    ctx.state_mut(|s| {
        s.status.project = input.project.clone();
        s.status.bead_id = input.bead_id.clone();
        s.status.max_attempts = limits.max_attempts;
        s.status.branch = candidate_branch(&input.bead_id, c.index);
        s.status.plan = Some(plan.clone());
        s.status.gates = c.gates.clone();
        s.status.review_fail_open = c.review_fail_open;
    });
    let spec = AttemptSpec {
        run: &run,
        bead: &bead,
        plan: &plan,
        gates: &c.gates,
        limits: &limits,
        fail_open: c.review_fail_open,
        attempt: c.attempt,
        candidate: c.index,
    };
    let mut feedback = c.feedback.clone();
    let mut worktree = String::new();
    let (outcome, reason, report) = match run_attempt(ctx, &spec, &mut feedback, &mut worktree).await {
        AttemptEnd::Passed { report, .. } => (
            Outcome::CandidatePassed,
            format!("candidate {} passed every gate", c.index),
            Some(report),
        ),
        AttemptEnd::Failed => (Outcome::CandidateFailed, feedback.clone(), None),
        AttemptEnd::BudgetExhausted(err) => (Outcome::BudgetExhausted, activity_failure_text(&err), None),
        AttemptEnd::Error(err) => {
            if matches!(err, ActivityExecutionError::Cancelled(_)) || ctx.cancellation_token().is_cancelled() {
                return Err(WorkflowTermination::cancelled());
            }
            (Outcome::Failed, activity_failure_text(&err), None)
        }
    };
    let mut result = finish(ctx, outcome, reason, None);
    result.candidate = c.index;
    result.worktree = report.as_ref().map(|r| r.worktree.clone()).unwrap_or(worktree);
    result.diff_lines = report.map(|r| diff_lines(&r.diff_stat)).unwrap_or(0);
    Ok(result)
}

/// Lines added plus removed, from `git diff --stat`'s summary line.
fn diff_lines(stat: &str) -> u64 {
    let summary = stat.lines().last().unwrap_or_default();
    summary
        .split(',')
        .filter(|part| part.contains("insertion") || part.contains("deletion"))
        .filter_map(|part| part.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// What the end of a run needs to start the ContinuousLearner.
struct Ending<'a> {
    run: &'a RunRef,
    bead: &'a Bead,
    /// The project learns from its runs (a learner role is configured).
    learn: bool,
    /// The project grooms its backlog after every run (a groomer role is configured).
    groom: bool,
}

impl Ending<'_> {
    /// Ends the run: starts the ContinuousLearner when the run has something to teach (its work
    /// was integrated or escalated, or people rejected its plans) and the TacticalGroom after
    /// every outcome, then builds the result.
    async fn conclude(
        &self,
        ctx: &WorkflowContext<SharkWorkflow>,
        outcome: Outcome,
        reason: String,
        integration: Option<&IntegrationReport>,
    ) -> SharkResult {
        let teaches = matches!(
            outcome,
            Outcome::Integrated | Outcome::Escalated | Outcome::IntegrationFailed | Outcome::GateRejected
        );
        if self.learn && teaches {
            self.start_learner(ctx, outcome, &reason, integration).await;
        }
        if self.groom {
            self.start_groom(ctx, outcome, &reason, integration).await;
        }
        finish(ctx, outcome, reason, integration)
    }

    /// Starts the learner as a child that outlives this run, and waits only until it has started.
    /// Its id is derived from the bead and run, so a replayed or retried start is the same child.
    async fn start_learner(
        &self,
        ctx: &WorkflowContext<SharkWorkflow>,
        outcome: Outcome,
        reason: &str,
        integration: Option<&IntegrationReport>,
    ) {
        let id = format!("learner-{}-{}-{}", self.run.project, self.run.bead_id, self.run.run_id);
        let input = ctx.state(|s| LearnerInput {
            run: Some(self.run.clone()),
            bead: Some(self.bead.clone()),
            plan: s.status.plan.clone(),
            outcome: outcome as i32,
            reason: reason.to_string(),
            gate_results: s.status.gate_results.clone(),
            diff_artifacts: s.diff_artifacts.clone(),
            decisions: s.status.decisions.clone(),
            commit: integration.map(|i| i.commit.clone()).unwrap_or_default(),
        });
        let options = ChildWorkflowOptions::builder()
            .workflow_id(id.clone())
            .parent_close_policy(ParentClosePolicy::Abandon)
            .build();
        match ctx.start_child_workflow(LearnerWorkflow::run, input, options).await {
            Ok(_) => ctx.state_mut(|s| s.status.learner_workflow_id = id),
            // Learning is a bonus: a learner that cannot start never fails the run.
            Err(err) => ctx.state_mut(|s| s.status.reason = format!("the learner did not start: {err}")),
        }
    }
}

impl Ending<'_> {
    /// Starts the TacticalGroom as a child that outlives this run (like the learner).
    async fn start_groom(
        &self,
        ctx: &WorkflowContext<SharkWorkflow>,
        outcome: Outcome,
        reason: &str,
        integration: Option<&IntegrationReport>,
    ) {
        let id = format!("groom-{}-{}-{}", self.run.project, self.run.bead_id, self.run.run_id);
        let input = ctx.state(|s| TacticalGroomInput {
            run: Some(self.run.clone()),
            bead: Some(self.bead.clone()),
            outcome: outcome as i32,
            reason: reason.to_string(),
            commit: integration.map(|i| i.commit.clone()).unwrap_or_default(),
            diff_artifacts: s.diff_artifacts.clone(),
        });
        let options = ChildWorkflowOptions::builder()
            .workflow_id(id.clone())
            .parent_close_policy(ParentClosePolicy::Abandon)
            .build();
        match ctx
            .start_child_workflow(TacticalGroomWorkflow::run, input, options)
            .await
        {
            Ok(_) => ctx.state_mut(|s| s.status.groom_workflow_id = id),
            // Grooming is a bonus too: it never fails the run.
            Err(err) => ctx.state_mut(|s| s.status.reason = format!("the groomer did not start: {err}")),
        }
    }
}

/// The work done so far, to keep when a run stops early.
struct Partial<'a> {
    plan: &'a Plan,
    worktree: &'a str,
    attempt: u32,
    approved_by: &'a str,
}

/// Whether an activity failed because a spending cap is reached.
fn is_budget_exhausted(err: &ActivityExecutionError) -> bool {
    let mut failure = err.failure();
    while let Some(f) = failure {
        if failure_type(f) == error_types::BUDGET_EXHAUSTED {
            return true;
        }
        failure = f.cause.as_deref();
    }
    false
}

impl Ending<'_> {
    /// A cap was reached before an agent call: keep the partial work on the bead's branch (as an
    /// escalation does), block the bead with the reason, end with `budget_exhausted`.
    async fn stop_for_budget(
        &self,
        ctx: &WorkflowContext<SharkWorkflow>,
        err: &ActivityExecutionError,
        partial: Option<Partial<'_>>,
    ) -> SharkResult {
        let why = activity_failure_text(err);
        let mut kept = None;
        if let Some(p) = partial.filter(|p| !p.worktree.is_empty()) {
            enter_phase(ctx, Phase::Integrating, p.attempt);
            let work = Work {
                worktree: p.worktree,
                tree: "",
                attempt: p.attempt,
                candidate: 0,
                partial: true,
            };
            if let Ok(wip) = integrate(ctx, self.run, self.bead, p.plan, p.approved_by, work).await {
                kept = Some(wip);
            }
        }
        let branch_note = match &kept {
            Some(k) if !k.commit.is_empty() => {
                format!("partial work kept on branch {} at {}", k.branch, short(&k.commit))
            }
            _ => "no partial work to keep".to_string(),
        };
        let note = format!(
            "CHUM run {} stopped: {why}; {branch_note}. Raise the cap in [budget] (or wait for the next day) and reopen the bead.",
            self.run.workflow_id
        );
        let _ = update_bead(ctx, self.run, "blocked", &note, "").await;
        self.conclude(ctx, Outcome::BudgetExhausted, why, kept.as_ref()).await
    }
}

/// An activity failed for good. Cancellation propagates; anything else ends the run with outcome
/// `failed`, the reason and, where possible, a note on the bead.
async fn fail(
    ctx: &WorkflowContext<SharkWorkflow>,
    run: &RunRef,
    err: ActivityExecutionError,
) -> WorkflowResult<SharkResult> {
    if matches!(err, ActivityExecutionError::Cancelled(_)) || ctx.cancellation_token().is_cancelled() {
        ctx.state_mut(|s| s.status.reason = "cancelled".to_string());
        // The run's own token is cancelled, so the note goes out on a detached one.
        let request = UpdateBeadRequest {
            run: Some(run.clone()),
            status: "open".to_string(),
            note: format!("CHUM run {} was cancelled; nothing was integrated", run.workflow_id),
            close_reason: String::new(),
        };
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
            .retry_policy(retry(3))
            .cancellation_token(WorkflowCancellationToken::new())
            .build();
        let _ = ctx
            .execute_activity(SharkActivities::update_bead, request, options)
            .await;
        return Err(WorkflowTermination::cancelled());
    }
    let reason = activity_failure_text(&err);
    let note = format!("CHUM run {} failed: {reason}", run.workflow_id);
    let _ = update_bead(ctx, run, "blocked", &note, "").await;
    Ok(finish(ctx, Outcome::Failed, reason, None))
}

/// The innermost failure message, which is the one the activity wrote.
fn activity_failure_text(err: &ActivityExecutionError) -> String {
    let Some(mut failure) = err.failure() else {
        return err.to_string();
    };
    let mut message = failure.message.clone();
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
        if !failure.message.is_empty() {
            message = failure.message.clone();
        }
    }
    let kind = failure_type(failure);
    if error_types::NON_RETRYABLE.contains(&kind.as_str()) || kind.is_empty() {
        message
    } else {
        format!("{message} ({kind})")
    }
}

fn failure_type(failure: &Failure) -> String {
    use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
    match &failure.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) => info.r#type.clone(),
        _ => String::new(),
    }
}

fn finish(
    ctx: &WorkflowContext<SharkWorkflow>,
    outcome: Outcome,
    reason: String,
    integration: Option<&IntegrationReport>,
) -> SharkResult {
    enter_phase(ctx, Phase::Done, 0);
    ctx.state_mut(|s| {
        s.status.set_outcome(outcome);
        s.status.reason = reason.clone();
        let status = &s.status;
        let approved_by = status
            .decisions
            .iter()
            .rev()
            .find(|d| d.approved)
            .map(|d| d.by.clone())
            .unwrap_or_default();
        SharkResult {
            project: status.project.clone(),
            bead_id: status.bead_id.clone(),
            outcome: outcome as i32,
            reason,
            attempts: status.attempt,
            plan: status.plan.clone(),
            approved_by,
            branch: integration
                .map(|i| i.branch.clone())
                .unwrap_or_else(|| status.branch.clone()),
            commit: integration.map(|i| i.commit.clone()).unwrap_or_default(),
            merged: integration.is_some_and(|i| i.merged),
            base_branch: integration.map(|i| i.base_branch.clone()).unwrap_or_default(),
            gate_results: status.gate_results.clone(),
            phases: status.phases.clone(),
            usage: status.usage,
            learner_workflow_id: status.learner_workflow_id.clone(),
            groom_workflow_id: status.groom_workflow_id.clone(),
            ..SharkResult::default()
        }
    })
}

fn now_ms(ctx: &WorkflowContext<SharkWorkflow>) -> i64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Closes the current phase span and opens the next.
fn enter_phase(ctx: &WorkflowContext<SharkWorkflow>, phase: Phase, round: u32) {
    let now = now_ms(ctx);
    ctx.state_mut(|s| {
        if let Some(open) = s.status.phases.last_mut().filter(|p| p.ended_ms == 0) {
            open.ended_ms = now;
        }
        s.status.set_phase(phase);
        if phase != Phase::Done {
            let mut span = PhaseSpan {
                round,
                started_ms: now,
                ..PhaseSpan::default()
            };
            span.set_phase(phase);
            s.status.phases.push(span);
        }
    });
}

fn record_gate(
    ctx: &WorkflowContext<SharkWorkflow>,
    gate: &str,
    round: u32,
    passed: bool,
    duration_ms: u64,
    text: &str,
    artifact: &str,
) {
    let result = GateResult {
        gate: gate.to_string(),
        round,
        passed,
        duration_ms,
        excerpt: text.to_string(),
        artifact: artifact.to_string(),
        ..GateResult::default()
    };
    push_gate(ctx, result);
}

fn push_gate(ctx: &WorkflowContext<SharkWorkflow>, mut result: GateResult) {
    result.excerpt = excerpt(&result.excerpt, EXCERPT_CHARS);
    ctx.state_mut(|s| s.status.gate_results.push(result));
}

fn add_usage(ctx: &WorkflowContext<SharkWorkflow>, agent: Option<&chum_core::proto::AgentRunSummary>) {
    if let Some(usage) = agent.and_then(|a| a.usage.as_ref()) {
        ctx.state_mut(|s| s.status.usage.get_or_insert_with(Default::default).add(usage));
    }
}

/// One line per check for the status, and the first failing check's artifact.
fn dod_summary(dod: &DodReport) -> (String, String) {
    let lines: Vec<String> = dod
        .checks
        .iter()
        .map(|c| {
            let verdict = if c.passed {
                "ok".to_string()
            } else if c.timed_out {
                "timed out".to_string()
            } else {
                format!("failed (exit {})", c.exit_code)
            };
            format!("{}: {verdict} in {} ms", c.command, c.duration_ms)
        })
        .collect();
    let artifact = dod
        .checks
        .iter()
        .find(|c| !c.passed)
        .or(dod.checks.last())
        .map(|c| c.artifact.clone())
        .unwrap_or_default();
    let mut summary = lines.join("\n");
    if let Some(failed) = dod.checks.iter().find(|c| !c.passed) {
        summary.push_str("\n---\n");
        summary.push_str(&tail_excerpt(&failed.output_excerpt, 800));
    }
    (summary, artifact)
}

/// "; discarded what <who> changed: a, b (+3 more)" for an excerpt, or nothing.
fn discarded_note(who: &str, paths: &[String]) -> String {
    if paths.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = paths.iter().take(3).map(String::as_str).collect();
    let more = if paths.len() > 3 {
        format!(" (+{} more)", paths.len() - 3)
    } else {
        String::new()
    };
    format!(
        "; discarded what {who} changed in the worktree: {}{more}",
        shown.join(", ")
    )
}

/// What the next attempt's executor is told: each failing command and its real output.
fn dod_feedback(dod: &DodReport) -> String {
    let mut out = String::from("The definition of done failed.\n");
    for check in dod.checks.iter().filter(|c| !c.passed) {
        let why = if check.timed_out {
            "timed out".to_string()
        } else {
            format!("exited with {}", check.exit_code)
        };
        out.push_str(&format!(
            "\n$ {}\n({why})\n{}\n",
            check.command,
            tail_excerpt(&check.output_excerpt, EXCERPT_CHARS)
        ));
    }
    out
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn retry(maximum_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .maximum_attempts(maximum_attempts)
        .non_retryable_error_types(error_types::NON_RETRYABLE)
        .build()
}

/// Quick bookkeeping (the bead, Semgrep, git, the run record): a local activity for runs started
/// after patch "local-bookkeeping", which saves the server round trip (~50 ms) each of these costs
/// as a regular activity; older runs replay with the regular activities they recorded. The steps
/// are idempotent, so a local activity a dead worker did not finish simply runs again.
async fn quick<AD>(
    ctx: &WorkflowContext<SharkWorkflow>,
    activity: AD,
    input: impl Into<AD::Input>,
) -> Result<AD::Output, ActivityExecutionError>
where
    AD: ActivityDefinition,
    AD::Output: TemporalDeserializable,
{
    if ctx.state(|s| s.local_bookkeeping) {
        ctx.execute_local_activity(activity, input, local_options()).await
    } else {
        ctx.execute_activity(activity, input, quick_options()).await
    }
}

fn local_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(120))
        .retry_policy(retry(5))
        .build()
}

/// Bead and git bookkeeping: quick, retried a few times. The activities heartbeat while they run
/// (`supervised`), so a worker that dies in one is noticed after the heartbeat timeout.
fn quick_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(retry(5))
        .build()
}

/// Agent runs: the activity enforces the agent's own timeout and kills its process group; the
/// heartbeat timeout notices a dead worker, and cancellation reaches the activity through heartbeats.
/// A cancelled run waits until the activity has killed its processes, so none outlives the run.
fn agent_options(agent_timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(agent_timeout + Duration::from_secs(120))
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .retry_policy(retry(3))
        .build()
}

fn dod_options(dod_timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(dod_timeout + Duration::from_secs(60))
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .retry_policy(retry(3))
        .build()
}
