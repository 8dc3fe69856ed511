//! The groomers' activities: a proposal from the groomer agent, validated mutations applied to the
//! backlog (every outcome recorded), and the strategic briefing committed to the project.

use crate::log_context::{activity_span, supervised};
use chum_core::live_config::LiveConfig;
use std::fmt::Write as _;
use std::sync::Arc;

use chum_core::activity_contract::error_types;
use chum_core::backlog::{Mutation, backlog_summary, parse_groom_answer, validate_mutations};
use chum_core::config::{ChumConfig, ProjectConfig, Role};
use chum_core::prompt::{groomer_prompt, strategist_prompt};
use chum_core::proto::{
    ApplyMutationsReport, ApplyMutationsRequest, BeadStatus, BriefingReport, BriefingRequest, EnumName, GroomKind,
    GroomProposal, GroomRequest, MutationOutcome, RunRef, TacticalGroomInput,
};
use chum_core::repo_map::{Focus, RenderedMap};
use chum_core::text::excerpt;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::agent::{Liveness, ask_with_one_retry};
use crate::backlog::{Backlog, BacklogError};
use crate::clock::now_ms;
use crate::error::{config_error, permanent, repo_error, retryable, setup_error};
use crate::repo::{OwnChange, commit_own_change};
use crate::repo::{check_repository, map_for_prompt, tags_cache_dir};
use crate::store::RunArtifacts;
use crate::store::Store;

/// Where the strategic briefing lives in the project.
pub const BRIEFING_PATH: &str = ".beads/briefing.md";
/// Lessons a groomer sees.
const LESSONS_SHOWN: u32 = 8;

/// The registered activities; each call takes the configuration in force when it starts.
pub struct GroomActivitiesImpl {
    live: LiveConfig,
}

/// The activity bodies with one configuration snapshot: what one activity sees from start to end.
pub struct GroomSteps {
    config: Arc<ChumConfig>,
}

