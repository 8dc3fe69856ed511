//! Telling people (runs started after patch "notify", in projects with `[[notify]]` targets): when
//! a gate starts waiting, when it is about to time out, and when the run ends. Each event starts a
//! Notifier child that outlives the run; the run never waits for a delivery, and a Notifier that
//! cannot start is only logged, so a target never holds up or fails a run.

use std::time::Duration;

use chum_core::ids::notify_workflow_id;
use chum_core::proto::{EnumName, NotifyEvent, SharkResult};

use super::Shark;
use super::options::follow_up_options;
use crate::notify::NotifierWorkflow;

/// How long before a gate's timeout people are reminded: a quarter of the timeout, at most an
/// hour (a 24 h gate reminds at 23 h, a 2 h gate at 1 h 30).
pub(super) fn reminder_before(timeout: Duration) -> Duration {
    (timeout / 4).min(Duration::from_secs(3600))
}

/// Which gate waits: the plan's or the result's, and its round (plan round or attempt).
#[derive(Clone, Copy)]
pub(super) struct WaitingGate {
    pub gate: &'static str,
    pub round: u32,
}

impl Shark<'_> {
    fn notifying(&self) -> bool {
        self.ctx.state(|s| s.notify)
    }

    /// An event of this run, with the parts every kind has.
    fn event(&self, kind: &str, at: &str) -> NotifyEvent {
        NotifyEvent {
            id: format!("{}/{}/{kind}/{at}", self.run.workflow_id, self.run.run_id),
            kind: kind.to_string(),
            project: self.run.project.clone(),
            bead_id: self.run.bead_id.clone(),
            workflow_id: self.run.workflow_id.clone(),
            run_id: self.run.run_id.clone(),
            at_ms: self.now_ms(),
            ..NotifyEvent::default()
        }
    }

    /// Starts the Notifier for `event`; its id comes from the event's, so a replayed start is the
    /// same child and an event is never told twice.
    async fn start_notifier(&self, event: NotifyEvent, at: &str) {
        let id = notify_workflow_id(&self.run.project, &self.run.bead_id, &self.run.run_id, &event.kind, at);
        // Never the run's problem: a Notifier that cannot start (the id taken by a replayed start
        // is the same child) leaves the run as it is.
        let _ = self
            .ctx
            .start_child_workflow(NotifierWorkflow::run, event, follow_up_options(&id))
            .await;
    }

    /// A gate's event: `gate_waiting` or `gate_expiring`, with what the person decides on.
    async fn notify_gate(&self, kind: &str, gate: WaitingGate, deadline_ms: i64) {
        let at = format!("{}-{}", gate.gate, gate.round);
        let mut event = self.event(kind, &at);
        event.gate = gate.gate.to_string();
        event.round = gate.round;
        event.deadline_ms = deadline_ms;
        event.summary = self.ctx.state(|s| match gate.gate {
            "result" => s.status.result_diff_stat.clone(),
            _ => s.status.plan.as_ref().map(|p| p.summary.clone()).unwrap_or_default(),
        });
        self.start_notifier(event, &at).await;
    }

    /// The run's end, with its outcome.
    pub(super) async fn notify_end(&self, result: &SharkResult) {
        if !self.notifying() {
            return;
        }
        let mut event = self.event("run_ended", "end");
        event.outcome = result.outcome().name();
        event.reason = result.reason.clone();
        event.commit = result.commit.clone();
        event.summary = result.plan.as_ref().map(|p| p.summary.clone()).unwrap_or_default();
        self.start_notifier(event, "end").await;
    }

    /// Waits for a decision at `gate` for at most `timeout`; with notifications on, people are told
    /// the gate waits and, when a [`reminder_before`] the timeout is left with no decision, that it
    /// is about to time out.
    pub(super) async fn wait_at_gate(
        &self,
        gate: WaitingGate,
        timeout: Duration,
    ) -> Option<chum_core::proto::GateDecision> {
        let deadline_ms = self
            .now_ms()
            .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        // The status shows when the gate times out (the console's inbox counts down to it): state
        // only, no command, so recorded runs replay as they were.
        self.ctx.state_mut(|s| s.status.gate_deadline_ms = deadline_ms);
        let decision = self.wait_with_reminder(gate, timeout, deadline_ms).await;
        self.ctx.state_mut(|s| s.status.gate_deadline_ms = 0);
        decision
    }

    async fn wait_with_reminder(
        &self,
        gate: WaitingGate,
        timeout: Duration,
        deadline_ms: i64,
    ) -> Option<chum_core::proto::GateDecision> {
        if !self.notifying() {
            return self.wait_for_decision(timeout).await;
        }
        self.notify_gate("gate_waiting", gate, deadline_ms).await;
        let reminder = reminder_before(timeout);
        let first = timeout.saturating_sub(reminder);
        if first.is_zero() {
            return self.wait_for_decision(timeout).await;
        }
        if let Some(decision) = self.wait_for_decision(first).await {
            return Some(decision);
        }
        self.notify_gate("gate_expiring", gate, deadline_ms).await;
        self.wait_for_decision(reminder).await
    }
}
