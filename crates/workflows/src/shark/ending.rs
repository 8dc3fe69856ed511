//! How a run ends. INTEGRATE the work that passed its gates (exactly its gated tree) and close the
//! bead; or ESCALATE (all attempts failed: keep the partial work on its branch, block the bead with
//! the evidence); or stop for a budget, or fail. Every ending then starts the follow-ups that
//! outlive the run: the ContinuousLearner (when the run has something to teach) and the
//! TacticalGroom. A follow-up that cannot start never fails the run; the result says so.

use crate::groom::TacticalGroomWorkflow;
use crate::learner::LearnerWorkflow;
use chum_core::activity_contract::{SharkActivities, error_types};
use chum_core::gate_text::{EXCERPT_CHARS, short_commit};
use chum_core::ids::{groom_workflow_id, learner_workflow_id};
use chum_core::proto::{
    BeadStatus, ExecuteReport, IntegrateRequest, IntegrationReport, LearnerInput, Outcome, Phase, SharkResult,
    SharkStatus, TacticalGroomInput, UpdateBeadRequest,
};
use chum_core::text::{excerpt, tail_excerpt};
use temporalio_common::WorkflowDefinition;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_sdk::{ActivityExecutionError, WorkflowResult, WorkflowTermination};

use super::options::{detached_options, follow_up_options};
use super::{Approved, Setup, Shark};

/// What an integration commits: the attempt's staged work in `worktree`, which must be `tree`
/// (the tree its gates passed) when it is known.
pub(super) struct Work<'a> {
    pub worktree: &'a str,
    pub tree: &'a str,
    pub attempt: u32,
    pub candidate: u32,
    /// Kept on its branch only: it did not pass its gates.
    pub partial: bool,
    /// Committed only: the merge queue lands it.
    pub hold: bool,
}

/// The work done so far, to keep when a run stops early.
pub(super) struct Partial<'a> {
    pub approved: &'a Approved,
    pub worktree: &'a str,
    pub attempt: u32,
}

