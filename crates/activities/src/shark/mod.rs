//! The Shark's activities, implementing the declarations in `chum_core::activity_contract`.
//!
//! Failures the Shark can act on (a bad plan, a failed agent run, failing tests, a merge conflict)
//! are returned as data; failures a retry might fix are retryable errors; failures only a person
//! can fix (unknown project, missing agent program, not a git repository) are non-retryable
//! errors of the types in `error_types`.
//!
//! `mod.rs` holds the activities as Temporal sees them and the bookkeeping steps (load the bead,
//! integrate, record the run, update the bead); `agents` the plan, execute and review steps;
//! `checks` Semgrep and the definition of done.

mod agents;
mod checks;

use crate::clock::now_ms;
use crate::error::{config_error, forge_error, permanent, repo_error, retryable};
use crate::log_context::{activity_span, supervised};
use chum_core::live_config::LiveConfig;
use std::sync::Arc;
use tracing::Instrument;

use crate::backlog::Backlog;
use chum_core::activity_contract::error_types;
use chum_core::config::{ChumConfig, IntegrationPolicy, ProjectConfig};
use chum_core::ids::check_bead_id;
use chum_core::proto::{
    BeadStatus, DiscardCandidatesReport, DiscardCandidatesRequest, DodReport, DodRequest, ExecuteReport,
    ExecuteRequest, HostClaim, HostClaimRequest, IntegrateRequest, IntegrationReport, LandReport, LandRequest,
    LoadBeadRequest, LoadBeadResult, NamedGateRequest, PlanDraft, PlanRequest, ProjectGates, PullRequestCheck,
    PullRequestReport, PullRequestRequest, PullRequestStatus, ReviewReport, ReviewRequest, RunRecord, RunRecorded,
    RunRef, SemgrepReport, SemgrepRequest, UpdateBeadRequest, UpdateBeadResult, UpdateToBaseReport,
    UpdateToBaseRequest,
};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::semgrep::ValidationCache;
use crate::store::RunArtifacts;
use crate::store::{Store, StoreError};

/// The registered activities; each call takes the configuration in force when it starts.
pub struct SharkActivitiesImpl {
    live: LiveConfig,
    semgrep_cache: Arc<ValidationCache>,
}

/// The activity bodies with one configuration snapshot: what one activity sees from start to end.
pub struct SharkSteps {
    config: Arc<ChumConfig>,
    semgrep_cache: Arc<ValidationCache>,
}

impl SharkActivitiesImpl {
    pub fn new(config: impl Into<LiveConfig>) -> SharkActivitiesImpl {
        SharkActivitiesImpl {
            live: config.into(),
            semgrep_cache: Arc::new(ValidationCache::default()),
        }
    }

    /// The steps with the configuration in force now.
    pub fn steps(&self) -> SharkSteps {
        SharkSteps {
            config: self.live.current(),
            semgrep_cache: self.semgrep_cache.clone(),
        }
    }
}

impl SharkSteps {
    fn project(&self, run: &RunRef) -> Result<&ProjectConfig, ActivityError> {
        check_bead_id(&run.bead_id).map_err(|m| permanent(error_types::INVALID_INPUT, m))?;
        self.config.project(&run.project).map_err(config_error)
    }

    /// The lesson store of this worker.
    pub fn store(&self) -> Result<Store, StoreError> {
        Store::for_config(&self.config)
    }

    /// The lessons relevant to `text`, as a prompt section, marked as used. A store that cannot be
    /// read costs the prompt its lessons, not the run.
    /// The lessons for a prompt about `text` (marked used). A store that cannot be read leaves
    /// them out: lessons help, they are never needed.
    fn lessons_for(&self, project: &ProjectConfig, text: &str) -> Vec<chum_core::proto::Lesson> {
        let now = now_ms();
        let fresh_since = now - self.config.learner.expiry.as_millis() as i64;
        let found = self.store().and_then(|store| {
            let lessons = store.search(Some(&project.name), text, self.config.learner.top_k, Some(fresh_since))?;
            store.mark_used(&lessons.iter().map(|l| l.id).collect::<Vec<_>>(), now)?;
            Ok(lessons)
        });
        found.unwrap_or_else(|e| {
            tracing::warn!("lessons left out of the prompt: {e}");
            Vec::new()
        })
    }

    fn artifacts(&self, run: &RunRef) -> RunArtifacts {
        RunArtifacts::new(&self.config.state_dir, run)
    }

