//! One run: the plan (with the lessons it was given and who planned it) and the buttons to decide
//! on it, then the run as it goes: phases and gate results live (SSE), each attempt's diff with
//! the findings at their lines, the DoD output, usage and cost, the commit, and links.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chum_core::gate_text::findings_at_lines;
use chum_core::proto::{EnumName, GateName, GateResult, Lesson, Phase, SharkStatus};
use maud::{Markup, html};

use super::diff::{self, Placed};
use super::{Viewer, authorize_form, error_page, layout, viewer};
use crate::api::{ApiError, ApiState, audited, decision, run_path};

#[derive(serde::Deserialize, Default)]
pub(super) struct RunQuery {
    #[serde(default)]
    decided: Option<String>,
}

pub(super) async fn page(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(to_login) => return to_login.into_response(),
    };
    let id = match run_path(&id) {
        Ok(id) => id,
        Err(e) => return error_page(&state, &headers, &e),
    };
    let status = match chum_client::control::status(&state.client, &id).await {
        Ok(s) => s,
        Err(e) => return error_page(&state, &headers, &ApiError::from(e)),
    };
    let artifacts = run_artifacts(&state, &status);
    let notice = q.decided.as_deref().map(|d| match d {
        "approve" => "Approved. The run goes on.",
        "reject" => "Rejected; the planner gets your feedback.",
        _ => "Done.",
    });
    let ui = crate::api::temporal_ui_link(&state.config(), &id);
    let phase = status.phase().name();
    let title = format!("{} · {}", status.bead_id, status.project);
    layout::page(
        &title,
        &viewer,
        html! {
            div #run data-run=(id) data-phase=(phase) data-round=(status.plan_round) data-attempt=(status.attempt)
                data-spans=(status.phases.len()) data-gates=(status.gate_results.len()) {
                (layout::notice(notice))
                h1 { (status.bead_id) " " small.muted { (status.project) } }
                p.facts {
                    "Phase " span #phase.phase { (phase) }
                    " · attempt " (status.attempt) " / " (status.max_attempts)
                    " · plan round " (status.plan_round)
                    @if status.phase() == Phase::Done {
                        " · " span #outcome class={"outcome " (status.outcome().name())} { (status.outcome().name()) }
                    }
                }
                @if !status.reason.is_empty() { p #reason { (status.reason) } }
                p.links {
                    a href=(ui) target="_blank" rel="noopener" { "Temporal UI" } " · "
                    a href={"/runs/" (id)} { "status as JSON" }
                    @if !status.pull_request_url.is_empty() {
                        " · " a href=(status.pull_request_url) { "pull request #" (status.pull_request_number) }
                    }
                    @if !status.commit.is_empty() { " · commit " code #commit { (status.commit) } }
                }
                (plan_section(&status, artifacts.as_deref()))
                (decide_section(&viewer, &id, &status))
                (decisions_section(&status))
                section {
                    h2 { "Phases" }
                    ol #phases.flow {
                        @for span in &status.phases {
                            li data-phase=(span.phase().name()) { (span.phase().name()) " " span.muted { "round " (span.round) } }
                        }
                    }
                }
                (gates_section(&status))
                (diffs_section(&status, artifacts.as_deref()))
                (usage_section(&status))
            }
        },
    )
    .into_response()
}

/// The run's artifact directory (from where its gates wrote), if it is under this worker's
/// artifact store; nothing outside it is ever read.
fn run_artifacts(state: &ApiState, status: &SharkStatus) -> Option<PathBuf> {
    let root = state.config().state_dir.join("artifacts").canonicalize().ok()?;
    status
        .gate_results
        .iter()
        .filter(|g| !g.artifact.is_empty())
        .find_map(|g| {
            // <root>/<workflow id>/<run id>/...: the first two components under the root.
            let dir = FsPath::new(&g.artifact).parent()?.canonicalize().ok()?;
            let mut parts = dir.strip_prefix(&root).ok()?.components();
            let (workflow, run) = (parts.next()?, parts.next()?);
            Some(root.join(workflow).join(run))
        })
}

