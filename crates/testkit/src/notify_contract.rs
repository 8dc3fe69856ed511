//! What Slack and Matrix accept, as their official SDKs publish it (neither service publishes an
//! OpenAPI description in a registry): `@slack/webhook`'s `IncomingWebhookSendArguments` (less the
//! client options the SDK strips before it posts) and `matrix-js-sdk`'s send path, client-server
//! prefix, `m.room.message` text content and message types. `scripts/setup.sh` installs both,
//! pinned, into `.tools/notify-contracts`; the notification tests hold every message to them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn dir() -> PathBuf {
    crate::workspace_root().join(".tools/notify-contracts")
}

/// The contracts, or `None` when setup could not install them (`CHUM_REQUIRE_FORGE_CONTRACTS=1`,
/// set by CI for every service contract, makes that a failure).
pub fn notify_contracts() -> Option<NotifyContracts> {
    let read = |path: &str| std::fs::read_to_string(dir().join(path)).ok();
    let found = (|| {
        let slack = read("slack/package/dist/IncomingWebhook.d.ts")?;
        let slack_js = read("slack/package/dist/IncomingWebhook.js")?;
        let events = read("matrix/package/lib/@types/events.d.ts")?;
        let event = read("matrix/package/lib/@types/event.d.ts")?;
        let client = read("matrix/package/lib/client.js")?;
        let prefix = read("matrix/package/lib/http-api/prefix.js")?;
        Some(NotifyContracts::from_sources(
            &slack, &slack_js, &events, &event, &client, &prefix,
        ))
    })();
    if found.is_none() && std::env::var("CHUM_REQUIRE_FORGE_CONTRACTS").is_ok_and(|v| v == "1") {
        panic!(
            "CHUM_REQUIRE_FORGE_CONTRACTS=1 but Slack's and Matrix's SDK contracts are not installed: run scripts/setup.sh"
        );
    }
    found.map(|c| c.unwrap_or_else(|e| panic!("the installed SDK contracts cannot be read: {e}")))
}

/// The parts of the contracts CHUM's messages are held to.
#[derive(Debug)]
pub struct NotifyContracts {
    /// Keys a Slack incoming webhook's JSON body may have.
    pub slack_keys: BTreeSet<String>,
    /// `/_matrix/client/v3/rooms/$roomId/send/$eventType/$txnId`.
    pub matrix_send_path: String,
    /// Keys of an `m.room.message` text message's content.
    pub matrix_text_keys: BTreeSet<String>,
    /// The msgtypes of a text message (`m.text`, `m.emote`, `m.notice`).
    pub matrix_text_msgtypes: BTreeSet<String>,
}