    /// Reads the bead, checks it can be worked on, and claims it (status `in_progress`).
    pub async fn load_bead_impl(&self, req: LoadBeadRequest) -> Result<LoadBeadResult, ActivityError> {
        let run = req.run.unwrap_or_default();
        let project = self.project(&run)?;
        let backlog = Backlog::of(project);
        let unavailable = |problem: String| {
            Ok(LoadBeadResult {
                bead: None,
                problem,
                gates: None,
            })
        };
        let bead = match backlog.get(&run.bead_id).await {
            Ok(bead) => bead,
            Err(e) => return unavailable(e.to_string()),
        };
        match bead.state() {
            BeadStatus::Closed | BeadStatus::Tombstone => {
                return unavailable(format!("bead {} is already {}", bead.id, bead.status));
            }
            _ if bead.issue_type == "epic" => {
                return unavailable(format!("bead {} is an epic; CHUM works on its children", bead.id));
            }
            _ => {}
        }
        let claimed = backlog.claim(&run.bead_id).await.map_err(retryable)?;
        tracing::info!(project = %run.project, bead = %run.bead_id, "claimed bead");
        let fanout = chum_core::candidate::fanout_of(&claimed.labels, project.fanout);
        let select = chum_core::candidate::select_of(&claimed.labels, project.select) as i32;
        let approve_result = project.approve_result
            || claimed
                .labels
                .iter()
                .any(|l| l == chum_core::gate::APPROVE_RESULT_LABEL);
        Ok(LoadBeadResult {
            bead: Some(claimed),
            problem: String::new(),
            gates: Some(ProjectGates {
                order: project.gates.iter().map(|g| *g as i32).collect(),
                review_fail_open: project.review_fail_open,
                learn: self.config.learning(),
                groom: self.config.grooming(),
                fanout,
                select,
                // `merge` lands through the merge queue: the base only moves to a verified tree.
                merge_queue: matches!(project.integration, IntegrationPolicy::Merge | IntegrationPolicy::Push),
                pull_request: project.integration == IntegrationPolicy::PullRequest,
                pull_request_poll_secs: project
                    .forge
                    .as_ref()
                    .map(|f| u32::try_from(f.poll.as_secs()).unwrap_or(u32::MAX))
                    .unwrap_or_default(),
                pull_request_wait_secs: project.forge.as_ref().map(|f| f.wait.as_secs()).unwrap_or_default(),
                update: project.update as i32,
                rereview_on_update: project.rereview_on_update,
                approve_result,
                concurrency: project.concurrency,
                leases: project.leases as i32,
                notify: !self.config.notify.is_empty(),
                several_hosts: self.config.worker.several_hosts,
                host_wait_secs: self.config.worker.host_wait.as_secs().max(1),
                named: project.named_gates.iter().map(|g| g.to_proto()).collect(),
            }),
        })
    }

    pub async fn integrate_impl(&self, req: IntegrateRequest) -> Result<IntegrationReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let report = crate::repo::integrate(project, &req)
            .instrument(crate::log_context::component("git commit"))
            .await
            .map_err(repo_error)?;
        tracing::info!(bead = %run.bead_id, commit = %report.commit, merged = report.merged, problem = %report.problem, "integrated");
        Ok(report)
    }

    pub async fn update_to_base_impl(&self, req: UpdateToBaseRequest) -> Result<UpdateToBaseReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let report = crate::repo::update_to_base(project, &req).await.map_err(repo_error)?;
        tracing::info!(bead = %run.bead_id, base = %report.base_tip, up_to_date = report.up_to_date,
            conflicts = ?report.conflict_files, problem = %report.problem, "brought up to the base");
        Ok(report)
    }

    pub async fn land_impl(&self, req: LandRequest) -> Result<LandReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let report = crate::repo::land(project, &req).await.map_err(repo_error)?;
        tracing::info!(bead = %run.bead_id, commit = %req.commit, landed = report.landed,
            base_moved = report.base_moved, problem = %report.problem, "landing");
        Ok(report)
    }

    pub async fn open_pull_request_impl(&self, req: PullRequestRequest) -> Result<PullRequestReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let report = crate::forge::open_pull_request(project, &req)
            .await
            .map_err(forge_error)?;
        tracing::info!(bead = %run.bead_id, number = report.number, url = %report.url, created = report.created,
            head = %report.head, problem = %report.problem, "pull request");
        Ok(report)
    }

    pub async fn check_pull_request_impl(&self, req: PullRequestCheck) -> Result<PullRequestStatus, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let status = crate::forge::check_pull_request(project, &req)
            .await
            .map_err(forge_error)?;
        tracing::info!(bead = %run.bead_id, number = req.number, state = %status.state(), actor = %status.actor,
            wait_secs = status.wait_secs, "pull request checked");
        Ok(status)
    }

    /// This worker claims the attempt: its host and its own task queue. After a lost host, the
    /// remote's base is looked at first: work of this run found there (by its `Chum-Run:`
    /// trailer) has landed, and the run closes with it instead of doing it again.
    pub async fn claim_host_impl(&self, req: HostClaimRequest) -> Result<HostClaim, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let host = &self.config.worker.host;
        let mut claim = HostClaim {
            host: host.clone(),
            task_queue: self.config.worker.host_task_queue(&self.config.temporal.task_queue),
            ..HostClaim::default()
        };
        if !req.lost_host.is_empty() {
            let project = self.project(&run)?;
            if let Some(commit) = crate::repo::landed_by_run(project, &run.workflow_id, &run.run_id)
                .await
                .map_err(repo_error)?
            {
                claim.landed_commit = commit;
                claim.base_branch = project.landing_branch();
            }
            tracing::warn!(bead = %run.bead_id, lost = %req.lost_host, landed = %claim.landed_commit,
                "the attempt's host stopped answering; it moves here");
        }
        tracing::info!(bead = %run.bead_id, %host, "attempt claimed");
        Ok(claim)
    }

    pub async fn update_bead_impl(&self, req: UpdateBeadRequest) -> Result<UpdateBeadResult, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let status = Backlog::of(project)
            .update(&run.bead_id, req.status(), &req.note, &req.close_reason)
            .await
            .map_err(retryable)?;
        tracing::info!(bead = %run.bead_id, %status, "bead updated");
        Ok(UpdateBeadResult { status })
    }
}

