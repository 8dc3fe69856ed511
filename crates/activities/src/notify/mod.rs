//! Delivering notifications (the Notifier's activity): one event to every `[[notify]]` target
//! that wants it, each at most once (the store records who got what; a Matrix message also
//! carries a transaction id derived from the event, and a webhook the event id, so a receiver can
//! tell a repeat). A target that cannot be reached fails the round, to be retried by Temporal; the
//! targets already told are not told again.

pub mod message;

use std::sync::Arc;
use std::time::Duration;

use chum_core::config::{ChumConfig, NotifyKind, NotifyTarget, NotifyUrl};
use chum_core::live_config::LiveConfig;
use chum_core::proto::{NotifyEvent, NotifyReport};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument as _;

use crate::error::retryable;
use crate::log_context::activity_span;
use crate::store::Store;

/// The registered activity; each call takes the configuration in force when it starts.
pub struct NotifyActivitiesImpl {
    live: LiveConfig,
}

impl NotifyActivitiesImpl {
    pub fn new(config: impl Into<LiveConfig>) -> NotifyActivitiesImpl {
        NotifyActivitiesImpl { live: config.into() }
    }
}

/// Why one target did not get the event. Never holds a secret: a URL from the environment is
/// not shown, a written one is shown without its query.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0} is not set in the worker's environment")]
    MissingEnv(String),
    #[error("{0}")]
    Transport(String),
    #[error("answered {status}: {body}")]
    Refused { status: u16, body: String },
}

/// The URL a target posts to (read from the environment when it is a secret).
fn target_url(target: &NotifyTarget) -> Result<String, SendError> {
    match &target.url {
        NotifyUrl::Literal(url) => Ok(url.clone()),
        NotifyUrl::Env(var) => std::env::var(var).map_err(|_| SendError::MissingEnv(var.clone())),
    }
}

fn env_secret(var: Option<&String>) -> Result<String, SendError> {
    let var = var.ok_or_else(|| SendError::MissingEnv("(none configured)".into()))?;
    std::env::var(var).map_err(|_| SendError::MissingEnv(var.clone()))
}

fn transport(e: &reqwest::Error) -> SendError {
    // reqwest's message names the URL; a Slack URL is a secret, so only the kind of failure goes.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    SendError::Transport(kind.to_string())
}

/// Sends `event` to one target.
async fn send(
    client: &reqwest::Client,
    target: &NotifyTarget,
    event: &NotifyEvent,
    console: &str,
) -> Result<(), SendError> {
    let url = target_url(target)?;
    let request = match target.kind {
        NotifyKind::Webhook => {
            let body = message::webhook_body(event, console).to_string();
            let secret = env_secret(target.secret_env.as_ref())?;
            client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-chum-event", &event.kind)
                .header("x-chum-delivery", &event.id)
                .header("x-chum-signature", message::signature(&secret, body.as_bytes()))
                .body(body)
        }
        NotifyKind::Slack => client.post(&url).json(&message::slack_body(event, console)),
        NotifyKind::Matrix => {
            let token = env_secret(target.token_env.as_ref())?;
            let room: String = url::form_urlencoded::byte_serialize(target.room.as_bytes()).collect();
            let path = format!(
                "{url}/_matrix/client/v3/rooms/{room}/send/m.room.message/{}",
                message::matrix_txn(event, &target.name)
            );
            client
                .put(path)
                .bearer_auth(token)
                .json(&message::matrix_body(event, console))
        }
    };
    let response = request.send().await.map_err(|e| transport(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(SendError::Refused {
        status: status.as_u16(),
        body: chum_core::text::excerpt(&body, 200),
    })
}

/// One delivery round: every target that wants the event and has not had it.
pub async fn deliver(config: &ChumConfig, event: &NotifyEvent) -> Result<NotifyReport, ActivityError> {
    let store = Store::for_config(config).map_err(|e| retryable(e.to_string()))?;
    crate::forge::install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("chum/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| retryable(format!("no HTTP client: {e}")))?;
    let mut report = NotifyReport::default();
    let mut failures = Vec::new();
    for target in &config.notify {
        if !target.wants(&event.kind) {
            report.skipped.push(target.name.clone());
            continue;
        }
        if store
            .notified(&event.id, &target.name)
            .map_err(|e| retryable(e.to_string()))?
        {
            report.already.push(target.name.clone());
            continue;
        }
        match send(&client, target, event, &config.api.public_url).await {
            Ok(()) => {
                store
                    .record_notified(&event.id, &target.name, crate::clock::now_ms())
                    .map_err(|e| retryable(e.to_string()))?;
                report.delivered.push(target.name.clone());
            }
            Err(e) => {
                tracing::warn!(target = %target.name, event = %event.id, "notification not delivered: {e}");
                failures.push(format!("{} ({}): {e}", target.name, target.kind.as_str()));
            }
        }
    }
    if failures.is_empty() {
        tracing::info!(event = %event.id, delivered = ?report.delivered, "notified");
        Ok(report)
    } else {
        Err(retryable(format!(
            "{} of {} target(s) not reached, retried: {}",
            failures.len(),
            config.notify.len(),
            failures.join("; ")
        )))
    }
}

#[activities]
impl NotifyActivitiesImpl {
    #[activity(definition = chum_core::activity_contract::definitions::Deliver)]
    pub async fn deliver(
        self: Arc<Self>,
        ctx: ActivityContext,
        event: NotifyEvent,
    ) -> Result<NotifyReport, ActivityError> {
        let run = chum_core::proto::RunRef {
            project: event.project.clone(),
            bead_id: event.bead_id.clone(),
            workflow_id: event.workflow_id.clone(),
            run_id: event.run_id.clone(),
        };
        let span = activity_span(&ctx, Some(&run));
        let config = self.live.current();
        async move { deliver(&config, &event).await }.instrument(span).await
    }
}
