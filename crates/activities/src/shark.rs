//! The Shark's activities, implementing the declarations in `chum_core::activity_contract`.
//!
//! Failures the Shark can act on (a bad plan, a failed agent run, failing tests, a merge conflict)
//! are returned as data; failures a retry might fix are retryable errors; failures only a person
//! can fix (unknown project, missing agent program, not a git repository) are non-retryable
//! errors of the types in `error_types`.

use crate::clock::now_ms;
use crate::error::{command_error, permanent, repo_error, retryable, setup_error};
use crate::log_context::{activity_span, supervised};
use chum_core::live_config::LiveConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use crate::backlog::Backlog;
use chum_core::activity_contract::error_types;
use chum_core::config::{ChumConfig, ProjectConfig, Role};
use chum_core::ids::check_bead_id;
use chum_core::lesson::lessons_section;
use chum_core::plan::parse_plan;
use chum_core::prompt::{ReviewContext, executor_prompt, planner_prompt, reviewer_prompt};
use chum_core::proto::{
    DiscardCandidatesReport, DiscardCandidatesRequest, DodCheck, DodReport, DodRequest, ExecuteReport, ExecuteRequest,
    IntegrateRequest, IntegrationReport, LoadBeadRequest, LoadBeadResult, PlanDraft, PlanRequest, ProjectGates,
    ReviewReport, ReviewRequest, RunRecord, RunRecorded, RunRef, SemgrepReport, SemgrepRequest, UpdateBeadRequest,
    UpdateBeadResult,
};
use chum_core::review::{AddedLines, check_evidence, parse_verdict};
use chum_core::text::excerpt;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::agent::{AgentRequest, Liveness, run_agent};
use crate::exec::{ProjectCommand, run_project_command};
use crate::repo::{
    AttemptWorktree, RepoProblem, hold_to_tree, prepare_plan_worktree, prepare_worktree, record_candidate,
    remove_worktree, resume_worktree, stage_changes,
};
use crate::repo::{GitError, WorktreeGit};
use crate::semgrep::{ValidationCache, added_lines, locate_core, only_new_findings, rule_files, scan};
use crate::store::RunArtifacts;
use crate::store::{Store, StoreError};

