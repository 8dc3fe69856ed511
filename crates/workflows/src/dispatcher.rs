//! The Dispatcher: one long-lived workflow per project, `dispatcher-<project>`.
//!
//! ```text
//! every interval (durable timer), unless paused:
//!   dispatch_round (ready beads in order, minus running Sharks, within the concurrency; claimed)
//!   -> start a Shark `shark-<project>-<bead>` for each, as a child that outlives the dispatcher
//!      (an id already running is skipped, not an error)
//! after `rounds_per_run` rounds: continue as new (the history stays small)
//! ```
//! A bead whose Shark ends is closed or blocked by that Shark; a bead it unblocks is ready in the
//! next round. `pause` and `resume` signals (`chum pause|resume <project>`) stop and restart it.

use std::time::Duration;

use chum_core::activity_contract::{DispatcherActivities, SharkActivities, error_types};
use chum_core::ids::shark_workflow_id;
use chum_core::proto::{
    BeadStatus, DispatchReport, DispatchRequest, DispatcherInput, DispatcherStatus, RunRef, SharkInput,
    UpdateBeadRequest,
};
use temporalio_common::RetryPolicy;
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::workflows::{select, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ChildWorkflowOptions, ChildWorkflowStartError, ContinueAsNewOptions,
    ParentClosePolicy, StartChildWorkflowExecutionFailedCause, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use crate::shark::SharkWorkflow;

/// How many started/skipped entries the status keeps.
const KEEP: usize = 50;

#[workflow]
#[derive(Default)]
pub struct DispatcherWorkflow {
    status: DispatcherStatus,
    /// Set by `resume`: run a round now instead of waiting for the timer.
    poked: bool,
}

fn keep_last(list: &mut Vec<String>, item: String) {
    if list.len() >= KEEP {
        list.remove(0);
    }
    list.push(item);
}

/// A round heartbeats while it runs (`supervised`): a worker that dies in one is noticed after
/// 10 s, not after the 120 s start-to-close timeout.
fn round_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .heartbeat_timeout(Duration::from_secs(10))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_interval(Duration::from_secs(30))
                .maximum_attempts(3)
                .non_retryable_error_types(error_types::NON_RETRYABLE)
                .build(),
        )
        .build()
}

#[workflow_methods]
impl DispatcherWorkflow {
    #[run(name = "Dispatcher")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: DispatcherInput) -> WorkflowResult<()> {
        let mut input = input;
        if input.interval_secs == 0 {
            input.interval_secs = 10;
        }
        let rounds_per_run = if input.rounds_per_run == 0 {
            100
        } else {
            input.rounds_per_run
        };
        ctx.state_mut(|s| {
            s.status.project = input.project.clone();
            s.status.paused = input.paused;
            s.status.rounds = input.rounds_before;
        });
        for _ in 0..rounds_per_run {
            if !ctx.state(|s| s.status.paused) {
                // The worker's config as of this round (a running dispatcher follows changes).
                if let Some(report) = dispatch(ctx, &input).await {
                    if report.interval_secs > 0 {
                        input.interval_secs = report.interval_secs;
                    }
                    if report.limits.is_some() {
                        input.limits = report.limits;
                    }
                }
            }
            let interval = Duration::from_secs(input.interval_secs);
            // Wait for the next round, or for `resume`.
            let mut timer = std::pin::pin!(ctx.timer(interval));
            let poked = select! {
                _ = ctx.wait_condition(|s| s.poked) => true,
                _ = timer => false,
            };
            if poked {
                timer.cancel();
            }
            ctx.state_mut(|s| {
                s.poked = false;
                s.status.rounds += 1;
            });
        }
        let next = ctx.state(|s| DispatcherInput {
            paused: s.status.paused,
            rounds_before: s.status.rounds,
            ..input.clone()
        });
        ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
        Ok(())
    }

    /// Stops starting Sharks (running ones go on). The payload, if any, is ignored.
    #[signal(name = "pause")]
    pub fn pause(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _raw: RawValue) {
        self.status.paused = true;
    }

    /// Starts dispatching again, with a round right away.
    #[signal(name = "resume")]
    pub fn resume(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _raw: RawValue) {
        self.status.paused = false;
        self.poked = true;
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> DispatcherStatus {
        self.status.clone()
    }
}

/// One round: claim the beads to start, then start their Sharks. Returns the round's report.
async fn dispatch(ctx: &WorkflowContext<DispatcherWorkflow>, input: &DispatcherInput) -> Option<DispatchReport> {
    let request = DispatchRequest {
        project: input.project.clone(),
    };
    let report = match ctx
        .execute_activity(DispatcherActivities::dispatch_round, request, round_options())
        .await
    {
        Ok(report) => report,
        Err(err) => {
            ctx.state_mut(|s| s.status.last_round.as_mut().map(|r| r.problem = err.to_string()));
            return None;
        }
    };
    ctx.state_mut(|s| s.status.last_round = Some(report.clone()));
    for bead in &report.to_start {
        let id = shark_workflow_id(&input.project, bead);
        let shark = SharkInput {
            project: input.project.clone(),
            bead_id: bead.clone(),
            limits: report.limits.or(input.limits),
            candidate: None,
        };
        let options = ChildWorkflowOptions::builder()
            .workflow_id(id.clone())
            .parent_close_policy(ParentClosePolicy::Abandon)
            .build();
        match ctx.start_child_workflow(SharkWorkflow::run, shark, options).await {
            Ok(_) => ctx.state_mut(|s| keep_last(&mut s.status.started, id)),
            Err(ChildWorkflowStartError::StartFailed {
                cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
                ..
            }) => {
                ctx.state_mut(|s| keep_last(&mut s.status.skipped, format!("{id}: already running")));
            }
            Err(err) => {
                // Give the bead back, so a later round (or a person) can try again.
                let reopen = UpdateBeadRequest {
                    run: Some(RunRef {
                        project: input.project.clone(),
                        bead_id: bead.clone(),
                        ..RunRef::default()
                    }),
                    status: BeadStatus::Open as i32,
                    note: format!("CHUM could not start {id}: {err}"),
                    close_reason: String::new(),
                };
                let _ = ctx
                    .execute_activity(SharkActivities::update_bead, reopen, round_options())
                    .await;
                ctx.state_mut(|s| keep_last(&mut s.status.skipped, format!("{id}: {err}")));
            }
        }
    }
    Some(report)
}