fn decide_section(viewer: &Viewer, id: &str, status: &SharkStatus) -> Markup {
    let gate = match status.phase() {
        Phase::AwaitingApproval => "plan",
        Phase::AwaitingResultApproval => "result",
        _ => return html! {},
    };
    html! {
        section #decide.card {
            h2 { "Waiting for your decision on the " (gate) }
            @if gate == "result" && !status.result_diff_stat.is_empty() {
                pre.stat { (status.result_diff_stat) }
            }
            @if viewer.may_control() {
                form #approve-form method="post" action={"/ui/runs/" (id) "/decide"} {
                    (layout::csrf_field(viewer))
                    input type="hidden" name="decision" value="approve";
                    label for="approve-note" { "A note (optional)" }
                    input #approve-note type="text" name="feedback";
                    button #approve.primary type="submit" { "Approve" }
                }
                form #reject-form method="post" action={"/ui/runs/" (id) "/decide"} {
                    (layout::csrf_field(viewer))
                    input type="hidden" name="decision" value="reject";
                    label for="feedback" { "What should change" }
                    textarea #feedback name="feedback" rows="3" required {}
                    button #reject.danger type="submit" { "Reject with feedback" }
                }
            } @else if viewer.caller.is_some() {
                p #read-only.muted { "Your token can read, not decide. Ask for a token with the role control." }
            } @else {
                p.muted { a href="/login" { "Log in" } " with a control token to decide." }
            }
        }
    }
}

/// The planner's context for a round: its provider and the lessons it was given.
#[derive(serde::Deserialize, Default)]
struct PlanContext {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    lessons: Vec<Lesson>,
}

fn plan_section(status: &SharkStatus, artifacts: Option<&FsPath>) -> Markup {
    let Some(plan) = &status.plan else {
        return html! { section #plan { h2 { "Plan" } p.muted { "No plan yet." } } };
    };
    let context: PlanContext = artifacts
        .and_then(|dir| std::fs::read_to_string(dir.join(format!("plan-{}.context.json", status.plan_round))).ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    html! {
        section #plan {
            h2 { "Plan " small.muted { "round " (status.plan_round)
                @if !context.provider.is_empty() { " · planned by " span #planner { (context.provider) } } } }
            p #summary { (plan.summary) }
            h3 { "Steps" }
            ol #steps { @for s in &plan.steps { li { (s) } } }
            h3 { "Files" }
            ul #files { @for f in &plan.files { li { code { (f) } } } }
            h3 { "Acceptance criteria" }
            ol #criteria { @for c in &plan.acceptance_criteria { li { (c) } } }
            h3 { "Lessons given to the planner" }
            @if context.lessons.is_empty() {
                p.muted { "None." }
            } @else {
                ul #lessons {
                    @for l in &context.lessons {
                        li {
                            span.badge { (l.category) } " " (l.summary)
                            span.muted { " — lesson #" (l.id) " from bead " (l.bead_id) ", run " (l.workflow_id) ", attempt " (l.attempt)
                                @if !l.commit.is_empty() { ", commit " code { (chum_core::gate_text::short_commit(&l.commit)) } } }
                        }
                    }
                }
            }
        }
    }
}

fn decisions_section(status: &SharkStatus) -> Markup {
    if status.decisions.is_empty() && status.rejected_signals.is_empty() {
        return html! {};
    }
    html! {
        section #decisions {
            h2 { "Decisions" }
            ul {
                @for d in &status.decisions {
                    li class=@if d.approved { "approved" } @else { "rejected" } {
                        strong { @if d.approved { "approved" } @else { "rejected" } } " by " (d.by)
                        @if !d.feedback.is_empty() { ": " q { (d.feedback) } }
                    }
                }
                @for r in &status.rejected_signals {
                    li.refused { strong { "refused" } ": " (r.reason) " " code { (r.payload_excerpt) } }
                }
            }
        }
    }
}

fn gate_name(g: &GateResult) -> String {
    match GateName::try_from(g.gate) {
        Ok(_) => g.label(),
        Err(_) => "unknown".into(),
    }
}

fn gates_section(status: &SharkStatus) -> Markup {
    html! {
        section {
            h2 { "Gates" }
            table #gates {
                thead { tr { th { "Gate" } th { "Attempt" } th { "Verdict" } th { "Took" } th { "Detail" } } }
                tbody {
                    @for g in &status.gate_results {
                        tr class=@if g.passed { "passed" } @else { "failed" } data-gate=(gate_name(g)) {
                            td { (gate_name(g)) @if !g.provider.is_empty() { " " span.muted { (g.provider) } } }
                            td { (g.round) @if g.handoff > 0 { "." (g.handoff) } }
                            td { @if g.passed { "passed" } @else { "failed" } }
                            td { (g.duration_ms) " ms" }
                            td { pre.excerpt { (g.excerpt) } }
                        }
                    }
                }
            }
        }
    }
}

fn usage_section(status: &SharkStatus) -> Markup {
    let usage = status.usage.unwrap_or_default();
    html! {
        section #usage {
            h2 { "Usage" }
            p { (usage.input_tokens) " tokens in · " (usage.output_tokens) " tokens out · "
                (format!("${:.4}", usage.cost_usd)) }
        }
    }
}

