//! PLAN -> validate -> the human GATE: plans until a person approves a valid plan, or the run
//! must end (too many invalid plans, too many rejections, the durable gate timeout).

use std::time::Duration;

use chum_core::activity_contract::SharkActivities;
use chum_core::plan::validate_plan;
use chum_core::proto::{Bead, GateDecision, GateName, Outcome, Phase, PlanRequest};
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::workflows::select;
use temporalio_sdk::{ActivityExecutionError, CancellableFuture};

use super::notify::WaitingGate;
use super::options::agent_options;
use super::{Approved, Shark};

/// How the plan-and-gate stage ended.
pub(super) enum GateOutcome {
    Approved(Approved),
    Ended { outcome: Outcome, reason: String },
}

/// The payload of an `approve` signal carrying `decision`, for clients (`chum approve`, tests).
pub fn approve_payload(decision: &serde_json::Value) -> RawValue {
    json_payload(decision)
}

/// A signal payload carrying `value` as JSON (the signals take raw payloads; see `approve`).
pub fn json_payload(value: &serde_json::Value) -> RawValue {
    RawValue::new(vec![chum_core::gate::json_payload(value)])
}

impl Shark<'_> {
    /// Plans, validates and waits at the gate until a person approves a valid plan, or the run must end.
    pub(super) async fn plan_until_approved(&self, bead: &Bead) -> Result<GateOutcome, ActivityExecutionError> {
        let limits = &self.limits;
        let mut feedback = String::new();
        let mut invalid_in_a_row = 0;
        let mut rejections = 0;
        let mut round = 0;
        loop {
            round += 1;
            self.ctx.state_mut(|s| s.status.plan_round = round);
            self.enter_phase(Phase::Planning, round);
            let request = PlanRequest {
                run: Some(self.run.clone()),
                bead: Some(bead.clone()),
                round,
                feedback: feedback.clone(),
                timeout_secs: limits.agent_timeout.as_secs(),
            };
            let draft = self
                .ctx
                .execute_activity(SharkActivities::plan, request, agent_options(limits.agent_timeout))
                .await?;
            self.add_usage(draft.agent.as_ref());
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
                    self.record_gate(GateName::PlanValidation, round, false, 0, &problem, &artifact);
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
            self.record_gate(GateName::PlanValidation, round, true, 0, &plan.summary, &artifact);

            // GATE: nothing touches the code until a person approves this plan.
            // Runs started before this patch take decisions only as the signal.
            let update = self.ctx.patched("approve-update");
            self.ctx.state_mut(|s| {
                s.status.plan = Some(plan.clone());
                s.status.approve_update = update;
                s.decision = None;
            });
            self.enter_phase(Phase::AwaitingApproval, round);
            let waited_from = self.now_ms();
            let gate = WaitingGate { gate: "plan", round };
            let decision = self.wait_at_gate(gate, limits.gate_timeout).await;
            let waited = (self.now_ms() - waited_from).max(0) as u64;
            let Some(decision) = decision else {
                let reason = format!(
                    "no decision within the gate timeout of {}s; nothing was executed",
                    limits.gate_timeout.as_secs()
                );
                self.record_gate(GateName::Human, round, false, waited, &reason, "");
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
            self.ctx.state_mut(|s| s.status.decisions.push(decision.clone()));
            if decision.approved {
                let note = if decision.feedback.is_empty() {
                    format!("approved by {who}")
                } else {
                    format!("approved by {who}: {}", decision.feedback)
                };
                self.record_gate(GateName::Human, round, true, waited, &note, "");
                return Ok(GateOutcome::Approved(Approved { plan, by: who }));
            }
            rejections += 1;
            let said = if decision.feedback.is_empty() {
                "(no feedback given)".to_string()
            } else {
                decision.feedback.clone()
            };
            let note = format!("rejected by {who}: {said}");
            self.record_gate(GateName::Human, round, false, waited, &note, "");
            if rejections >= limits.max_gate_rejections {
                return Ok(GateOutcome::Ended {
                    outcome: Outcome::GateRejected,
                    reason: format!("the plan was rejected {rejections} times; last feedback from {who}: {said}"),
                });
            }
            feedback = format!("A person ({who}) rejected the previous plan: {said}");
        }
    }

    /// Waits for a valid `approve` signal or the durable gate timeout, whichever comes first.
    pub(super) async fn wait_for_decision(&self, timeout: Duration) -> Option<GateDecision> {
        let mut timer = std::pin::pin!(self.ctx.timer(timeout));
        let decided = select! {
            _ = self.ctx.wait_condition(|s| s.decision.is_some()) => true,
            _ = timer => false,
        };
        if decided {
            // A dropped timer stays pending server-side until the run closes; cancel it explicitly.
            timer.cancel();
        }
        self.ctx.state_mut(|s| s.decision.take())
    }
}
