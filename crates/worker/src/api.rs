//! The worker's HTTP API (axum): read routes for operators and dashboards, control routes that
//! need a bearer token and land in an append-only audit log.
//!
//! Auth model: tokens come from the environment (`[api] tokens_env`, `name:token` pairs) and are
//! compared in constant time. Without tokens, control routes refuse and the API must listen on
//! loopback, where reads are open. On any other address tokens are required for every route but
//! `/health` (and the worker refuses to start without them).

use chum_core::live_config::LiveConfig;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chum_activities::backlog::Backlog;
use chum_activities::backlog::{NewBead, now_rfc3339};
use chum_core::backlog::{blocker, ready};
use chum_core::config::ChumConfig;
use chum_core::proto::{EnumName, Phase, SharkStatus};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use temporalio_client::Client;

use chum_client::control::{self, ControlError, ControlErrorKind, Decision};

/// Shortest token accepted: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;

/// Bearer tokens: (who, token).
pub type Tokens = Vec<(String, String)>;

/// Parses `name:token,name2:token2`. Every token must be at least 16 characters and every name
/// unique, so the audit log can say who did what.
pub fn parse_tokens(raw: &str) -> Result<Tokens, String> {
    let mut tokens: Tokens = Vec::new();
    for (i, pair) in raw.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let Some((name, token)) = pair.split_once(':') else {
            return Err(format!(
                "entry {} is not `name:token` (e.g. CHUM_API_TOKENS=\"alice:<32 random chars>,ci:<...>\")",
                i + 1
            ));
        };
        let (name, token) = (name.trim(), token.trim());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "entry {}: the name {name:?} must be letters, digits, '-', '_' or '.'",
                i + 1
            ));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "entry {} ({name}): the token is {} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 24`)",
                i + 1,
                token.len()
            ));
        }
        if tokens.iter().any(|(n, _)| n == name) {
            return Err(format!("the name {name} appears twice"));
        }
        tokens.push((name.to_string(), token.to_string()));
    }
    Ok(tokens)
}

/// The tokens configured in the environment variable `[api] tokens_env`.
pub fn tokens_from_env(config: &ChumConfig) -> Result<Tokens, String> {
    match std::env::var(&config.api.tokens_env) {
        Ok(raw) => parse_tokens(&raw).map_err(|e| format!("{}: {e}", config.api.tokens_env)),
        Err(_) => Ok(Vec::new()),
    }
}

/// A non-loopback address without tokens would expose the API to the network unauthenticated.
pub fn check_bind(bind: SocketAddr, tokens: &Tokens, tokens_env: &str) -> Result<(), String> {
    if !bind.ip().is_loopback() && tokens.is_empty() {
        return Err(format!(
            "[api] bind = \"{bind}\" is reachable from other machines, and no API tokens are configured; \
             set {tokens_env}=\"<name>:<token>\" or bind to 127.0.0.1"
        ));
    }
    Ok(())
}

pub struct ApiState {
    pub client: Client,
    /// The worker's configuration; a SIGHUP reload shows here too.
    live: LiveConfig,
    tokens: Tokens,
    loopback: bool,
    audit: Mutex<std::fs::File>,
    /// Where the SDK's Prometheus exporter listens (see `metrics::runtime_with_metrics`).
    sdk_metrics: Option<SocketAddr>,
}

