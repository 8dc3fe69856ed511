//! A project's merge queue as people see it: who holds the turn at the base branch, who waits,
//! what the last turns came to (`chum queue`).

use chum_core::ids::merge_queue_workflow_id;
use chum_core::proto::MergeQueueStatus;
use chum_workflows::{MergeQueueRun, MergeQueueWorkflow};
use temporalio_client::{Client, WorkflowQueryOptions};

use crate::control::{ControlError, from_client};

/// The `status` query of the project's merge queue. `NotFound` until the first bead of the
/// project passed its gates (the queue starts then).
pub async fn status(client: &Client, project: &str) -> Result<MergeQueueStatus, ControlError> {
    let id = merge_queue_workflow_id(project);
    client
        .get_workflow_handle::<MergeQueueRun>(id.clone())
        .query(MergeQueueWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| from_client(&id, "status query", e))
}
