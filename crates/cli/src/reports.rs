//! The read commands that need no Temporal server: spending (`usage`), lessons and rules, from
//! the store and the project's files.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chum_activities::learner::RetireError;
use chum_core::config::ChumConfig;
use serde::Serialize;

use crate::args::{LessonsCommand, RulesCommand};
use crate::output::{Out, failed, usage as usage_error};
use crate::render;

/// The only project, or the one named; several without a name is a usage error.
pub fn only_project(config: &ChumConfig, project: Option<&str>) -> Result<String> {
    match project {
        Some(p) => {
            config.project(p).map_err(usage_error)?;
            Ok(p.to_string())
        }
        None if config.projects.len() == 1 => Ok(config.projects.keys().next().cloned().unwrap_or_default()),
        None => Err(usage_error(format!(
            "{} configures several projects; say which with --project <name>",
            config.source.display()
        ))),
    }
}

pub fn open_store(config: &ChumConfig) -> Result<chum_activities::store::Store> {
    Ok(chum_activities::store::Store::for_config(config)?)
}

#[derive(Serialize)]
struct UsageRow {
    key: String,
    #[serde(flatten)]
    spent: chum_activities::store::Spent,
}

#[derive(Serialize)]
struct UsageReport {
    project: Option<String>,
    days: Option<u32>,
    total: chum_activities::store::Spent,
    by: String,
    rows: Vec<UsageRow>,
    today_all_projects: chum_activities::store::Spent,
    caps: Option<chum_core::config::Budget>,
}