impl ApiState {
    /// Opens (creating) the audit log for appending.
    pub fn new(
        client: Client,
        config: impl Into<LiveConfig>,
        tokens: Tokens,
        bind: SocketAddr,
    ) -> Result<ApiState, String> {
        let live: LiveConfig = config.into();
        let config = live.current();
        let path = &config.api.audit_log;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let audit = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))?;
        Ok(ApiState {
            client,
            live,
            tokens,
            loopback: bind.ip().is_loopback(),
            audit: Mutex::new(audit),
            sdk_metrics: None,
        })
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<ChumConfig> {
        self.live.current()
    }

    /// Serves the SDK's worker metrics (from its exporter at `addr`) on `/metrics` too.
    pub fn with_sdk_metrics(mut self, addr: SocketAddr) -> ApiState {
        self.sdk_metrics = Some(addr);
        self
    }

    /// The name of the token the request carries, checked in constant time against every token.
    fn who(&self, headers: &HeaderMap) -> Option<String> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)?;
        let mut found = None;
        for (name, token) in &self.tokens {
            // Every token is compared (no early exit), each comparison in constant time.
            if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Appends one line to the audit log. A log that cannot be written fails the action: no
    /// control action may go unrecorded.
    fn record(&self, who: &str, action: &str, target: &str, result: &str, remote: SocketAddr) -> Result<(), ApiError> {
        let line = json!({
            "ts": now_rfc3339(),
            "who": who,
            "action": action,
            "target": target,
            "result": result,
            "remote": remote.to_string(),
        });
        let mut file = self.audit.lock().map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_unavailable",
                "the audit log lock is poisoned",
            )
        })?;
        // On disk before the action it records is taken (see `audited`).
        writeln!(file, "{line}")
            .and_then(|_| file.flush())
            .and_then(|_| file.sync_data())
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    format!(
                        "cannot write the audit log {}: {e}",
                        self.config().api.audit_log.display()
                    ),
                )
            })
    }

    /// The caller of a control route: a valid token, or the refusal (recorded).
    fn authorize_control(
        &self,
        headers: &HeaderMap,
        action: &str,
        target: &str,
        remote: SocketAddr,
    ) -> Result<String, ApiError> {
        if self.tokens.is_empty() {
            self.record(
                "anonymous",
                action,
                target,
                "refused: no API tokens are configured",
                remote,
            )?;
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "control_disabled",
                format!(
                    "control routes are off: no API tokens are configured (set {}=\"<name>:<token>\" for the worker)",
                    self.config().api.tokens_env
                ),
            ));
        }
        match self.who(headers) {
            Some(who) => Ok(who),
            None => {
                self.record(
                    "anonymous",
                    action,
                    target,
                    "refused: missing or unknown bearer token",
                    remote,
                )?;
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send `Authorization: Bearer <token>` with a token from the worker's API tokens",
                ))
            }
        }
    }

    /// Reads are open on loopback; elsewhere they need a token too.
    fn authorize_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.loopback || self.who(headers).is_some() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API listens beyond loopback: send `Authorization: Bearer <token>`",
            ))
        }
    }
}

/// An error answer: `{"error": "<kind>", "detail": "<what and what to do>"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }

    fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let (status, error) = match e.kind {
            ControlErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ControlErrorKind::Invalid => (StatusCode::BAD_REQUEST, "bad_request"),
            ControlErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ControlErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, error, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.error, "detail": self.detail}))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

/// A run's workflow id from the path: `shark-<project>-<bead>`; nothing else is a run.
fn run_path(id: &str) -> Result<String, ApiError> {
    if !chum_core::ids::is_shark_workflow_id(id) || id.len() > 200 || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{id:?} is not a run id; runs are shark-<project>-<bead>"),
        ));
    }
    Ok(id.to_string())
}

/// A JSON body, or an empty one taken as `{}`; anything else is a 400 that says why.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON for this route: {e}")))
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/projects", get(projects))
        .route("/beads", post(create_bead))
        .route("/beads/{project}/{id}", get(bead))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/events", get(events))
        .route("/runs/{id}/approve", post(approve))
        .route("/runs/{id}/reject", post(reject))
        .route("/runs/{id}/cancel", post(cancel))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see docs/API.md (or the README's HTTP API section)",
            )
        })
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
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
    let db = state.config().state_dir.join("chum.db");
    check(
        "store",
        chum_activities::store::Store::open(&db)
            .and_then(|s| s.schema_version())
            .map(|v| format!("{} writable (schema {v})", db.display()))
            .map_err(|e| e.to_string()),
    );
    check(
        "semgrep",
        chum_activities::semgrep::locate_core(&state.config().semgrep).map(|p| p.display().to_string()),
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
            chum_activities::exec::resolve(project.sandbox, &config.sandbox).map(|s| s.describe()),
        );
    }
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"ok": all_ok, "checks": checks}))).into_response()
}