/// What an execution changed, per file: `path (+added -removed)`, from a unified diff.
pub fn diff_summary(diff: &str) -> String {
    let mut files: Vec<(String, u32, u32)> = Vec::new();
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git a/") {
            let path = rest.split(" b/").next().unwrap_or(rest).to_string();
            files.push((path, 0, 0));
        } else if let Some(last) = files.last_mut() {
            if line.starts_with('+') && !line.starts_with("+++") {
                last.1 += 1;
            } else if line.starts_with('-') && !line.starts_with("---") {
                last.2 += 1;
            }
        }
    }
    if files.is_empty() {
        return "(no changes)".to_string();
    }
    files
        .iter()
        .map(|(p, a, r)| format!("{p} (+{a} -{r})"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a unified diff changes.
fn changed_files(diff: &str) -> Vec<String> {
    diff.lines()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .map(|rest| rest.split(" b/").next().unwrap_or(rest).to_string())
        .collect()
}

impl GroomActivitiesImpl {
    pub fn new(config: impl Into<LiveConfig>) -> GroomActivitiesImpl {
        GroomActivitiesImpl { live: config.into() }
    }

    /// The steps with the configuration in force now.
    pub fn steps(&self) -> GroomSteps {
        GroomSteps {
            config: self.live.current(),
        }
    }
}

impl GroomSteps {
    fn project(&self, groom: &RunRef) -> Result<&ProjectConfig, ActivityError> {
        if !groom.bead_id.is_empty() {
            chum_core::ids::check_bead_id(&groom.bead_id).map_err(|m| permanent(error_types::INVALID_INPUT, m))?;
        }
        self.config.project(&groom.project).map_err(config_error)
    }

    fn store(&self) -> Result<Store, ActivityError> {
        Store::for_config(&self.config).map_err(|e| retryable(e.to_string()))
    }

    fn max(&self, kind: GroomKind) -> u32 {
        if kind == GroomKind::Strategic {
            self.config.groom.strategic_max_mutations
        } else {
            self.config.groom.max_mutations
        }
    }

    /// The project's repo map at its base branch's tip, within the groomer's budget.
    async fn repo_map(&self, project: &ProjectConfig, focus: Focus<'_>) -> RenderedMap {
        let budget = self.config.repo_map_tokens.for_role(Role::Groomer);
        if budget == 0 {
            return RenderedMap::default();
        }
        match check_repository(project).await {
            Ok(commit) => {
                let cache = tags_cache_dir(&self.config.state_dir, &project.name);
                map_for_prompt(&project.repo, &commit, &cache, focus, budget).await
            }
            Err(e) => {
                tracing::warn!(project = %project.name, "no repo map for the groomer: {e}");
                RenderedMap::default()
            }
        }
    }

    /// The finished bead as the tactical groomer sees it, and the files its last diff changed.
    async fn finished_bead(&self, input: &TacticalGroomInput) -> (String, Vec<String>) {
        let bead = input.bead.clone().unwrap_or_default();
        let mut out = format!("{}: {}\n", bead.id, bead.title);
        if !bead.description.trim().is_empty() {
            let _ = writeln!(out, "{}", excerpt(bead.description.trim(), 1500));
        }
        let _ = writeln!(out, "\nOutcome: {}: {}", input.outcome().name(), input.reason);
        if !input.commit.is_empty() {
            let _ = writeln!(out, "Commit: {}", input.commit);
        }
        let mut changed = Vec::new();
        if let Some(path) = input.diff_artifacts.iter().rev().find(|p| !p.is_empty())
            && let Ok(diff) = tokio::fs::read_to_string(path).await
        {
            let _ = writeln!(out, "\nChanged files:\n{}", diff_summary(&diff));
            changed = changed_files(&diff);
        }
        (out, changed)
    }

    pub async fn propose_mutations_impl(
        &self,
        req: GroomRequest,
        liveness: &impl Liveness,
    ) -> Result<GroomProposal, ActivityError> {
        let groom = req.groom.clone().unwrap_or_default();
        let project = self.project(&groom)?;
        let strategic = req.kind() == GroomKind::Strategic;
        let max = self.max(req.kind());
        let items = Backlog::of(project).items().await.map_err(retryable)?;
        let backlog = backlog_summary(&items);
        let store = self.store()?;
        let lessons: String = store
            .recent(Some(&project.name), LESSONS_SHOWN)
            .map_err(|e| retryable(e.to_string()))?
            .iter()
            .map(|l| format!("- [{}] {} (#{}, from {})\n", l.category, l.summary, l.id, l.bead_id))
            .collect();
        let (base_prompt, context_summary) = if strategic {
            // The whole repository, ranked by what the most code depends on.
            let map = self.repo_map(project, Focus::default()).await;
            let summary = format!(
                "{} beads; repo map of {} definitions in {} files",
                items.len(),
                map.definitions,
                map.files
            );
            (
                strategist_prompt(&project.name, &backlog, &map.text, &lessons, max),
                summary,
            )
        } else {
            let finished_input = req.finished.clone().unwrap_or_default();
            let (finished, changed) = self.finished_bead(&finished_input).await;
            let bead = finished_input.bead.unwrap_or_default();
            let text = format!("{} {} {}", bead.title, bead.description, bead.notes);
            let map = self
                .repo_map(
                    project,
                    Focus {
                        text: &text,
                        files: &changed,
                    },
                )
                .await;
            (
                groomer_prompt(&finished, &backlog, &lessons, &map.text, max),
                format!("{} beads", items.len()),
            )
        };
        let workdir = RunArtifacts::new(&self.config.state_dir, &groom).dir().join("groomer");
        std::fs::create_dir_all(&workdir)
            .map_err(|e| retryable(format!("cannot create {}: {e}", workdir.display())))?;
        let artifacts = RunArtifacts::new(&self.config.state_dir, &groom);
        let asked = ask_with_one_retry(
            &self.config,
            &artifacts,
            Role::Groomer,
            &groom,
            &workdir,
            &base_prompt,
            "groom",
            liveness,
            |text| parse_groom_answer(text, strategic),
        )
        .await
        .map_err(setup_error)?;
        if asked.cancelled {
            return Err(ActivityError::cancelled());
        }
        let agent = asked.summary;
        match asked.answer {
            Ok(answer) => {
                let mutations = answer
                    .mutations
                    .iter()
                    .map(|m| serde_json::to_string(m).map_err(|e| retryable(e.to_string())))
                    .collect::<Result<Vec<_>, _>>()?;
                tracing::info!(project = %project.name, kind = %req.kind(), proposed = mutations.len(), "groomer proposed");
                Ok(GroomProposal {
                    mutations,
                    briefing: answer.briefing,
                    error: String::new(),
                    agent: Some(agent),
                    context_summary,
                })
            }
            Err(retry_error) => {
                tracing::warn!(project = %project.name, "no usable groom: {retry_error}");
                Ok(GroomProposal {
                    error: format!("the groomer's answer could not be used: {retry_error}"),
                    agent: Some(agent),
                    context_summary,
                    ..GroomProposal::default()
                })
            }
        }
    }

    pub async fn apply_mutations_impl(
        &self,
        req: ApplyMutationsRequest,
    ) -> Result<ApplyMutationsReport, ActivityError> {
        let groom = req.groom.clone().unwrap_or_default();
        let project = self.project(&groom)?;
        let backlog = Backlog::of(project);
        let store = self.store()?;
        // A retried activity finds what it already did and does only the rest.
        let recorded = store.groom_outcomes(&groom).map_err(|e| retryable(e.to_string()))?;
        let done: std::collections::BTreeSet<u32> = recorded.iter().map(|o| o.index).collect();
        let already_applied = recorded.iter().filter(|o| o.applied).count() as u32;
        let mut outcomes = recorded;

        let mut pending: Vec<(u32, String, Mutation)> = Vec::new();
        for (index, json) in req.mutations.iter().enumerate() {
            let index = index as u32;
            if done.contains(&index) {
                continue;
            }
            match serde_json::from_str::<Mutation>(json) {
                Ok(m) => pending.push((index, json.clone(), m)),
                Err(e) => {
                    let outcome = MutationOutcome {
                        index,
                        op: "unknown".to_string(),
                        description: excerpt(json, 120),
                        applied: false,
                        reason: format!("not a valid mutation: {e}"),
                        mutation: json.clone(),
                        ..MutationOutcome::default()
                    };
                    store
                        .record_groom_outcome(&groom, req.kind(), &outcome, now_ms())
                        .map_err(|e| retryable(e.to_string()))?;
                    outcomes.push(outcome);
                }
            }
        }
        let items = backlog.items().await.map_err(retryable)?;
        let room = self.max(req.kind()).saturating_sub(already_applied) as usize;
        let verdicts = validate_mutations(&items, pending.iter().map(|(_, _, m)| m.clone()).collect(), room);
        for ((index, json, _), (mutation, verdict)) in pending.into_iter().zip(verdicts) {
            let mut outcome = MutationOutcome {
                index,
                op: op_name(&mutation).to_string(),
                description: mutation.describe(),
                mutation: json,
                ..MutationOutcome::default()
            };
            match verdict {
                Err(reason) => outcome.reason = reason,
                Ok(()) => match apply(&backlog, &mutation, &groom).await {
                    Ok(created) => {
                        outcome.applied = true;
                        outcome.created_id = created;
                    }
                    Err(e) => outcome.reason = format!("could not be applied: {e}"),
                },
            }
            if outcome.applied {
                tracing::info!(project = %groom.project, "groom applied: {}", outcome.description);
            } else {
                tracing::info!(project = %groom.project, "groom rejected: {}: {}", outcome.description, outcome.reason);
            }
            store
                .record_groom_outcome(&groom, req.kind(), &outcome, now_ms())
                .map_err(|e| retryable(e.to_string()))?;
            outcomes.push(outcome);
        }
        outcomes.sort_by_key(|o| o.index);
        Ok(ApplyMutationsReport { outcomes })
    }

    pub async fn commit_briefing_impl(&self, req: BriefingRequest) -> Result<BriefingReport, ActivityError> {
        let groom = req.groom.clone().unwrap_or_default();
        let project = self.project(&groom)?;
        let content = briefing_file(&project.name, &groom.workflow_id, &req.briefing, &req.outcomes);
        let change = OwnChange {
            branch: format!("chum/briefing-{}", project.name),
            files: vec![(BRIEFING_PATH.to_string(), Some(content))],
            message: format!("Strategic groom briefing for {}", project.name),
            trailer: format!("Chum-Briefing: {}", groom.workflow_id),
            project,
        };
        let outcome = commit_own_change(change).await.map_err(repo_error)?;
        tracing::info!(project = %project.name, commit = %outcome.commit, merged = outcome.merged, "briefing committed");
        Ok(BriefingReport {
            path: BRIEFING_PATH.to_string(),
            commit: outcome.commit,
            merged: outcome.merged,
            problem: outcome.problem,
        })
    }
}

fn op_name(m: &Mutation) -> &'static str {
    match m {
        Mutation::UpdatePriority { .. } => "update_priority",
        Mutation::AddDependency { .. } => "add_dependency",
        Mutation::AppendNotes { .. } => "append_notes",
        Mutation::Create { .. } => "create",
        Mutation::Close { .. } => "close",
    }
}

/// Applies one validated mutation; returns the id of a created bead.
async fn apply(backlog: &Backlog, m: &Mutation, groom: &RunRef) -> Result<String, BacklogError> {
    let by = format!("CHUM groom {}", groom.workflow_id);
    match m {
        Mutation::UpdatePriority { id, priority } => backlog.set_priority(id, *priority).await.map(|_| String::new()),
        Mutation::AddDependency { id, depends_on, r#type } => backlog
            .add_dependency(id, depends_on, r#type)
            .await
            .map(|_| String::new()),
        Mutation::AppendNotes { id, notes } => backlog
            .update(id, BeadStatus::Unspecified, &format!("{} ({by})", notes.trim()), "")
            .await
            .map(|_| String::new()),
        Mutation::Create { .. } => match m.as_new_bead() {
            Some(new) => backlog.create(&new).await,
            None => Ok(String::new()),
        },
        Mutation::Close { id, reason } => backlog
            .update(id, BeadStatus::Closed, "", &format!("{} ({by})", reason.trim()))
            .await
            .map(|_| String::new()),
    }
}

/// The briefing file: the groomer's Markdown, then what this groom changed and refused.
pub fn briefing_file(project: &str, workflow_id: &str, briefing: &str, outcomes: &[MutationOutcome]) -> String {
    let mut out = format!(
        "<!-- Written by CHUM's strategic groom ({workflow_id}); the next one replaces it. -->\n# Backlog briefing: {project}\n\n"
    );
    out.push_str(briefing.trim());
    out.push_str("\n\n## Changes made to the backlog\n");
    let applied: Vec<&MutationOutcome> = outcomes.iter().filter(|o| o.applied).collect();
    let rejected: Vec<&MutationOutcome> = outcomes.iter().filter(|o| !o.applied).collect();
    if applied.is_empty() {
        out.push_str("None.\n");
    }
    for o in applied {
        let created = if o.created_id.is_empty() {
            String::new()
        } else {
            format!(" → {}", o.created_id)
        };
        let _ = writeln!(out, "- {}{created}", o.description);
    }
    if !rejected.is_empty() {
        out.push_str("\n## Proposed and refused\n");
        for o in rejected {
            let _ = writeln!(out, "- {}: {}", o.description, o.reason);
        }
    }
    out
}

#[activities]
impl GroomActivitiesImpl {
    #[activity(definition = chum_core::activity_contract::definitions::ProposeMutations)]
    pub async fn propose_mutations(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: GroomRequest,
    ) -> Result<GroomProposal, ActivityError> {
        let span = activity_span(&ctx, req.groom.as_ref());
        supervised(&ctx, span, async {
            self.steps().propose_mutations_impl(req, &ctx).await
        })
        .await
    }

    #[activity(definition = chum_core::activity_contract::definitions::ApplyMutations)]
    pub async fn apply_mutations(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ApplyMutationsRequest,
    ) -> Result<ApplyMutationsReport, ActivityError> {
        let span = activity_span(&ctx, req.groom.as_ref());
        supervised(&ctx, span, async move { self.steps().apply_mutations_impl(req).await }).await
    }

    #[activity(definition = chum_core::activity_contract::definitions::CommitBriefing)]
    pub async fn commit_briefing(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: BriefingRequest,
    ) -> Result<BriefingReport, ActivityError> {
        let span = activity_span(&ctx, req.groom.as_ref());
        supervised(&ctx, span, async move { self.steps().commit_briefing_impl(req).await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_is_summarized_per_file() {
        let diff = "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n@@ -1 +1,2 @@\n-old\n+new\n+more\n\
                    diff --git a/README.md b/README.md\n+++ b/README.md\n+line\n";
        assert_eq!(diff_summary(diff), "src/a.py (+2 -1)\nREADME.md (+1 -0)");
        assert_eq!(diff_summary(""), "(no changes)");
    }

    #[test]
    fn the_briefing_lists_what_was_changed_and_refused() {
        let outcomes = vec![
            MutationOutcome {
                description: "create \"Add a CLI\"".into(),
                applied: true,
                created_id: "tk-9zz".into(),
                ..MutationOutcome::default()
            },
            MutationOutcome {
                description: "close tk-1".into(),
                reason: "tk-1 is in progress".into(),
                ..MutationOutcome::default()
            },
        ];
        let text = briefing_file("demo", "strategic-groom-demo-1", "## Top priorities\n1. x", &outcomes);
        assert!(text.contains("# Backlog briefing: demo"));
        assert!(text.contains("## Top priorities\n1. x"));
        assert!(text.contains("- create \"Add a CLI\" → tk-9zz"));
        assert!(text.contains("## Proposed and refused\n- close tk-1: tk-1 is in progress"));
    }
}
