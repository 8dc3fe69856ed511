//! Rules from lessons: crystallize (the learner agent writes a rule, the checks decide, an accepted
//! rule is committed to the project once) and retire (`chum rules retire`).

use std::time::Duration;

use chum_core::activity_contract::error_types;
use chum_core::config::{ChumConfig, NotConfigured, Role};
use chum_core::lesson::{crystallizable, extract_rule_yaml, rule_fixture, rule_id, with_lesson_metadata};
use chum_core::prompt::rule_prompt;
use chum_core::proto::{CrystallizeRequest, Lesson, RuleReport};
use temporalio_sdk::activities::ActivityError;

use super::LearnerSteps;
use super::rule_checks::{check_rule, locate_cli};
use crate::agent::{AgentRequest, Liveness, run_agent};
use crate::clock::now_ms;
use crate::error::{permanent, program_error, repo_error, retryable, setup_error};
use crate::repo::{OwnChange, RepoProblem, commit_own_change, prepare_plan_worktree, remove_worktree};
use crate::store::RunArtifacts;
use crate::store::{RuleRecord, RuleStatus, Store, StoreError};

impl LearnerSteps {
    pub async fn crystallize_impl(
        &self,
        req: CrystallizeRequest,
        liveness: &impl Liveness,
    ) -> Result<RuleReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let store = self.store()?;
        let lesson = store
            .lesson(req.lesson_id)
            .map_err(|e| retryable(e.to_string()))?
            .ok_or_else(|| {
                permanent(
                    error_types::INVALID_INPUT,
                    format!("lesson #{} is not in the store", req.lesson_id),
                )
            })?;
        let id = rule_id(lesson.id);
        let mut report = RuleReport {
            lesson_id: lesson.id,
            rule_id: id.clone(),
            ..RuleReport::default()
        };
        if let Some(known) = store.rule(&id).map_err(|e| retryable(e.to_string()))? {
            // Decided before (a retried activity, or a rule since retired): the same answer again.
            report.accepted = known.status == RuleStatus::Accepted;
            report.reason = known.reason;
            report.checks = known.checks;
            report.path = known.path;
            report.commit = known.commit;
            return Ok(report);
        }
        if let Err(why) = crystallizable(&lesson) {
            report.reason = why;
            return Ok(report);
        }
        let cli = locate_cli(&self.config.semgrep).map_err(program_error)?;
        let base = prepare_plan_worktree(project, &format!("rule-{id}"), 1)
            .await
            .map_err(repo_error)?;
        let artifacts = RunArtifacts::new(&self.config.state_dir, &run);
        let workdir = self.scratch(&run, &format!("rule-{id}"))?;
        let mut retry_error = String::new();
        let mut verdict: Result<(String, Vec<String>), (Vec<String>, String)> = Err((Vec::new(), String::new()));
        for round in 1..=2u32 {
            let request = AgentRequest {
                role: Role::Learner,
                run: &run,
                round,
                handoff: 0,
                swapped: false,
                candidate: 0,
                prompt: rule_prompt(&lesson, &id, &retry_error),
                workdir: &workdir,
                timeout: self.config.limits.agent_timeout,
                artifact_prefix: format!("rule-{id}-{round}"),
            };
            let outcome = run_agent(&self.config, &artifacts, request, liveness)
                .await
                .map_err(setup_error)?;
            if outcome.cancelled {
                let _ = remove_worktree(&project.repo, &base).await;
                return Err(ActivityError::cancelled());
            }
            report.agent = Some(outcome.summary);
            let yaml = match outcome.answer.map(|a| extract_rule_yaml(&a.text)) {
                Err(e) => Err((Vec::new(), format!("no rule: {e}"))),
                Ok(None) => Err((Vec::new(), "the answer holds no rule YAML".to_string())),
                Ok(Some(yaml)) => {
                    // The rule is checked exactly as it will be committed: with its lesson metadata.
                    let yaml = with_lesson_metadata(&yaml, &lesson, &id);
                    let work = workdir.join(format!("checks-{round}"));
                    check_rule(
                        &cli,
                        &yaml,
                        &lesson,
                        &id,
                        &base,
                        &work,
                        self.config.semgrep.timeout.max(Duration::from_secs(120)),
                    )
                    .await
                    .map(|checks| (yaml, checks))
                }
            };
            match yaml {
                Ok(accepted) => {
                    verdict = Ok(accepted);
                    break;
                }
                Err((checks, reason)) => {
                    retry_error = format!("{reason} (checks: {})", checks.join("; "));
                    verdict = Err((checks, reason));
                }
            }
        }
        let _ = remove_worktree(&project.repo, &base).await;
        let now = now_ms();
        let mut record = RuleRecord {
            rule_id: id.clone(),
            lesson_id: lesson.id,
            project: project.name.clone(),
            created_ms: now,
            updated_ms: now,
            ..RuleRecord::default()
        };
        match verdict {
            Err((checks, reason)) => {
                record.status = RuleStatus::Rejected;
                record.reason = reason.clone();
                record.checks = checks.clone();
                store.record_rule(&record).map_err(|e| retryable(e.to_string()))?;
                tracing::info!(rule = %id, %reason, "rule rejected");
                report.reason = reason;
                report.checks = checks;
            }
            Ok((yaml, checks)) => {
                let (ext, fixture) = rule_fixture(&lesson, &id).unwrap_or(("txt", String::new()));
                let path = format!(".semgrep/{id}.yaml");
                let annotated = annotate(&yaml, &lesson);
                let change = OwnChange {
                    branch: format!("chum/rules/{id}"),
                    files: vec![
                        (path.clone(), Some(annotated.clone())),
                        (format!(".semgrep/{id}.{ext}"), Some(fixture)),
                    ],
                    message: format!(
                        "Add Semgrep rule {id}: {}\n\nCrystallized from lesson #{} (bead {}, run {}).\nChecks: {}.",
                        lesson.summary,
                        lesson.id,
                        lesson.bead_id,
                        lesson.workflow_id,
                        checks.join("; ")
                    ),
                    trailer: format!("Chum-Rule: {id}"),
                    project,
                };
                let committed = commit_own_change(change).await.map_err(repo_error)?;
                record.status = RuleStatus::Accepted;
                record.reason = if committed.problem.is_empty() {
                    format!(
                        "passed all four checks; committed {}",
                        &committed.commit[..committed.commit.len().min(12)]
                    )
                } else {
                    format!(
                        "passed all four checks; on branch chum/rules/{id}: {}",
                        committed.problem
                    )
                };
                record.checks = checks.clone();
                record.yaml = annotated;
                record.path = path.clone();
                record.commit = committed.commit.clone();
                store.record_rule(&record).map_err(|e| retryable(e.to_string()))?;
                tracing::info!(rule = %id, commit = %committed.commit, merged = committed.merged, "rule accepted");
                report.accepted = true;
                report.reason = record.reason;
                report.checks = checks;
                report.path = path;
                report.commit = committed.commit;
                report.merged = committed.merged;
            }
        }
        Ok(report)
    }
}

