//! What people do to a project's Dispatcher: read its status, pause and resume it. Shared by the
//! CLI (`chum dispatcher|pause|resume`) and the HTTP API's project list.

use chum_core::ids::dispatcher_workflow_id;
use chum_core::proto::DispatcherStatus;
use chum_workflows::{DispatcherRun, DispatcherWorkflow, json_payload};
use temporalio_client::{Client, WorkflowQueryOptions, WorkflowSignalOptions};

use crate::control::{ControlError, from_client};

/// The `status` query of the project's Dispatcher. `NotFound` when the worker never started one.
pub async fn status(client: &Client, project: &str) -> Result<DispatcherStatus, ControlError> {
    let id = dispatcher_workflow_id(project);
    client
        .get_workflow_handle::<DispatcherRun>(id.clone())
        .query(DispatcherWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| from_client(&id, "status query", e))
}

/// Sends `pause` (or `resume`) to the project's Dispatcher, signed by `by`. The caller confirms
/// it took effect through [`status`].
pub async fn set_paused(client: &Client, project: &str, pause: bool, by: &str) -> Result<(), ControlError> {
    let id = dispatcher_workflow_id(project);
    let handle = client.get_workflow_handle::<DispatcherRun>(id.clone());
    let payload = json_payload(&serde_json::json!({ "by": by }));
    let sent = if pause {
        handle
            .signal(DispatcherWorkflow::pause, payload, WorkflowSignalOptions::default())
            .await
    } else {
        handle
            .signal(DispatcherWorkflow::resume, payload, WorkflowSignalOptions::default())
            .await
    };
    sent.map_err(|e| from_client(&id, if pause { "pause" } else { "resume" }, e))
}
