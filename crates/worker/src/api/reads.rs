//! The read routes: health, status, metrics, projects, a bead, a run, and a run's live events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chum_activities::backlog::Backlog;
use chum_core::backlog::{BacklogCounts, backlog_rows};
use chum_core::proto::{EnumName, Phase, SharkStatus};
use futures::Stream;
use serde_json::{Value, json};

use chum_client::control::{self};

use super::*;

pub(super) async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let report = health_checks(&state).await;
    let code = if report["ok"] == true {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}

/// Every health check with its detail: `{"ok": <all passed>, "checks": [...]}`.
pub(crate) async fn health_checks(state: &ApiState) -> Value {
    let mut checks = Vec::new();
    let mut all_ok = true;
    let mut check = |name: &str, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        all_ok &= ok;
        checks.push(json!({"name": name, "ok": ok, "detail": detail}));
    };
    let temporal = tokio::time::timeout(Duration::from_secs(3), async {
        let mut stream = state
            .client
            .list_workflows("WorkflowType = 'Shark'", Default::default());
        futures::StreamExt::next(&mut stream).await.transpose().map(|_| ())
    })
    .await;
    check(
        "temporal",
        match temporal {
            Ok(Ok(())) => Ok(format!("reachable at {}", state.config().temporal.address)),
            Ok(Err(e)) => Err(format!("{}: {e}", state.config().temporal.address)),
            Err(_) => Err(format!("{} did not answer within 3s", state.config().temporal.address)),
        },
    );
    // Shown as a path, or a URL without its password.
    let store = chum_activities::store::StoreTarget::of(&state.config());
    check(
        "store",
        chum_activities::store::Store::at(&store)
            .and_then(|s| s.schema_version())
            .map(|v| format!("{store} writable (schema {v})"))
            .map_err(|e| e.to_string()),
    );
    check(
        "semgrep",
        chum_activities::semgrep::locate_core(&state.config().semgrep)
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string()),
    );
    check(
        "git",
        which::which("git")
            .map(|p| p.display().to_string())
            .map_err(|_| "git is not on PATH".to_string()),
    );
    // A project that requires bwrap cannot run without it; `auto` falling back is reported, not failed.
    let config = state.config();
    for project in config.projects.values() {
        check(
            &format!("sandbox:{}", project.name),
            chum_activities::exec::resolve(project.sandbox, &config.sandbox)
                .map(|s| s.describe())
                .map_err(|e| e.to_string()),
        );
    }
    json!({"ok": all_ok, "checks": checks})
}

