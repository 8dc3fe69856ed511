//! The Dispatcher's activity: one round of turning ready beads into Sharks.

use crate::log_context::{activity_span, supervised};
use chum_core::live_config::LiveConfig;
use std::collections::BTreeSet;
use std::sync::Arc;

use chum_core::config::ChumConfig;
use chum_core::ids::shark_workflow_id;
use chum_core::proto::{DispatchReport, DispatchRequest};
use futures::StreamExt;
use temporalio_client::Client;
use temporalio_client::errors::ClientError;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::backlog::Backlog;
use crate::error::{config_error, retryable};

/// The registered activities; each call takes the configuration in force when it starts.
pub struct DispatcherActivitiesImpl {
    live: LiveConfig,
}

/// The activity bodies with one configuration snapshot: what one activity sees from start to end.
pub struct DispatcherSteps {
    config: Arc<ChumConfig>,
}

/// The project's running Sharks, from Temporal's visibility.
#[derive(Debug, Default)]
pub struct RunningSharks {
    /// The bead ids of every running Shark.
    pub beads: BTreeSet<String>,
    /// Those whose pull request waits for people (memo `WAITING_MEMO` = "pull_request").
    pub awaiting_pull_request: BTreeSet<String>,
}

/// The memo key a Shark sets while it waits for people outside CHUM (its pull request), so the
/// dispatcher does not count it against the project's capacity.
pub const WAITING_MEMO: &str = chum_core::ids::WAITING_MEMO;

/// The project's running Sharks, from Temporal's visibility.
pub async fn running_sharks(client: &Client, project: &str) -> Result<RunningSharks, ClientError> {
    let prefix = shark_workflow_id(project, "");
    let mut stream = client.list_workflows(
        "WorkflowType = 'Shark' AND ExecutionStatus = 'Running'",
        Default::default(),
    );
    let mut running = RunningSharks::default();
    while let Some(item) = stream.next().await {
        let info = item?;
        if let Some(bead) = info.id().strip_prefix(&prefix) {
            let waiting = info
                .raw()
                .memo
                .as_ref()
                .is_some_and(|m| m.fields.contains_key(WAITING_MEMO));
            if waiting {
                running.awaiting_pull_request.insert(bead.to_string());
            }
            running.beads.insert(bead.to_string());
        }
    }
    Ok(running)
}

impl DispatcherActivitiesImpl {
    pub fn new(config: impl Into<LiveConfig>) -> DispatcherActivitiesImpl {
        DispatcherActivitiesImpl { live: config.into() }
    }

    /// The steps with the configuration in force now.
    pub fn steps(&self) -> DispatcherSteps {
        DispatcherSteps {
            config: self.live.current(),
        }
    }
}

impl DispatcherSteps {
    /// One round: the ready beads in order, minus those with a running Shark, up to the free
    /// capacity, claimed (in_progress, assignee chum) for the Dispatcher to start.
    pub async fn dispatch_round_impl(
        &self,
        client: &Client,
        req: DispatchRequest,
    ) -> Result<DispatchReport, ActivityError> {
        let project = self.config.project(&req.project).map_err(config_error)?;
        let backlog = Backlog::of(project);
        let mut report = DispatchReport {
            concurrency: project.concurrency,
            plan_ahead: project.plan_ahead,
            interval_secs: self.config.dispatcher.interval.as_secs().max(1),
            limits: Some(self.config.limits.to_proto()),
            ..DispatchReport::default()
        };
        // Labelled forge issues become beads first, and the issues show their beads' states.
        if project.intake.is_some() {
            match crate::forge::sync_issues(project).await {
                Ok(intake) => {
                    if !intake.taken.is_empty() || !intake.updated.is_empty() || !intake.problems.is_empty() {
                        tracing::info!(project = %project.name, taken = ?intake.taken, updated = ?intake.updated,
                            problems = ?intake.problems, "forge issues");
                    }
                    report.taken_from_forge = intake.taken;
                    if !intake.problems.is_empty() {
                        report.intake_problem = intake.problems.join("; ");
                    }
                }
                Err(e) => {
                    tracing::warn!(project = %project.name, "forge issues not looked at: {e}");
                    report.intake_problem = e.to_string();
                }
            }
        }
        let ready = match backlog.ready().await {
            Ok(ready) => ready,
            Err(problem) => {
                // A broken backlog is reported in the round (and the status query), not retried hot.
                tracing::warn!(project = %project.name, "dispatcher cannot read the backlog: {problem}");
                report.problem = problem.to_string();
                return Ok(report);
            }
        };
        let running = running_sharks(client, &project.name)
            .await
            .map_err(|e| retryable(format!("cannot list running Sharks: {e}")))?;
        claim_ready(project, &backlog, ready, &running, &mut report).await?;
        if !report.to_start.is_empty() {
            tracing::info!(project = %project.name, beads = ?report.to_start, "dispatching");
        }
        Ok(report)
    }
}

/// The round's claims: of the `ready` beads (in order), those without a running Shark, up to the
/// project's free capacity, claimed (in_progress, assignee chum) in the backlog and put in
/// `report.to_start`; the rest that had no room in `report.waiting`.
pub async fn claim_ready(
    project: &chum_core::config::ProjectConfig,
    backlog: &Backlog,
    ready: Vec<chum_core::backlog::BacklogItem>,
    running: &RunningSharks,
    report: &mut DispatchReport,
) -> Result<(), ActivityError> {
    report.ready = ready.len() as u32;
    report.running = running.beads.len() as u32;
    report.awaiting_pull_request = running.awaiting_pull_request.len() as u32;
    // At most `concurrency` of them execute (their Coordinator's slots see to it); waiting for
    // a person holds no slot, so up to `plan_ahead` more may plan and wait at their gates. A
    // pull request waiting on the forge takes nothing: people may take days.
    let active = running.beads.len() - running.awaiting_pull_request.len();
    let mut capacity = ((project.concurrency + project.plan_ahead) as usize).saturating_sub(active);
    for item in ready {
        if running.beads.contains(&item.id) {
            continue;
        }
        if capacity == 0 {
            report.waiting.push(item.id.clone());
            continue;
        }
        if let Err(e) = chum_core::ids::check_bead_id(&item.id) {
            tracing::warn!(bead = %item.id, "not dispatched: {e}");
            continue;
        }
        report.to_start.push(item.id.clone());
        capacity -= 1;
    }
    // One write for the round's claims.
    backlog.claim_all(&report.to_start).await.map_err(retryable)?;
    Ok(())
}

#[activities]
impl DispatcherActivitiesImpl {
    #[activity(definition = chum_core::activity_contract::definitions::DispatchRound)]
    pub async fn dispatch_round(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: DispatchRequest,
    ) -> Result<DispatchReport, ActivityError> {
        let project = chum_core::proto::RunRef {
            project: req.project.clone(),
            ..Default::default()
        };
        let span = activity_span(&ctx, Some(&project));
        let client = ctx.client();
        supervised(&ctx, span, async move {
            self.steps().dispatch_round_impl(&client, req).await
        })
        .await
    }
}
