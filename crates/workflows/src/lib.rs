//! CHUM's deterministic Temporal workflows.
//!
//! Architecture invariant: this crate does no I/O and nothing non-deterministic (no clock, no
//! randomness, no fs, no processes). It depends on `chum-core` and the Temporal SDK only; all side
//! effects are activities declared in `chum_core::activity_contract`. Every workflow path has a
//! replay test against a committed history (`tests/replay.rs`).

pub mod coordinator;
pub mod dispatcher;
pub mod groom;
pub mod learner;
pub mod notify;
pub mod shark;

pub use coordinator::CoordinatorWorkflow;

/// A workflow time (`ctx.workflow_time()`, the time of the current workflow task) in
/// milliseconds since the Unix epoch; 0 when there is none.
pub(crate) fn epoch_ms(time: Option<std::time::SystemTime>) -> i64 {
    time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}
pub use dispatcher::DispatcherWorkflow;
pub use groom::{StrategicGroomWorkflow, TacticalGroomWorkflow};
pub use learner::LearnerWorkflow;
pub use notify::NotifierWorkflow;
pub use shark::{SharkWorkflow, approve_payload, json_payload};

/// The Shark's run definition: the type client handles are parameterized with
/// (`WorkflowHandle<Client, SharkRun>`).
pub type SharkRun = <SharkWorkflow as temporalio_sdk::workflows::WorkflowImplementation>::Run;

/// The ContinuousLearner's run definition, for client handles.
pub type LearnerRun = <LearnerWorkflow as temporalio_sdk::workflows::WorkflowImplementation>::Run;

/// The Coordinator's run definition (execution slots, leases, the merge queue), for client
/// handles (`chum queue`).
pub type CoordinatorRun = <CoordinatorWorkflow as temporalio_sdk::workflows::WorkflowImplementation>::Run;

/// The Dispatcher's run definition, for client handles.
pub type DispatcherRun = <DispatcherWorkflow as temporalio_sdk::workflows::WorkflowImplementation>::Run;

/// The TacticalGroom's run definition, for client handles.
pub type TacticalGroomRun = <TacticalGroomWorkflow as temporalio_sdk::workflows::WorkflowImplementation>::Run;

/// The StrategicGroom's run definition, for client handles and schedules.
pub type StrategicGroomRun = <StrategicGroomWorkflow as temporalio_sdk::workflows::WorkflowImplementation>::Run;

/// The Notifier's run definition, for client handles.
pub type NotifierRun = <NotifierWorkflow as temporalio_sdk::workflows::WorkflowImplementation>::Run;