impl Shark<'_> {
    /// INTEGRATE the winning work, close the bead with the evidence, conclude.
    pub(super) async fn integrate_and_close(
        &self,
        setup: &Setup,
        approved: &Approved,
        report: &ExecuteReport,
        attempt: u32,
        candidate: u32,
    ) -> WorkflowResult<SharkResult> {
        self.enter_phase(Phase::Integrating, attempt);
        let work = Work {
            worktree: &report.worktree,
            tree: &report.tree,
            attempt,
            candidate,
            partial: false,
            hold: false,
        };
        let integration = match self.integrate(setup, approved, work).await {
            Ok(integration) => integration,
            Err(err) => return self.fail(err).await,
        };
        self.close_integrated(setup, approved, &integration, attempt).await
    }

    /// After integration: close the bead with the evidence (or block it when the work could not
    /// be integrated), conclude.
    pub(super) async fn close_integrated(
        &self,
        setup: &Setup,
        approved: &Approved,
        integration: &IntegrationReport,
        attempt: u32,
    ) -> WorkflowResult<SharkResult> {
        let workflow_id = &self.run.workflow_id;
        if !integration.problem.is_empty() {
            let reason = format!(
                "the work passed its gates but was not integrated: {}",
                integration.problem
            );
            let note = format!(
                "CHUM run {workflow_id}: integration failed: {}; the work is on branch {}",
                integration.problem, integration.branch
            );
            let _ = self.update_bead(BeadStatus::Blocked, &note, "").await;
            return Ok(self
                .conclude(setup, Outcome::IntegrationFailed, reason, Some(integration))
                .await);
        }
        let reason = if integration.merged {
            format!(
                "commit {} merged into {}",
                short_commit(&integration.commit),
                integration.base_branch
            )
        } else {
            format!(
                "commit {} on branch {}",
                short_commit(&integration.commit),
                integration.branch
            )
        };
        let close_reason = format!(
            "CHUM run {workflow_id}: {reason}; plan: {}; definition of done passed on attempt {attempt}",
            approved.plan.summary
        );
        if let Err(err) = self.update_bead(BeadStatus::Closed, "", &close_reason).await {
            return self.fail(err).await;
        }
        Ok(self
            .conclude(setup, Outcome::Integrated, reason, Some(integration))
            .await)
    }

    /// ESCALATE: every attempt failed; keep the partial work, block the bead with the last failure.
    pub(super) async fn escalate(
        &self,
        setup: &Setup,
        approved: &Approved,
        last_worktree: &str,
        feedback: &str,
    ) -> SharkResult {
        let max_attempts = self.limits.max_attempts;
        let kept = self
            .keep_partial(
                setup,
                Partial {
                    approved,
                    worktree: last_worktree,
                    attempt: max_attempts,
                },
            )
            .await;
        let reason = format!(
            "all {max_attempts} attempts failed their gates; last failure: {}",
            excerpt(feedback, 600)
        );
        let note = format!(
            "CHUM run {}: escalated after {max_attempts} attempts; {}.\nLast failure:\n{}",
            self.run.workflow_id,
            kept_note(kept.as_ref()),
            tail_excerpt(feedback, EXCERPT_CHARS)
        );
        let _ = self.update_bead(BeadStatus::Blocked, &note, "").await;
        self.conclude(setup, Outcome::Escalated, reason, kept.as_ref()).await
    }

    /// A named gate with `fail = "block"` failed: keep the work on the bead's branch, block the
    /// bead with the gate's output for a person, end escalated (the learner sees the failure).
    pub(super) async fn block_at_gate(
        &self,
        setup: &Setup,
        partial: Partial<'_>,
        gate: &str,
        feedback: &str,
    ) -> SharkResult {
        let kept = self.keep_partial(setup, partial).await;
        let reason = format!(
            "the project's {gate:?} gate blocked the work: {}",
            excerpt(feedback, 600)
        );
        let note = format!(
            "CHUM run {}: blocked by the project's {gate:?} gate (fail = \"block\"); {}. Look at its output, fix what it found, then `chum retry` the bead.\n{}",
            self.run.workflow_id,
            kept_note(kept.as_ref()),
            tail_excerpt(feedback, EXCERPT_CHARS)
        );
        let _ = self.update_bead(BeadStatus::Blocked, &note, "").await;
        self.conclude(setup, Outcome::Escalated, reason, kept.as_ref()).await
    }

    /// Nobody decided on the result in time: the work stays on the bead's branch, never
    /// integrated; the bead is blocked with the reason.
    pub(super) async fn end_without_decision(
        &self,
        setup: &Setup,
        partial: Partial<'_>,
        reason: String,
    ) -> SharkResult {
        let kept = self.keep_partial(setup, partial).await;
        let note = format!(
            "CHUM run {}: {reason}; {}. Look at the work and `chum retry` the bead to run it again.",
            self.run.workflow_id,
            kept_note(kept.as_ref())
        );
        let _ = self.update_bead(BeadStatus::Blocked, &note, "").await;
        self.conclude(setup, Outcome::GateTimeout, reason, kept.as_ref()).await
    }

    /// A cap was reached before an agent call: keep the partial work on the bead's branch (as an
    /// escalation does), block the bead with the reason, end with `budget_exhausted`.
    pub(super) async fn stop_for_budget(
        &self,
        setup: &Setup,
        err: &ActivityExecutionError,
        partial: Option<Partial<'_>>,
    ) -> SharkResult {
        let why = activity_failure_text(err);
        let kept = match partial {
            Some(p) => self.keep_partial(setup, p).await,
            None => None,
        };
        let note = format!(
            "CHUM run {} stopped: {why}; {}. Raise the cap in [budget] (or wait for the next day) and reopen the bead.",
            self.run.workflow_id,
            kept_note(kept.as_ref())
        );
        let _ = self.update_bead(BeadStatus::Blocked, &note, "").await;
        self.conclude(setup, Outcome::BudgetExhausted, why, kept.as_ref()).await
    }

    /// Commits the last execution's work on the bead's branch (never merged); nothing when there
    /// was no execution or the commit failed.
    async fn keep_partial(&self, setup: &Setup, partial: Partial<'_>) -> Option<IntegrationReport> {
        if partial.worktree.is_empty() {
            return None;
        }
        self.enter_phase(Phase::Integrating, partial.attempt);
        let work = Work {
            worktree: partial.worktree,
            tree: "",
            attempt: partial.attempt,
            candidate: 0,
            partial: true,
            hold: false,
        };
        self.integrate(setup, partial.approved, work).await.ok()
    }

    pub(super) async fn integrate(
        &self,
        setup: &Setup,
        approved: &Approved,
        work: Work<'_>,
    ) -> Result<IntegrationReport, ActivityExecutionError> {
        let request = IntegrateRequest {
            run: Some(self.run.clone()),
            bead: Some(setup.bead.clone()),
            plan: Some(approved.plan.clone()),
            worktree: work.worktree.to_string(),
            attempt: work.attempt,
            approved_by: approved.by.clone(),
            partial: work.partial,
            candidate: work.candidate,
            tree: work.tree.to_string(),
            hold: work.hold,
        };
        let report = self.quick_on_host(SharkActivities::integrate, request).await?;
        self.ctx.state_mut(|s| {
            s.status.commit = report.commit.clone();
            if !report.branch.is_empty() {
                s.status.branch = report.branch.clone();
            }
        });
        Ok(report)
    }

    pub(super) async fn update_bead(
        &self,
        status: BeadStatus,
        note: &str,
        close_reason: &str,
    ) -> Result<(), ActivityExecutionError> {
        let request = UpdateBeadRequest {
            run: Some(self.run.clone()),
            status: status as i32,
            note: note.to_string(),
            close_reason: close_reason.to_string(),
        };
        self.quick(SharkActivities::update_bead, request).await.map(|_| ())
    }

    /// Ends the run: starts the ContinuousLearner when the run has something to teach (its work
    /// was integrated or escalated, or people rejected its plans) and the TacticalGroom after
    /// every outcome, then builds the result. A follow-up that did not start is named in the
    /// result's reason (and the status's).
    pub(super) async fn conclude(
        &self,
        setup: &Setup,
        outcome: Outcome,
        reason: String,
        integration: Option<&IntegrationReport>,
    ) -> SharkResult {
        let teaches = matches!(
            outcome,
            Outcome::Integrated | Outcome::Escalated | Outcome::IntegrationFailed | Outcome::GateRejected
        );
        let mut not_started = Vec::new();
        if setup.learn && teaches {
            not_started.extend(self.start_learner(setup, outcome, &reason, integration).await);
        }
        if setup.groom {
            not_started.extend(self.start_groom(setup, outcome, &reason, integration).await);
        }
        let reason = if not_started.is_empty() {
            reason
        } else {
            format!("{reason} ({})", not_started.join("; "))
        };
        self.finish(outcome, reason, integration)
    }

    /// Starts `workflow` as a follow-up child that outlives this run, and waits only until it has
    /// started. Its id is derived from the bead and run, so a replayed or retried start is the same
    /// child. A follow-up is a bonus: one that cannot start never fails the run; the text returned
    /// says why (`what` names it), and a started one's id goes into the status by `record`.
    async fn start_follow_up<WD>(
        &self,
        what: &str,
        workflow: WD,
        input: WD::Input,
        id: String,
        record: impl FnOnce(&mut SharkStatus, String),
    ) -> Option<String>
    where
        WD: WorkflowDefinition + 'static,
        WD::Output: TemporalDeserializable,
    {
        let options = follow_up_options(&id);
        match self.ctx.start_child_workflow(workflow, input, options).await {
            Ok(_) => {
                self.ctx.state_mut(|s| record(&mut s.status, id));
                None
            }
            Err(err) => Some(format!("the {what} did not start: {err}")),
        }
    }

    /// Starts the ContinuousLearner (see [`Shark::start_follow_up`]).
    async fn start_learner(
        &self,
        setup: &Setup,
        outcome: Outcome,
        reason: &str,
        integration: Option<&IntegrationReport>,
    ) -> Option<String> {
        let id = learner_workflow_id(&self.run.project, &self.run.bead_id, &self.run.run_id);
        let input = self.ctx.state(|s| LearnerInput {
            run: Some(self.run.clone()),
            bead: Some(setup.bead.clone()),
            plan: s.status.plan.clone(),
            outcome: outcome as i32,
            reason: reason.to_string(),
            gate_results: s.status.gate_results.clone(),
            diff_artifacts: s.diff_artifacts.clone(),
            decisions: s.status.decisions.clone(),
            commit: integration.map(|i| i.commit.clone()).unwrap_or_default(),
        });
        self.start_follow_up("learner", LearnerWorkflow::run, input, id, |s, id| {
            s.learner_workflow_id = id
        })
        .await
    }

    /// Starts the TacticalGroom (see [`Shark::start_follow_up`]).
    async fn start_groom(
        &self,
        setup: &Setup,
        outcome: Outcome,
        reason: &str,
        integration: Option<&IntegrationReport>,
    ) -> Option<String> {
        let id = groom_workflow_id(&self.run.project, &self.run.bead_id, &self.run.run_id);
        let input = self.ctx.state(|s| TacticalGroomInput {
            run: Some(self.run.clone()),
            bead: Some(setup.bead.clone()),
            outcome: outcome as i32,
            reason: reason.to_string(),
            commit: integration.map(|i| i.commit.clone()).unwrap_or_default(),
            diff_artifacts: s.diff_artifacts.clone(),
        });
        self.start_follow_up("groomer", TacticalGroomWorkflow::run, input, id, |s, id| {
            s.groom_workflow_id = id
        })
        .await
    }

    /// An activity failed for good. Cancellation propagates; anything else ends the run with outcome
    /// `failed`, the reason and, where possible, a note on the bead.
    pub(super) async fn fail(&self, err: ActivityExecutionError) -> WorkflowResult<SharkResult> {
        let workflow_id = &self.run.workflow_id;
        if matches!(err, ActivityExecutionError::Cancelled(_)) || self.ctx.cancellation_token().is_cancelled() {
            return self.end_cancelled().await;
        }
        let reason = activity_failure_text(&err);
        let note = format!("CHUM run {workflow_id} failed: {reason}");
        let _ = self.update_bead(BeadStatus::Blocked, &note, "").await;
        Ok(self.finish(Outcome::Failed, reason, None))
    }
}