/// `execute-<attempt>-<handoff>.diff` in the run's artifacts, in order.
fn attempt_diffs(dir: &FsPath) -> Vec<(u32, u32, PathBuf)> {
    let mut found: Vec<(u32, u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (attempt, handoff) = name.strip_prefix("execute-")?.strip_suffix(".diff")?.split_once('-')?;
            Some((attempt.parse().ok()?, handoff.parse().ok()?, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Diffs larger than this are linked, not shown.
const SHOWN_DIFF_BYTES: u64 = 512 * 1024;

fn diffs_section(status: &SharkStatus, artifacts: Option<&FsPath>) -> Markup {
    let diffs = artifacts.map(attempt_diffs).unwrap_or_default();
    html! {
        section #diffs {
            h2 { "Diffs" }
            @if diffs.is_empty() { p.muted { "No attempt has run yet." } }
            @for (attempt, handoff, path) in &diffs {
                @let findings: Vec<(&'static str, Vec<chum_core::gate_text::LineFinding>)> = status
                    .gate_results
                    .iter()
                    .filter(|g| g.round == *attempt && g.handoff == *handoff && g.verification == 0 && g.candidate == 0)
                    .filter_map(|g| match GateName::try_from(g.gate) {
                        Ok(GateName::Semgrep) => Some(("semgrep", findings_at_lines(&g.excerpt))),
                        Ok(GateName::Review) => Some(("review", findings_at_lines(&g.excerpt))),
                        _ => None,
                    })
                    .collect();
                @let placed: Vec<Placed> = findings
                    .iter()
                    .flat_map(|(source, list)| list.iter().map(|finding| Placed { source, finding }))
                    .collect();
                article.attempt id={"attempt-" (attempt) "-" (handoff)} {
                    h3 { "Attempt " (attempt) @if *handoff > 0 { ", redo " (handoff) } }
                    @match std::fs::metadata(path).map(|m| m.len()) {
                        Ok(len) if len > SHOWN_DIFF_BYTES => p.muted { "The diff is " (len) " bytes; it is at " code { (path.display()) } },
                        Ok(_) => (diff::render(&diff::parse(&std::fs::read_to_string(path).unwrap_or_default()), &placed)),
                        Err(e) => p.muted { "The diff cannot be read: " (e) },
                    }
                }
            }
        }
    }
}

/// The Approve and Reject buttons: the same decision as `chum approve|reject` and the API's
/// `/runs/{id}/approve|reject`, audited the same way.
pub(super) async fn decide(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let approved = match form.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("reject") => false,
        _ => {
            let e = ApiError::bad_request("the form says neither approve nor reject; reload the page");
            return error_page(&state, &headers, &e);
        }
    };
    let action = if approved { "approve" } else { "reject" };
    let who = match authorize_form(&state, &headers, &form, action, &id, remote) {
        Ok(who) => who,
        Err(refused) => return error_page(&state, &headers, &refused),
    };
    let feedback = form.get("feedback").map(|f| f.trim().to_string()).unwrap_or_default();
    match audited(
        &state,
        &who,
        action,
        &id,
        remote,
        decision(&state, &who, &id, approved, feedback),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/ui/runs/{id}?decided={action}")).into_response(),
        Err(e) => error_page(&state, &headers, &e),
    }
}
