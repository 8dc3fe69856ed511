//! What a notification says, per kind of target: CHUM's signed JSON for webhooks, Slack's
//! incoming-webhook `text`, Matrix's `m.room.message`. Pure functions of the event, so what
//! people get is tested without a network.

use chum_core::proto::NotifyEvent;
use serde_json::{Value, json};

fn time(ms: i64) -> String {
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(|ms| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
        })
        .unwrap_or_default()
}

/// The run's page in the console.
pub fn run_url(console: &str, event: &NotifyEvent) -> String {
    format!("{}/ui/runs/{}", console.trim_end_matches('/'), event.workflow_id)
}

/// One sentence for people.
pub fn sentence(event: &NotifyEvent) -> String {
    let who = format!("{}/{}", event.project, event.bead_id);
    let what = if event.gate == "result" {
        format!("its result (attempt {})", event.round)
    } else {
        format!("its plan (round {})", event.round)
    };
    let summary = if event.summary.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", chum_core::text::excerpt(event.summary.trim(), 200))
    };
    match event.kind.as_str() {
        "gate_waiting" => format!(
            "{who} waits for your decision on {what}{summary}. The gate times out at {}.",
            time(event.deadline_ms)
        ),
        "gate_expiring" => format!(
            "{who} still waits for a decision on {what}; the gate times out at {} and then nothing is done.",
            time(event.deadline_ms)
        ),
        _ => {
            let commit = if event.commit.is_empty() {
                String::new()
            } else {
                format!(" (commit {})", chum_core::gate_text::short_commit(&event.commit))
            };
            format!(
                "{who} ended: {}{commit}. {}",
                event.outcome,
                chum_core::text::excerpt(&event.reason, 300)
            )
        }
    }
}

/// The webhook body (documented in docs/API.md, "Notifications").
pub fn webhook_body(event: &NotifyEvent, console: &str) -> Value {
    json!({
        "id": event.id,
        "event": event.kind,
        "project": event.project,
        "bead_id": event.bead_id,
        "workflow_id": event.workflow_id,
        "run_id": event.run_id,
        "gate": event.gate,
        "round": event.round,
        "at": time(event.at_ms),
        "deadline": time(event.deadline_ms),
        "outcome": event.outcome,
        "reason": event.reason,
        "commit": event.commit,
        "summary": event.summary,
        "text": sentence(event),
        "url": run_url(console, event),
    })
}

/// `sha256=<hex>`: HMAC-SHA256 of the exact body bytes under the target's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Slack incoming webhook's body: text with a link in Slack's `<url|label>` form.
pub fn slack_body(event: &NotifyEvent, console: &str) -> Value {
    json!({ "text": format!("CHUM: {} <{}|Open in CHUM>", sentence(event), run_url(console, event)) })
}

/// A Matrix `m.room.message` of type `m.text`, with an HTML body carrying the link.
pub fn matrix_body(event: &NotifyEvent, console: &str) -> Value {
    let url = run_url(console, event);
    let text = sentence(event);
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    json!({
        "msgtype": "m.text",
        "body": format!("CHUM: {text} {url}"),
        "format": "org.matrix.custom.html",
        "formatted_body": format!("CHUM: {escaped} <a href=\"{url}\">Open in CHUM</a>"),
    })
}

/// The Matrix transaction id of an event for a target: the same for every retry, so a homeserver
/// that already took the message takes it once (the client-server API's idempotency).
pub fn matrix_txn(event: &NotifyEvent, target: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{}\n{target}", event.id).as_bytes());
    format!("chum-{}", hex(&digest.as_ref()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting() -> NotifyEvent {
        NotifyEvent {
            id: "shark-demo-tk-1/r1/gate_waiting/plan-1".into(),
            kind: "gate_waiting".into(),
            project: "demo".into(),
            bead_id: "tk-1".into(),
            workflow_id: "shark-demo-tk-1".into(),
            run_id: "r1".into(),
            gate: "plan".into(),
            round: 1,
            at_ms: 1_790_000_000_000,
            deadline_ms: 1_790_086_400_000,
            summary: "Add multiply".into(),
            ..NotifyEvent::default()
        }
    }

    #[test]
    fn a_waiting_gate_says_who_waits_on_what_until_when_and_links_the_console() {
        let body = webhook_body(&waiting(), "http://chum.example:8900/");
        assert_eq!(body["event"], "gate_waiting");
        assert_eq!(body["url"], "http://chum.example:8900/ui/runs/shark-demo-tk-1");
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("demo/tk-1 waits for your decision on its plan (round 1): Add multiply"),
            "{text}"
        );
        assert!(text.contains("2026-09-2"), "the deadline is a date: {text}");
        let slack = slack_body(&waiting(), "http://c");
        assert!(
            slack["text"]
                .as_str()
                .unwrap()
                .ends_with("<http://c/ui/runs/shark-demo-tk-1|Open in CHUM>")
        );
    }

    #[test]
    fn an_ended_run_says_its_outcome_and_commit_and_html_is_escaped() {
        let ended = NotifyEvent {
            kind: "run_ended".into(),
            outcome: "integrated".into(),
            commit: "0123456789abcdef".into(),
            reason: "merged <main>".into(),
            ..waiting()
        };
        let text = sentence(&ended);
        assert!(
            text.starts_with("demo/tk-1 ended: integrated (commit 0123456789ab"),
            "{text}"
        );
        let matrix = matrix_body(&ended, "http://c");
        assert_eq!(matrix["msgtype"], "m.text");
        assert!(
            matrix["formatted_body"]
                .as_str()
                .unwrap()
                .contains("merged &lt;main&gt;")
        );
    }

    #[test]
    fn signatures_and_transaction_ids_are_stable() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let e = waiting();
        assert_eq!(matrix_txn(&e, "matrix-1"), matrix_txn(&e, "matrix-1"));
        assert_ne!(matrix_txn(&e, "matrix-1"), matrix_txn(&e, "matrix-2"));
    }
}
