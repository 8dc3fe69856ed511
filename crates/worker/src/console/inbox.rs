//! The inbox: every Shark waiting at a gate, oldest first, with how long it has waited and the
//! gate timeout left; below it, what else is running.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chum_core::proto::{EnumName, Phase, SharkStatus};
use maud::html;

use super::{ago, duration_words, layout, now_ms, viewer};
use crate::api::ApiState;

/// A run at a gate: what it waits for and since when.
struct Waiting {
    workflow_id: String,
    status: SharkStatus,
    gate: &'static str,
    since_ms: i64,
}

/// When the run entered its current phase (its last phase span's start).
fn since(status: &SharkStatus) -> i64 {
    status
        .phases
        .iter()
        .rev()
        .find(|s| s.phase == status.phase)
        .map_or(0, |s| s.started_ms)
}

pub(super) async fn page(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(to_login) => return to_login.into_response(),
    };
    let running = chum_client::control::running(&state.client).await;
    let now = now_ms();
    let timeout_secs = i64::try_from(state.config().limits.gate_timeout.as_secs()).unwrap_or(i64::MAX);
    let mut waiting = Vec::new();
    let mut busy = Vec::new();
    let mut unreadable = Vec::new();
    if let Ok(runs) = &running {
        for (id, status) in runs {
            match status {
                Ok(s) => {
                    let gate = match s.phase() {
                        Phase::AwaitingApproval => Some("plan"),
                        Phase::AwaitingResultApproval => Some("result"),
                        _ => None,
                    };
                    match gate {
                        Some(gate) => waiting.push(Waiting {
                            workflow_id: id.clone(),
                            status: s.clone(),
                            gate,
                            since_ms: since(s),
                        }),
                        None => busy.push((id.clone(), s.clone())),
                    }
                }
                Err(e) => unreadable.push((id.clone(), e.message.clone())),
            }
        }
    }
    waiting.sort_by_key(|w| (w.since_ms, w.workflow_id.clone()));
    layout::page(
        "Inbox",
        &viewer,
        html! {
            h1 { "Inbox" }
            @if let Err(e) = &running {
                div.notice.error role="alert" { "Temporal did not answer: " (e.message) }
            }
            @if waiting.is_empty() {
                p #inbox-empty.muted { "Nobody is waiting for you. Sharks at a gate show here, oldest first." }
            } @else {
                table #inbox {
                    thead { tr { th { "Gate" } th { "Project" } th { "Bead" } th { "What" } th { "Waiting" } th { "Timeout in" } } }
                    tbody {
                        @for w in &waiting {
                            @let waited = (now - w.since_ms).max(0) / 1000;
                            // The run's own deadline; runs that waited before it was shown count
                            // from the configured timeout.
                            @let left = if w.status.gate_deadline_ms > 0 {
                                (w.status.gate_deadline_ms - now).max(0) / 1000
                            } else {
                                timeout_secs.saturating_sub(waited)
                            };
                            tr.waiting data-bead=(w.status.bead_id) {
                                td { span class={"badge gate-" (w.gate)} { (w.gate) } }
                                td { (w.status.project) }
                                td { a href={"/ui/runs/" (w.workflow_id)} { (w.status.bead_id) } }
                                td {
                                    @if w.gate == "plan" {
                                        (w.status.plan.as_ref().map(|p| p.summary.as_str()).unwrap_or(""))
                                        " (round " (w.status.plan_round) ")"
                                    } @else {
                                        (w.status.result_diff_stat.lines().last().unwrap_or(""))
                                    }
                                }
                                td { (ago(now, w.since_ms)) }
                                td class=@if left < 3600 { "soon" } { (duration_words(left)) }
                            }
                        }
                    }
                }
            }
            h2 { "Running" }
            @if busy.is_empty() && unreadable.is_empty() {
                p.muted { "No other Shark is running." }
            } @else {
                table #running {
                    thead { tr { th { "Project" } th { "Bead" } th { "Phase" } th { "Attempt" } th { "For" } } }
                    tbody {
                        @for (id, s) in &busy {
                            tr {
                                td { (s.project) }
                                td { a href={"/ui/runs/" (id)} { (s.bead_id) } }
                                td { span.phase { (s.phase().name()) } }
                                td { (s.attempt) " / " (s.max_attempts) }
                                td { (ago(now, since(s))) }
                            }
                        }
                        @for (id, why) in &unreadable {
                            tr { td colspan="5" { a href={"/ui/runs/" (id)} { (id) } " — status unreadable: " (why) } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}
