//! The web console: the pages people use at the gates, served by the API (same process, same
//! tokens, same audit log). Server-rendered HTML (maud) with one small script for live updates;
//! nothing to build.
//!
//! Invariant: the console decides nothing on its own. Every action calls the same control code as
//! the CLI and the API (`chum_client::control`, `chum_client::dispatcher`), through the API's
//! audit-first path. A session is the token itself, in an HttpOnly, SameSite=Strict cookie; every
//! state-changing form carries the session's CSRF token (a MAC of the secret under a key made at
//! start), and a request without it is refused and recorded.

mod assets;
mod backlog;
mod diff;
mod inbox;
mod layout;
mod learning;
mod operations;
mod run_view;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use maud::html;

use crate::api::{ApiError, ApiState, Caller};
pub(crate) use chum_activities::clock::now_ms;

/// The session cookie's name.
const SESSION_COOKIE: &str = "chum_session";
/// How long a login lasts (12 hours).
const SESSION_SECS: u64 = 12 * 3600;

/// The console's routes; merged into the API's router.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/", get(inbox::page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui/runs/{id}", get(run_view::page))
        .route("/ui/runs/{id}/decide", post(run_view::decide))
        .route("/ui/backlog", get(backlog::page))
        .route("/ui/learning", get(learning::page))
        .route("/ui/learning/retire", post(learning::retire))
        .route("/ui/operations", get(operations::page))
        .route("/ui/operations/dispatcher", post(operations::dispatcher))
}

/// The token a request's session cookie carries, if any.
pub(crate) fn session_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .and_then(|(_, value)| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Who is looking at a page: their token's name and role (if logged in), and the CSRF token their
/// forms carry.
pub(crate) struct Viewer {
    pub caller: Option<Caller>,
    pub csrf: Option<String>,
    /// Tokens are configured (so logging in means something).
    pub tokens: bool,
}

impl Viewer {
    /// Someone not logged in (the login page, an error page of a refused request).
    fn anonymous(state: &ApiState) -> Viewer {
        Viewer {
            caller: None,
            csrf: None,
            tokens: state.has_tokens(),
        }
    }

    pub fn may_control(&self) -> bool {
        self.caller.as_ref().is_some_and(Caller::may_control)
    }
}

/// The viewer of a page, or the way to the login page when this API needs a token to read
/// (it listens beyond loopback) and the request has none.
pub(crate) fn viewer(state: &ApiState, headers: &HeaderMap) -> Result<Viewer, Redirect> {
    let secret = session_secret(headers);
    let caller = secret.as_deref().and_then(|s| state.caller_of(s));
    if caller.is_none() && !state.loopback() {
        return Err(Redirect::to("/login"));
    }
    let csrf = match (&caller, &secret) {
        (Some(_), Some(secret)) => Some(state.csrf_of(secret)),
        _ => None,
    };
    Ok(Viewer {
        caller,
        csrf,
        tokens: state.has_tokens(),
    })
}

/// A form that changes something: the session's caller once the CSRF token checks out and the
/// role allows it. A refusal is recorded in the audit log (show it with [`error_page`]).
pub(crate) fn authorize_form(
    state: &ApiState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    action: &str,
    target: &str,
    remote: SocketAddr,
) -> Result<String, ApiError> {
    let secret = session_secret(headers);
    let caller = secret.as_deref().and_then(|s| state.caller_of(s));
    if caller.is_some() && !form_has_csrf(state, secret.as_deref(), form) {
        let who = caller.as_ref().map_or("anonymous", |c| c.name.as_str());
        state.record(who, action, target, "refused: missing or wrong CSRF token", remote)?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "this form did not carry the page's CSRF token (an old page, or another site sent it); reload the page and try again",
        ));
    }
    state.authorize_caller(caller, action, target, remote)
}

/// Whether `form` carries the CSRF token of the session `secret`.
fn form_has_csrf(state: &ApiState, secret: Option<&str>, form: &HashMap<String, String>) -> bool {
    match (secret, form.get("csrf")) {
        (Some(secret), Some(presented)) => state.csrf_ok(secret, presented),
        _ => false,
    }
}

