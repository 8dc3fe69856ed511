//! The Coordinator's activities: whether a Shark holding a slot or the merge turn is still open (a
//! Shark that ended without giving them back loses them); and a Shark's ask for a slot, sent to
//! the Coordinator with the Temporal client from a local activity, which costs the Shark no
//! workflow task of its own (a child start and a signal each way from workflow code cost four).

use std::sync::Arc;

use chum_core::coordination::same_run;
use chum_core::ids::coordinator_workflow_id;
use chum_core::proto::{CoordinatorInput, RunOpenReport, RunOpenRequest, SlotAnswer, SlotAsk};
use chum_core::workflow_contract::{Acquire, AcquireNow, CoordinatorRun, Status};
use futures::StreamExt;
use temporalio_client::errors::{WorkflowUpdateError, WorkflowUpdateWithStartError};
use temporalio_client::{
    WorkflowExecutionStatus, WorkflowIdConflictPolicy, WorkflowQueryOptions, WorkflowStartOptions,
    WorkflowUpdateWithStartOptions,
};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::error::retryable;

/// The registered activity (it needs only the Temporal client, not the configuration).
#[derive(Default)]
pub struct CoordinatorActivitiesImpl;

#[activities]
impl CoordinatorActivitiesImpl {
    #[activity(definition = chum_core::activity_contract::definitions::RunOpen)]
    pub async fn run_open(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: RunOpenRequest,
    ) -> Result<RunOpenReport, ActivityError> {
        // This run, not the workflow id's latest one (the bead may have been started again).
        let query = format!(
            "WorkflowId = '{}' AND RunId = '{}'",
            req.workflow_id.replace('\'', ""),
            req.run_id.replace('\'', "")
        );
        let mut runs = ctx.client().list_workflows(query, Default::default());
        let open = match runs.next().await {
            Some(found) => {
                let found = found.map_err(|e| retryable(format!("cannot look up {}: {e}", req.workflow_id)))?;
                found.status() == WorkflowExecutionStatus::Running
            }
            // Not listed (yet): not knowing is not closed.
            None => true,
        };
        Ok(RunOpenReport { open })
    }

    /// Sends the project's Coordinator the `acquire_now` update, starting the Coordinator on this
    /// task queue if none runs (update-with-start; an existing one is used). Asking twice keeps
    /// the first place, so a retry after a lost answer is safe.
    #[activity(definition = chum_core::activity_contract::definitions::AskForSlot)]
    pub async fn ask_for_slot(
        self: Arc<Self>,
        ctx: ActivityContext,
        ask: SlotAsk,
    ) -> Result<SlotAnswer, ActivityError> {
        let id = coordinator_workflow_id(&ask.project);
        let input = CoordinatorInput {
            project: ask.project.clone(),
            ..CoordinatorInput::default()
        };
        let request = ask.request.unwrap_or_default();
        let entry = request.entry.clone().unwrap_or_default();
        // One id per ask (a run asks again after giving its slot back): a retried ask is
        // answered by the update the Coordinator already took, not taken twice.
        let update_id = format!("slot-{}-{}-{}", entry.workflow_id, entry.run_id, entry.joined_ms);
        let options = WorkflowUpdateWithStartOptions::new(
            ctx.info().task_queue.clone(),
            id.clone(),
            WorkflowIdConflictPolicy::UseExisting,
        )
        .update_id(update_id)
        .build();
        let client = ctx.client();
        let asked = client
            .execute_update_with_start_workflow(CoordinatorRun, input.clone(), AcquireNow, request.clone(), options)
            .await;
        let problem = match asked {
            Ok(answer) => return Ok(answer),
            Err(e) => update_problem(&e),
        };
        // The server takes at most a few updates in flight per workflow (10 by default), and
        // aborts those in flight when the Coordinator continues as new. A signal has no such
        // limit: the ask goes in line by `acquire` and `slot_granted` answers it. Unless an
        // earlier try of this ask was granted and its answer lost: then the slot is already this
        // run's, and a signal would not be answered.
        tracing::info!(coordinator = %id, %problem, "the slot update was not taken; asking by signal");
        let handle = client.get_workflow_handle::<CoordinatorRun>(id.clone());
        if let Ok(status) = handle.query(Status, (), WorkflowQueryOptions::default()).await
            && status.executing.iter().any(|e| same_run(e, &entry))
        {
            return Ok(SlotAnswer {
                granted: true,
                granted_ms: 0,
            });
        }
        let start = WorkflowStartOptions::new(ctx.info().task_queue.clone(), id.clone()).build();
        client
            .signal_with_start_workflow(CoordinatorRun, input, Acquire, request, start)
            .await
            .map_err(|e| {
                retryable(format!(
                    "cannot ask the coordinator {id} for a slot ({problem}; then by signal: {e})"
                ))
            })?;
        Ok(SlotAnswer::default())
    }
}

/// What went wrong with an update-with-start, in words (the server's message, not the
/// library's debug print).
fn update_problem(err: &WorkflowUpdateWithStartError) -> String {
    match err {
        WorkflowUpdateWithStartError::Update(WorkflowUpdateError::Rpc(status))
        | WorkflowUpdateWithStartError::Update(WorkflowUpdateError::NotFound(status))
        | WorkflowUpdateWithStartError::Rpc(status) => format!("{:?}: {}", status.code(), status.message()),
        other => other.to_string(),
    }
}
