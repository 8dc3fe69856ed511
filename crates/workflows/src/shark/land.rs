//! LAND through the merge queue, kept by the project's Coordinator (projects with the `merge`
//! policy, runs started after patch "merge-queue"): the base branch only moves to a tree whose gates passed on exactly it.
//!
//! ```text
//! commit the gated tree on the bead's branch (held: not merged)
//! join the project's merge queue (started if it is not running) -> QUEUED until the turn comes
//! under the turn, until it lands (a few times at most):
//!   update the commit to the base's tip (rebase or merge)   conflict -> redo, with the hunks
//!   the base had moved: SEMGREP and the DOD again on the new tree (not review)   fail -> redo
//!   fast-forward the base if it is still that tip (compare-and-swap)   moved -> again
//! give the turn back
//! ```
//! A redo is the next attempt, with the conflict or the failing output as its feedback; it
//! starts from the base as it is now.

use chum_core::activity_contract::SharkActivities;
use chum_core::gate_text::{conflict_feedback, reverification_feedback, short_commit};
use chum_core::proto::{
    ExecuteReport, GateName, GateResult, IntegrationReport, LandRequest, Phase, QueueEntry, TurnDone,
    UpdateToBaseRequest,
};
use chum_core::text::excerpt;
use temporalio_sdk::{ActivityExecutionError, SignalWorkflowOptions};

use super::checks::{GatesVerdict, Step};
use super::ending::Work;
use super::named_gates::Moment;
use super::{Approved, Setup, Shark};
use crate::coordinator::CoordinatorWorkflow;

/// How often one turn brings the work up to a base that moved again before giving up.
const MAX_LANDING_TRIES: u32 = 5;

/// How a landing ended.
pub(super) enum Landing {
    /// On the base branch (`merged`, with the landed commit).
    Landed(IntegrationReport),
    /// Not landed; the next attempt redoes the work with this feedback.
    Redo {
        feedback: String,
    },
    /// It cannot land at all (the problem is in the report); the branch is kept.
    Failed(IntegrationReport),
    Error(Box<ActivityExecutionError>),
    /// The run was cancelled while it waited for its turn.
    Cancelled,
}

