//! One attempt of the approved plan: EXECUTE in a worktree, then the gates, with redos (a review
//! rejection swaps executor and reviewer; Semgrep findings go back to the same executor) until the
//! gates pass, a DoD fails, or the redos run out.

use chum_core::activity_contract::SharkActivities;
use chum_core::proto::{ExecuteReport, ExecuteRequest, GateName, GateResult, Phase, Plan};
use temporalio_sdk::ActivityExecutionError;

use super::checks::{GatesVerdict, Step};
use super::ending::is_budget_exhausted;
use super::options::agent_options;
use super::{Setup, Shark};

/// One attempt of the plan (or, with fanout, one candidate's attempt) as the workflow sees it.
pub(super) struct AttemptSpec<'a> {
    pub setup: &'a Setup,
    pub plan: &'a Plan,
    pub attempt: u32,
    /// Monte Carlo candidate (1-based) when this run is one; 0 otherwise.
    pub candidate: u32,
}

/// How an attempt ended.
pub(super) enum AttemptEnd {
    /// The work passed every gate (`candidate`: whose work, 0 without fanout).
    Passed {
        report: ExecuteReport,
        candidate: u32,
    },
    /// The gates failed it; the feedback says why.
    Failed,
    /// A named gate with `fail = "block"` failed it; the feedback has its output.
    Blocked {
        gate: String,
    },
    BudgetExhausted(ActivityExecutionError),
    Error(ActivityExecutionError),
}

impl Shark<'_> {
    /// EXECUTE -> gates, with redos, for one attempt. `feedback` carries the previous failure in and
    /// this attempt's out; `last_worktree` the worktree of the last execution.
    pub(super) async fn run_attempt(
        &self,
        spec: &AttemptSpec<'_>,
        feedback: &mut String,
        last_worktree: &mut String,
    ) -> AttemptEnd {
        let AttemptSpec {
            setup, plan, attempt, ..
        } = *spec;
        let limits = &self.limits;
        let mut handoff = 0;
        let mut swapped = false;
        loop {
            self.ctx.state_mut(|s| {
                s.status.attempt = attempt;
                s.status.handoff = handoff;
            });
            self.enter_phase(Phase::Executing, attempt);
            let execute = ExecuteRequest {
                run: Some(self.run.clone()),
                bead: Some(setup.bead.clone()),
                plan: Some(plan.clone()),
                attempt,
                feedback: feedback.clone(),
                timeout_secs: limits.agent_timeout.as_secs(),
                handoff,
                swapped,
                candidate: spec.candidate,
            };
            let report = match self
                .ctx
                .execute_activity(
                    SharkActivities::execute,
                    execute,
                    self.on_host(agent_options(limits.agent_timeout)),
                )
                .await
            {
                Ok(report) => report,
                Err(err) if is_budget_exhausted(&err) => return AttemptEnd::BudgetExhausted(err),
                Err(err) => return AttemptEnd::Error(err),
            };
            self.add_usage(report.agent.as_ref());
            *last_worktree = report.worktree.clone();
            self.ctx
                .state_mut(|s| s.diff_artifacts.push(report.diff_artifact.clone()));
            let executor = report.agent.as_ref().map(|a| a.provider.clone()).unwrap_or_default();
            if !report.problem.is_empty() {
                self.push_gate(GateResult {
                    gate: GateName::Execute as i32,
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
                });
                *feedback = format!("The executor produced nothing usable: {}", report.problem);
                return AttemptEnd::Failed;
            }
            let step = Step {
                setup,
                plan,
                report: &report,
                attempt,
                handoff,
                swapped,
                candidate: spec.candidate,
                verification: 0,
            };
            match self.run_gates(&step).await {
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
                Ok(GatesVerdict::Blocked { gate, feedback: why }) => {
                    *feedback = why;
                    return AttemptEnd::Blocked { gate };
                }
                Err(err) if is_budget_exhausted(&err) => return AttemptEnd::BudgetExhausted(err),
                Err(err) => return AttemptEnd::Error(err),
            }
        }
    }
}
