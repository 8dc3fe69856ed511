//! What the `status` query shows, kept in workflow state as the run goes: phase spans, gate
//! results (excerpts capped), usage; and the result, built from that state when the run ends.

use chum_core::gate_text::{EXCERPT_CHARS, phase_details};
use chum_core::proto::{
    AgentRunSummary, GateName, GateResult, IntegrationReport, Outcome, Phase, PhaseSpan, SharkResult,
};
use chum_core::text::excerpt;

use super::Shark;

impl Shark<'_> {
    /// The status a run starts with: which bead, how many attempts, which branch.
    pub(super) fn begin(&self, branch: String) {
        let max_attempts = self.limits.max_attempts;
        self.ctx.state_mut(|s| {
            s.status.project = self.run.project.clone();
            s.status.bead_id = self.run.bead_id.clone();
            s.status.max_attempts = max_attempts;
            s.status.branch = branch;
        });
    }

    /// Workflow time (deterministic: the time of the current workflow task), or a later time a
    /// local activity's answer proved has come: workflow time stands still while local
    /// activities run in one workflow task, and a slot granted by the Coordinator during it was
    /// granted at the Coordinator's time, not before (see `slots`).
    pub(super) fn now_ms(&self) -> i64 {
        crate::epoch_ms(self.ctx.workflow_time()).max(self.ctx.state(|s| s.clock_floor_ms))
    }

    /// Closes the current phase span and opens the next.
    pub(super) fn enter_phase(&self, phase: Phase, round: u32) {
        let now = self.now_ms();
        self.ctx.state_mut(|s| {
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
        // For the Temporal UI (no command, so no marker): where the run is, what a person can do.
        self.ctx
            .set_current_details(phase_details(phase, round, &self.run.bead_id));
    }

    pub(super) fn record_gate(
        &self,
        gate: GateName,
        round: u32,
        passed: bool,
        duration_ms: u64,
        text: &str,
        artifact: &str,
    ) {
        self.push_gate(GateResult {
            gate: gate as i32,
            round,
            passed,
            duration_ms,
            excerpt: text.to_string(),
            artifact: artifact.to_string(),
            ..GateResult::default()
        });
    }

    pub(super) fn push_gate(&self, mut result: GateResult) {
        result.excerpt = excerpt(&result.excerpt, EXCERPT_CHARS);
        self.ctx.state_mut(|s| s.status.gate_results.push(result));
    }

    pub(super) fn add_usage(&self, agent: Option<&AgentRunSummary>) {
        if let Some(usage) = agent.and_then(|a| a.usage.as_ref()) {
            self.ctx
                .state_mut(|s| s.status.usage.get_or_insert_with(Default::default).add(usage));
        }
    }

    /// Ends the status (phase done, outcome, reason) and builds the result from it.
    pub(super) fn finish(
        &self,
        outcome: Outcome,
        reason: String,
        integration: Option<&IntegrationReport>,
    ) -> SharkResult {
        self.enter_phase(Phase::Done, 0);
        self.ctx.state_mut(|s| {
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
                pull_request_url: status.pull_request_url.clone(),
                host: status.host.clone(),
                hosts_lost: status.hosts_lost.clone(),
                ..SharkResult::default()
            }
        })
    }
}
