//! The Coordinator as code outside the workflows crate reaches it with the Temporal client: its
//! workflow type and input, its `acquire_now` update, its `acquire` signal and its `status` query. The activities
//! crate cannot depend on the workflows crate (dependencies point one way), so the names live
//! here and the workflows crate's tests hold `CoordinatorWorkflow` to them.

use temporalio_common::{
    HasWorkflowDefinition, QueryDefinition, SignalDefinition, UpdateDefinition, WorkflowDefinition,
};

use crate::proto::{CoordinatorInput, CoordinatorStatus, SlotAnswer, SlotRequest};

/// The Coordinator's Temporal workflow type (the name it was first released under, when it kept
/// only the merge queue).
pub const COORDINATOR_WORKFLOW_TYPE: &str = "MergeQueue";
/// Its update that answers a slot request at once.
pub const ACQUIRE_NOW_UPDATE: &str = "acquire_now";
/// Its signal that puts a slot request in line (answered later by `slot_granted`).
pub const ACQUIRE_SIGNAL: &str = "acquire";
/// Its query: who executes, who waits.
pub const STATUS_QUERY: &str = "status";

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

/// `acquire`: a slot request put in line.
pub struct Acquire;

impl SignalDefinition for Acquire {
    type Workflow = CoordinatorRun;
    type Input = SlotRequest;
    fn name(&self) -> &str {
        ACQUIRE_SIGNAL
    }
}

/// `status`: the Coordinator's lists.
pub struct Status;

impl QueryDefinition for Status {
    type Workflow = CoordinatorRun;
    type Input = ();
    type Output = CoordinatorStatus;
    fn name(&self) -> &str {
        STATUS_QUERY
    }
}
