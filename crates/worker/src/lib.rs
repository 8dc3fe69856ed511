//! The CHUM worker, as a library so integration tests run exactly what the binary runs.
//!
//! Architecture invariant: this crate is wiring only (config, connection, registration, signal
//! handling); logic lives in core, workflows and activities.

use std::sync::Arc;

use chum_activities::{LearnerActivitiesImpl, SharkActivitiesImpl};
use chum_core::config::ChumConfig;
use chum_workflows::{LearnerWorkflow, SharkWorkflow};
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// A worker polling the configured task queue with every CHUM workflow and activity registered.
pub fn build_worker(runtime: &Runtime, client: Client, config: Arc<ChumConfig>) -> anyhow::Result<Worker> {
    let options = WorkerOptions::new(config.temporal.task_queue.clone())
        .register_workflow::<SharkWorkflow>()?
        .register_workflow::<LearnerWorkflow>()?
        .register_activities(SharkActivitiesImpl::new(config.clone()))
        .register_activities(LearnerActivitiesImpl::new(config))
        .build();
    Ok(Worker::new(runtime, client, options)?)
}