impl Shark<'_> {
    pub(super) async fn land_through_queue(
        &self,
        setup: &Setup,
        approved: &Approved,
        report: &ExecuteReport,
        attempt: u32,
        candidate: u32,
    ) -> Landing {
        // The gated tree, committed on the bead's branch; the queue's turn lands it.
        let integration = match self.commit_held(setup, approved, report, attempt, candidate).await {
            Ok(integration) => integration,
            Err(ended) => return ended,
        };

        self.enter_phase(Phase::Queued, attempt);
        let queue = self.ensure_coordinator().await;
        self.ctx.state_mut(|s| s.merge_turn = false);
        let entry = QueueEntry {
            workflow_id: self.run.workflow_id.clone(),
            run_id: self.run.run_id.clone(),
            bead_id: self.run.bead_id.clone(),
            attempt,
            joined_ms: self.now_ms(),
            ..QueueEntry::default()
        };
        let joined = self
            .ctx
            .external_workflow(queue.clone(), None)
            .signal(CoordinatorWorkflow::join, entry, SignalWorkflowOptions::default())
            .await;
        if let Err(err) = joined {
            let mut failed = integration;
            failed.problem = format!("the merge queue {queue} could not be joined: {err}");
            return Landing::Failed(failed);
        }
        if self.ctx.wait_condition(|s| s.merge_turn).await.is_err() {
            return Landing::Cancelled;
        }

        self.enter_phase(Phase::Integrating, attempt);
        let (landing, reverifications) = self
            .land_under_turn(setup, approved, report, &integration, attempt)
            .await;
        let done = TurnDone {
            workflow_id: self.run.workflow_id.clone(),
            run_id: self.run.run_id.clone(),
            landed: matches!(landing, Landing::Landed(_)),
            commit: match &landing {
                Landing::Landed(landed) => landed.commit.clone(),
                _ => String::new(),
            },
            problem: match &landing {
                Landing::Redo { feedback } => excerpt(feedback, 300),
                Landing::Failed(failed) => failed.problem.clone(),
                Landing::Error(err) => err.to_string(),
                Landing::Landed(_) | Landing::Cancelled => String::new(),
            },
            reverifications,
        };
        // Giving the turn back cannot fail the run: a queue that misses it takes it back when it
        // finds this run closed.
        let _ = self
            .ctx
            .external_workflow(queue, None)
            .signal(CoordinatorWorkflow::done, done, SignalWorkflowOptions::default())
            .await;
        landing
    }

    /// The gated tree committed on the bead's branch and held there (the merge queue or a pull
    /// request takes it on); `Err` is how the landing ends when it could not be committed.
    pub(super) async fn commit_held(
        &self,
        setup: &Setup,
        approved: &Approved,
        report: &ExecuteReport,
        attempt: u32,
        candidate: u32,
    ) -> Result<IntegrationReport, Landing> {
        self.enter_phase(Phase::Integrating, attempt);
        let work = Work {
            worktree: &report.worktree,
            tree: &report.tree,
            attempt,
            candidate,
            partial: false,
            hold: true,
        };
        let integration = self
            .integrate(setup, approved, work)
            .await
            .map_err(|err| Landing::Error(Box::new(err)))?;
        if !integration.problem.is_empty() {
            return Err(Landing::Failed(integration));
        }
        Ok(integration)
    }

    /// Under the turn: up to the base's tip, verified again if it moved, fast-forwarded. Returns
    /// the landing and how many times the gates ran again.
    async fn land_under_turn(
        &self,
        setup: &Setup,
        approved: &Approved,
        report: &ExecuteReport,
        integration: &IntegrationReport,
        attempt: u32,
    ) -> (Landing, u32) {
        let mut commit = integration.commit.clone();
        let mut verification = 0;
        for _ in 0..MAX_LANDING_TRIES {
            let request = UpdateToBaseRequest {
                run: Some(self.run.clone()),
                branch: integration.branch.clone(),
                worktree: report.worktree.clone(),
                commit: commit.clone(),
                mode: setup.update as i32,
            };
            let update = match self.quick_on_host(SharkActivities::update_to_base, request).await {
                Ok(update) => update,
                Err(err) => return (Landing::Error(Box::new(err)), verification),
            };
            if !update.problem.is_empty() {
                let mut failed = integration.clone();
                failed.problem = update.problem;
                return (Landing::Failed(failed), verification);
            }
            if !update.conflict_files.is_empty() {
                let feedback = conflict_feedback(
                    &integration.base_branch,
                    &update.conflict_files,
                    &update.conflict_excerpt,
                );
                self.record_land(
                    attempt,
                    false,
                    format!("conflict with {}\n{feedback}", integration.base_branch),
                );
                return (Landing::Redo { feedback }, verification);
            }
            if !update.up_to_date {
                // The base moved since the gates passed: the work as it would land is a new tree,
                // and the free gates run again on exactly it.
                verification += 1;
                let updated = ExecuteReport {
                    tree: update.tree.clone(),
                    changed_files: update.changed_files.clone(),
                    base_commit: update.base_tip.clone(),
                    ..report.clone()
                };
                let step = Step {
                    setup,
                    plan: &approved.plan,
                    report: &updated,
                    attempt,
                    handoff: 0,
                    swapped: false,
                    candidate: 0,
                    verification,
                };
                // In the project's order; the review only when the project asks for it.
                let again: Vec<(usize, GateName)> = setup
                    .gates
                    .iter()
                    .copied()
                    .enumerate()
                    .filter(|(_, g)| match g {
                        GateName::Review => setup.rereview_on_update,
                        _ => matches!(g, GateName::Semgrep | GateName::Dod | GateName::Named),
                    })
                    .collect();
                for (index, gate) in again {
                    let verdict = match gate {
                        GateName::Review => self.review_gate(&step, &[]).await,
                        GateName::Semgrep => self.semgrep_gate(&step).await,
                        GateName::Named => self.named_gate_at(&step, index, Moment::Reverification).await,
                        _ => self.dod_gate(&step).await,
                    };
                    match verdict {
                        Ok(None) => {}
                        Ok(Some(GatesVerdict::Blocked { feedback, .. })) => {
                            let mut failed = integration.clone();
                            failed.problem =
                                reverification_feedback(&integration.base_branch, &update.base_tip, &feedback);
                            return (Landing::Failed(failed), verification);
                        }
                        Ok(Some(GatesVerdict::Redo { feedback, .. } | GatesVerdict::Failed { feedback })) => {
                            let feedback =
                                reverification_feedback(&integration.base_branch, &update.base_tip, &feedback);
                            return (Landing::Redo { feedback }, verification);
                        }
                        Ok(Some(GatesVerdict::Passed)) => {}
                        Err(err) => return (Landing::Error(Box::new(err)), verification),
                    }
                }
                self.enter_phase(Phase::Integrating, attempt);
            }
            commit = update.commit.clone();
            let request = LandRequest {
                run: Some(self.run.clone()),
                branch: integration.branch.clone(),
                commit: commit.clone(),
                base_tip: update.base_tip.clone(),
            };
            let land = match self.quick_on_host(SharkActivities::land, request).await {
                Ok(land) => land,
                Err(err) => return (Landing::Error(Box::new(err)), verification),
            };
            if land.landed {
                let checked = match verification {
                    0 => String::new(),
                    n => format!(" (verified again on the moved base {n} time(s))"),
                };
                self.record_land(
                    attempt,
                    true,
                    format!(
                        "landed on {} as {}{checked}",
                        integration.base_branch,
                        short_commit(&commit)
                    ),
                );
                self.ctx.state_mut(|s| s.status.commit = commit.clone());
                let landed = IntegrationReport {
                    commit,
                    merged: true,
                    ..integration.clone()
                };
                return (Landing::Landed(landed), verification);
            }
            if !land.problem.is_empty() {
                let mut failed = integration.clone();
                failed.problem = land.problem;
                return (Landing::Failed(failed), verification);
            }
            // The base moved between the update and the fast-forward (CHUM's own commits, a
            // person): bring the work up to the new tip and verify again.
        }
        let mut failed = integration.clone();
        failed.problem = format!(
            "{} kept moving: {MAX_LANDING_TRIES} updates in one turn did not land",
            integration.base_branch
        );
        (Landing::Failed(failed), verification)
    }

    fn record_land(&self, attempt: u32, passed: bool, excerpt: String) {
        self.push_gate(GateResult {
            gate: GateName::Land as i32,
            round: attempt,
            passed,
            excerpt,
            ..GateResult::default()
        });
    }
}