/// Prometheus text: the SDK's worker metrics, then CHUM's.
pub(super) async fn metrics(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult {
    state.authorize_read(&headers)?;
    let mut text = match state.sdk_metrics {
        Some(addr) => crate::metrics::sdk_metrics(addr).await,
        None => String::new(),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&crate::metrics::chum_metrics(&state.client, &state.config()).await);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

pub(super) fn run_summary(id: &str, s: &SharkStatus) -> Value {
    json!({
        "workflow_id": id,
        "project": s.project,
        "bead_id": s.bead_id,
        "phase": s.phase().name(),
        "plan_round": s.plan_round,
        "attempt": s.attempt,
        "max_attempts": s.max_attempts,
        "handoff": s.handoff,
    })
}

pub(super) async fn status(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult {
    state.authorize_read(&headers)?;
    let running = control::running(&state.client).await?;
    let mut by_phase = serde_json::Map::new();
    let mut runs = Vec::new();
    for (id, s) in running {
        match s {
            Ok(s) => {
                let phase = s.phase().name();
                let n = by_phase.get(&phase).and_then(Value::as_u64).unwrap_or(0);
                by_phase.insert(phase, json!(n + 1));
                runs.push(run_summary(&id, &s));
            }
            Err(e) => runs.push(json!({"workflow_id": id, "error": e.message})),
        }
    }
    ok(json!({"running": runs, "by_phase": by_phase}))
}

pub(super) async fn projects(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult {
    state.authorize_read(&headers)?;
    let mut out = Vec::new();
    for p in state.config().projects.values() {
        let backlog = match Backlog::of(p).items().await {
            // The same counts `chum backlog` prints: they add up to the total.
            Ok(items) => json!(BacklogCounts::of(&backlog_rows(&items))),
            Err(e) => json!({"error": e.to_string()}),
        };
        let dispatcher = match chum_client::dispatcher::status(&state.client, &p.name).await {
            Ok(s) => json!({"paused": s.paused, "rounds": s.rounds, "started": s.started}),
            Err(_) => Value::Null,
        };
        out.push(json!({
            "name": p.name,
            "repo": p.repo.display().to_string(),
            "base_branch": p.base_branch,
            "enabled": p.enabled,
            "integration": p.integration.as_str(),
            "gates": p.gates.iter().map(|g| g.name()).collect::<Vec<_>>(),
            "concurrency": p.concurrency,
            "backlog": backlog,
            "dispatcher": dispatcher,
        }));
    }
    ok(json!({"projects": out}))
}

pub(super) async fn bead(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult {
    state.authorize_read(&headers)?;
    let config = state.config();
    let p = config
        .project(&project)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    chum_core::ids::check_bead_id(&id).map_err(ApiError::bad_request)?;
    let bead = Backlog::of(p).get(&id).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        } else {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
        }
    })?;
    let workflow_id = chum_core::ids::shark_workflow_id(&project, &id);
    let mut runs = Vec::new();
    let mut stream = state
        .client
        .list_workflows(format!("WorkflowId = '{workflow_id}'"), Default::default());
    while let Some(item) = futures::StreamExt::next(&mut stream).await {
        let info = item.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
        let time = |t: Option<std::time::SystemTime>| t.map(|t| humantime::format_rfc3339_seconds(t).to_string());
        runs.push(json!({
            "workflow_id": info.id(),
            "run_id": info.run_id(),
            "status": format!("{:?}", info.status()).to_lowercase(),
            "started": time(info.start_time()),
            "closed": time(info.close_time()),
        }));
    }
    ok(json!({"bead": bead, "runs": runs}))
}

pub(super) async fn run(State(state): State<Arc<ApiState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    state.authorize_read(&headers)?;
    let id = run_path(&id)?;
    let s = control::status(&state.client, &id).await?;
    let ui = temporal_ui_link(&state.config(), &id);
    let artifacts = state.config().state_dir.join("artifacts").join(&id);
    ok(json!({
        "workflow_id": id,
        "status": s,
        "links": {"temporal_ui": ui, "artifacts": artifacts.display().to_string()},
    }))
}

/// Server-Sent Events: `status` (the full status, first), `phase` on every phase change, `gate` for
/// every new gate result, and `done` with the outcome, after which the stream ends.
pub(super) async fn events(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.authorize_read(&headers)?;
    let id = run_path(&id)?;
    let first = control::status(&state.client, &id).await?;
    let stream = status_events(state.clone(), id, first);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

pub(super) fn status_events(
    state: Arc<ApiState>,
    id: String,
    first: SharkStatus,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream(move |tx| async move {
        let event = |name: &str, data: Value| Event::default().event(name).data(data.to_string());
        // Phase changes come from the run's phase spans, so a phase shorter than the poll
        // interval is still reported.
        let mut spans_seen = first.phases.len();
        let mut gates_seen = first.gate_results.len();
        if tx.send(event("status", json!(first))).await.is_err() {
            return;
        }
        let mut current = first;
        loop {
            if current.phase() == Phase::Done {
                let data = json!({"outcome": current.outcome().name(), "reason": current.reason,
                                  "commit": current.commit, "usage": current.usage});
                let _ = tx.send(event("done", data)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            current = match control::status(&state.client, &id).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(event("error", json!({"detail": e.message}))).await;
                    return;
                }
            };
            for span in current.phases.iter().skip(spans_seen) {
                let data = json!({"phase": span.phase().name(), "round": span.round, "started_ms": span.started_ms});
                if tx.send(event("phase", data)).await.is_err() {
                    return;
                }
            }
            spans_seen = current.phases.len();
            for g in current.gate_results.iter().skip(gates_seen) {
                if tx.send(event("gate", json!(g))).await.is_err() {
                    return;
                }
            }
            gates_seen = current.gate_results.len();
        }
    })
}

/// A stream fed by a task through a small channel (the task stops when the client goes away).
pub(super) fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}