/// `chum usage`: spend from the store, against the caps.
pub fn usage(config: &ChumConfig, out: Out, project: Option<&str>, by: &str, days: Option<u32>) -> Result<ExitCode> {
    use chum_activities::agent::utc_day_start;
    use chum_activities::store::UsageFilter;
    let store = open_store(config)?;
    let now = chum_activities::clock::now_ms();
    let since = days.map(|d| utc_day_start(now) - i64::from(d.saturating_sub(1)) * 86_400_000);
    let filter = UsageFilter {
        project,
        bead_id: None,
        since_ms: since,
    };
    let total = store.spent(filter)?;
    let column = if by == "bead" { "bead_id" } else { by };
    let rows: Vec<UsageRow> = store
        .spent_by(column, filter)?
        .into_iter()
        .map(|(key, spent)| UsageRow { key, spent })
        .collect();
    let b = &config.budget;
    let capped = chum_activities::agent::has_caps(b);
    let today = store.spent(UsageFilter {
        since_ms: Some(utc_day_start(now)),
        ..UsageFilter::default()
    })?;
    if !out.text() {
        out.one(&UsageReport {
            project: project.map(str::to_string),
            days,
            total,
            by: by.to_string(),
            rows,
            today_all_projects: today,
            caps: capped.then(|| b.clone()),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let span = match days {
        Some(1) => "today (UTC)".to_string(),
        Some(d) => format!("the last {d} days (UTC)"),
        None => "all time".to_string(),
    };
    let scope = project.map(|p| format!("project {p}, ")).unwrap_or_default();
    println!(
        "{scope}{span}: ${:.4}, {} tokens, {} agent run(s){}",
        total.cost_usd,
        total.tokens,
        total.runs,
        cost_sources(&total, true)
    );
    for UsageRow { key, spent } in &rows {
        println!(
            "  {:<24} ${:>10.4}  {:>10} tokens  {:>5} run(s){}",
            key,
            spent.cost_usd,
            spent.tokens,
            spent.runs,
            cost_sources(spent, false)
        );
    }
    if capped {
        println!(
            "caps ([budget]): per bead ${:.2} / {} tokens; per project per day ${:.2} / {} tokens; all projects per day ${:.2} / {} tokens (0 = none)",
            b.per_bead_usd,
            b.per_bead_tokens,
            b.project_daily_usd,
            b.project_daily_tokens,
            b.global_daily_usd,
            b.global_daily_tokens
        );
        println!(
            "spent today, all projects: ${:.4}, {} tokens",
            today.cost_usd, today.tokens
        );
    } else {
        println!("no spending caps are set ([budget] in the config)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `chum lessons search|show`.
pub fn lessons(config: &ChumConfig, out: Out, project: Option<&str>, command: &LessonsCommand) -> Result<ExitCode> {
    let store = open_store(config)?;
    match command {
        LessonsCommand::Search { words, limit } => {
            // Any words, in any order: each is a term of the full-text search (no query syntax).
            let query = words.join(" ");
            let found = if query.trim().is_empty() {
                store.recent(project, *limit)?
            } else {
                store.search(project, &query, *limit, None)?
            };
            if !out.text() {
                out.list(&found)?;
                return Ok(ExitCode::SUCCESS);
            }
            if found.is_empty() {
                if query.trim().is_empty() {
                    println!("no lessons yet; runs add lessons when a learner role is configured");
                } else {
                    println!("no lesson mentions all of: {query}");
                }
            }
            for l in &found {
                println!(
                    "#{:<5} [{}] {} (bead {}, used {}x)",
                    l.id, l.category, l.summary, l.bead_id, l.use_count
                );
            }
        }
        LessonsCommand::Show { id } => {
            let l = store
                .lesson(*id)?
                .ok_or_else(|| failed(format!("no lesson #{id}; `chum lessons search` lists them")))?;
            if out.text() {
                print!("{}", render::lesson(&l));
            } else {
                out.one(&l)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `chum rules [list|show|retire]`.
pub async fn rules(
    config: &ChumConfig,
    out: Out,
    project: Option<&str>,
    command: Option<&RulesCommand>,
) -> Result<ExitCode> {
    match command {
        None | Some(RulesCommand::List) => rule_files_and_learned(config, out, project).await,
        Some(RulesCommand::Show { rule_id }) => {
            let store = open_store(config)?;
            let rule = store
                .rule(rule_id)?
                .ok_or_else(|| failed(format!("no learned rule {rule_id}; `chum rules` lists them")))?;
            let lesson = store.lesson(rule.lesson_id)?;
            if out.text() {
                print!("{}", render::rule(&rule, lesson.as_ref()));
            } else {
                out.one(&serde_json::json!({"rule": rule, "lesson": lesson}))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(RulesCommand::Retire { rule_id, reason }) => {
            let done = chum_activities::learner::retire_rule(config, rule_id, reason)
                .await
                .map_err(|e| match e {
                    RetireError::NoReason => usage_error(e),
                    other => failed(other),
                })?;
            let short = &done.commit[..done.commit.len().min(12)];
            if done.merged {
                println!("retired {rule_id} in commit {short}");
            } else {
                println!(
                    "retired {rule_id} in commit {short} on branch chum/rules/retire-{rule_id} {}",
                    done.problem
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One rule file the Semgrep gate reads, with its rule ids, and why it is left out if it is.
#[derive(Serialize)]
struct RuleFile {
    file: String,
    /// "project" (the project's .semgrep/) or "chum pack".
    origin: &'static str,
    rule_ids: Vec<String>,
    /// Empty when the file validates.
    quarantined: String,
}

/// Every rule file with its rule ids, validated with the engine the gate uses, then the learned rules.
async fn rule_files_and_learned(config: &ChumConfig, out: Out, project: Option<&str>) -> Result<ExitCode> {
    use chum_activities::semgrep::{locate_core, rule_files, validate_rule_files};
    let name = only_project(config, project)?;
    let project = config.project(&name).map_err(usage_error)?;
    let core = locate_core(&config.semgrep).map_err(failed)?;
    let files = rule_files(&config.state_dir, &project.repo)?;
    let scratch = tempfile::tempdir()?;
    let verdicts = validate_rule_files(&core, &files, scratch.path(), config.semgrep.timeout).await;
    let mut checked = Vec::new();
    for (file, verdict) in files.iter().zip(verdicts) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let rule_ids = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- id:").or_else(|| l.trim().strip_prefix("id:")))
            .map(|id| id.trim().to_string())
            .collect();
        let origin = if file.starts_with(&project.repo) {
            "project"
        } else {
            "chum pack"
        };
        checked.push(RuleFile {
            file: file.display().to_string(),
            origin,
            rule_ids,
            quarantined: verdict.unwrap_or_default(),
        });
    }
    let learned = open_store(config)?
        .rules(Some(&name))
        .with_context(|| format!("reading the learned rules of {name}"))?;
    if !out.text() {
        out.one(&serde_json::json!({"files": checked, "learned": learned}))?;
        return Ok(ExitCode::SUCCESS);
    }
    for f in &checked {
        if f.quarantined.is_empty() {
            println!("ok           [{}] {} ({})", f.origin, f.file, f.rule_ids.join(", "));
        } else {
            println!("QUARANTINED  [{}] {}: {}", f.origin, f.file, f.quarantined);
        }
    }
    let quarantined = checked.iter().filter(|f| !f.quarantined.is_empty()).count();
    println!(
        "{} rule file(s), {quarantined} quarantined (left out of scans; they never fail a bead)",
        checked.len()
    );
    if !learned.is_empty() {
        println!("\nlearned rules:");
        for r in &learned {
            println!(
                "{:<10} {:<9} lesson #{:<4} {}",
                r.rule_id, r.status, r.lesson_id, r.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Which of the figures CHUM worked out rather than read from the agent: computed from the reported
/// tokens at the provider's price, or estimated from the run's time at its rate (empty when every
/// figure was reported). `long` says why, for the total.
fn cost_sources(spent: &chum_activities::store::Spent, long: bool) -> String {
    let mut parts = Vec::new();
    if spent.computed > 0 {
        parts.push(if long {
            format!(
                "{} run(s) computed from their tokens at the price table's prices (as of {}; `price` in [providers.<name>] overrides)",
                spent.computed,
                chum_core::config::PRICE_TABLE_AS_OF
            )
        } else {
            format!("{} computed", spent.computed)
        });
    }
    if spent.estimated > 0 {
        parts.push(if long {
            format!(
                "{} run(s) estimated from their time: their provider reports no cost",
                spent.estimated
            )
        } else {
            format!("{} estimated", spent.estimated)
        });
    }
    if parts.is_empty() {
        String::new()
    } else if long {
        format!(" ({}; the rest as reported)", parts.join("; "))
    } else {
        format!("  ({})", parts.join(", "))
    }
}
