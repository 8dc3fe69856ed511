//! Operations: each project's Dispatcher (paused or running, with pause and resume: the same
//! signals as `chum pause|resume`), what today's budgets have used and have left, and health.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chum_activities::agent::utc_day_start;
use chum_activities::store::{Store, UsageFilter};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::{authorize_form, error_page, layout, now_ms, viewer};
use crate::api::{ApiError, ApiState, audited};

#[derive(serde::Deserialize, Default)]
pub(super) struct OperationsQuery {
    #[serde(default)]
    done: Option<String>,
}

pub(super) async fn page(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<OperationsQuery>,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(to_login) => return to_login.into_response(),
    };
    let config = state.config();
    let mut dispatchers = Vec::new();
    for project in config.projects.values() {
        let status = chum_client::dispatcher::status(&state.client, &project.name).await;
        dispatchers.push((project.name.clone(), status));
    }
    let health = crate::api::health_checks(&state).await;
    let today = utc_day_start(now_ms());
    let store = Store::for_config(&config);
    let spent = |project: Option<&str>| {
        store.as_ref().ok().and_then(|s| {
            s.spent(UsageFilter {
                project,
                bead_id: None,
                since_ms: Some(today),
            })
            .ok()
        })
    };
    let budget = &config.budget;
    let notice = q.done.as_deref();
    layout::page(
        "Operations",
        &viewer,
        html! {
            (layout::notice(notice))
            h1 { "Operations" }
            section #dispatchers {
                h2 { "Dispatchers" }
                table {
                    thead { tr { th { "Project" } th { "State" } th { "Rounds" } th { "Last started" } th {} } }
                    tbody {
                        @for (name, status) in &dispatchers {
                            tr data-project=(name) {
                                td { (name) }
                                @match status {
                                    Ok(s) => {
                                        td { span class={"badge " @if s.paused { "paused" } @else { "running" }} {
                                            @if s.paused { "paused" } @else { "running" } } }
                                        td { (s.rounds) }
                                        td { (s.started.last().map(String::as_str).unwrap_or("-")) }
                                        td {
                                            @if viewer.may_control() {
                                                form.inline method="post" action="/ui/operations/dispatcher" {
                                                    (layout::csrf_field(&viewer))
                                                    input type="hidden" name="project" value=(name);
                                                    input type="hidden" name="pause" value=@if s.paused { "false" } @else { "true" };
                                                    button type="submit" { @if s.paused { "Resume" } @else { "Pause" } }
                                                }
                                            }
                                        }
                                    }
                                    Err(e) => { td colspan="4" { span.muted { "no dispatcher: " (e.message) } } }
                                }
                            }
                        }
                    }
                }
            }
            section #budgets {
                h2 { "Budgets today (UTC)" }
                table {
                    thead { tr { th { "Scope" } th { "Spent" } th { "Cap" } th { "Left" } } }
                    tbody {
                        (budget_row("all projects", spent(None).map(|s| (s.cost_usd, s.tokens)), budget.global_daily_usd, budget.global_daily_tokens))
                        @for name in config.projects.keys() {
                            (budget_row(name, spent(Some(name)).map(|s| (s.cost_usd, s.tokens)), budget.project_daily_usd, budget.project_daily_tokens))
                        }
                    }
                }
                p.muted { "Per bead: " (money_cap(budget.per_bead_usd)) ", " (token_cap(budget.per_bead_tokens)) "." }
            }
            section #health {
                h2 { "Health" }
                ul {
                    @for check in health["checks"].as_array().into_iter().flatten() {
                        li class=@if check["ok"] == true { "ok" } @else { "failed" } {
                            strong { (check["name"].as_str().unwrap_or("")) } ": " (check["detail"].as_str().unwrap_or(""))
                        }
                    }
                }
                p { a href="/health" { "/health as JSON" } " · " a href="/metrics" { "/metrics" } }
            }
        },
    )
    .into_response()
}

fn money_cap(usd: f64) -> String {
    if usd > 0.0 {
        format!("${usd:.2}")
    } else {
        "no dollar cap".into()
    }
}

fn token_cap(tokens: u64) -> String {
    if tokens > 0 {
        format!("{tokens} tokens")
    } else {
        "no token cap".into()
    }
}

fn budget_row(scope: &str, spent: Option<(f64, u64)>, cap_usd: f64, cap_tokens: u64) -> Markup {
    let (usd, tokens) = spent.unwrap_or_default();
    let left = match (cap_usd > 0.0, cap_tokens > 0) {
        (false, false) => "no cap".to_string(),
        (true, false) => format!("${:.2}", (cap_usd - usd).max(0.0)),
        (false, true) => format!("{} tokens", cap_tokens.saturating_sub(tokens)),
        (true, true) => format!(
            "${:.2}, {} tokens",
            (cap_usd - usd).max(0.0),
            cap_tokens.saturating_sub(tokens)
        ),
    };
    html! {
        tr {
            td { (scope) }
            td { (format!("${usd:.4}")) ", " (tokens) " tokens" }
            td { (money_cap(cap_usd)) ", " (token_cap(cap_tokens)) }
            td { (left) }
        }
    }
}

/// Pause or resume a project's Dispatcher: the same signal as `chum pause|resume`.
pub(super) async fn dispatcher(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let project = form.get("project").cloned().unwrap_or_default();
    let pause = form.get("pause").map(String::as_str) == Some("true");
    let action = if pause { "pause" } else { "resume" };
    let who = match authorize_form(&state, &headers, &form, action, &project, remote) {
        Ok(who) => who,
        Err(refused) => return error_page(&state, &headers, &refused),
    };
    let act = async {
        if state.config().project(&project).is_err() {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("no project {project:?} is configured"),
            ));
        }
        chum_client::dispatcher::set_paused(&state.client, &project, pause, &who).await?;
        Ok::<Value, ApiError>(json!({"project": project, "paused": pause}))
    };
    match audited(&state, &who, action, &project, remote, act).await {
        Ok(_) => Redirect::to(&format!("/ui/operations?done={action}d+{project}")).into_response(),
        Err(e) => error_page(&state, &headers, &e),
    }
}