#[activities]
impl SharkActivitiesImpl {
    #[activity(definition = chum_core::activity_contract::definitions::LoadBead)]
    pub async fn load_bead(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: LoadBeadRequest,
    ) -> Result<LoadBeadResult, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move { self.steps().load_bead_impl(req).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Plan)]
    pub async fn plan(self: Arc<Self>, ctx: ActivityContext, req: PlanRequest) -> Result<PlanDraft, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async { self.steps().plan_impl(req, &ctx).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Execute)]
    pub async fn execute(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ExecuteRequest,
    ) -> Result<ExecuteReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async { self.steps().execute_impl(req, &ctx).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Review)]
    pub async fn review(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ReviewRequest,
    ) -> Result<ReviewReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async { self.steps().review_impl(req, &ctx).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Semgrep)]
    pub async fn semgrep(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: SemgrepRequest,
    ) -> Result<SemgrepReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move { self.steps().semgrep_impl(req).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::RunDod)]
    pub async fn run_dod(self: Arc<Self>, ctx: ActivityContext, req: DodRequest) -> Result<DodReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async { self.steps().run_dod_impl(req, &ctx).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::RunNamedGate)]
    pub async fn run_named_gate(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: NamedGateRequest,
    ) -> Result<DodReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async { self.steps().run_named_gate_impl(req, &ctx).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Integrate)]
    pub async fn integrate(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: IntegrateRequest,
    ) -> Result<IntegrationReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move { self.steps().integrate_impl(req).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::ClaimHost)]
    pub async fn claim_host(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: HostClaimRequest,
    ) -> Result<HostClaim, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move { self.steps().claim_host_impl(req).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::RecordRun)]
    pub async fn record_run(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: RunRecord,
    ) -> Result<RunRecorded, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move {
            let run = req.run.unwrap_or_default();
            let result = req.result.unwrap_or_default();
            let store = self.steps().store().map_err(|e| retryable(e.to_string()))?;
            crate::log_context::component("store write")
                .in_scope(|| store.record_run(&run, &result, now_ms()))
                .map_err(|e| retryable(e.to_string()))?;
            // The run is over: what it left in the project goes (worktrees, its branch once merged,
            // the refs that kept reviewed trees). Unmerged work stays on its branch. A cleanup that
            // fails is logged and left to `chum gc`; it never fails the record.
            let steps = self.steps();
            if let Ok(project) = steps.project(&run) {
                let cleaned = async {
                    let plan = crate::repo::plan_bead_cleanup(project, &run.bead_id).await?;
                    crate::repo::apply_gc(project, &plan).await.map(|()| plan)
                };
                match cleaned.await {
                    Ok(plan) if !plan.is_empty() => tracing::info!(
                        worktrees = plan.worktrees.len(),
                        branches = ?plan.merged_branches,
                        "cleaned up what the run left in the project"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("could not clean up after the run (`chum gc` will): {e}"),
                }
            }
            Ok(RunRecorded {})
        })
        .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::DiscardCandidates)]
    pub async fn discard_candidates(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: DiscardCandidatesRequest,
    ) -> Result<DiscardCandidatesReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move {
            let steps = self.steps();
            let run = req.run.clone().unwrap_or_default();
            let project = steps.project(&run)?;
            let removed = crate::repo::discard_candidates(project, &run.bead_id, req.attempt, &req.candidates)
                .await
                .map_err(repo_error)?;
            tracing::info!(attempt = req.attempt, candidates = ?req.candidates, ?removed, "discarded losing candidates");
            Ok(DiscardCandidatesReport { removed })
        })
        .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::UpdateBead)]
    pub async fn update_bead(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: UpdateBeadRequest,
    ) -> Result<UpdateBeadResult, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move { self.steps().update_bead_impl(req).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::UpdateToBase)]
    pub async fn update_to_base(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: UpdateToBaseRequest,
    ) -> Result<UpdateToBaseReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move { self.steps().update_to_base_impl(req).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::OpenPullRequest)]
    pub async fn open_pull_request(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: PullRequestRequest,
    ) -> Result<PullRequestReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(
            &ctx,
            span,
            async move { self.steps().open_pull_request_impl(req).await },
        )
        .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::CheckPullRequest)]
    pub async fn check_pull_request(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: PullRequestCheck,
    ) -> Result<PullRequestStatus, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(
            &ctx,
            span,
            async move { self.steps().check_pull_request_impl(req).await },
        )
        .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Land)]
    pub async fn land(self: Arc<Self>, ctx: ActivityContext, req: LandRequest) -> Result<LandReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async move { self.steps().land_impl(req).await }).await
    }
}
