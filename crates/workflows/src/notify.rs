//! The Notifier: one per event a Shark tells people about (a gate waiting, a gate about to time
//! out, a run ended). The Shark starts it as a child that outlives it and never waits for it, so a
//! target that is down never holds up or fails a run; here its delivery is retried with backoff
//! for up to about ten minutes, then given up (the result says why).
//!
//! ```text
//! deliver_notification (every target that wants the event and has not had it)
//! ```

use std::time::Duration;

use chum_core::activity_contract::NotifyActivities;
use chum_core::proto::{NotifierResult, NotifyEvent};
use temporalio_common::RetryPolicy;
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct NotifierWorkflow;

/// One delivery round is short (each target gets a 10 s request); rounds are retried while a
/// target cannot be reached: 2 s, 4 s, ... up to a minute apart, 12 rounds in all.
fn delivery_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(2))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(12)
                .build(),
        )
        .build()
}

#[workflow_methods]
impl NotifierWorkflow {
    #[run(name = "Notifier")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, event: NotifyEvent) -> WorkflowResult<NotifierResult> {
        match ctx
            .execute_activity(NotifyActivities::deliver, event, delivery_options())
            .await
        {
            Ok(report) => Ok(NotifierResult {
                report: Some(report),
                error: String::new(),
            }),
            Err(err) => Ok(NotifierResult {
                report: None,
                error: format!("not every target was reached: {err}"),
            }),
        }
    }
}