/// The rule file as committed: a header naming the lesson it came from.
fn annotate(yaml: &str, lesson: &Lesson) -> String {
    format!(
        "# Crystallized by CHUM from lesson #{} (bead {}, run {}): {}\n# Retire it with `chum rules retire {}`.\n{}",
        lesson.id,
        lesson.bead_id,
        lesson.workflow_id,
        lesson.summary.replace('\n', " "),
        rule_id(lesson.id),
        yaml
    )
}

/// What retiring a rule did.
#[derive(Debug, Clone, PartialEq)]
pub struct Retirement {
    pub commit: String,
    pub merged: bool,
    pub problem: String,
}

/// Why a rule cannot be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error("say why the rule is retired (--reason)")]
    NoReason,
    #[error("no rule {0} in the lesson store; `chum rules list` shows them")]
    UnknownRule(String),
    #[error("{rule_id} was rejected ({reason}); there is nothing to retire")]
    Rejected { rule_id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] NotConfigured),
    #[error(transparent)]
    Repo(#[from] RepoProblem),
}

impl RetireError {
    /// The request itself is wrong (no reason, no such rule, nothing to retire), rather than
    /// the store, the config or the repository failing it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RetireError::NoReason | RetireError::UnknownRule(_) | RetireError::Rejected { .. }
        )
    }
}

/// Retires an accepted rule: removes its file and fixture from the project in a commit that says
/// why, and marks it retired in the store (kept, with the reason). Idempotent.
pub async fn retire_rule(config: &ChumConfig, rule_id: &str, reason: &str) -> Result<Retirement, RetireError> {
    if reason.trim().is_empty() {
        return Err(RetireError::NoReason);
    }
    let store = Store::for_config(config)?;
    let mut record = store
        .rule(rule_id)?
        .ok_or_else(|| RetireError::UnknownRule(rule_id.to_string()))?;
    if record.status == RuleStatus::Rejected {
        return Err(RetireError::Rejected {
            rule_id: rule_id.to_string(),
            reason: record.reason,
        });
    }
    let project = config.project(&record.project)?;
    let fixture = std::fs::read_dir(project.repo.join(".semgrep"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{rule_id}.")) && !n.ends_with(".yaml"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut files = vec![(format!(".semgrep/{rule_id}.yaml"), None)];
    files.extend(fixture.into_iter().map(|n| (format!(".semgrep/{n}"), None)));
    let change = OwnChange {
        branch: format!("chum/rules/retire-{rule_id}"),
        files,
        message: format!(
            "Retire Semgrep rule {rule_id}: {}\n\nIt was crystallized from lesson #{}.",
            reason.trim(),
            record.lesson_id
        ),
        trailer: format!("Chum-Rule-Retired: {rule_id}"),
        project,
    };
    let done = commit_own_change(change).await?;
    record.status = RuleStatus::Retired;
    record.reason = format!("retired: {}", reason.trim());
    record.updated_ms = now_ms();
    store.record_rule(&record)?;
    Ok(Retirement {
        commit: done.commit,
        merged: done.merged,
        problem: done.problem,
    })
}
