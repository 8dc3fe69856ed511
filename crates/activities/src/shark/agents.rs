//! The Shark's agent steps: the plan, the attempt (set up, then the executor in its worktree) and
//! the cross-model review.

use crate::error::{command_error, repo_error, retryable, setup_error};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chum_core::config::{IntegrationPolicy, ProjectConfig, Role};
use chum_core::lesson::lessons_section;
use chum_core::plan::parse_plan;
use chum_core::prompt::{Background, ReviewContext, executor_prompt, planner_prompt, reviewer_prompt};
use chum_core::proto::{
    Bead, ExecuteReport, ExecuteRequest, Plan, PlanDraft, PlanRequest, ReviewReport, ReviewRequest,
};
use chum_core::repo_map::Focus;
use chum_core::review::{AddedLines, check_evidence, parse_verdict};
use chum_core::text::excerpt;
use temporalio_sdk::activities::ActivityError;
use tracing::Instrument as _;

use crate::log_context::component;

use crate::agent::{AgentRequest, Liveness, run_agent};
use crate::exec::{ProjectCommand, run_project_command};
use crate::repo::{
    AttemptWorktree, RepoProblem, WorktreeOwner, hold_to_tree, prepare_owned_worktree, prepare_plan_worktree,
    record_candidate, remove_worktree, resume_worktree, stage_changes,
};
use crate::repo::{GitError, WorktreeGit, map_for_prompt, tags_cache_dir};
use crate::store::RunArtifacts;

use super::SharkSteps;

/// Characters of diff a reviewer sees in its prompt; the whole diff is an artifact.
const REVIEW_DIFF_CHARS: usize = 60_000;

/// What a repo map is focused on: the bead's own words, and the plan's when there is one.
fn work_text(bead: &Bead, plan: Option<&Plan>) -> String {
    let mut text = [
        &bead.title,
        &bead.description,
        &bead.design,
        &bead.acceptance_criteria,
        &bead.notes,
    ]
    .map(String::as_str)
    .join("\n");
    if let Some(plan) = plan {
        text = format!("{text}\n{}\n{}", plan.summary, plan.steps.join("\n"));
    }
    text
}

impl SharkSteps {
    /// The repo map `role` is given: the project at `commit`, ranked for the work.
    async fn repo_map(&self, project: &ProjectConfig, role: Role, commit: &str, focus: Focus<'_>) -> String {
        let cache = tags_cache_dir(&self.config.state_dir, &project.name);
        let budget = self.config.repo_map_tokens.for_role(role);
        map_for_prompt(&project.repo, commit, &cache, focus, budget)
            .instrument(component("repo map"))
            .await
            .text
    }

    pub async fn plan_impl(&self, req: PlanRequest, liveness: &impl Liveness) -> Result<PlanDraft, ActivityError> {
        let run = req.run.unwrap_or_default();
        let project = self.project(&run)?;
        let workdir = prepare_plan_worktree(project, &run.bead_id, req.round)
            .instrument(component("plan checkout"))
            .await
            .map_err(repo_error)?;
        let bead = req.bead.unwrap_or_default();
        let lessons = self.lessons_for(
            project,
            &format!("{} {} {}", bead.title, bead.description, bead.acceptance_criteria),
        );
        // The map of exactly the commit the planner's checkout has (nothing has run in it yet).
        let repo_map = match WorktreeGit::open(&project.repo, &workdir).await {
            Ok(git) => match git.git(&["rev-parse", "HEAD"]).await {
                Ok(commit) => {
                    let text = work_text(&bead, None);
                    self.repo_map(
                        project,
                        Role::Planner,
                        &commit,
                        Focus {
                            text: &text,
                            files: &[],
                        },
                    )
                    .await
                }
                Err(e) => {
                    tracing::warn!("no repo map for the planner: {e}");
                    String::new()
                }
            },
            Err(e) => {
                tracing::warn!("no repo map for the planner: {e}");
                String::new()
            }
        };
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
                &Background {
                    lessons: &lessons_section(&lessons),
                    repo_map: &repo_map,
                },
            ),
            workdir: &workdir,
            timeout: Duration::from_secs(req.timeout_secs.max(1)),
            artifact_prefix: format!("plan-{}", req.round),
        };
        let outcome = run_agent(&self.config, &self.artifacts(&run), request, liveness)
            .instrument(component("agent process"))
            .await;
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
        // What a person at the gate is shown beside the plan: who planned it and the lessons it
        // was given, with where each came from. Only shown, so a failed write is only logged.
        let context = serde_json::json!({"provider": outcome.summary.provider, "lessons": lessons});
        if let Err(e) = self
            .artifacts(&run)
            .write(
                &format!("plan-{}.context.json", req.round),
                context.to_string().as_bytes(),
            )
            .await
        {
            tracing::warn!("could not write the plan's context artifact: {e}");
        }
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
        let owner = liveness
            .step_try()
            .map(|(step, try_number)| WorktreeOwner { step, try_number });
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
            Some(worktree) => {
                if let Some(owner) = &owner {
                    owner.claim(&project.repo, &worktree.git).await.map_err(repo_error)?;
                }
                worktree
            }
            None => {
                // Several hosts: this host's base may be behind the remote's, where the other hosts
                // land; the attempt starts from the remote's.
                if self.config.worker.several_hosts && project.integration == IntegrationPolicy::Push {
                    crate::repo::follow_remote_base(project).await.map_err(repo_error)?;
                }
                let fresh = prepare_owned_worktree(project, &run.bead_id, req.attempt, req.candidate, owner.as_ref())
                    .instrument(component("worktree"))
                    .await
                    .map_err(repo_error)?;
                // A fresh worktree gets the project's setup before the agent sees it.
                let set_up = self.set_up(project, &fresh, &artifacts, req.attempt, liveness);
                if let Some(problem) = set_up.instrument(component("project setup")).await? {
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
        let lessons = lessons_section(&self.lessons_for(
            project,
            &format!(
                "{} {} {} {}",
                bead.title,
                plan.summary,
                plan.steps.join(" "),
                plan.files.join(" ")
            ),
        ));
        // The base the attempt started from: the map is about the code the plan changes.
        let text = work_text(&bead, Some(&plan));
        let focus = Focus {
            text: &text,
            files: &plan.files,
        };
        let repo_map = self
            .repo_map(project, Role::Executor, &worktree.base_commit, focus)
            .await;
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
                &Background {
                    lessons: &lessons,
                    repo_map: &repo_map,
                },
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
        // A try the server timed out while its agent ran must not stage into a later try's work.
        if let Some(owner) = &owner {
            owner.check(&git).map_err(repo_error)?;
        }
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
        let name = match req.verification {
            0 => format!("review-{}-{}", req.attempt, req.handoff),
            // Reviewed again under the merge queue's turn: its own artifacts, the first ones stay.
            n => format!("review-{}-v{n}", req.attempt),
        };
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
        let text = work_text(&bead, Some(&plan));
        let focus = Focus {
            text: &text,
            files: &plan.files,
        };
        let repo_map = self.repo_map(project, Role::Reviewer, &req.base_commit, focus).await;
        let prompt = reviewer_prompt(&ReviewContext {
            bead: &bead,
            plan: &plan,
            diff: shown,
            trimmed_note: &trimmed_note,
            gates_so_far: &req.gates_so_far,
            retry_error: &req.retry_error,
            repo_map: &repo_map,
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
}
