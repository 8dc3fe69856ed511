//! The control routes: approve, reject, cancel, create a bead. Each one is audited before it is
//! taken.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chum_activities::backlog::Backlog;
use chum_core::backlog::blocker;
use chum_core::new_bead::{KnownBeads, NewBead};
use serde::Deserialize;
use serde_json::{Value, json};

use chum_client::control::{self, Decision};

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionBody {
    #[serde(default)]
    feedback: String,
}

pub(super) async fn decide(
    state: Arc<ApiState>,
    headers: HeaderMap,
    remote: SocketAddr,
    id: String,
    body_bytes: Bytes,
    approved: bool,
) -> ApiResult {
    let action = if approved { "approve" } else { "reject" };
    let who = state.authorize_control(&headers, action, &id, remote)?;
    let parsed: Result<DecisionBody, ApiError> = body(&body_bytes);
    audited(&state, &who, action, &id, remote, async {
        decision(&state, &who, &id, approved, parsed?.feedback).await
    })
    .await
    .and_then(ok)
}

/// A person's decision at a gate, as the API and the console take it: the same control code as
/// `chum approve|reject`. The caller audits it (see `audited`).
pub(crate) async fn decision(
    state: &ApiState,
    who: &str,
    id: &str,
    approved: bool,
    feedback: String,
) -> Result<Value, ApiError> {
    let action = if approved { "approve" } else { "reject" };
    let run = run_path(id)?;
    let decision = Decision {
        approved,
        feedback,
        by: who.to_string(),
    };
    let receipt = control::decide(&state.client, &run, &decision).await?;
    Ok(
        json!({"workflow_id": run, "decision": action, "by": who, "plan_round": receipt.round, "confirmed": receipt.confirmed}),
    )
}

/// Audit first: the request is written to the audit log (and synced) before the action is
/// taken, and a log that cannot be written refuses the action, so no decision is ever taken
/// unrecorded. The result follows in a second line; if that one cannot be written, the action
/// stands (its request is on record) and the failure is logged.
pub(crate) async fn audited(
    state: &ApiState,
    who: &str,
    action: &str,
    target: &str,
    remote: SocketAddr,
    act: impl std::future::Future<Output = Result<Value, ApiError>>,
) -> Result<Value, ApiError> {
    state.record(who, action, target, "requested", remote)?;
    let outcome = act.await;
    let result = match &outcome {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{}: {}", e.error, e.detail),
    };
    if let Err(e) = state.record(who, action, target, &result, remote) {
        tracing::error!(%action, %target, "the result of a recorded request could not be audited: {}", e.detail);
    }
    outcome
}

pub(super) async fn approve(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    decide(state, headers, remote, id, bytes, true).await
}

pub(super) async fn reject(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    decide(state, headers, remote, id, bytes, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelBody {
    #[serde(default)]
    reason: String,
}

pub(super) async fn cancel(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let who = state.authorize_control(&headers, "cancel", &id, remote)?;
    audited(&state, &who, "cancel", &id, remote, async {
        let run = run_path(&id)?;
        let parsed: CancelBody = body(&bytes)?;
        let reason = if parsed.reason.trim().is_empty() {
            format!("cancelled by {who} through the API")
        } else {
            format!("cancelled by {who}: {}", parsed.reason.trim())
        };
        control::cancel(&state.client, &run, &reason).await?;
        Ok::<_, ApiError>(json!({"workflow_id": run, "cancel_requested": true, "reason": reason}))
    })
    .await
    .and_then(ok)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBeadBody {
    #[serde(default)]
    project: Option<String>,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    acceptance: String,
    #[serde(default = "default_priority")]
    priority: i64,
    #[serde(default = "default_type", rename = "type")]
    issue_type: String,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    id: Option<String>,
    /// Start its Shark right away when it is ready (default true).
    #[serde(default = "yes")]
    start: bool,
}

pub(super) fn default_priority() -> i64 {
    2
}
pub(super) fn default_type() -> String {
    "task".to_string()
}
pub(super) fn yes() -> bool {
    true
}

/// Creates a bead and, when it is ready, starts its Shark.
pub(super) async fn create_bead(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let who = state.authorize_control(&headers, "create_bead", "-", remote)?;
    // Audit first (see `audited`): the bead's id is known only once it exists.
    state.record(&who, "create_bead", "-", "requested", remote)?;
    let outcome = async {
        let b: NewBeadBody = body(&bytes)?;
        let project = match &b.project {
            Some(p) => p.clone(),
            None if state.config().projects.len() == 1 => {
                state.config().projects.keys().next().cloned().unwrap_or_default()
            }
            None => {
                return Err(ApiError::bad_request(
                    "several projects are configured; say which with \"project\"",
                ));
            }
        };
        let config = state.config();
        let p = config
            .project(&project)
            .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
        let backlog = Backlog::of(p);
        let items = backlog
            .items()
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
        let new = NewBead {
            id: b.id.clone(),
            title: b.title.trim().to_string(),
            description: b.description.clone(),
            acceptance_criteria: b.acceptance.clone(),
            priority: b.priority,
            issue_type: b.issue_type.clone(),
            labels: Vec::new(),
            dependencies: b.depends_on.iter().map(|d| (d.clone(), "blocks".to_string())).collect(),
            created_by: who.clone(),
        };
        new.check(&KnownBeads::of(&items)).map_err(|e| {
            if e.is_conflict() {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            } else {
                ApiError::bad_request(format!("{e} (in {project})"))
            }
        })?;
        let id = backlog
            .create(&new)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
        let items = backlog.items().await.unwrap_or_default();
        let by_id = items.iter().map(|i| (i.id.as_str(), i)).collect();
        let waiting = items.iter().find(|i| i.id == id).and_then(|i| blocker(i, &by_id));
        let workflow_id = match (&waiting, b.start) {
            (None, true) => Some(control::start(&state.client, &state.config(), &project, &id).await?),
            _ => None,
        };
        Ok(json!({"project": project, "id": id, "workflow_id": workflow_id, "waiting": waiting}))
    }
    .await;
    let (target, result) = match &outcome {
        Ok(value) => (value["id"].as_str().unwrap_or("-").to_string(), "ok".to_string()),
        Err(e) => ("-".to_string(), format!("{}: {}", e.error, e.detail)),
    };
    if let Err(e) = state.record(&who, "create_bead", &target, &result, remote) {
        tracing::error!(%target, "the result of a recorded request could not be audited: {}", e.detail);
    }
    outcome.map(|value| (StatusCode::CREATED, Json(value)).into_response())
}
