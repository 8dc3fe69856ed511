//! What CHUM learned: lessons (searchable, with provenance), the rules crystallized from them
//! with their four checks, the rule files the gate leaves out, and retiring a rule (the same
//! code as `chum rules retire`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chum_activities::learner::RetireError;
use chum_activities::store::{RuleStatus, Store};
use maud::html;
use serde_json::json;

use super::{authorize_form, error_page, layout, viewer};
use crate::api::{ApiError, ApiState, audited};

#[derive(serde::Deserialize, Default)]
pub(super) struct LearningQuery {
    #[serde(default)]
    q: String,
    /// Validate the rule files with the engine (takes a moment per file).
    #[serde(default)]
    validate: Option<String>,
    #[serde(default)]
    retired: Option<String>,
}

pub(super) async fn page(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<LearningQuery>,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(to_login) => return to_login.into_response(),
    };
    let config = state.config();
    let store = Store::for_config(&config);
    let (lessons, rules) = match &store {
        Ok(store) => {
            let lessons = if q.q.trim().is_empty() {
                store.recent(None, 50)
            } else {
                store.search(None, &q.q, 50, None)
            };
            (
                lessons.map_err(|e| e.to_string()),
                store.rules(None).map_err(|e| e.to_string()),
            )
        }
        Err(e) => (Err(e.to_string()), Err(e.to_string())),
    };
    let quarantined = if q.validate.is_some() {
        Some(quarantined_rule_files(&config).await)
    } else {
        None
    };
    let notice = q.retired.as_ref().map(|id| format!("Retired {id}."));
    layout::page(
        "Learning",
        &viewer,
        html! {
            (layout::notice(notice.as_deref()))
            h1 { "Learning" }
            section #lessons {
                h2 { "Lessons" }
                form.inline method="get" action="/ui/learning" {
                    input type="search" name="q" value=(q.q) placeholder="Search lessons";
                    button type="submit" { "Search" }
                }
                @match &lessons {
                    Err(e) => div.notice.error { "The store cannot be read: " (e) },
                    Ok(list) if list.is_empty() => p.muted { "No lessons yet." },
                    Ok(list) => table {
                        thead { tr { th { "#" } th { "Kind" } th { "Lesson" } th { "From" } th { "Used" } } }
                        tbody {
                            @for l in list {
                                tr {
                                    td { (l.id) }
                                    td { span.badge { (l.category) } }
                                    td { strong { (l.summary) } @if !l.detail.is_empty() { br; span.muted { (l.detail) } } }
                                    td { (l.project) " / " (l.bead_id) br; span.muted { (l.workflow_id) ", attempt " (l.attempt) } }
                                    td { (l.use_count) "×" }
                                }
                            }
                        }
                    },
                }
            }
            section #rules {
                h2 { "Learned rules" }
                @match &rules {
                    Err(e) => div.notice.error { "The store cannot be read: " (e) },
                    Ok(list) if list.is_empty() => p.muted { "No rule has been crystallized yet." },
                    Ok(list) => @for r in list {
                        article.rule.card data-rule=(r.rule_id) {
                            h3 { code { (r.rule_id) } " " span class={"badge rule-" (r.status)} { (r.status) }
                                span.muted { " from lesson #" (r.lesson_id) ", " (r.project) } }
                            @if !r.reason.is_empty() { p { (r.reason) } }
                            ul.checks { @for c in &r.checks { li { (c) } } }
                            details { summary { "YAML" } pre { (r.yaml) } }
                            @if r.status == RuleStatus::Accepted && viewer.may_control() {
                                form.inline method="post" action="/ui/learning/retire" {
                                    (layout::csrf_field(&viewer))
                                    input type="hidden" name="rule_id" value=(r.rule_id);
                                    input type="text" name="reason" placeholder="Why retire it" required;
                                    button.danger type="submit" { "Retire" }
                                }
                            }
                        }
                    },
                }
            }
            section #quarantine {
                h2 { "Quarantined rule files" }
                @match &quarantined {
                    None => p { a href="/ui/learning?validate=1" { "Validate every rule file" } " (runs the engine on each)" },
                    Some(list) if list.is_empty() => p #no-quarantine { "Every rule file validates." },
                    Some(list) => ul { @for (file, why) in list { li { code { (file) } ": " (why) } } },
                }
            }
        },
    )
    .into_response()
}

/// Every project's rule files that do not validate, with why (and a project whose rule files
/// cannot be listed, with why).
async fn quarantined_rule_files(config: &chum_core::config::ChumConfig) -> Vec<(String, String)> {
    use chum_activities::semgrep::{locate_core, rule_files, validate_rule_files};
    let Ok(core) = locate_core(&config.semgrep) else {
        return vec![(
            "semgrep".into(),
            "semgrep-core is not installed; run scripts/setup.sh".into(),
        )];
    };
    let Ok(scratch) = tempfile::tempdir() else {
        return vec![("-".into(), "no scratch directory for the check".into())];
    };
    let mut out = Vec::new();
    for (p, project) in config.projects.values().enumerate() {
        let files = match rule_files(&config.state_dir, &project.repo) {
            Ok(files) => files,
            Err(e) => {
                out.push((
                    project.repo.display().to_string(),
                    format!("its rule files cannot be listed: {e}"),
                ));
                continue;
            }
        };
        let work = scratch.path().join(p.to_string());
        let verdicts = validate_rule_files(&core, &files, &work, config.semgrep.timeout).await;
        for (file, verdict) in files.iter().zip(verdicts) {
            if let Some(why) = verdict {
                out.push((file.display().to_string(), why));
            }
        }
    }
    out
}

pub(super) async fn retire(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let rule_id = form.get("rule_id").cloned().unwrap_or_default();
    let who = match authorize_form(&state, &headers, &form, "retire_rule", &rule_id, remote) {
        Ok(who) => who,
        Err(refused) => return error_page(&state, &headers, &refused),
    };
    let reason = form.get("reason").map(|r| r.trim().to_string()).unwrap_or_default();
    let config = state.config();
    let act = async {
        let done = chum_activities::learner::retire_rule(&config, &rule_id, &format!("{reason} (by {who})"))
            .await
            .map_err(|e| match e {
                RetireError::NoReason => ApiError::bad_request(e.to_string()),
                other => ApiError::new(StatusCode::CONFLICT, "conflict", other.to_string()),
            })?;
        Ok(json!({"rule_id": rule_id, "commit": done.commit, "merged": done.merged}))
    };
    match audited(&state, &who, "retire_rule", &rule_id, remote, act).await {
        Ok(_) => Redirect::to(&format!("/ui/learning?retired={rule_id}")).into_response(),
        Err(e) => error_page(&state, &headers, &e),
    }
}
