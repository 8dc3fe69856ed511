//! The second human gate, on the RESULT (`approve_result`, runs started after patch
//! "approve-result"): the work passed every gate; before anything is integrated a person looks at
//! what it became (the diff, the verdicts, each criterion's evidence: `status`, the API,
//! `chum show <bead> --diff`) and approves it, or rejects it with feedback that the next attempt
//! gets as its findings. The decision comes the way the plan's does: the `approve` update (its
//! validator refuses a malformed or out-of-gate decision before anything is written to history)
//! or the signal (raw, validated, never wedging the run); the gate timeout bounds the wait.

use chum_core::proto::{ExecuteReport, GateName, GateResult, Phase};

use super::notify::WaitingGate;
use super::slots::SlotProblem;
use super::{Approved, Setup, Shark};

/// What a person decided on the result.
pub(super) enum ResultDecision {
    Approved,
    /// The next attempt gets this as its findings.
    Rejected(String),
    /// Nobody decided within the gate timeout; the reason.
    TimedOut(String),
    Cancelled,
    /// The run could not get an execution slot back for the next attempt.
    Unreachable(String),
}

impl Shark<'_> {
    pub(super) async fn wait_for_result(
        &self,
        setup: &Setup,
        approved: &Approved,
        report: &ExecuteReport,
        attempt: u32,
    ) -> ResultDecision {
        // A person takes their time: nobody's slot waits for them.
        self.give_slot_back().await;
        self.ctx.state_mut(|s| {
            s.decision = None;
            s.status.result_diff_artifact = report.diff_artifact.clone();
            s.status.result_diff_stat = report.diff_stat.clone();
        });
        self.enter_phase(Phase::AwaitingResultApproval, attempt);
        let waited_from = self.now_ms();
        let timeout = self.limits.gate_timeout;
        let gate = WaitingGate {
            gate: "result",
            round: attempt,
        };
        let decision = self.wait_at_gate(gate, timeout).await;
        let waited = (self.now_ms() - waited_from).max(0) as u64;
        let Some(decision) = decision else {
            let reason = format!(
                "no decision on the result within the gate timeout of {}s; nothing was integrated",
                timeout.as_secs()
            );
            self.record_result(attempt, false, waited, reason.clone());
            return ResultDecision::TimedOut(reason);
        };
        let who = if decision.by.is_empty() {
            "someone".to_string()
        } else {
            decision.by.clone()
        };
        self.ctx.state_mut(|s| s.status.decisions.push(decision.clone()));
        if decision.approved {
            let note = match decision.feedback.as_str() {
                "" => format!("result approved by {who}"),
                said => format!("result approved by {who}: {said}"),
            };
            self.record_result(attempt, true, waited, note);
            return ResultDecision::Approved;
        }
        let said = if decision.feedback.is_empty() {
            "(no feedback given)"
        } else {
            decision.feedback.as_str()
        };
        self.record_result(attempt, false, waited, format!("result rejected by {who}: {said}"));
        // The next attempt works on the code again: it needs a slot.
        if setup.concurrency > 0 {
            match self.acquire_slot(setup, &approved.plan).await {
                Ok(()) => {}
                Err(SlotProblem::Cancelled) => return ResultDecision::Cancelled,
                Err(SlotProblem::Unreachable(why)) => return ResultDecision::Unreachable(why),
            }
        }
        ResultDecision::Rejected(format!(
            "A person ({who}) rejected the result of the previous attempt: {said}"
        ))
    }

    fn record_result(&self, attempt: u32, passed: bool, waited_ms: u64, excerpt: String) {
        self.push_gate(GateResult {
            gate: GateName::Result as i32,
            round: attempt,
            passed,
            duration_ms: waited_ms,
            excerpt,
            ..GateResult::default()
        });
    }
}