/// Prometheus text: the SDK's worker metrics, then CHUM's.
async fn metrics(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult {
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

fn run_summary(id: &str, s: &SharkStatus) -> Value {
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

async fn status(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult {
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

async fn projects(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult {
    state.authorize_read(&headers)?;
    let mut out = Vec::new();
    for p in state.config().projects.values() {
        let backlog = match Backlog::of(p).items().await {
            Ok(items) => {
                let by_id = items.iter().map(|i| (i.id.as_str(), i)).collect();
                let count = |status: &str| items.iter().filter(|i| i.status == status).count();
                let blocked = items
                    .iter()
                    .filter(|i| i.status == "blocked" || (i.status == "open" && blocker(i, &by_id).is_some()))
                    .count();
                json!({"ready": ready(&items).len(), "in_progress": count("in_progress"), "blocked": blocked,
                       "closed": count("closed"), "total": items.len()})
            }
            Err(e) => json!({"error": e}),
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
            "gates": p.gates.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "concurrency": p.concurrency,
            "backlog": backlog,
            "dispatcher": dispatcher,
        }));
    }
    ok(json!({"projects": out}))
}

async fn bead(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult {
    state.authorize_read(&headers)?;
    let config = state.config();
    let p = config
        .project(&project)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))?;
    chum_core::ids::check_bead_id(&id).map_err(ApiError::bad_request)?;
    let bead = Backlog::of(p)
        .get(&id)
        .await
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))?;
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

async fn run(State(state): State<Arc<ApiState>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    state.authorize_read(&headers)?;
    let id = run_path(&id)?;
    let s = control::status(&state.client, &id).await?;
    let ui = format!(
        "{}/namespaces/{}/workflows/{id}",
        state.config().temporal.ui_url.trim_end_matches('/'),
        state.config().temporal.namespace
    );
    let artifacts = state.config().state_dir.join("artifacts").join(&id);
    ok(json!({
        "workflow_id": id,
        "status": s,
        "links": {"temporal_ui": ui, "artifacts": artifacts.display().to_string()},
    }))
}

/// Server-Sent Events: `status` (the full status, first), `phase` on every phase change, `gate` for
/// every new gate result, and `done` with the outcome, after which the stream ends.
async fn events(
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

fn status_events(
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
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    feedback: String,
}

async fn decide(
    state: Arc<ApiState>,
    headers: HeaderMap,
    remote: SocketAddr,
    id: String,
    body_bytes: Bytes,
    approved: bool,
) -> ApiResult {
    let action = if approved { "approve" } else { "reject" };
    let who = state.authorize_control(&headers, action, &id, remote)?;
    audited(&state, &who, action, &id, remote, async {
        let run = run_path(&id)?;
        let parsed: DecisionBody = body(&body_bytes)?;
        let decision = Decision {
            approved,
            feedback: parsed.feedback,
            by: who.clone(),
        };
        let receipt = control::decide(&state.client, &run, &decision).await?;
        Ok::<_, ApiError>(json!({"workflow_id": run, "decision": action, "by": who, "plan_round": receipt.round, "confirmed": receipt.confirmed}))
    })
    .await
}

/// Audit first: the request is written to the audit log (and synced) before the action is
/// taken, and a log that cannot be written refuses the action, so no decision is ever taken
/// unrecorded. The result follows in a second line; if that one cannot be written, the action
/// stands (its request is on record) and the failure is logged.
async fn audited(
    state: &ApiState,
    who: &str,
    action: &str,
    target: &str,
    remote: SocketAddr,
    act: impl std::future::Future<Output = Result<Value, ApiError>>,
) -> ApiResult {
    state.record(who, action, target, "requested", remote)?;
    let outcome = act.await;
    let result = match &outcome {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{}: {}", e.error, e.detail),
    };
    if let Err(e) = state.record(who, action, target, &result, remote) {
        tracing::error!(%action, %target, "the result of a recorded request could not be audited: {}", e.detail);
    }
    outcome.and_then(ok)
}

async fn approve(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    decide(state, headers, remote, id, bytes, true).await
}

async fn reject(
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
struct CancelBody {
    #[serde(default)]
    reason: String,
}

async fn cancel(
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBeadBody {
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

fn default_priority() -> i64 {
    2
}
fn default_type() -> String {
    "task".to_string()
}
fn yes() -> bool {
    true
}

/// Creates a bead and, when it is ready, starts its Shark.
async fn create_bead(
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
            .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))?;
        if b.title.trim().is_empty() {
            return Err(ApiError::bad_request("\"title\" is empty"));
        }
        if !(0..=4).contains(&b.priority) {
            return Err(ApiError::bad_request(format!("\"priority\" {} is not 0-4", b.priority)));
        }
        let backlog = Backlog::of(p);
        let items = backlog
            .items()
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))?;
        for dep in &b.depends_on {
            if !items.iter().any(|i| &i.id == dep) {
                return Err(ApiError::bad_request(format!(
                    "\"depends_on\": no bead {dep} in {project}"
                )));
            }
        }
        if let Some(id) = &b.id {
            chum_core::ids::check_bead_id(id).map_err(ApiError::bad_request)?;
            if items.iter().any(|i| &i.id == id) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("bead {id} already exists"),
                ));
            }
        }
        if items
            .iter()
            .any(|i| i.title.trim().eq_ignore_ascii_case(b.title.trim()))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("a bead titled {:?} already exists", b.title.trim()),
            ));
        }
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
        let id = backlog
            .create(&new)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/API.md is where the 404 sends people: every route the router serves is in it.
    #[test]
    fn every_route_is_documented_in_docs_api_md() {
        let doc = include_str!("../../../docs/API.md");
        let source = include_str!("api.rs");
        let mut routes = 0;
        for line in source.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
            let path = line.split('"').nth(1).unwrap_or_default();
            let method = if line.contains("post(") { "POST" } else { "GET" };
            let documented =
                doc.contains(&format!("`{method} {path}`")) || doc.contains(&format!("{method} {path}` and"));
            assert!(documented, "docs/API.md does not document {method} {path}");
            routes += 1;
        }
        assert!(routes >= 10, "found only {routes} routes in api.rs");
    }

    #[test]
    fn tokens_are_named_long_and_unique() {
        let t = parse_tokens("alice:0123456789abcdef, ci:fedcba9876543210xyz").unwrap();
        assert_eq!(t[0], ("alice".into(), "0123456789abcdef".into()));
        assert_eq!(t[1].0, "ci");
        assert!(parse_tokens("").unwrap().is_empty());
        assert!(parse_tokens("alice").unwrap_err().contains("name:token"));
        assert!(parse_tokens("alice:short").unwrap_err().contains("at least 16"));
        assert!(parse_tokens("a b:0123456789abcdef").unwrap_err().contains("letters"));
        assert!(
            parse_tokens("a:0123456789abcdef,a:0123456789abcdeg")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn only_loopback_may_go_without_tokens() {
        let none = Vec::new();
        assert!(check_bind("127.0.0.1:8900".parse().unwrap(), &none, "T").is_ok());
        assert!(check_bind("[::1]:8900".parse().unwrap(), &none, "T").is_ok());
        let err = check_bind("0.0.0.0:8900".parse().unwrap(), &none, "CHUM_API_TOKENS").unwrap_err();
        assert!(err.contains("CHUM_API_TOKENS"), "{err}");
        let some = vec![("a".to_string(), "0123456789abcdef".to_string())];
        assert!(check_bind("0.0.0.0:8900".parse().unwrap(), &some, "T").is_ok());
    }
}
