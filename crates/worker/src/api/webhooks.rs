//! `POST /forge/github` and `POST /forge/gitlab`: the forges' webhooks for the `pr` policy. No
//! bearer token (a forge cannot send one): a GitHub delivery counts only with a valid
//! `X-Hub-Signature-256`, the HMAC-SHA256 of the exact body with the secret of the project whose
//! `forge.repo` the payload names; a GitLab delivery only with that secret in `X-Gitlab-Token`
//! (GitLab's mechanism: it sends the secret itself). Both are compared in constant time, the
//! secret read from the variable `forge.webhook_secret_env` names. A valid delivery about a
//! `chum/<bead>` branch signals that bead's Shark `forge_event`; the Shark then reads from the
//! forge what happened, so even a delivery that passed the check changes when it looks, never
//! what it finds. Every delivery is answered and audited; a refused one changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chum_core::config::{ForgeKind, ProjectConfig};
use chum_core::ids::shark_workflow_id;
use chum_core::pull_request::bead_of_branch;
use serde_json::{Value, json};

use chum_client::control::{self, ControlErrorKind};

use super::*;

/// Events that concern a pull request's fate; others are acknowledged and ignored.
const EVENTS: [&str; 4] = [
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
];

pub(super) async fn github(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let header = |name: &str| header_of(&headers, name);
    let event = header("x-github-event");
    let delivery = header("x-github-delivery");
    let target = format!("webhook {event} {delivery}");
    if event.is_empty() {
        return Err(ApiError::bad_request("not a GitHub webhook: no X-GitHub-Event header"));
    }
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the webhook body is not JSON: {e}")))?;
    let repository = payload["repository"]["full_name"].as_str().unwrap_or_default();
    let config = state.config();
    let project = project_of(&config.projects, ForgeKind::GitHub, repository);
    // Unknown repository, no secret, or a signature that does not match: the same refusal, so
    // a stranger learns nothing about which repositories this worker serves.
    let signed = header("x-hub-signature-256");
    let valid = secret_of(project).is_some_and(|secret| signature_matches(&secret, &body, &signed));
    let (Some(project), true) = (project, valid) else {
        state.record(
            "webhook",
            "forge_event",
            &target,
            "refused: the signature does not match",
            remote,
        )?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the X-Hub-Signature-256 does not match: set the webhook's secret to the value of the project's forge.webhook_secret_env, and its repository to the project's forge.repo",
        ));
    };
    if event == "ping" {
        return Ok((StatusCode::OK, Json(json!({"pong": project.name}))).into_response());
    }
    let branch = payload["pull_request"]["head"]["ref"].as_str().unwrap_or_default();
    let about = EVENTS.contains(&event.as_str()).then_some(branch);
    wake(&state, project, &event, branch, about, remote).await
}

/// GitLab's events about a merge request's fate; others are acknowledged and ignored.
const GITLAB_EVENTS: [&str; 2] = ["Merge Request Hook", "Note Hook"];

pub(super) async fn gitlab(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let header = |name: &str| header_of(&headers, name);
    let event = header("x-gitlab-event");
    let delivery = header("x-gitlab-event-uuid");
    let target = format!("webhook {event} {delivery}");
    if event.is_empty() {
        return Err(ApiError::bad_request("not a GitLab webhook: no X-Gitlab-Event header"));
    }
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the webhook body is not JSON: {e}")))?;
    let repository = payload["project"]["path_with_namespace"].as_str().unwrap_or_default();
    let config = state.config();
    let project = project_of(&config.projects, ForgeKind::GitLab, repository);
    let given = header("x-gitlab-token");
    let valid = secret_of(project).is_some_and(|secret| same_secret(&secret, &given));
    let (Some(project), true) = (project, valid) else {
        state.record(
            "webhook",
            "forge_event",
            &target,
            "refused: the token does not match",
            remote,
        )?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the X-Gitlab-Token does not match: set the webhook's secret token to the value of the project's forge.webhook_secret_env, and make it a hook of the project's forge.repo",
        ));
    };
    // A merge request's own events name its branch; a note names the merge request it is on.
    let branch = payload["object_attributes"]["source_branch"]
        .as_str()
        .or_else(|| payload["merge_request"]["source_branch"].as_str())
        .unwrap_or_default();
    let about = GITLAB_EVENTS.contains(&event.as_str()).then_some(branch);
    wake(&state, project, &event, branch, about, remote).await
}