/// The top-level property names of `interface <name>` in TypeScript declarations.
fn interface_fields(ts: &str, name: &str) -> Result<BTreeSet<String>, String> {
    let start = ts
        .find(&format!("interface {name} "))
        .ok_or_else(|| format!("no interface {name}"))?;
    let body = &ts[start..];
    let open = body.find('{').ok_or("no body")?;
    let mut depth = 0;
    let mut fields = BTreeSet::new();
    for line in body[open..].lines() {
        let trimmed = line.trim();
        if depth == 1 {
            let name: String = trimmed
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let rest = trimmed.trim_start_matches('"')[name.len()..].trim_start_matches('"');
            if !name.is_empty() && (rest.starts_with("?:") || rest.starts_with(':')) {
                fields.insert(name);
            }
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if depth <= 0 {
            break;
        }
    }
    Ok(fields)
}

/// What `extends` lists after `interface <name>`.
fn extends(ts: &str, name: &str) -> Vec<String> {
    ts.find(&format!("interface {name} "))
        .and_then(|i| ts[i..].lines().next())
        .and_then(|line| line.split(" extends ").nth(1))
        .map(|rest| {
            rest.trim_end_matches('{')
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl NotifyContracts {
    fn from_sources(
        slack: &str,
        slack_js: &str,
        events: &str,
        event: &str,
        client: &str,
        prefix: &str,
    ) -> Result<NotifyContracts, String> {
        let mut slack_keys = interface_fields(slack, "IncomingWebhookSendArguments")?;
        for parent in extends(slack, "IncomingWebhookSendArguments") {
            slack_keys.extend(interface_fields(slack, &parent)?);
        }
        // `const { fetch: _fetch, timeout: _timeout, retryConfig: _retryConfig, ...messageDefaults } = defaults;`
        let stripped = slack_js
            .lines()
            .find(|l| l.contains("...messageDefaults"))
            .ok_or("the SDK no longer strips its client options the way it did")?;
        let inside = stripped
            .split('{')
            .nth(1)
            .and_then(|s| s.split('}').next())
            .unwrap_or_default();
        for option in inside.split(',').filter_map(|p| p.split(':').next()).map(str::trim) {
            if !option.starts_with("...") {
                slack_keys.remove(option);
            }
        }
        let send = "/rooms/$roomId/send/$eventType/$txnId";
        if !client.contains(&format!("\"{send}\"")) || !client.contains("authedRequest(Method.Put, path") {
            return Err("matrix-js-sdk no longer sends events by PUT to /rooms/$roomId/send/$eventType/$txnId".into());
        }
        let v3 = prefix
            .lines()
            .find(|l| l.contains("ClientPrefix[\"V3\"]"))
            .and_then(|l| l.split('"').nth(3))
            .ok_or("no client-server v3 prefix")?;
        let mut matrix_text_keys = interface_fields(events, "RoomMessageTextEventContent")?;
        for parent in extends(events, "RoomMessageTextEventContent") {
            matrix_text_keys.extend(interface_fields(events, &parent)?);
        }
        // Replies and mentions are in the content too (ReplyEvent, BaseTimelineEvent).
        matrix_text_keys.extend(interface_fields(events, "ReplyEvent")?);
        let msgtype_line = events
            .lines()
            .find(|l| l.contains("msgtype: MsgType.Text"))
            .ok_or("no text msgtypes")?;
        let enum_start = event.find("enum MsgType {").ok_or("no MsgType enum")?;
        let enum_body = &event[enum_start..event[enum_start..].find('}').map_or(event.len(), |e| enum_start + e)];
        let mut matrix_text_msgtypes = BTreeSet::new();
        for variant in msgtype_line.split("MsgType.").skip(1) {
            let variant: String = variant.chars().take_while(char::is_ascii_alphanumeric).collect();
            let value = enum_body
                .lines()
                .find(|l| l.trim().starts_with(&format!("{variant} =")))
                .and_then(|l| l.split('"').nth(1))
                .ok_or_else(|| format!("MsgType.{variant} has no value"))?;
            matrix_text_msgtypes.insert(value.to_string());
        }
        Ok(NotifyContracts {
            slack_keys,
            matrix_send_path: format!("{v3}{send}"),
            matrix_text_keys,
            matrix_text_msgtypes,
        })
    }

    /// What is wrong with a Slack incoming webhook's body.
    pub fn slack_violations(&self, body: &Value) -> Vec<String> {
        let Some(object) = body.as_object() else {
            return vec![format!("the body is not a JSON object: {body}")];
        };
        let mut wrong: Vec<String> = object
            .keys()
            .filter(|k| !self.slack_keys.contains(*k))
            .map(|k| {
                format!(
                    "Slack's incoming webhook takes no {k:?} (it takes {:?})",
                    self.slack_keys
                )
            })
            .collect();
        if !["text", "blocks", "attachments"]
            .iter()
            .any(|k| object.contains_key(*k))
        {
            wrong.push("a message needs text, blocks or attachments".into());
        }
        if object.get("text").is_some_and(|t| !t.is_string()) {
            wrong.push("text is not a string".into());
        }
        wrong
    }

    /// What is wrong with a Matrix send: its method, its path (under the v3 prefix) and its
    /// `m.room.message` text content.
    pub fn matrix_violations(&self, method: &str, path: &str, content: &Value) -> Vec<String> {
        let mut wrong = Vec::new();
        if method != "PUT" {
            wrong.push(format!("events are sent with PUT, not {method}"));
        }
        let template: Vec<&str> = self.matrix_send_path.split('/').collect();
        let parts: Vec<&str> = path.split('/').collect();
        let fits = template.len() == parts.len()
            && template.iter().zip(&parts).all(|(t, p)| match *t {
                "$roomId" => p.starts_with("%21") || p.starts_with('!'),
                "$eventType" => *p == "m.room.message",
                "$txnId" => !p.is_empty(),
                t => t == *p,
            });
        if !fits {
            wrong.push(format!("{path} is not {}", self.matrix_send_path));
        }
        let Some(object) = content.as_object() else {
            wrong.push(format!("the content is not a JSON object: {content}"));
            return wrong;
        };
        for key in object.keys().filter(|k| !self.matrix_text_keys.contains(*k)) {
            wrong.push(format!(
                "an m.room.message text has no {key:?} ({:?})",
                self.matrix_text_keys
            ));
        }
        if !object.get("body").is_some_and(Value::is_string) {
            wrong.push("body must be a string".into());
        }
        match object.get("msgtype").and_then(Value::as_str) {
            Some(t) if self.matrix_text_msgtypes.contains(t) => {}
            other => wrong.push(format!(
                "msgtype {other:?} is not one of {:?}",
                self.matrix_text_msgtypes
            )),
        }
        if object.contains_key("formatted_body")
            && object.get("format").and_then(Value::as_str) != Some("org.matrix.custom.html")
        {
            wrong.push("formatted_body needs format = org.matrix.custom.html".into());
        }
        wrong
    }
}
