//! The HTTP side both forges share: one client per call site, a typed answer or a typed error.
//! A forge's answer becomes [`ForgeError`]: rate limits with how long to wait (GitHub: 403/429
//! with `retry-after` or `x-ratelimit-*`; GitLab: 429 with `retry-after` or `ratelimit-*`),
//! server trouble (retried), refusals (with the forge's own message). Transport errors are told
//! without the URL's query, and no header is ever logged (the token travels in one).

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ForgeError;

/// A reqwest client with CHUM's user agent and timeouts.
pub(super) fn client(api: &str) -> Result<reqwest::Client, ForgeError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("chum/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ForgeError::Unreachable {
            url: api.to_string(),
            reason: e.to_string(),
        })
}

/// Sends the request and reads its JSON answer.
pub(super) async fn send<T: DeserializeOwned>(api: &str, request: RequestBuilder) -> Result<T, ForgeError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| ForgeError::Unreachable {
        url: api.to_string(),
        reason: e.to_string(),
    })?;
    let what = format!("{} {}", request.method(), request.url().path());
    let response = client.execute(request).await.map_err(|e| ForgeError::Unreachable {
        url: what.clone(),
        reason: without_url(&e),
    })?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(|e| ForgeError::Unreachable {
        url: what.clone(),
        reason: without_url(&e),
    })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| ForgeError::Unreadable {
            what,
            reason: e.to_string(),
        });
    }
    Err(error_of(what, status, &headers, &bytes))
}

/// Pages of a list read at most (100 items each).
const MAX_PAGES: usize = 10;

/// Every page of a list, 100 at a time, up to [`MAX_PAGES`]: `page()` is the request for the
/// list, which gets `per_page` and `page` added.
pub(super) async fn pages<T: DeserializeOwned>(
    api: &str,
    page: impl Fn() -> RequestBuilder,
) -> Result<Vec<T>, ForgeError> {
    let mut all = Vec::new();
    for n in 1..=MAX_PAGES {
        let request = page().query(&[("per_page", "100"), ("page", &n.to_string())]);
        let items: Vec<T> = send(api, request).await?;
        let last = items.len() < 100;
        all.extend(items);
        if last {
            break;
        }
    }
    Ok(all)
}

/// The forge's refusal as an error.
fn error_of(what: String, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ForgeError {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let remaining = header("x-ratelimit-remaining").or_else(|| header("ratelimit-remaining"));
    let reset = header("x-ratelimit-reset")
        .or_else(|| header("ratelimit-reset"))
        .and_then(|v| v.parse::<u64>().ok());
    // Both forges' documented contracts: 429 is always the rate limit; GitHub also says it with
    // 403 and either header.
    if status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && (retry_after.is_some() || remaining.as_deref() == Some("0")))
    {
        let wait = retry_after.unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            reset.map(|r| r.saturating_sub(now)).unwrap_or(60)
        });
        return ForgeError::RateLimited { wait_secs: wait.max(1) };
    }
    let message = serde_json::from_slice::<Value>(body)
        .map(|v| message_of(&v))
        .unwrap_or_default();
    match status {
        s if s.is_server_error() => ForgeError::Server {
            what,
            status: s.as_u16(),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ForgeError::Unauthorized {
            what,
            status: status.as_u16(),
            message,
        },
        StatusCode::NOT_FOUND => ForgeError::NotFound { what },
        s => ForgeError::Refused {
            what,
            status: s.as_u16(),
            message,
        },
    }
}

/// What an error body says. GitHub: `message` and `errors[].message`; GitLab: `message` (a
/// string, a list, or an object of field -> problems) or `error`.
fn message_of(body: &Value) -> String {
    let text = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(message_of_item).collect::<Vec<_>>().join("; "),
            Value::Object(fields) => fields
                .iter()
                .map(|(k, v)| format!("{k}: {}", message_of_item(v)))
                .collect::<Vec<_>>()
                .join("; "),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    };
    let mut message = text(&body["message"]);
    if message.is_empty() {
        message = text(&body["error"]);
    }
    if let Some(errors) = body["errors"].as_array().filter(|e| !e.is_empty()) {
        let details: Vec<String> = errors.iter().map(message_of_item).collect();
        message = format!("{message} ({})", details.join("; "));
    }
    message
}

fn message_of_item(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(message_of_item).collect::<Vec<_>>().join(", "),
        other => other
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| other.to_string()),
    }
}

/// A transport error's text without the URL (it has no credentials, but its query may be long).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    }
    .to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

/// rustls needs one crypto provider per process; CHUM's is ring (already in the build). Every
/// reqwest client of a process that links this crate needs it installed before it is built (the
/// workspace's reqwest has TLS without a provider of its own): the worker does it at start.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forges_error_bodies_are_told_in_their_words() {
        let github = serde_json::json!({"message": "Validation Failed", "errors": [{"message": "A pull request already exists"}]});
        assert_eq!(message_of(&github), "Validation Failed (A pull request already exists)");
        let gitlab =
            serde_json::json!({"message": ["Another open merge request already exists for this source branch: !1"]});
        assert_eq!(
            message_of(&gitlab),
            "Another open merge request already exists for this source branch: !1"
        );
        let fields = serde_json::json!({"message": {"title": ["can't be blank"]}});
        assert_eq!(message_of(&fields), "title: can't be blank");
        assert_eq!(
            message_of(&serde_json::json!({"error": "invalid_token"})),
            "invalid_token"
        );
    }
}
