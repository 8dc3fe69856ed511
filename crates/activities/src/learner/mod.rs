//! The ContinuousLearner's activities: lessons from a finished run's journal, and Semgrep rules
//! crystallized from them. A rule is accepted only if real semgrep says it is valid, matches the
//! lesson's bad example, does not match its good example, and finds nothing on the base branch.

mod rule_checks;
mod rules;

pub use rule_checks::{check_rule, locate_cli};
pub use rules::{RetireError, Retirement, retire_rule};

use crate::log_context::{activity_span, supervised};
use chum_core::live_config::LiveConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chum_core::activity_contract::error_types;
use chum_core::config::{ChumConfig, ProjectConfig, Role};
use chum_core::ids::check_bead_id;
use chum_core::lesson::parse_lessons;
use chum_core::prompt::learner_prompt;
use chum_core::proto::{CrystallizeRequest, EnumName, GateName, LearnerInput, LessonsReport, RuleReport, RunRef};
use chum_core::text::{excerpt, tail_excerpt};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::agent::{Liveness, ask_with_one_retry};
use crate::clock::now_ms;
use crate::error::{config_error, permanent, retryable, setup_error};
use crate::exec::read_tail;
use crate::store::RunArtifacts;
use crate::store::Store;

/// The registered activities; each call takes the configuration in force when it starts.
pub struct LearnerActivitiesImpl {
    live: LiveConfig,
}

/// The activity bodies with one configuration snapshot: what one activity sees from start to end.
pub struct LearnerSteps {
    config: Arc<ChumConfig>,
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
        self.config.project(&run.project).map_err(config_error)
    }

    fn store(&self) -> Result<Store, ActivityError> {
        Store::for_config(&self.config).map_err(|e| retryable(e.to_string()))
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
}

/// The attempt whose failure taught the lesson: the first failed gate's, else 1.
fn first_failure_attempt(input: &LearnerInput) -> u32 {
    input
        .gate_results
        .iter()
        .find(|g| !g.passed && !matches!(g.gate(), GateName::PlanValidation | GateName::Human))
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
            g.label(),
            g.round,
            g.handoff
        ));
        if !g.passed {
            let detail = if matches!(g.gate(), GateName::Dod | GateName::Named) && !g.artifact.is_empty() {
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
        supervised(&ctx, span, async {
            self.steps().extract_lessons_impl(input, &ctx).await
        })
        .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::CrystallizeRule)]
    pub async fn crystallize_rule(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: CrystallizeRequest,
    ) -> Result<RuleReport, ActivityError> {
        let span = activity_span(&ctx, req.run.as_ref());
        supervised(&ctx, span, async { self.steps().crystallize_impl(req, &ctx).await }).await
    }
}