impl Shark<'_> {
    /// The run was cancelled: the bead goes back to open (on a detached token, since the run's
    /// own is cancelled) and the cancellation propagates.
    pub(super) async fn end_cancelled(&self) -> WorkflowResult<SharkResult> {
        self.ctx.state_mut(|s| s.status.reason = "cancelled".to_string());
        let request = UpdateBeadRequest {
            run: Some(self.run.clone()),
            status: BeadStatus::Open as i32,
            note: format!(
                "CHUM run {} was cancelled; nothing was integrated",
                self.run.workflow_id
            ),
            close_reason: String::new(),
        };
        let _ = self
            .ctx
            .execute_activity(SharkActivities::update_bead, request, detached_options())
            .await;
        Err(WorkflowTermination::cancelled())
    }
}

/// "partial work kept on branch chum/x at 0123456789ab", or that there was none.
fn kept_note(kept: Option<&IntegrationReport>) -> String {
    match kept {
        Some(k) if !k.commit.is_empty() => {
            format!(
                "partial work kept on branch {} at {}",
                k.branch,
                short_commit(&k.commit)
            )
        }
        _ => "no partial work to keep".to_string(),
    }
}

/// Whether an activity failed because a spending cap is reached.
pub(super) fn is_budget_exhausted(err: &ActivityExecutionError) -> bool {
    failure_chain(err).any(|f| failure_type(f) == error_types::BUDGET_EXHAUSTED)
}

/// The activity's failure and its causes, outermost first.
pub(super) fn failure_chain(err: &ActivityExecutionError) -> impl Iterator<Item = &Failure> {
    std::iter::successors(err.failure(), |f| f.cause.as_deref())
}

/// The innermost failure message, which is the one the activity wrote.
pub(super) fn activity_failure_text(err: &ActivityExecutionError) -> String {
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
