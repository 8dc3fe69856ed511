//! The Coordinator's activity: whether a Shark holding a slot or the merge turn is still open (a
//! Shark that ended without giving them back loses them).

use std::sync::Arc;

use chum_core::proto::{RunOpenReport, RunOpenRequest};
use futures::StreamExt;
use temporalio_client::WorkflowExecutionStatus;
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
}
