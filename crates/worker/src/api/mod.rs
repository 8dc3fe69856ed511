//! The worker's HTTP API (axum): read routes for operators and dashboards, control routes that
//! need a bearer token and land in an append-only audit log.
//!
//! Auth model: tokens come from the environment (`[api] tokens_env`, `name:token` pairs) and are
//! compared in constant time. Without tokens, control routes refuse and the API must listen on
//! loopback, where reads are open. On any other address tokens are required for every route but
//! `/health` (and the worker refuses to start without them).

mod actions;
mod auth;
mod codec;
mod reads;
mod webhooks;

use actions::{approve, cancel, create_bead, reject};
pub(crate) use actions::{audited, decision};
pub use auth::{ApiToken, Caller, Role, TokenError, Tokens, check_bind, parse_tokens, tokens_from_env};
pub(crate) use reads::health_checks;
use reads::{bead, events, health, metrics, projects, run, status};

use chum_core::live_config::LiveConfig;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chum_activities::backlog::now_rfc3339;
use chum_core::config::ChumConfig;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use temporalio_client::Client;

use chum_client::control::{ControlError, ControlErrorKind};

pub struct ApiState {
    pub client: Client,
    /// The worker's configuration; a SIGHUP reload shows here too.
    live: LiveConfig,
    tokens: Tokens,
    loopback: bool,
    audit: Mutex<std::fs::File>,
    /// Where the SDK's Prometheus exporter listens (see `metrics::runtime_with_metrics`).
    sdk_metrics: Option<SocketAddr>,
    /// Signs the console's CSRF tokens; new at every start, so a restart asks pages to reload.
    csrf_key: ring::hmac::Key,
    /// `[temporal.codec]`, for the codec endpoint (`/codec/decode`, `/codec/encode`).
    codec: Option<Arc<chum_client::codec::AesGcmCodec>>,
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
        let csrf_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| "the system's random number generator failed; cannot make a CSRF key".to_string())?;
        Ok(ApiState {
            client,
            live,
            tokens,
            loopback: bind.ip().is_loopback(),
            audit: Mutex::new(audit),
            sdk_metrics: None,
            csrf_key,
            codec: None,
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

    /// Serves `codec` on `/codec/decode` and `/codec/encode`.
    pub fn with_codec(mut self, codec: Option<Arc<chum_client::codec::AesGcmCodec>>) -> ApiState {
        self.codec = codec;
        self
    }

    /// Whose token `presented` is, checked in constant time against every token.
    pub(crate) fn caller_of(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for t in &self.tokens {
            // Every token is compared (no early exit), each comparison in constant time.
            if bool::from(presented.as_bytes().ct_eq(t.token.as_bytes())) {
                found = Some(Caller {
                    name: t.name.clone(),
                    role: t.role,
                });
            }
        }
        found
    }

    /// The caller by the request's bearer token. Control routes take only this: a browser
    /// never adds it on its own, so no other site can make one act.
    fn who(&self, headers: &HeaderMap) -> Option<Caller> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)?;
        self.caller_of(presented)
    }

    /// The caller by bearer token or by the console's session cookie (reads only: a cookie
    /// rides along on any request, so acting on it needs the CSRF token too; see `console`).
    pub(crate) fn reader(&self, headers: &HeaderMap) -> Option<Caller> {
        self.who(headers)
            .or_else(|| crate::console::session_secret(headers).and_then(|s| self.caller_of(&s)))
    }

    /// Whether tokens are configured at all.
    pub(crate) fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether the API listens on loopback only, where reads are open.
    pub(crate) fn loopback(&self) -> bool {
        self.loopback
    }

    /// The CSRF token of a session: a MAC of its secret under this process's key.
    pub(crate) fn csrf_of(&self, secret: &str) -> String {
        use base64::Engine as _;
        let tag = ring::hmac::sign(&self.csrf_key, secret.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `presented` is the session's CSRF token (checked in constant time).
    pub(crate) fn csrf_ok(&self, secret: &str, presented: &str) -> bool {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(presented.trim())
            .is_ok_and(|tag| ring::hmac::verify(&self.csrf_key, secret.as_bytes(), &tag).is_ok())
    }

    /// Appends one line to the audit log. A log that cannot be written fails the action: no
    /// control action may go unrecorded.
    pub(crate) fn record(
        &self,
        who: &str,
        action: &str,
        target: &str,
        result: &str,
        remote: SocketAddr,
    ) -> Result<(), ApiError> {
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
            })?;
        // And in the store, where a shared store holds every worker's entries: an entry that
        // cannot be stored fails the action too.
        let entry = chum_activities::store::AuditEntry {
            ts: line["ts"].as_str().unwrap_or_default().to_string(),
            who: who.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            result: result.to_string(),
            remote: remote.to_string(),
        };
        chum_activities::store::Store::for_config(&self.config())
            .and_then(|store| store.record_audit(&entry))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    format!("cannot write the audit entry to the store: {e}"),
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
        self.authorize_caller(self.who(headers), action, target, remote)
    }

    /// A control action by `caller`: refused (and recorded) without tokens, without a caller, or
    /// for a `read` token.
    pub(crate) fn authorize_caller(
        &self,
        caller: Option<Caller>,
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
        match caller {
            Some(caller) if caller.may_control() => Ok(caller.name),
            Some(caller) => {
                self.record(&caller.name, action, target, "refused: a read token cannot act", remote)?;
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "{}'s token has the role `read`: it views, it cannot {action}; use a token with the role `control`",
                        caller.name
                    ),
                ))
            }
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
        if self.loopback || self.reader(headers).is_some() {
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
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) detail: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> ApiError {
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
pub(crate) fn run_path(id: &str) -> Result<String, ApiError> {
    if !chum_core::ids::is_shark_workflow_id(id) || id.len() > 200 || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{id:?} is not a run id; runs are shark-<project>-<bead>"),
        ));
    }
    Ok(id.to_string())
}

