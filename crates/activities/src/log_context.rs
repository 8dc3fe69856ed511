//! Every log line an activity writes carries the run it works for: the activity's span holds the
//! project, bead, workflow id and run id, and the subscriber (text or `--log-format json`) prints
//! them on each line inside it.

use chum_core::proto::RunRef;
use std::future::Future;
use std::time::Duration;
use temporalio_sdk::activities::ActivityContext;
use tracing::{Instrument as _, Span};

/// How often `supervised` heartbeats: well inside the workflows' heartbeat timeouts (10 s).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

/// The span one activity call runs in. `run` is the Shark run it works for, when its input names
/// one (a learner or groomer names the run it learns from or grooms after); without it the
/// workflow that scheduled the activity is named.
/// The target of the spans that time a step's parts (`make bench` adds them up per bead).
pub const COMPONENT_TARGET: &str = "chum::component";

/// A span timing one part of a step (`name`: "worktree", "git commit", ...). At TRACE level, so
/// it costs nothing and shows in no log unless a subscriber asks for this target (the benchmark).
pub fn component(name: &'static str) -> Span {
    tracing::trace_span!(target: COMPONENT_TARGET, "component", name)
}

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

/// Runs an activity's work in its span and heartbeats while it runs. The workflows give every
/// activity a heartbeat timeout, so a worker killed in the middle of one (SIGKILL, OOM, a lost
/// machine) is noticed in seconds and the activity retried on another worker, instead of after
/// its whole start-to-close timeout. Activities that run agents heartbeat from their process loop
/// as well, but run here too: what comes before the agent (waiting for the repository's worktree
/// lock behind 49 other Sharks, making the worktree) can take longer than the heartbeat timeout,
/// and an activity the server times out while it still runs is retried beside itself (the retry's
/// worktree is then remade under it).
pub async fn supervised<F: Future>(ctx: &ActivityContext, span: Span, work: F) -> F::Output {
    let work = work.instrument(span);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                let _ = ctx.record_heartbeat(()).await;
            }
        }
    }
}
