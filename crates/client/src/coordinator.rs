//! A project's Coordinator as people see it (`chum queue`): who executes (holding a slot and the
//! leases on its planned files), who waits for a slot and why, who holds the turn at the base
//! branch, who waits for it, what the last turns came to.

use chum_core::ids::coordinator_workflow_id;
use chum_core::proto::CoordinatorStatus;
use chum_workflows::{CoordinatorRun, CoordinatorWorkflow};
use temporalio_client::{Client, WorkflowQueryOptions};

use crate::control::{ControlError, from_client};

/// The `status` query of the project's Coordinator. `NotFound` until the first plan of the
/// project was approved (it starts then).
pub async fn status(client: &Client, project: &str) -> Result<CoordinatorStatus, ControlError> {
    let id = coordinator_workflow_id(project);
    client
        .get_workflow_handle::<CoordinatorRun>(id.clone())
        .query(CoordinatorWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| from_client(&id, "status query", e))
}