/// A header's text, or empty.
fn header_of(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The project whose forge is `kind` at `repository` and has a webhook secret.
fn project_of<'a>(
    projects: &'a std::collections::BTreeMap<String, ProjectConfig>,
    kind: ForgeKind,
    repository: &str,
) -> Option<&'a ProjectConfig> {
    projects.values().find(|p| {
        p.forge.as_ref().is_some_and(|f| {
            f.kind == kind && f.repo.eq_ignore_ascii_case(repository) && f.webhook_secret_env.is_some()
        })
    })
}

/// The project's webhook secret from the worker's environment.
fn secret_of(project: Option<&ProjectConfig>) -> Option<String> {
    project
        .and_then(|p| p.forge.as_ref())
        .and_then(|f| f.webhook_secret_env.as_ref())
        .and_then(|name| std::env::var(name).ok())
        .filter(|s| !s.is_empty())
}

/// Signals the Shark of the bead whose branch a valid delivery is `about` (None: the event is
/// not about a pull request's fate).
async fn wake(
    state: &ApiState,
    project: &ProjectConfig,
    event: &str,
    branch: &str,
    about: Option<&str>,
    remote: SocketAddr,
) -> ApiResult {
    let Some(bead) = about.and_then(bead_of_branch) else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"ignored": format!("{event} about {branch:?} is not about a bead's pull request")})),
        )
            .into_response());
    };
    let run = shark_workflow_id(&project.name, bead);
    state.record("webhook", "forge_event", &run, "requested", remote)?;
    match control::forge_event(&state.client, &run).await {
        Ok(()) => {
            let _ = state.record("webhook", "forge_event", &run, "signalled", remote);
            Ok((StatusCode::ACCEPTED, Json(json!({"signalled": run}))).into_response())
        }
        // No run waits for it (it ended, or was never started): nothing to wake.
        Err(e) if e.kind == ControlErrorKind::NotFound => {
            let _ = state.record("webhook", "forge_event", &run, "no run", remote);
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"ignored": format!("no run {run} is open")})),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `signed` (`sha256=<hex>`) is the HMAC-SHA256 of `body` with `secret`; ring compares in
/// constant time.
fn signature_matches(secret: &str, body: &[u8], signed: &str) -> bool {
    let Some(hex) = signed.strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 {
        return false;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    let Some(tag) = bytes else { return false };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &tag).is_ok()
}

/// Whether `given` is `secret`, compared in constant time: the tags of one message under each as
/// a key are equal exactly when the keys are (ring's `verify` compares tags in constant time).
fn same_secret(secret: &str, given: &str) -> bool {
    const MESSAGE: &[u8] = b"chum webhook secret";
    let expected = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
        MESSAGE,
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, given.as_bytes());
    ring::hmac::verify(&key, MESSAGE, expected.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::{same_secret, signature_matches};

    #[test]
    fn a_gitlab_token_matches_only_the_secret_itself() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cret "));
        assert!(!same_secret("s3cret", ""));
        assert!(!same_secret("s3cret", "S3cret"));
    }

    #[test]
    fn only_the_hmac_of_the_exact_body_with_the_secret_matches() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let signed = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            signed
        ));
        assert!(!signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World?",
            signed
        ));
        assert!(!signature_matches("another secret", b"Hello, World!", signed));
        assert!(!signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha1=abc"
        ));
        assert!(!signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=zz"
        ));
    }
}