/// The run's page in the Temporal UI (`[temporal] ui_url`).
pub(crate) fn temporal_ui_link(config: &ChumConfig, workflow_id: &str) -> String {
    format!(
        "{}/namespaces/{}/workflows/{workflow_id}",
        config.temporal.ui_url.trim_end_matches('/'),
        config.temporal.namespace
    )
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
        .merge(crate::console::routes())
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
        .route("/codec/decode", post(codec::decode).options(codec::preflight))
        .route("/codec/encode", post(codec::encode).options(codec::preflight))
        .route("/forge/github", post(webhooks::github))
        .route("/forge/gitlab", post(webhooks::gitlab))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/API.md is where the 404 sends people: every route the router serves is in it.
    #[test]
    fn every_route_is_documented_in_docs_api_md() {
        let doc = include_str!("../../../../docs/API.md");
        let source = include_str!("mod.rs");
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
        assert_eq!(t[0], ApiToken::control("alice", "0123456789abcdef"));
        assert_eq!(t[1].name, "ci");
        let roles = parse_tokens("alice:0123456789abcdef:control,bob:0123456789abcdeg:read").unwrap();
        assert_eq!(roles[0].role, Role::Control);
        assert_eq!(roles[1].role, Role::Read);
        let err = parse_tokens("bob:0123456789abcdeg:admin").unwrap_err().to_string();
        assert!(
            err.contains("admin") && err.contains("read") && err.contains("control"),
            "{err}"
        );
        assert!(
            !format!("{:?}", roles[1]).contains("0123456789abcdeg"),
            "Debug never shows the secret"
        );
        assert!(parse_tokens("").unwrap().is_empty());
        assert!(parse_tokens("alice").unwrap_err().to_string().contains("name:token"));
        assert!(
            parse_tokens("alice:short")
                .unwrap_err()
                .to_string()
                .contains("at least 16")
        );
        assert!(
            parse_tokens("a b:0123456789abcdef")
                .unwrap_err()
                .to_string()
                .contains("letters")
        );
        assert!(
            parse_tokens("a:0123456789abcdef,a:0123456789abcdeg")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn only_loopback_may_go_without_tokens() {
        let none = Vec::new();
        assert!(check_bind("127.0.0.1:8900".parse().unwrap(), &none, "T").is_ok());
        assert!(check_bind("[::1]:8900".parse().unwrap(), &none, "T").is_ok());
        let err = check_bind("0.0.0.0:8900".parse().unwrap(), &none, "CHUM_API_TOKENS")
            .unwrap_err()
            .to_string();
        assert!(err.contains("CHUM_API_TOKENS"), "{err}");
        let some = vec![ApiToken::control("a", "0123456789abcdef")];
        assert!(check_bind("0.0.0.0:8900".parse().unwrap(), &some, "T").is_ok());
    }
}
