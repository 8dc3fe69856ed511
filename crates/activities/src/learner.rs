//! The ContinuousLearner's activities: lessons from a finished run's journal, and Semgrep rules
//! crystallized from them. A rule is accepted only if real semgrep says it is valid, matches the
//! lesson's bad example, does not match its good example, and finds nothing on the base branch.

use crate::log_context::activity_span;
use chum_core::live_config::LiveConfig;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use chum_core::activity_contract::error_types;
use chum_core::config::{ChumConfig, ProjectConfig, Role, SemgrepSettings};
use chum_core::ids::check_bead_id;
use chum_core::lesson::{
    crystallizable, extract_rule_yaml, parse_lessons, rule_fixture, rule_id, with_lesson_metadata,
};
use chum_core::prompt::{learner_prompt, rule_prompt};
use chum_core::proto::{CrystallizeRequest, EnumName, LearnerInput, Lesson, LessonsReport, RuleReport, RunRef};
use chum_core::text::{excerpt, tail_excerpt};
use serde_json::Value;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tokio::process::Command;

use crate::agent::{AgentRequest, Liveness, ask_with_one_retry, run_agent};
use crate::clock::now_ms;
use crate::error::{permanent, repo_error, retryable, setup_error};
use crate::exec::ChildEnv;
use crate::exec::read_tail;
use crate::repo::{OwnChange, commit_own_change, prepare_plan_worktree, remove_worktree};
use crate::semgrep::locate_core;
use crate::store::RunArtifacts;
use crate::store::{RuleRecord, Store};

/// The registered activities; each call takes the configuration in force when it starts.
pub struct LearnerActivitiesImpl {
    live: LiveConfig,
}

/// The activity bodies with one configuration snapshot: what one activity sees from start to end.
pub struct LearnerSteps {
    config: Arc<ChumConfig>,
}

/// Finds the `semgrep` CLI: the configured one, the one on PATH, or the one beside `semgrep-core`.
pub fn locate_cli(settings: &SemgrepSettings) -> Result<PathBuf, String> {
    if let Some(cli) = &settings.cli {
        return if cli.is_file() {
            Ok(cli.clone())
        } else {
            Err(format!("semgrep CLI {} does not exist", cli.display()))
        };
    }
    if let Ok(cli) = which::which("semgrep") {
        return Ok(cli);
    }
    // <venv>/lib/python3.X/site-packages/semgrep/bin/semgrep-core -> <venv>/bin/semgrep
    let core = locate_core(settings)?;
    let venv = core
        .ancestors()
        .nth(6)
        .ok_or("cannot tell where semgrep is installed")?;
    let cli = venv.join("bin/semgrep");
    if cli.is_file() {
        Ok(cli)
    } else {
        Err(format!("no semgrep CLI next to {}; set [semgrep] cli", core.display()))
    }
}

