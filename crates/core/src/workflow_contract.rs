//! The Coordinator as code outside the workflows crate reaches it with the Temporal client: its
//! workflow type and input, and its `acquire_now` update. The activities
//! crate cannot depend on the workflows crate (dependencies point one way), so the names live
//! here and the workflows crate's tests hold `CoordinatorWorkflow` to them.

use temporalio_common::{HasWorkflowDefinition, UpdateDefinition, WorkflowDefinition};

use crate::proto::{CoordinatorInput, SlotAnswer, SlotRequest};

/// The Coordinator's Temporal workflow type (the name it was first released under, when it kept
/// only the merge queue).
pub const COORDINATOR_WORKFLOW_TYPE: &str = "MergeQueue";
/// Its update that answers a slot request at once.
pub const ACQUIRE_NOW_UPDATE: &str = "acquire_now";

/// The Coordinator's run: `CoordinatorInput` in, nothing out.
pub struct CoordinatorRun;

impl WorkflowDefinition for CoordinatorRun {
    type Input = CoordinatorInput;
    type Output = ();
    fn name(&self) -> &str {
        COORDINATOR_WORKFLOW_TYPE
    }
}

impl HasWorkflowDefinition for CoordinatorRun {
    type Run = Self;
}

/// `acquire_now`: a slot request answered with whether it was granted now.
pub struct AcquireNow;

impl UpdateDefinition for AcquireNow {
    type Workflow = CoordinatorRun;
    type Input = SlotRequest;
    type Output = SlotAnswer;
    fn name(&self) -> &str {
        ACQUIRE_NOW_UPDATE
    }
}
