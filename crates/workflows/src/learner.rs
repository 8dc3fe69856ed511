//! The ContinuousLearner: a child of every Shark that ended with something to learn from. It
//! outlives its parent (ParentClosePolicy::Abandon).
//!
//! ```text
//! extract_lessons (learner agent on the run's journal; new lessons stored with provenance)
//!   -> for each rule/antipattern lesson: crystallize_rule (a Semgrep rule, accepted only if real
//!      semgrep says it is valid, matches the bad example, not the good one, and is quiet on the
//!      base branch; then committed to the project)
//! ```

use std::time::Duration;

use chum_core::activity_contract::{LearnerActivities, error_types};
use chum_core::lesson::crystallizable;
use chum_core::proto::{CrystallizeRequest, LearnerInput, LearnerResult};
use temporalio_common::RetryPolicy;
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct LearnerWorkflow;

/// Options of the learner's and the groomers' activities: long agent runs in the background,
/// retried a few times, never for errors only a person can fix.
pub(crate) fn background_agent_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(45 * 60))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(2))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(3)
                .non_retryable_error_types(error_types::NON_RETRYABLE)
                .build(),
        )
        .build()
}

#[workflow_methods]
impl LearnerWorkflow {
    #[run(name = "ContinuousLearner")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: LearnerInput) -> WorkflowResult<LearnerResult> {
        let mut result = LearnerResult {
            run: input.run.clone(),
            ..LearnerResult::default()
        };
        let lessons = match ctx
            .execute_activity(
                LearnerActivities::extract_lessons,
                input.clone(),
                background_agent_options(),
            )
            .await
        {
            Ok(lessons) => lessons,
            Err(err) => {
                result.error = format!("no lessons: {err}");
                return Ok(result);
            }
        };
        result.duplicates_skipped = lessons.duplicates_skipped;
        if !lessons.error.is_empty() {
            result.error = lessons.error.clone();
        }
        for lesson in &lessons.stored {
            if crystallizable(lesson).is_err() {
                continue;
            }
            let request = CrystallizeRequest {
                run: input.run.clone(),
                lesson_id: lesson.id,
            };
            match ctx
                .execute_activity(LearnerActivities::crystallize_rule, request, background_agent_options())
                .await
            {
                Ok(report) => result.rules.push(report),
                Err(err) => {
                    result.error = format!("rule for lesson #{} not crystallized: {err}", lesson.id);
                }
            }
        }
        result.lessons = lessons.stored;
        Ok(result)
    }
}