/// Runs the semgrep CLI offline (no metrics, no version check) and returns (exit code, stdout).
async fn semgrep_cli(cli: &Path, args: &[&str], cwd: &Path, timeout: Duration) -> Result<(i32, String), String> {
    let mut command = Command::new(cli);
    command
        .args(["--metrics=off", "--disable-version-check", "--quiet"])
        .args(args)
        .current_dir(cwd)
        // It runs agent-written rules: the child allow-list, with its HOME in the scratch directory.
        .env_clear()
        .envs(ChildEnv::new(cwd, cwd).into_vec())
        .env("SEMGREP_ENABLE_VERSION_CHECK", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| format!("semgrep did not finish within {}s", timeout.as_secs()))?
        .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

fn error_messages(json: &Value) -> String {
    json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = e["long_msg"].as_str().or(e["message"].as_str()).unwrap_or("invalid");
            excerpt(text.lines().next().unwrap_or_default(), 200)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The four checks, each with real semgrep. `Ok` carries the passed checks; `Err` the checks so
/// far and the reason for the rejection.
pub async fn check_rule(
    cli: &Path,
    yaml: &str,
    lesson: &Lesson,
    id: &str,
    base_checkout: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<Vec<String>, (Vec<String>, String)> {
    let mut checks = Vec::new();
    let fail = |checks: &Vec<String>, line: String, reason: String| {
        let mut all = checks.clone();
        all.push(line);
        Err((all, reason))
    };
    let io = |e: std::io::Error| (Vec::new(), format!("cannot prepare the checks: {e}"));
    std::fs::create_dir_all(work.join("empty")).map_err(io)?;
    std::fs::create_dir_all(work.join("test")).map_err(io)?;
    let rule_file = work.join(format!("{id}.yaml"));
    std::fs::write(&rule_file, yaml).map_err(io)?;
    let rule_arg = rule_file.display().to_string();

    // 1. valid: schema and patterns, offline (scanning an empty directory reports both).
    if !yaml
        .lines()
        .any(|l| l.trim_start().trim_start_matches("- ").trim() == format!("id: {id}"))
    {
        return fail(&checks, "valid: no".into(), format!("the rule's id must be {id}"));
    }
    let (code, out) = semgrep_cli(cli, &["--json", "--config", &rule_arg, "empty"], work, timeout)
        .await
        .map_err(|e| (checks.clone(), e))?;
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    if code != 0 || !json["errors"].as_array().is_none_or(|e| e.is_empty()) {
        let why = error_messages(&json);
        return fail(
            &checks,
            "valid: no".into(),
            format!("not a valid rule (semgrep exit {code}): {why}"),
        );
    }
    checks.push("valid (schema and pattern): ok".to_string());

    // 2 and 3. the bad example matches, the good one does not: a `semgrep --test` fixture.
    let (ext, fixture) =
        rule_fixture(lesson, id).ok_or_else(|| (checks.clone(), format!("no fixture for {}", lesson.language)))?;
    std::fs::write(work.join("test").join(format!("{id}.yaml")), yaml).map_err(io)?;
    std::fs::write(work.join("test").join(format!("{id}.{ext}")), &fixture).map_err(io)?;
    let (_, out) = semgrep_cli(cli, &["--test", "--json", "test"], work, timeout)
        .await
        .map_err(|e| (checks.clone(), e))?;
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut expected = Vec::new();
    let mut reported = Vec::new();
    for result in json["results"].as_object().into_iter().flatten().map(|(_, v)| v) {
        for (_, check) in result["checks"].as_object().into_iter().flatten() {
            for (_, m) in check["matches"].as_object().into_iter().flatten() {
                let lines = |k: &str| {
                    m[k].as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_u64)
                        .collect::<Vec<_>>()
                };
                expected.extend(lines("expected_lines"));
                reported.extend(lines("reported_lines"));
            }
        }
    }
    if expected.is_empty() {
        let why = json["config_with_errors"].to_string();
        return fail(
            &checks,
            "matches the bad example: no".into(),
            format!("semgrep --test found nothing to check: {why}"),
        );
    }
    if expected.iter().any(|l| !reported.contains(l)) {
        return fail(
            &checks,
            "matches the bad example: no".into(),
            "it does not match the bad example".to_string(),
        );
    }
    checks.push("matches the bad example: ok".to_string());
    if reported.iter().any(|l| !expected.contains(l)) {
        return fail(
            &checks,
            "does not match the good example: no".into(),
            "it matches the good example too".to_string(),
        );
    }
    checks.push("does not match the good example: ok".to_string());

    // 4. nothing on the base branch as it is now (CHUM's own rule fixtures left out).
    let target = base_checkout.display().to_string();
    let (code, out) = semgrep_cli(
        cli,
        &["--json", "--config", &rule_arg, "--exclude", ".semgrep", &target],
        work,
        timeout,
    )
    .await
    .map_err(|e| (checks.clone(), e))?;
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let Some(results) = json["results"].as_array() else {
        return fail(
            &checks,
            "quiet on the base branch: no".into(),
            format!("the base-branch scan failed (exit {code})"),
        );
    };
    if !results.is_empty() {
        let places: Vec<String> = results
            .iter()
            .take(3)
            .map(|r| {
                let path = r["path"].as_str().unwrap_or_default();
                let shown = path.strip_prefix(&format!("{target}/")).unwrap_or(path);
                format!(
                    "{shown}:{}",
                    r.pointer("/start/line").and_then(Value::as_u64).unwrap_or(0)
                )
            })
            .collect();
        return fail(
            &checks,
            "quiet on the base branch: no".into(),
            format!(
                "it fires {} time(s) on the base branch ({})",
                results.len(),
                places.join(", ")
            ),
        );
    }
    checks.push("quiet on the base branch: ok".to_string());
    Ok(checks)
}

impl LearnerActivitiesImpl {
    pub fn new(config: impl Into<LiveConfig>) -> LearnerActivitiesImpl {
        LearnerActivitiesImpl { live: config.into() }
    }

    /// The steps with the configuration in force now.
    pub fn steps(&self) -> LearnerSteps {
        LearnerSteps {
            config: self.live.current(),
        }
    }
}

impl LearnerSteps {
    fn project(&self, run: &RunRef) -> Result<&ProjectConfig, ActivityError> {
        check_bead_id(&run.bead_id).map_err(|m| permanent(error_types::INVALID_INPUT, m))?;
        self.config
            .project(&run.project)
            .map_err(|m| permanent(error_types::CONFIG, m))
    }

    fn store(&self) -> Result<Store, ActivityError> {
        Store::open(&self.config.state_dir.join("chum.db")).map_err(|e| retryable(e.to_string()))
    }

    /// A scratch directory for the learner agent (it reads the prompt, it changes nothing).
    fn scratch(&self, run: &RunRef, name: &str) -> Result<PathBuf, ActivityError> {
        let dir = RunArtifacts::new(&self.config.state_dir, run).dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| retryable(format!("cannot create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    pub async fn extract_lessons_impl(
        &self,
        input: LearnerInput,
        liveness: &impl Liveness,
    ) -> Result<LessonsReport, ActivityError> {
        let run = input.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let journal = journal(&input).await;
        let store = self.store()?;
        let similar = store
            .search(Some(&project.name), &journal, 10, None)
            .map_err(|e| retryable(e.to_string()))?;
        let known: String = similar
            .iter()
            .map(|l| format!("- [{}] {}\n", l.category, l.summary))
            .collect();
        let max = self.config.learner.max_lessons_per_run as usize;
        let workdir = self.scratch(&run, "learner")?;
        let artifacts = RunArtifacts::new(&self.config.state_dir, &run);
        let asked = ask_with_one_retry(
            &self.config,
            &artifacts,
            Role::Learner,
            &run,
            &workdir,
            &learner_prompt(&journal, &known, max),
            "learn",
            liveness,
            |text| parse_lessons(text, max),
        )
        .await
        .map_err(setup_error)?;
        if asked.cancelled {
            return Err(ActivityError::cancelled());
        }
        let drafts = match asked.answer {
            Ok(drafts) => drafts,
            Err(retry_error) => {
                tracing::warn!(bead = %run.bead_id, "no lessons: {retry_error}");
                return Ok(LessonsReport {
                    error: retry_error,
                    agent: Some(asked.summary),
                    ..LessonsReport::default()
                });
            }
        };
        let mut report = LessonsReport {
            agent: Some(asked.summary),
            ..LessonsReport::default()
        };
        let attempt = first_failure_attempt(&input);
        for mut lesson in drafts {
            lesson.project = run.project.clone();
            lesson.bead_id = run.bead_id.clone();
            lesson.workflow_id = run.workflow_id.clone();
            lesson.run_id = run.run_id.clone();
            lesson.attempt = attempt;
            lesson.commit = input.commit.clone();
            let now = now_ms();
            match store
                .insert_lesson(&lesson, now)
                .map_err(|e| retryable(e.to_string()))?
            {
                Some(id) => {
                    lesson.id = id;
                    lesson.created_ms = now;
                    report.stored.push(lesson);
                }
                None => report.duplicates_skipped += 1,
            }
        }
        tracing::info!(bead = %run.bead_id, stored = report.stored.len(), duplicates = report.duplicates_skipped, "lessons learned");
        Ok(report)
    }

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
            report.accepted = known.status == "accepted";
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
        let cli = locate_cli(&self.config.semgrep).map_err(|m| permanent(error_types::MISSING_BINARY, m))?;
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
                record.status = "rejected".into();
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
                record.status = "accepted".into();
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

/// The attempt whose failure taught the lesson: the first failed gate's, else 1.
fn first_failure_attempt(input: &LearnerInput) -> u32 {
    input
        .gate_results
        .iter()
        .find(|g| !g.passed && !matches!(g.gate.as_str(), "plan_validation" | "human"))
        .map(|g| g.round)
        .unwrap_or(1)
}

/// The run as the learner reads it: what was asked, what happened at each gate (with the real
/// output of failing checks), what people said, and the last diffs.
async fn journal(input: &LearnerInput) -> String {
    let bead = input.bead.clone().unwrap_or_default();
    let plan = input.plan.clone().unwrap_or_default();
    let mut out = format!(
        "## Work item {}: {}\n{}\n",
        bead.id,
        bead.title,
        bead.description.trim()
    );
    out.push_str(&format!("\n## The approved plan\n{}\n", plan.summary));
    for c in &plan.acceptance_criteria {
        out.push_str(&format!("- {c}\n"));
    }
    out.push_str(&format!(
        "\n## How the run ended\n{}: {}\n",
        input.outcome().name(),
        input.reason
    ));
    out.push_str("\n## What happened, gate by gate\n");
    for g in &input.gate_results {
        let verdict = if g.passed { "pass" } else { "FAIL" };
        let by = if g.provider.is_empty() {
            String::new()
        } else {
            format!(" [{}]", g.provider)
        };
        let candidate = if g.candidate > 0 {
            format!(" candidate {}", g.candidate)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "- {} attempt {}{candidate} redo {}{by}: {verdict}\n",
            g.gate, g.round, g.handoff
        ));
        if !g.passed {
            let detail = if g.gate == "dod" && !g.artifact.is_empty() {
                // Test runners write to stdout or stderr (Python's unittest: stderr); the DoD
                // keeps both, and the gate's own excerpt is the fallback.
                let stdout = read_tail(Path::new(&g.artifact), 3000).await.unwrap_or_default();
                let stderr_path = g.artifact.strip_suffix(".log").map(|stem| format!("{stem}.stderr.log"));
                let stderr = match stderr_path {
                    Some(path) => read_tail(Path::new(&path), 3000).await.unwrap_or_default(),
                    None => String::new(),
                };
                let both = format!("{}\n{}", stdout.trim_end(), stderr.trim_end());
                if both.trim().is_empty() {
                    g.excerpt.clone()
                } else {
                    both.trim().to_string()
                }
            } else {
                g.excerpt.clone()
            };
            out.push_str(&format!("```\n{}\n```\n", tail_excerpt(&detail, 2500)));
        }
    }
    if !input.decisions.is_empty() {
        out.push_str("\n## What people said at the gate\n");
        for d in &input.decisions {
            let verdict = if d.approved { "approved" } else { "rejected" };
            out.push_str(&format!("- {verdict} by {}: {}\n", d.by, d.feedback));
        }
    }
    let diffs: Vec<&String> = input.diff_artifacts.iter().filter(|p| !p.is_empty()).collect();
    for path in diffs.iter().rev().take(2).rev() {
        if let Ok(diff) = tokio::fs::read_to_string(path).await {
            out.push_str(&format!(
                "\n## A diff of this run ({path})\n```diff\n{}\n```\n",
                excerpt(&diff, 4000)
            ));
        }
    }
    out
}

#[activities]
impl LearnerActivitiesImpl {
    #[activity(definition = chum_core::activity_contract::definitions::ExtractLessons)]
    pub async fn extract_lessons(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LearnerInput,
    ) -> Result<LessonsReport, ActivityError> {
        let span = activity_span(&ctx, input.run.as_ref());
        async move { self.steps().extract_lessons_impl(input, &ctx).await }
            .instrument(span)
            .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::CrystallizeRule)]
    pub async fn crystallize_rule(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: CrystallizeRequest,
    ) -> Result<RuleReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        async move { self.steps().crystallize_impl(req, &ctx).await }
            .instrument(span)
            .await
    }
}

/// What retiring a rule did.
#[derive(Debug, Clone, PartialEq)]
pub struct Retirement {
    pub commit: String,
    pub merged: bool,
    pub problem: String,
}

/// Retires an accepted rule: removes its file and fixture from the project in a commit that says
/// why, and marks it retired in the store (kept, with the reason). Idempotent.
pub async fn retire_rule(config: &ChumConfig, rule_id: &str, reason: &str) -> Result<Retirement, String> {
    if reason.trim().is_empty() {
        return Err("say why the rule is retired (--reason)".to_string());
    }
    let store = Store::open(&config.state_dir.join("chum.db")).map_err(|e| e.to_string())?;
    let mut record = store
        .rule(rule_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no rule {rule_id} in the lesson store; `chum rules list` shows them"))?;
    if record.status == "rejected" {
        return Err(format!(
            "{rule_id} was rejected ({}); there is nothing to retire",
            record.reason
        ));
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
    let done = commit_own_change(change).await.map_err(|e| e.to_string())?;
    record.status = "retired".into();
    record.reason = format!("retired: {}", reason.trim());
    record.updated_ms = now_ms();
    store.record_rule(&record).map_err(|e| e.to_string())?;
    Ok(Retirement {
        commit: done.commit,
        merged: done.merged,
        problem: done.problem,
    })
}