/// A redirect to `to` that sets the session cookie to `value` for `max_age` seconds (0 forgets it).
fn with_session_cookie(to: &str, value: &str, max_age: u64) -> Response {
    let mut response = Redirect::to(to).into_response();
    let cookie = format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// An error as a page people can read, with the status the API would answer.
pub(crate) fn error_page(state: &ApiState, headers: &HeaderMap, e: &ApiError) -> Response {
    let viewer = viewer(state, headers).unwrap_or_else(|_| Viewer::anonymous(state));
    let body = layout::page(
        "Refused",
        &viewer,
        html! {
            div.notice.error role="alert" {
                strong { (e.error) } ": " (e.detail)
            }
            p { a href="/" { "Back to the inbox" } }
        },
    );
    (e.status, body).into_response()
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    #[serde(default)]
    failed: Option<String>,
}

async fn login_page(State(state): State<Arc<ApiState>>, Query(q): Query<LoginQuery>) -> Response {
    let viewer = Viewer::anonymous(&state);
    let env = state.config().api.tokens_env.clone();
    layout::page(
        "Log in",
        &viewer,
        html! {
            h1 { "Log in" }
            @if q.failed.is_some() {
                div.notice.error role="alert" { "That token is not one of this worker's tokens." }
            }
            @if !viewer.tokens {
                div.notice role="status" {
                    "No tokens are configured, so nobody can decide here. Start the worker with "
                    code { (env) "=\"alice:<token>:control\"" } " (see README, \"The web console\")."
                }
            }
            form.card method="post" action="/login" {
                label for="token" { "Your API token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p.muted { "The token is kept in an HttpOnly cookie for 12 hours; log out to forget it." }
        },
    )
    .into_response()
}

async fn login(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let token = form.get("token").map(|t| t.trim().to_string()).unwrap_or_default();
    let Some(caller) = state.caller_of(&token) else {
        // Guessing shows in the audit log.
        if let Err(e) = state.record("anonymous", "login", "console", "refused: unknown token", remote) {
            return error_page(&state, &headers, &e);
        }
        return Redirect::to("/login?failed=1").into_response();
    };
    if let Err(e) = state.record(&caller.name, "login", "console", "ok", remote) {
        return error_page(&state, &headers, &e);
    }
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
    with_session_cookie("/", &value, SESSION_SECS)
}

async fn logout(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let secret = session_secret(&headers);
    if !form_has_csrf(&state, secret.as_deref(), &form) {
        let e = ApiError::new(StatusCode::FORBIDDEN, "csrf", "reload the page and log out again");
        return error_page(&state, &headers, &e);
    }
    if let Some(caller) = secret.as_deref().and_then(|s| state.caller_of(s)) {
        let _ = state.record(&caller.name, "logout", "console", "ok", remote);
    }
    with_session_cookie("/login", "", 0)
}

/// How long ago `ms` (epoch milliseconds) was, for people: "3 min", "2 h 5 min".
pub(crate) fn ago(now_ms: i64, ms: i64) -> String {
    if ms <= 0 {
        return "unknown".to_string();
    }
    duration_words(now_ms.saturating_sub(ms).max(0) / 1000)
}

/// Seconds in words: "45 s", "3 min", "2 h 5 min", "3 d 4 h".
pub(crate) fn duration_words(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_garbage_is_no_session() {
        let mut h = HeaderMap::new();
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("tok:en;with stuff");
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {SESSION_COOKIE}={value}; c=d")).unwrap(),
        );
        assert_eq!(session_secret(&h).as_deref(), Some("tok:en;with stuff"));
        let mut bad = HeaderMap::new();
        bad.insert(header::COOKIE, HeaderValue::from_static("chum_session=%%%"));
        assert_eq!(session_secret(&bad), None);
        assert_eq!(session_secret(&HeaderMap::new()), None);
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration_words(42), "42 s");
        assert_eq!(duration_words(185), "3 min");
        assert_eq!(duration_words(7500), "2 h 5 min");
        assert_eq!(duration_words(3 * 86400 + 4 * 3600), "3 d 4 h");
        assert_eq!(ago(10_000, 0), "unknown");
    }
}
