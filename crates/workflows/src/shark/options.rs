//! Every activity and child workflow option and retry policy of the Shark, in one place. Changing a timeout or a
//! retry count changes no command, so recorded histories still replay; changing which kind of
//! activity a step is (regular or local) does, and goes behind a patch marker (see `quick`).

use std::time::Duration;

use chum_core::activity_contract::error_types;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_common::{ActivityCloseTimeouts, ActivityDefinition, RetryPolicy};
use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, ChildWorkflowOptions, LocalActivityOptions,
    ParentClosePolicy, WorkflowCancellationToken,
};

use super::Shark;

/// Long activities heartbeat every few seconds; the SDK sends at most one heartbeat per 80% of this,
/// which bounds how late a cancellation reaches a running agent.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

fn retry(maximum_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .maximum_attempts(maximum_attempts)
        .non_retryable_error_types(error_types::NON_RETRYABLE)
        .build()
}

impl Shark<'_> {
    /// Quick bookkeeping (the bead, Semgrep, git, the run record): a local activity for runs started
    /// after patch "local-bookkeeping", which saves the server round trip (~50 ms) each of these costs
    /// as a regular activity; older runs replay with the regular activities they recorded. The steps
    /// are idempotent, so a local activity a dead worker did not finish simply runs again.
    pub(super) async fn quick<AD>(
        &self,
        activity: AD,
        input: impl Into<AD::Input>,
    ) -> Result<AD::Output, ActivityExecutionError>
    where
        AD: ActivityDefinition,
        AD::Output: TemporalDeserializable,
    {
        if self.ctx.state(|s| s.local_bookkeeping) {
            self.ctx.execute_local_activity(activity, input, local_options()).await
        } else {
            self.ctx.execute_activity(activity, input, quick_options()).await
        }
    }
}

fn local_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(120))
        .retry_policy(retry(5))
        .build()
}

/// Asking the Coordinator for a slot (runs after patch "slot-by-update"): a local activity
/// around one client call, retried while the Coordinator is busy or continues as new.
pub(super) fn slot_local_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(retry(5))
        .build()
}

/// Bead and git bookkeeping: quick, retried a few times. The activities heartbeat while they run
/// (`supervised`), so a worker that dies in one is noticed after the heartbeat timeout.
pub(super) fn quick_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(retry(5))
        .build()
}

/// The forge (a push and the pull request, or what became of it): retried with backoff while the
/// forge or the remote is down (HTTP 5xx, timeouts), for up to half an hour; the activities are
/// idempotent, so a retry never opens a second pull request.
pub(super) fn forge_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: Duration::from_secs(30 * 60),
        start_to_close: Duration::from_secs(120),
    })
    .heartbeat_timeout(HEARTBEAT_TIMEOUT)
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_secs(1))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(60))
            .non_retryable_error_types(error_types::NON_RETRYABLE)
            .build(),
    )
    .build()
}

/// Agent runs: the activity enforces the agent's own timeout and kills its process group; the
/// heartbeat timeout notices a dead worker, and cancellation reaches the activity through heartbeats.
/// A cancelled run waits until the activity has killed its processes, so none outlives the run.
pub(super) fn agent_options(agent_timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(agent_timeout + Duration::from_secs(120))
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .retry_policy(retry(3))
        .build()
}

pub(super) fn dod_options(dod_timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(dod_timeout + Duration::from_secs(60))
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .retry_policy(retry(3))
        .build()
}

/// The note on a cancelled run's bead: the run's own token is cancelled, so it goes out on a
/// detached one.
pub(super) fn detached_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retry(3))
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

/// A follow-up (the ContinuousLearner, the TacticalGroom): a child that outlives the run.
pub(super) fn follow_up_options(id: &str) -> ChildWorkflowOptions {
    ChildWorkflowOptions::builder()
        .workflow_id(id.to_string())
        .parent_close_policy(ParentClosePolicy::Abandon)
        .build()
}

/// The project's Coordinator, started by the first Shark that needs it: a child that outlives it.
pub(super) fn coordinator_options(id: &str) -> ChildWorkflowOptions {
    follow_up_options(id)
}

/// A Monte Carlo candidate: a child Shark cancelled with its parent.
pub(super) fn candidate_options(id: String) -> ChildWorkflowOptions {
    ChildWorkflowOptions::builder()
        .workflow_id(id)
        .parent_close_policy(ParentClosePolicy::RequestCancel)
        .build()
}
