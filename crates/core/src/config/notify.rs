//! `[[notify]]`: who is told when a gate starts waiting, when it is about to time out, and when a
//! run ends. Names of environment variables only: webhook secrets, Slack URLs (which are secrets)
//! and Matrix access tokens are read from the worker's environment when a message goes out.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::Validator;

/// One `[[notify]]` table as the file writes it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RawNotify {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub secret_env: Option<String>,
    pub room: Option<String>,
    pub token_env: Option<String>,
    pub events: Option<Vec<String>>,
}

/// What a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// CHUM's own JSON body, signed with HMAC-SHA256 (`X-Chum-Signature: sha256=<hex>`).
    Webhook,
    /// A Slack incoming webhook (`{"text": ...}`).
    Slack,
    /// A Matrix room, through the client-server API's `m.room.message`.
    Matrix,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Slack => "slack",
            NotifyKind::Matrix => "matrix",
        }
    }
}

/// The events a target can be told of.
pub const NOTIFY_EVENTS: [&str; 3] = ["gate_waiting", "gate_expiring", "run_ended"];

/// Where a target's URL comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyUrl {
    /// Written in the file (a webhook endpoint, a Matrix homeserver).
    Literal(String),
    /// Read from the worker's environment (a Slack incoming-webhook URL is itself a secret).
    Env(String),
}

/// One target, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyTarget {
    /// How it is named in logs, the store and `chum doctor` (default `<kind>-<n>`).
    pub name: String,
    pub kind: NotifyKind,
    pub url: NotifyUrl,
    /// webhook: the variable holding the HMAC key.
    pub secret_env: Option<String>,
    /// matrix: the room id (`!abc:example.org`) and the variable holding the access token.
    pub room: String,
    pub token_env: Option<String>,
    /// Which of [`NOTIFY_EVENTS`] it gets (all by default).
    pub events: Vec<String>,
}

impl NotifyTarget {
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

fn http_url(url: &str) -> bool {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .is_some_and(|host| !host.is_empty() && !host.contains('@') && !host.contains(char::is_whitespace))
}

impl Validator {
    /// `[[notify]]`: every target with what it needs, named, each name once.
    pub(super) fn notify(&self, raw: Vec<RawNotify>, tokens_env: &str) -> Result<Vec<NotifyTarget>, ConfigError> {
        let mut targets: Vec<NotifyTarget> = Vec::new();
        for (i, t) in raw.into_iter().enumerate() {
            let key = |k: &str| format!("notify[{i}].{k}");
            let kind = match t.kind.as_deref() {
                Some("webhook") => NotifyKind::Webhook,
                Some("slack") => NotifyKind::Slack,
                Some("matrix") => NotifyKind::Matrix,
                Some(other) => {
                    return Err(self.invalid(
                        key("kind"),
                        format!("{other:?} is not \"webhook\", \"slack\" or \"matrix\""),
                    ));
                }
                None => return Err(self.invalid(key("kind"), "is required: \"webhook\", \"slack\" or \"matrix\"")),
            };
            let name = match t.name {
                Some(n)
                    if n.trim().is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    return Err(self.invalid(key("name"), format!("{n:?} must be letters, digits, '-', '_' or '.'")));
                }
                Some(n) => n,
                None => format!("{}-{}", kind.as_str(), i + 1),
            };
            if targets.iter().any(|other| other.name == name) {
                return Err(self.invalid(key("name"), format!("{name} names two targets; give each its own name")));
            }
            let env = |k: &str, value: Option<String>| -> Result<Option<String>, ConfigError> {
                match value {
                    None => Ok(None),
                    Some(v) => Ok(self
                        .env_names(&key(k), std::slice::from_ref(&v), tokens_env)?
                        .into_iter()
                        .next()),
                }
            };
            let url = match (t.url, env("url_env", t.url_env)?) {
                (Some(_), Some(_)) => return Err(self.invalid(key("url"), "give url or url_env, not both")),
                (Some(url), None) if http_url(&url) => NotifyUrl::Literal(url.trim_end_matches('/').to_string()),
                (Some(url), None) => {
                    return Err(self.invalid(
                        key("url"),
                        format!("{url:?} is not an http(s) URL without credentials in it (secrets come from the environment)"),
                    ));
                }
                (None, Some(var)) => NotifyUrl::Env(var),
                (None, None) => {
                    let hint = match kind {
                        NotifyKind::Webhook => "url = \"https://hooks.example.com/chum\"",
                        NotifyKind::Slack => "url_env = \"SLACK_WEBHOOK_URL\" (the incoming webhook's URL is a secret)",
                        NotifyKind::Matrix => "url = \"https://matrix.example.org\" (the homeserver)",
                    };
                    return Err(self.invalid(key("url"), format!("is required, e.g. {hint}")));
                }
            };
            let secret_env = env("secret_env", t.secret_env)?;
            let token_env = env("token_env", t.token_env)?;
            let room = t.room.unwrap_or_default();
            match kind {
                NotifyKind::Webhook if secret_env.is_none() => {
                    return Err(self.invalid(
                        key("secret_env"),
                        "is required: the NAME of the variable holding the key the body is signed with",
                    ));
                }
                NotifyKind::Matrix if token_env.is_none() => {
                    return Err(self.invalid(
                        key("token_env"),
                        "is required: the NAME of the variable holding the Matrix access token",
                    ));
                }
                NotifyKind::Matrix if !(room.starts_with('!') && room.contains(':')) => {
                    return Err(self.invalid(
                        key("room"),
                        format!("{room:?} is not a room id like \"!abc123:example.org\""),
                    ));
                }
                _ => {}
            }
            let events = match t.events {
                None => NOTIFY_EVENTS.iter().map(|e| e.to_string()).collect(),
                Some(list) if list.is_empty() => {
                    return Err(self.invalid(key("events"), "is empty; leave it out for all events"));
                }
                Some(list) => {
                    if let Some(bad) = list.iter().find(|e| !NOTIFY_EVENTS.contains(&e.as_str())) {
                        return Err(self.invalid(
                            key("events"),
                            format!("{bad:?} is not an event; use any of {}", NOTIFY_EVENTS.join(", ")),
                        ));
                    }
                    list
                }
            };
            targets.push(NotifyTarget {
                name,
                kind,
                url,
                secret_env,
                room,
                token_env,
                events,
            });
        }
        Ok(targets)
    }
}
