//! Every log line an activity writes carries the run it works for: the activity's span holds the
//! project, bead, workflow id and run id, and the subscriber (text or `--log-format json`) prints
//! them on each line inside it.

use chum_core::proto::RunRef;
use temporalio_sdk::activities::ActivityContext;
use tracing::Span;

/// The span one activity call runs in. `run` is the Shark run it works for, when its input names
/// one (a learner or groomer names the run it learns from or grooms after); without it the
/// workflow that scheduled the activity is named.
pub fn activity_span(ctx: &ActivityContext, run: Option<&RunRef>) -> Span {
    let info = ctx.info();
    let run = run.cloned().unwrap_or_default();
    let workflow = if run.workflow_id.is_empty() {
        info.workflow_id.clone().unwrap_or_default()
    } else {
        run.workflow_id.clone()
    };
    let run_id = if run.run_id.is_empty() {
        info.workflow_run_id.clone().unwrap_or_default()
    } else {
        run.run_id.clone()
    };
    tracing::info_span!(
        "activity",
        activity = %info.activity_type,
        attempt = info.attempt,
        project = %run.project,
        bead = %run.bead_id,
        workflow = %workflow,
        run = %run_id,
    )
}