/// Characters of diff a reviewer sees in its prompt; the whole diff is an artifact.
const REVIEW_DIFF_CHARS: usize = 60_000;

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
        self.config
            .project(&run.project)
            .map_err(|m| permanent(error_types::CONFIG, m))
    }

    /// The lesson store of this worker.
    pub fn store(&self) -> Result<Store, StoreError> {
        Store::open(&self.config.state_dir.join("chum.db"))
    }

    /// The lessons relevant to `text`, as a prompt section, marked as used. A store that cannot be
    /// read costs the prompt its lessons, not the run.
    fn lessons_for(&self, project: &ProjectConfig, text: &str) -> String {
        let now = now_ms();
        let fresh_since = now - self.config.learner.expiry.as_millis() as i64;
        let found = self.store().and_then(|store| {
            let lessons = store.search(Some(&project.name), text, self.config.learner.top_k, Some(fresh_since))?;
            store.mark_used(&lessons.iter().map(|l| l.id).collect::<Vec<_>>(), now)?;
            Ok(lessons)
        });
        match found {
            Ok(lessons) => lessons_section(&lessons),
            Err(e) => {
                tracing::warn!("lessons left out of the prompt: {e}");
                String::new()
            }
        }
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
            Err(e) => return unavailable(e),
        };
        match bead.status.as_str() {
            "closed" | "tombstone" => return unavailable(format!("bead {} is already {}", bead.id, bead.status)),
            _ if bead.issue_type == "epic" => {
                return unavailable(format!("bead {} is an epic; CHUM works on its children", bead.id));
            }
            _ => {}
        }
        let claimed = backlog.claim(&run.bead_id).await.map_err(retryable)?;
        tracing::info!(project = %run.project, bead = %run.bead_id, "claimed bead");
        let fanout = chum_core::candidate::fanout_of(&claimed.labels, project.fanout);
        let select = chum_core::candidate::select_of(&claimed.labels, project.select)
            .as_str()
            .to_string();
        Ok(LoadBeadResult {
            bead: Some(claimed),
            problem: String::new(),
            gates: Some(ProjectGates {
                order: project.gates.iter().map(|g| g.as_str().to_string()).collect(),
                review_fail_open: project.review_fail_open,
                learn: self.config.learning(),
                groom: self.config.grooming(),
                fanout,
                select,
            }),
        })
    }

    pub async fn plan_impl(&self, req: PlanRequest, liveness: &impl Liveness) -> Result<PlanDraft, ActivityError> {
        let run = req.run.unwrap_or_default();
        let project = self.project(&run)?;
        let workdir = prepare_plan_worktree(project, &run.bead_id, req.round)
            .await
            .map_err(repo_error)?;
        let bead = req.bead.unwrap_or_default();
        let request = AgentRequest {
            role: Role::Planner,
            run: &run,
            round: req.round,
            handoff: 0,
            swapped: false,
            candidate: 0,
            prompt: planner_prompt(
                &bead,
                req.round,
                &req.feedback,
                &self.lessons_for(
                    project,
                    &format!("{} {} {}", bead.title, bead.description, bead.acceptance_criteria),
                ),
            ),
            workdir: &workdir,
            timeout: Duration::from_secs(req.timeout_secs.max(1)),
            artifact_prefix: format!("plan-{}", req.round),
        };
        let outcome = run_agent(&self.config, &self.artifacts(&run), request, liveness).await;
        // Whatever the planner did in its checkout is thrown away.
        if let Err(e) = remove_worktree(&project.repo, &workdir).await {
            tracing::warn!("could not remove the planning checkout {}: {e}", workdir.display());
        }
        let outcome = outcome.map_err(setup_error)?;
        if outcome.cancelled {
            return Err(ActivityError::cancelled());
        }
        let (plan, error) = match outcome.answer {
            Ok(answer) => match parse_plan(&answer.text) {
                Ok(plan) => (Some(plan), String::new()),
                Err(e) => (None, e),
            },
            Err(e) => (None, e),
        };
        tracing::info!(bead = %run.bead_id, round = req.round, ok = plan.is_some(), "planner answered");
        Ok(PlanDraft {
            plan,
            error,
            agent: Some(outcome.summary),
        })
    }

    /// Runs the project's setup commands in a fresh worktree (its own network: the project's
    /// `setup_allow_hosts`), then keeps git from staging what they made. `Some(problem)` when a
    /// command failed: the attempt fails with its output.
    async fn set_up(
        &self,
        project: &ProjectConfig,
        worktree: &AttemptWorktree,
        artifacts: &RunArtifacts,
        attempt: u32,
        liveness: &impl Liveness,
    ) -> Result<Option<String>, ActivityError> {
        let env = &project.environment;
        if env.setup.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        for (i, command) in env.setup.iter().enumerate() {
            let remaining = env
                .setup_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1));
            let run = run_project_command(
                &self.config,
                project,
                artifacts,
                ProjectCommand {
                    command,
                    worktree: &worktree.path,
                    name: format!("setup-{attempt}-{}", i + 1),
                    timeout: remaining,
                    allow_hosts: Some(&env.setup_allow_hosts),
                },
                liveness,
            )
            .await
            .map_err(command_error)?;
            if run.outcome.cancelled {
                return Err(ActivityError::cancelled());
            }
            tracing::info!(command = %command, passed = run.passed(), ms = run.outcome.duration.as_millis() as u64, "setup command ran");
            if !run.passed() {
                return Ok(Some(format!(
                    "setup command `{command}` failed (exit {}); the agent did not run. Output:\n{}",
                    run.outcome.code(),
                    run.output
                )));
            }
        }
        // What setup made (a venv, node_modules) is the project's environment, not the bead's work.
        let made = worktree
            .git
            .git(&["ls-files", "--others", "--exclude-standard", "--directory", "-z"])
            .await
            .map_err(|e| repo_error(e.into()))?;
        let made: Vec<String> = made
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(|p| p.trim_end_matches('/').to_string())
            .collect();
        worktree
            .git
            .exclude(&made)
            .map_err(|e| retryable(format!("cannot record what setup made: {e}")))?;
        Ok(None)
    }

    pub async fn execute_impl(
        &self,
        req: ExecuteRequest,
        liveness: &impl Liveness,
    ) -> Result<ExecuteReport, ActivityError> {
        let run = req.run.unwrap_or_default();
        let project = self.project(&run)?;
        // A redo continues the attempt's work; a new attempt starts from the base branch.
        let artifacts = self.artifacts(&run);
        let resumed = if req.handoff > 0 {
            match resume_worktree(project, &run.bead_id, req.attempt, req.candidate).await {
                Err(RepoProblem::Git(tampered @ GitError::Tampered { .. })) => {
                    return Ok(ExecuteReport {
                        problem: tampered.to_string(),
                        ..ExecuteReport::default()
                    });
                }
                other => other.map_err(repo_error)?,
            }
        } else {
            None
        };
        let worktree = match resumed {
            Some(worktree) => worktree,
            None => {
                let fresh = prepare_worktree(project, &run.bead_id, req.attempt, req.candidate)
                    .await
                    .map_err(repo_error)?;
                // A fresh worktree gets the project's setup before the agent sees it.
                if let Some(problem) = self.set_up(project, &fresh, &artifacts, req.attempt, liveness).await? {
                    return Ok(ExecuteReport {
                        worktree: fresh.path.display().to_string(),
                        branch: fresh.branch.clone(),
                        base_commit: fresh.base_commit.clone(),
                        problem,
                        ..ExecuteReport::default()
                    });
                }
                fresh
            }
        };
        let bead = req.bead.unwrap_or_default();
        let plan = req.plan.unwrap_or_default();
        let name = format!("execute-{}-{}", req.attempt, req.handoff);
        let request = AgentRequest {
            role: Role::Executor,
            run: &run,
            round: req.attempt,
            handoff: req.handoff,
            swapped: req.swapped,
            candidate: req.candidate,
            prompt: executor_prompt(
                &bead,
                &plan,
                req.attempt,
                req.handoff,
                &project.dod,
                &req.feedback,
                &self.lessons_for(
                    project,
                    &format!(
                        "{} {} {} {}",
                        bead.title,
                        plan.summary,
                        plan.steps.join(" "),
                        plan.files.join(" ")
                    ),
                ),
            ),
            workdir: &worktree.path,
            timeout: Duration::from_secs(req.timeout_secs.max(1)),
            artifact_prefix: name.clone(),
        };
        let outcome = run_agent(&self.config, &artifacts, request, liveness)
            .await
            .map_err(setup_error)?;
        if outcome.cancelled {
            return Err(ActivityError::cancelled());
        }
        let mut report = ExecuteReport {
            worktree: worktree.path.display().to_string(),
            branch: worktree.branch.clone(),
            base_commit: worktree.base_commit.clone(),
            agent: Some(outcome.summary),
            ..ExecuteReport::default()
        };
        // Inside the sandbox the worktree is a mount point: an agent that runs `rm -rf` on it
        // leaves an empty directory, not a missing one.
        if !worktree.path.join(".git").exists() {
            report.problem = format!(
                "the agent deleted its worktree {}; the next attempt starts from a fresh one",
                worktree.path.display()
            );
            return Ok(report);
        }
        // The agent could write its worktree's `.git`: CHUM checks it is still what CHUM made
        // before it runs git there (see `git::WorktreeGit`).
        let git = match WorktreeGit::open(&project.repo, &worktree.path).await {
            Ok(git) => git,
            Err(tampered @ GitError::Tampered { .. }) => {
                report.problem = tampered.to_string();
                return Ok(report);
            }
            Err(e) => return Err(repo_error(e.into())),
        };
        let changes = stage_changes(&git, &worktree.base_commit).await.map_err(repo_error)?;
        report.tree = record_candidate(
            &git,
            &run.bead_id,
            req.attempt,
            req.handoff,
            req.candidate,
            &worktree.base_commit,
        )
        .await
        .map_err(repo_error)?;
        let diff_path = artifacts
            .write(&format!("{name}.diff"), changes.diff.as_bytes())
            .await
            .map_err(|e| retryable(format!("cannot write the diff artifact: {e}")))?;
        report.changed_files = changes.files;
        report.diff_stat = excerpt(&changes.stat, 2000);
        report.diff_artifact = diff_path.display().to_string();
        if let Err(e) = outcome.answer {
            report.problem = e;
        } else if report.changed_files.is_empty() {
            report.problem = "the agent finished without changing any file".to_string();
        }
        tracing::info!(bead = %run.bead_id, attempt = req.attempt, files = report.changed_files.len(), problem = %report.problem, "executor finished");
        Ok(report)
    }

    /// Reviews the attempt's diff with the reviewer (never the provider that executed it).
    pub async fn review_impl(
        &self,
        req: ReviewRequest,
        liveness: &impl Liveness,
    ) -> Result<ReviewReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let worktree = PathBuf::from(&req.worktree);
        let name = format!("review-{}-{}", req.attempt, req.handoff);
        let artifacts = self.artifacts(&run);
        if !worktree.is_dir() {
            return Ok(ReviewReport {
                error: format!(
                    "the attempt's worktree {} is gone; nothing to review",
                    worktree.display()
                ),
                ..ReviewReport::default()
            });
        }
        // The reviewer sees exactly the tree the execution staged.
        let mut discarded = match hold_to_tree(&project.repo, &worktree, &req.tree).await {
            Ok(changed) => changed,
            Err(RepoProblem::Git(tampered @ GitError::Tampered { .. })) => {
                return Ok(ReviewReport {
                    error: tampered.to_string(),
                    ..ReviewReport::default()
                });
            }
            Err(e) => return Err(repo_error(e)),
        };
        let git = match WorktreeGit::open(&project.repo, &worktree).await {
            Ok(git) => git,
            Err(tampered @ GitError::Tampered { .. }) => {
                return Ok(ReviewReport {
                    error: tampered.to_string(),
                    ..ReviewReport::default()
                });
            }
            Err(e) => return Err(retryable(e.to_string())),
        };
        let diff = git
            .git(&["diff", "--cached", "--no-textconv", "--no-ext-diff", &req.base_commit])
            .await
            .map_err(|e| retryable(e.to_string()))?;
        let diff_path = artifacts
            .write(&format!("{name}.diff"), diff.as_bytes())
            .await
            .map_err(|e| retryable(format!("cannot write the diff artifact: {e}")))?;
        let (shown, trimmed_note) = if diff.len() > REVIEW_DIFF_CHARS {
            let cut = diff
                .char_indices()
                .nth(REVIEW_DIFF_CHARS)
                .map(|(i, _)| i)
                .unwrap_or(diff.len());
            let note = format!(
                "[diff trimmed: the first {} of {} bytes are shown; the whole diff is {}]",
                cut,
                diff.len(),
                diff_path.display()
            );
            (&diff[..cut], note)
        } else {
            (diff.as_str(), String::new())
        };
        let bead = req.bead.clone().unwrap_or_default();
        let plan = req.plan.clone().unwrap_or_default();
        let prompt = reviewer_prompt(&ReviewContext {
            bead: &bead,
            plan: &plan,
            diff: shown,
            trimmed_note: &trimmed_note,
            gates_so_far: &req.gates_so_far,
            retry_error: &req.retry_error,
        });
        let suffix = if req.retry_error.is_empty() { "" } else { "-retry" };
        let request = AgentRequest {
            role: Role::Reviewer,
            run: &run,
            round: req.attempt,
            handoff: req.handoff,
            swapped: req.swapped,
            candidate: req.candidate,
            prompt,
            // The reviewer reads the attempt's worktree; what it might change there is not staged.
            workdir: &worktree,
            timeout: Duration::from_secs(req.timeout_secs.max(1)),
            artifact_prefix: format!("{name}{suffix}"),
        };
        let outcome = run_agent(&self.config, &artifacts, request, liveness)
            .await
            .map_err(setup_error)?;
        if outcome.cancelled {
            return Err(ActivityError::cancelled());
        }
        // What the reviewer wrote in the worktree is not part of the work: discarded, reported.
        match hold_to_tree(&project.repo, &worktree, &req.tree).await {
            Ok(changed) => discarded.extend(changed),
            Err(RepoProblem::Git(tampered @ GitError::Tampered { .. })) => {
                return Ok(ReviewReport {
                    error: tampered.to_string(),
                    agent: Some(outcome.summary),
                    ..ReviewReport::default()
                });
            }
            Err(e) => return Err(repo_error(e)),
        }
        if !discarded.is_empty() {
            tracing::warn!(
                ?discarded,
                "the reviewer changed the worktree; its changes are discarded"
            );
        }
        let (verdict, error) = match outcome.answer {
            // Each criterion's evidence is checked against the real diff (fail-closed).
            Ok(answer) => match parse_verdict(&answer.text) {
                Ok(v) => (
                    Some(check_evidence(v, &plan, &AddedLines::from_diff(&diff))),
                    String::new(),
                ),
                Err(e) => (None, e),
            },
            Err(e) => (None, e),
        };
        tracing::info!(bead = %run.bead_id, attempt = req.attempt, handoff = req.handoff, reviewer = %outcome.summary.provider,
            approved = verdict.as_ref().is_some_and(|v| v.approved), error = %error, project = %project.name, "reviewer answered");
        Ok(ReviewReport {
            verdict,
            error,
            agent: Some(outcome.summary),
            diff_artifact: diff_path.display().to_string(),
            diff_trimmed: !trimmed_note.is_empty(),
            discarded,
        })
    }

    /// Scans the files the attempt changed with the valid rules; invalid rule files are quarantined.
    /// Fails closed: a file the engine could not scan (after one retry) and a scan with every rule
    /// quarantined are findings; findings on lines the attempt did not touch are left out.
    pub async fn semgrep_impl(&self, req: SemgrepRequest) -> Result<SemgrepReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let core = locate_core(&self.config.semgrep).map_err(|m| permanent(error_types::MISSING_BINARY, m))?;
        let artifacts = self.artifacts(&run);
        let rules = rule_files(&self.config.state_dir, &project.repo)
            .map_err(|e| retryable(format!("cannot prepare the rule files: {e}")))?;
        let worktree = Path::new(&req.worktree);
        // Semgrep scans exactly the tree the execution staged.
        match hold_to_tree(&project.repo, worktree, &req.tree).await {
            Ok(changed) if !changed.is_empty() => {
                tracing::warn!(
                    ?changed,
                    "the worktree had changed since the execution; put back before scanning"
                );
            }
            Ok(_) => {}
            Err(e) => return Err(repo_error(e)),
        }
        let work = artifacts.dir().join(format!("semgrep-{}-{}", req.attempt, req.handoff));
        let changed_files = &req.changed_files;
        let run_scan = |work: PathBuf| {
            let (core, rules) = (core.clone(), rules.clone());
            async move {
                scan(
                    &core,
                    &self.semgrep_cache,
                    &rules,
                    worktree,
                    changed_files,
                    &work,
                    self.config.semgrep.timeout,
                    crate::semgrep::FILE_TIMEOUT,
                )
                .await
                .map_err(retryable)
            }
        };
        let mut scan = run_scan(work.clone()).await?;
        if !scan.not_scanned.is_empty() {
            // Once more: a timeout on a loaded machine may not happen twice.
            tracing::warn!(not_scanned = ?scan.not_scanned, "semgrep could not scan some files; scanning again");
            scan = run_scan(work.join("retry")).await?;
        }
        let artifact = artifacts
            .write(
                &format!("semgrep-{}-{}.json", req.attempt, req.handoff),
                scan.raw.as_bytes(),
            )
            .await
            .map_err(|e| retryable(format!("cannot write the scan artifact: {e}")))?;
        for q in &scan.quarantined {
            tracing::warn!(file = %q.file, reason = %q.reason, "semgrep rule file quarantined");
        }
        let (mut findings, preexisting) = match self.lines_added(project, worktree).await {
            Ok(added) => only_new_findings(std::mem::take(&mut scan.findings), &added),
            Err(problem) => {
                let mut all = std::mem::take(&mut scan.findings);
                all.push(closed_finding("", &problem));
                (all, 0)
            }
        };
        for (file, why) in &scan.not_scanned {
            findings.push(closed_finding(
                file,
                &format!("Semgrep could not scan this file ({why}), so the gate fails closed; make the file smaller or simpler, or raise [semgrep] timeout"),
            ));
        }
        if scan.rule_files == 0 && !rules.is_empty() {
            findings.push(closed_finding(
                "",
                "every rule file is quarantined, so the gate checked nothing and fails closed; fix the rule files named in the run's quarantine list",
            ));
        }
        tracing::info!(bead = %run.bead_id, findings = findings.len(), preexisting, files = scan.files_scanned,
            ms = scan.duration.as_millis() as u64, "semgrep scanned");
        Ok(SemgrepReport {
            passed: findings.is_empty(),
            findings,
            quarantined: scan.quarantined,
            duration_ms: scan.duration.as_millis() as u64,
            rule_files: scan.rule_files as u32,
            files_scanned: scan.files_scanned as u32,
            artifact: artifact.display().to_string(),
            preexisting_ignored: preexisting as u32,
            not_scanned: scan.not_scanned.iter().map(|(f, why)| format!("{f}: {why}")).collect(),
        })
    }

    /// What the attempt's staged changes add or change, per file, relative to where its branch
    /// left the base (the Semgrep baseline). `Err` when it cannot be told: then every finding counts.
    async fn lines_added(
        &self,
        project: &ProjectConfig,
        worktree: &Path,
    ) -> Result<std::collections::HashMap<String, Vec<(u32, u32)>>, String> {
        let git = WorktreeGit::open(&project.repo, worktree)
            .await
            .map_err(|e| e.to_string())?;
        let base_ref = format!("refs/heads/{}", project.base_branch);
        let base = git
            .git(&["merge-base", "HEAD", &base_ref])
            .await
            .map_err(|e| e.to_string())?;
        let diff = git
            .git(&[
                "diff",
                "--cached",
                "--unified=0",
                "--no-color",
                "--no-textconv",
                "--no-ext-diff",
                &base,
            ])
            .await
            .map_err(|e| e.to_string())?;
        Ok(added_lines(&diff))
    }

    pub async fn run_dod_impl(&self, req: DodRequest, liveness: &impl Liveness) -> Result<DodReport, ActivityError> {
        let run = req.run.unwrap_or_default();
        let project = self.project(&run)?;
        let worktree = PathBuf::from(&req.worktree);
        if !worktree.is_dir() {
            return Ok(DodReport {
                passed: false,
                checks: vec![DodCheck {
                    command: "(worktree)".into(),
                    exit_code: -1,
                    output_excerpt: format!("the attempt's worktree {} is gone", worktree.display()),
                    ..DodCheck::default()
                }],
                ..DodReport::default()
            });
        }
        let artifacts = self.artifacts(&run);
        let budget = Duration::from_secs(req.timeout_secs.max(1));
        let started = Instant::now();
        let mut report = DodReport {
            passed: true,
            ..DodReport::default()
        };
        // The DoD tests exactly the tree the execution staged (and the review saw).
        let held = hold_to_tree(&project.repo, &worktree, &req.tree).await;
        if let Err(RepoProblem::Git(tampered @ GitError::Tampered { .. })) = &held {
            report.passed = false;
            report.checks.push(DodCheck {
                command: "(worktree)".into(),
                exit_code: -1,
                output_excerpt: tampered.to_string(),
                ..DodCheck::default()
            });
            return Ok(report);
        }
        report.discarded = held.map_err(repo_error)?;
        for (i, command) in project.dod.iter().enumerate() {
            let remaining = budget.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
            let run = run_project_command(
                &self.config,
                project,
                &artifacts,
                ProjectCommand {
                    command,
                    worktree: &worktree,
                    name: format!("dod-{}-{}", req.attempt, i + 1),
                    timeout: remaining,
                    allow_hosts: None,
                },
                liveness,
            )
            .await
            .map_err(command_error)?;
            report.sandbox = run.sandbox.clone();
            if run.outcome.cancelled {
                return Err(ActivityError::cancelled());
            }
            let passed = run.passed();
            report.passed &= passed;
            report.checks.push(DodCheck {
                command: command.clone(),
                exit_code: run.outcome.code(),
                passed,
                timed_out: run.outcome.timed_out,
                duration_ms: run.outcome.duration.as_millis() as u64,
                output_excerpt: run.output,
                artifact: run.stdout_path.display().to_string(),
            });
            if !passed {
                // Later commands usually depend on earlier ones (build before test); stop here.
                break;
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        // What the commands wrote in the worktree is not part of the work: discarded, reported.
        match hold_to_tree(&project.repo, &worktree, &req.tree).await {
            Ok(changed) => report.discarded.extend(changed),
            Err(RepoProblem::Git(tampered @ GitError::Tampered { .. })) => {
                report.passed = false;
                report.checks.push(DodCheck {
                    command: "(worktree)".into(),
                    exit_code: -1,
                    output_excerpt: tampered.to_string(),
                    ..DodCheck::default()
                });
            }
            Err(e) => return Err(repo_error(e)),
        }
        tracing::info!(bead = %run.bead_id, attempt = req.attempt, passed = report.passed, discarded = ?report.discarded, "definition of done ran");
        Ok(report)
    }

    pub async fn integrate_impl(&self, req: IntegrateRequest) -> Result<IntegrationReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let report = crate::repo::integrate(project, &req).await.map_err(repo_error)?;
        tracing::info!(bead = %run.bead_id, commit = %report.commit, merged = report.merged, problem = %report.problem, "integrated");
        Ok(report)
    }

    pub async fn update_bead_impl(&self, req: UpdateBeadRequest) -> Result<UpdateBeadResult, ActivityError> {
        let run = req.run.unwrap_or_default();
        let project = self.project(&run)?;
        let status = Backlog::of(project)
            .update(&run.bead_id, &req.status, &req.note, &req.close_reason)
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
        async move { self.steps().plan_impl(req, &ctx).await }
            .instrument(span)
            .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Execute)]
    pub async fn execute(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ExecuteRequest,
    ) -> Result<ExecuteReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        async move { self.steps().execute_impl(req, &ctx).await }
            .instrument(span)
            .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::Review)]
    pub async fn review(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ReviewRequest,
    ) -> Result<ReviewReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        async move { self.steps().review_impl(req, &ctx).await }
            .instrument(span)
            .await
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
        async move { self.steps().run_dod_impl(req, &ctx).await }
            .instrument(span)
            .await
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
            store
                .record_run(&run, &result, now_ms())
                .map_err(|e| retryable(e.to_string()))?;
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
}

/// A Semgrep finding that fails the gate closed (the engine could not check something).
fn closed_finding(file: &str, message: &str) -> chum_core::proto::SemgrepFinding {
    chum_core::proto::SemgrepFinding {
        rule_id: "chum.semgrep-fails-closed".into(),
        file: file.to_string(),
        line: 0,
        message: message.to_string(),
        severity: "ERROR".into(),
    }
}
