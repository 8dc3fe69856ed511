//! Monte Carlo: an attempt's `fanout` candidates run as child Sharks at once, each in its own
//! worktree (and with the next provider of the executor's tier). `first`: the first to pass every
//! gate wins and the others are cancelled (their agents killed); `best`: all finish and the best
//! passing one wins (`chum_core::candidate::candidate_score`). Every candidate's gate results join
//! the parent's (for the learner); the losers' worktrees and branches are removed, their artifacts
//! stay. A candidate never plans, integrates or touches the bead; its parent does.

use chum_core::activity_contract::SharkActivities;
use chum_core::candidate::{candidate_score, diff_lines};
use chum_core::ids::{candidate_branch, candidate_workflow_id};
use chum_core::proto::{
    CandidateInput, DiscardCandidatesRequest, ExecuteReport, GateName, GateResult, LeaseMode, Outcome, Phase,
    SharkInput, SharkResult, UpdateMode,
};
use chum_core::text::excerpt;
use temporalio_sdk::{ActivityExecutionError, CancellableFuture, WorkflowContext, WorkflowResult, WorkflowTermination};

use super::attempt::{AttemptEnd, AttemptSpec};
use super::ending::activity_failure_text;
use super::options::{candidate_options, quick_options};
use super::{Setup, Shark, SharkWorkflow};

impl Shark<'_> {
    /// Runs the attempt's candidates and picks the winner (see the module doc).
    pub(super) async fn run_candidates(
        &self,
        spec: &AttemptSpec<'_>,
        feedback: &mut String,
        last_worktree: &mut String,
    ) -> AttemptEnd {
        let setup = spec.setup;
        let fanout = setup.fanout;
        self.ctx.state_mut(|s| {
            s.status.attempt = spec.attempt;
            s.status.handoff = 0;
        });
        self.enter_phase(Phase::Executing, spec.attempt);
        let mut running = Vec::new();
        let host = self.host();
        for k in 1..=fanout {
            let input = SharkInput {
                project: self.run.project.clone(),
                bead_id: self.run.bead_id.clone(),
                limits: Some(self.limits.to_proto()),
                candidate: Some(CandidateInput {
                    index: k,
                    count: fanout,
                    attempt: spec.attempt,
                    bead: Some(setup.bead.clone()),
                    plan: Some(spec.plan.clone()),
                    feedback: feedback.clone(),
                    gates: setup.gates.iter().map(|g| *g as i32).collect(),
                    review_fail_open: setup.fail_open,
                    named_gates: setup.named_gates.clone(),
                    host: host.as_ref().map(|h| h.host.clone()).unwrap_or_default(),
                    host_queue: host.as_ref().map(|h| h.task_queue.clone()).unwrap_or_default(),
                    host_wait_secs: host.as_ref().map(|h| h.wait.as_secs()).unwrap_or_default(),
                }),
            };
            let id = candidate_workflow_id(&self.run.project, &self.run.bead_id, &self.run.run_id, spec.attempt, k);
            match self
                .ctx
                .start_child_workflow(SharkWorkflow::run, input, candidate_options(id))
                .await
            {
                Ok(started) => running.push((k, Some(Box::pin(started.result())))),
                Err(err) => self.push_gate(GateResult {
                    gate: GateName::Execute as i32,
                    round: spec.attempt,
                    passed: false,
                    excerpt: format!("candidate {k} did not start: {err}"),
                    candidate: k,
                    ..GateResult::default()
                }),
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
                    if result.outcome() == Outcome::CandidatePassed && !setup.select_best && winner.is_none() {
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
                    self.push_gate(GateResult {
                        gate: GateName::Execute as i32,
                        round: spec.attempt,
                        passed: false,
                        excerpt: lost,
                        candidate: k,
                        ..GateResult::default()
                    });
                }
            }
        }
        if setup.select_best {
            winner = results
                .iter()
                .filter(|(_, r)| r.outcome() == Outcome::CandidatePassed)
                .min_by_key(|(k, r)| candidate_score(*k, r))
                .map(|(k, _)| *k);
        }

        // Every candidate's journal joins this run's: gate results (with their artifacts) and usage.
        results.sort_by_key(|(k, _)| *k);
        for (k, result) in &results {
            self.ctx.state_mut(|s| {
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
                run: Some(self.run.clone()),
                attempt: spec.attempt,
                candidates: losers,
            };
            // Leftover worktrees cost disk, not correctness: a failure here never fails the run.
            let _ = self
                .ctx
                .execute_activity(
                    SharkActivities::discard_candidates,
                    request,
                    self.on_host(quick_options()),
                )
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
}

/// A Monte Carlo candidate (a child Shark): one attempt of the approved plan, with its redos and
/// gates, in its own worktree.
pub(super) async fn run_candidate(
    ctx: &mut WorkflowContext<SharkWorkflow>,
    input: SharkInput,
) -> WorkflowResult<SharkResult> {
    let shark = Shark::new(ctx, &input);
    let c = input.candidate.clone().unwrap_or_default();
    let plan = c.plan.clone().unwrap_or_default();
    shark.begin(candidate_branch(&input.bead_id, c.index));
    shark.ctx.state_mut(|s| {
        s.status.plan = Some(plan.clone());
        s.status.gates = c.gates.clone();
        s.status.review_fail_open = c.review_fail_open;
    });
    let setup = Setup {
        bead: c.bead.clone().unwrap_or_default(),
        gates: c.gates().collect(),
        named_gates: c.named_gates.clone(),
        fail_open: c.review_fail_open,
        learn: false,
        groom: false,
        fanout: 1,
        select_best: false,
        merge_queue: false,
        pull_request: None,
        update: UpdateMode::Unspecified,
        concurrency: 0,
        leases: LeaseMode::Off,
        rereview_on_update: false,
        approve_result: false,
        several_hosts: false,
        host_wait: std::time::Duration::from_secs(c.host_wait_secs.max(1)),
    };
    // Several hosts: the parent's host, where the parent integrates the winner.
    shark.bind_host((!c.host_queue.is_empty()).then(|| super::hosts::HostBinding {
        host: c.host.clone(),
        task_queue: c.host_queue.clone(),
        wait: setup.host_wait,
    }));
    let spec = AttemptSpec {
        setup: &setup,
        plan: &plan,
        attempt: c.attempt,
        candidate: c.index,
    };
    let mut feedback = c.feedback.clone();
    let mut worktree = String::new();
    let (outcome, reason, report) = match shark.run_attempt(&spec, &mut feedback, &mut worktree).await {
        AttemptEnd::Passed { report, .. } => (
            Outcome::CandidatePassed,
            format!("candidate {} passed every gate", c.index),
            Some(report),
        ),
        // A blocking gate stops this candidate; its parent goes on with the others.
        AttemptEnd::Failed | AttemptEnd::Blocked { .. } => (Outcome::CandidateFailed, feedback.clone(), None),
        AttemptEnd::BudgetExhausted(err) => (Outcome::BudgetExhausted, activity_failure_text(&err), None),
        AttemptEnd::Error(err) => {
            if matches!(err, ActivityExecutionError::Cancelled(_)) || shark.ctx.cancellation_token().is_cancelled() {
                return Err(WorkflowTermination::cancelled());
            }
            (Outcome::Failed, activity_failure_text(&err), None)
        }
    };
    let mut result = shark.finish(outcome, reason, None);
    result.candidate = c.index;
    result.worktree = report.as_ref().map(|r| r.worktree.clone()).unwrap_or(worktree);
    result.diff_lines = report.map(|r| diff_lines(&r.diff_stat)).unwrap_or(0);
    Ok(result)
}
