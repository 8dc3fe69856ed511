//! The merge queue: one long-lived workflow per project, `merge-queue-<project>`, that hands out
//! turns at the base branch in the order Sharks join.
//!
//! ```text
//! join (signal, from a Shark whose gates passed)   -> waits in line
//! loop:
//!   the first in line gets the turn: signal `merge_turn` to its Shark
//!   wait for its `done` (signal), checking every minute that the Shark is still open
//!     (one that ended without giving the turn back loses it)
//!   after `TURNS_PER_RUN` turns: continue as new with the line (the history stays small)
//! ```
//! Under its turn the Shark itself brings its commit up to the base's tip, runs Semgrep and the
//! definition of done again on exactly that tree when the base had moved, and fast-forwards the
//! base with a compare-and-swap (see `shark::land`). The queue changes nothing in the repository
//! and decides nothing about the work: a forged `merge_turn` or `join` can only change the order,
//! never what lands.

use std::time::Duration;

use chum_core::activity_contract::MergeQueueActivities;
use chum_core::proto::{MergeQueueInput, MergeQueueStatus, QueueEntry, RunOpenRequest, TurnDone};
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::workflows::{select, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ContinueAsNewOptions, SignalWorkflowOptions, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::shark::SharkWorkflow;

/// Turns handed out before the queue continues as new.
const TURNS_PER_RUN: u64 = 50;
/// How often the queue checks that the Shark holding the turn is still open.
const HOLDER_CHECK: Duration = Duration::from_secs(60);
/// Turns given back that the status keeps.
const RECENT: usize = 20;

#[workflow]
#[derive(Default)]
pub struct MergeQueueWorkflow {
    status: MergeQueueStatus,
}

#[workflow_methods]
impl MergeQueueWorkflow {
    #[run(name = "MergeQueue")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: MergeQueueInput) -> WorkflowResult<()> {
        ctx.state_mut(|s| {
            s.status.project = input.project.clone();
            s.status.turns = input.turns_before;
            for entry in &input.waiting {
                join_line(&mut s.status, entry.clone());
            }
            s.status.holder = input.holder.clone();
        });
        let mut turns = 0;
        while turns < TURNS_PER_RUN {
            // A holder carried over continue-as-new keeps its turn; otherwise the next in line.
            if ctx.state(|s| s.status.holder.is_none()) {
                if ctx.wait_condition(|s| !s.status.waiting.is_empty()).await.is_err() {
                    // Cancelled by a person: the queue ends; the next Shark to join starts a new one.
                    return Ok(());
                }
                let next = ctx.state_mut(|s| {
                    let next = s.status.waiting.remove(0);
                    s.status.holder = Some(next.clone());
                    s.status.turns += 1;
                    next
                });
                turns += 1;
                let signal = ctx
                    .external_workflow(next.workflow_id.clone(), Some(next.run_id.clone()))
                    .signal(
                        SharkWorkflow::merge_turn,
                        RawValue::default(),
                        SignalWorkflowOptions::default(),
                    )
                    .await;
                if signal.is_err() {
                    // The Shark is gone: the turn goes to the next in line.
                    ctx.state_mut(|s| s.status.holder = None);
                    continue;
                }
            }
            wait_for_done(ctx).await;
        }
        let next = ctx.state(|s| MergeQueueInput {
            project: input.project.clone(),
            waiting: s.status.waiting.clone(),
            holder: s.status.holder.clone(),
            turns_before: s.status.turns,
        });
        ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
        Ok(())
    }

    /// A Shark whose gates passed waits in line (joining twice keeps its first place).
    #[signal(name = "join")]
    pub fn join(&mut self, _ctx: &mut SyncWorkflowContext<Self>, entry: QueueEntry) {
        join_line(&mut self.status, entry);
    }

    /// The Shark holding the turn gives it back, with what became of it. Anyone else's `done` is
    /// ignored (it cannot take a turn away).
    #[signal(name = "done")]
    pub fn done(&mut self, _ctx: &mut SyncWorkflowContext<Self>, done: TurnDone) {
        let holds = self
            .status
            .holder
            .as_ref()
            .is_some_and(|h| h.workflow_id == done.workflow_id && h.run_id == done.run_id);
        if !holds {
            return;
        }
        self.status.holder = None;
        if done.landed {
            self.status.landed += 1;
        } else {
            self.status.not_landed += 1;
        }
        self.status.reverifications += u64::from(done.reverifications);
        if self.status.recent.len() >= RECENT {
            self.status.recent.remove(0);
        }
        self.status.recent.push(done);
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> MergeQueueStatus {
        self.status.clone()
    }
}

fn join_line(status: &mut MergeQueueStatus, entry: QueueEntry) {
    let same = |e: &QueueEntry| e.workflow_id == entry.workflow_id && e.run_id == entry.run_id;
    if status.waiting.iter().any(same) || status.holder.as_ref().is_some_and(same) {
        return;
    }
    status.waiting.push(entry);
}

/// Waits until the holder gives the turn back, or is found closed.
async fn wait_for_done(ctx: &WorkflowContext<MergeQueueWorkflow>) {
    while let Some(holder) = ctx.state(|s| s.status.holder.clone()) {
        let mut timer = std::pin::pin!(ctx.timer(HOLDER_CHECK));
        let released = select! {
            _ = ctx.wait_condition(|s| s.status.holder.is_none()) => true,
            _ = timer => false,
        };
        if released {
            timer.cancel();
            return;
        }
        let request = RunOpenRequest {
            workflow_id: holder.workflow_id.clone(),
            run_id: holder.run_id.clone(),
        };
        let open = ctx
            .execute_activity(MergeQueueActivities::run_open, request, check_options())
            .await
            .map(|r| r.open)
            // Not knowing is not closed: keep waiting and ask again.
            .unwrap_or(true);
        if !open {
            ctx.state_mut(|s| {
                s.status.holder = None;
                s.status.not_landed += 1;
                s.status.recent.push(TurnDone {
                    workflow_id: holder.workflow_id,
                    run_id: holder.run_id,
                    problem: "the run ended without giving the turn back".into(),
                    ..TurnDone::default()
                });
                if s.status.recent.len() > RECENT {
                    s.status.recent.remove(0);
                }
            });
        }
    }
}

fn check_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            temporalio_common::RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_attempts(3)
                .build(),
        )
        .build()
}
