//! The project's own gates (`[[projects.<name>.gate]]`): a command run on the work like the
//! definition of done. An `every_attempt` gate runs at its place among the execution's gates; a
//! `before_integration` gate runs once the work has passed every other gate (before the result
//! gate), on exactly the tree about to be integrated. A failure sends the output back to the
//! executor (`fail = "redo"`) or stops the run with the bead blocked (`fail = "block"`).
//! Runs started before patch "named-gates" have none, so their histories are unchanged.

use std::time::Duration;

use chum_core::activity_contract::SharkActivities;
use chum_core::gate_text::{discarded_note, dod_artifact, dod_summary, named_gate_feedback};
use chum_core::proto::{
    ExecuteReport, GateFailure, GateName, GateResult, GateWhen, NamedGate, NamedGateRequest, Phase,
};
use temporalio_sdk::ActivityExecutionError;

use super::checks::{GatesVerdict, Step};
use super::options::dod_options;
use super::{Setup, Shark};

/// The patch marker of named gates; asked only where a project has one.
const NAMED_GATES: &str = "named-gates";

/// Which named gates a pass over the gates runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Moment {
    /// An execution's own gates: the `every_attempt` ones.
    Attempt,
    /// The work as it is about to be integrated: the `before_integration` ones.
    BeforeIntegration,
    /// The work brought up to a base that moved, under the merge queue's turn: all of them.
    Reverification,
}

impl Moment {
    fn runs(self, gate: &NamedGate) -> bool {
        match self {
            Moment::Attempt => gate.when() != GateWhen::BeforeIntegration,
            Moment::BeforeIntegration => gate.when() == GateWhen::BeforeIntegration,
            Moment::Reverification => true,
        }
    }
}

/// The named gate each `GateName::Named` entry of `gates` stands for, in order.
pub(super) fn placed<'s>(setup: &'s Setup) -> impl Iterator<Item = (usize, &'s NamedGate)> + 's {
    setup
        .gates
        .iter()
        .enumerate()
        .filter(|(_, g)| **g == GateName::Named)
        .zip(setup.named_gates.iter())
        .map(|((i, _), gate)| (i, gate))
}

impl Shark<'_> {
    /// Runs the named gate at position `index` of the project's `gates` if `moment` is one of its
    /// moments; `None` when it passed or does not run now.
    pub(super) async fn named_gate_at(
        &self,
        step: &Step<'_>,
        index: usize,
        moment: Moment,
    ) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
        let Some((_, gate)) = placed(step.setup).find(|(i, _)| *i == index) else {
            // A `gates` entry without its definition can only come from a hand-made history.
            self.push_gate(GateResult {
                gate: GateName::Named as i32,
                round: step.attempt,
                handoff: step.handoff,
                passed: true,
                excerpt: "a named gate without its definition: skipped".into(),
                ..GateResult::default()
            });
            return Ok(None);
        };
        if !moment.runs(gate) || !self.ctx.patched(NAMED_GATES) {
            return Ok(None);
        }
        self.named_gate(step, gate).await
    }

    /// BEFORE INTEGRATION: the `before_integration` gates, in order, on the work that passed.
    pub(super) async fn gates_before_integration(
        &self,
        setup: &Setup,
        plan: &chum_core::proto::Plan,
        report: &ExecuteReport,
        attempt: u32,
    ) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
        let step = Step {
            setup,
            plan,
            report,
            attempt,
            handoff: 0,
            swapped: false,
            candidate: 0,
            verification: 0,
        };
        let indexes: Vec<usize> = placed(setup)
            .filter(|(_, g)| Moment::BeforeIntegration.runs(g))
            .map(|(i, _)| i)
            .collect();
        for index in indexes {
            if let Some(verdict) = self.named_gate_at(&step, index, Moment::BeforeIntegration).await? {
                return Ok(Some(verdict));
            }
        }
        Ok(None)
    }

    /// One named gate on one execution's tree.
    async fn named_gate(
        &self,
        step: &Step<'_>,
        gate: &NamedGate,
    ) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
        self.enter_phase(Phase::Gate, step.attempt);
        let timeout = Duration::from_secs(gate.timeout_secs.max(1));
        let request = NamedGateRequest {
            run: Some(self.run.clone()),
            worktree: step.report.worktree.clone(),
            attempt: step.attempt,
            handoff: step.handoff,
            name: gate.name.clone(),
            timeout_secs: timeout.as_secs(),
            tree: step.report.tree.clone(),
            verification: step.verification,
        };
        let report = self
            .ctx
            .execute_activity(
                SharkActivities::run_named_gate,
                request,
                self.on_host(dod_options(timeout)),
            )
            .await?;
        let mut summary = dod_summary(&report);
        summary.push_str(&discarded_note(&format!("the {:?} gate", gate.name), &report.discarded));
        self.push_gate(GateResult {
            gate: GateName::Named as i32,
            name: gate.name.clone(),
            round: step.attempt,
            handoff: step.handoff,
            candidate: step.candidate,
            verification: step.verification,
            passed: report.passed,
            duration_ms: report.duration_ms,
            excerpt: summary,
            artifact: dod_artifact(&report),
            ..GateResult::default()
        });
        if report.passed {
            return Ok(None);
        }
        let feedback = named_gate_feedback(&gate.name, &report);
        Ok(Some(match gate.fail() {
            GateFailure::Block => GatesVerdict::Blocked {
                gate: gate.name.clone(),
                feedback,
            },
            _ => GatesVerdict::Redo { feedback, swap: false },
        }))
    }
}
