//! Notifications, end to end with the worker binary: a signed webhook, a Slack incoming webhook
//! and a Matrix room (a local listener standing in for all three) are told when the plan gate
//! starts waiting, when it is about to time out, and when the run ends; each event reaches each
//! target exactly once although the worker is killed and restarted at the gate; and a target
//! that is down holds up nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{post, put};
use chum_core::config::RawNotify;
use chum_core::proto::{Outcome, Phase, SharkLimits};
use chum_testkit::*;
use serde_json::{Value, json};

const SECRET: &str = "notify-secret-0123456789";
const MATRIX_TOKEN: &str = "syt_matrix_token_0123456789";
const ROOM: &str = "!room123:example.org";

/// What the listener got: (route, headers, body).
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, HeaderMap, Value)>>>);

impl Received {
    fn all(&self) -> Vec<(String, HeaderMap, Value)> {
        self.0.lock().unwrap().clone()
    }

    /// Every message a route got whose text (or event) mentions `kind`.
    fn of(&self, route: &str, kind: &str) -> Vec<(HeaderMap, Value)> {
        self.all()
            .into_iter()
            .filter(|(r, h, b)| {
                r == route
                    && (b["event"] == kind
                        || h.get("x-chum-event").is_some_and(|v| v == kind)
                        || b.to_string().contains(&sentence_of(kind)))
            })
            .map(|(_, h, b)| (h, b))
            .collect()
    }
}

/// The words each kind's sentence has (for Slack and Matrix, whose bodies are text).
fn sentence_of(kind: &str) -> String {
    match kind {
        "gate_waiting" => "waits for your decision".into(),
        "gate_expiring" => "still waits for a decision".into(),
        _ => "ended: integrated".into(),
    }
}

async fn listener() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(r): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    // The signature is over the exact bytes sent; checked with the test kit's own
                    // signer (GitHub's scheme, the same `sha256=<hex>`), not the code under test.
                    let expected = chum_testkit::forge::signature(SECRET, &body);
                    let signed = headers.get("x-chum-signature").is_some_and(|v| v == expected.as_str());
                    let mut value = value;
                    value["_signed"] = json!(signed);
                    r.0.lock().unwrap().push(("webhook".into(), headers, value));
                    "ok"
                },
            ),
        )
        .route(
            "/slack/T000/B000/XXXX",
            post(
                |State(r): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    r.0.lock().unwrap().push(("slack".into(), headers, value));
                    "ok"
                },
            ),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
            put(
                |State(r): State<Received>,
                 Path((room, txn)): Path<(String, String)>,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let mut value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    value["_room"] = json!(room);
                    value["_txn"] = json!(txn);
                    value["_path"] = json!(uri.path());
                    r.0.lock().unwrap().push(("matrix".into(), headers, value));
                    axum::Json(json!({"event_id": "$abc"}))
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_and_endings_are_told_once_to_every_target_through_a_worker_kill() {
    let (base, received) = listener().await;
    let dead = format!("http://127.0.0.1:{}/down", free_port());
    let slack_url = format!("{base}/slack/T000/B000/XXXX");
    let targets = vec![
        RawNotify {
            kind: Some("webhook".into()),
            name: Some("ops-hook".into()),
            url: Some(format!("{base}/hook")),
            secret_env: Some("NOTIFY_SECRET".into()),
            ..RawNotify::default()
        },
        RawNotify {
            kind: Some("slack".into()),
            url_env: Some("SLACK_WEBHOOK_URL".into()),
            events: Some(vec!["gate_waiting".into(), "run_ended".into()]),
            ..RawNotify::default()
        },
        RawNotify {
            kind: Some("matrix".into()),
            url: Some(base.clone()),
            room: Some(ROOM.into()),
            token_env: Some("MATRIX_TOKEN".into()),
            ..RawNotify::default()
        },
        // Down the whole time: its gate notice is retried in the background, never in the run's
        // way (and the other targets get the same notice once, for all the retries).
        RawNotify {
            kind: Some("webhook".into()),
            name: Some("down".into()),
            url: Some(dead),
            secret_env: Some("NOTIFY_SECRET".into()),
            events: Some(vec!["gate_waiting".into()]),
            ..RawNotify::default()
        },
    ];
    let options = HarnessOptions::with_steps(good_work()).with_config(move |c| {
        c.notify = targets;
        c.api.public_url = Some("https://chum.example.org".into());
    });
    let h = &Harness::start("notify", options).await;
    let config = h.write_config(&h.config_file);
    let env = [
        ("NOTIFY_SECRET", SECRET),
        ("SLACK_WEBHOOK_URL", slack_url.as_str()),
        ("MATRIX_TOKEN", MATRIX_TOKEN),
    ];
    let client = h.client();
    let worker = WorkerProcess::start_with(&config, &env);
    worker.wait_for_line("worker polling", 0).await;
    // A 16 s gate: the reminder goes when 4 s are left.
    let input = h.input(SharkLimits {
        gate_timeout_secs: 16,
        ..limits()
    });
    let handle = start_shark(&client, &h.task_queue, input).await;
    wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    wait_for("the gate's three notifications", 30, || {
        ["webhook", "slack", "matrix"]
            .iter()
            .all(|r| !received.of(r, "gate_waiting").is_empty())
    })
    .await;

    // The worker dies at the gate; the next one replays the run and tells nobody twice.
    let first_log = worker.kill();
    let worker = WorkerProcess::start_with(&config, &env);
    worker.wait_for_line("worker polling", 0).await;
    wait_for("the reminder", 30, || {
        !received.of("webhook", "gate_expiring").is_empty()
    })
    .await;
    send_approve(&handle, json!({"approved": true, "by": "alice"})).await;
    let result = tokio::time::timeout(Duration::from_secs(120), finish(&handle, "notify_gates_and_end"))
        .await
        .expect("the run ends");
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    wait_for("the end's notifications", 30, || {
        ["webhook", "slack", "matrix"]
            .iter()
            .all(|r| !received.of(r, "run_ended").is_empty())
    })
    .await;
    // Late repeats would show here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The Notifier of the run's end, which delivered to every target but the one that is down.
    let mut notifiers = client.list_workflows("WorkflowType = 'Notifier'", Default::default());
    let mut ended = None;
    while let Some(info) = futures::StreamExt::next(&mut notifiers).await {
        let info = info.expect("visibility answers");
        if info.id().ends_with("-run_ended-end") {
            ended = Some(info.id().to_string());
        }
    }
    let ended = ended.expect("a Notifier for the run's end");
    let notifier = client.get_workflow_handle::<chum_workflows::NotifierRun>(ended);
    let delivered = notifier
        .get_result(Default::default())
        .await
        .expect("the Notifier ends");
    assert!(delivered.error.is_empty(), "{delivered:?}");
    let report = delivered.report.unwrap_or_default();
    assert_eq!(report.delivered.len(), 3, "{report:?}");
    assert_eq!(report.skipped, ["down"], "{report:?}");
    record_history(&notifier, "notifier_delivered").await;
    let stopped = worker.stop();

    // Exactly once per event and target (Slack was not asked for the reminder).
    for (route, kind, count) in [
        ("webhook", "gate_waiting", 1),
        ("webhook", "gate_expiring", 1),
        ("webhook", "run_ended", 1),
        ("slack", "gate_waiting", 1),
        ("slack", "gate_expiring", 0),
        ("slack", "run_ended", 1),
        ("matrix", "gate_waiting", 1),
        ("matrix", "gate_expiring", 1),
        ("matrix", "run_ended", 1),
    ] {
        assert_eq!(
            received.of(route, kind).len(),
            count,
            "{route} got {kind} {} time(s): {:#?}",
            received.of(route, kind).len(),
            received.all()
        );
    }

    // The webhook: signed, its documented body, links into the console.
    let (headers, waiting) = received.of("webhook", "gate_waiting").remove(0);
    assert_eq!(waiting["_signed"], true, "the signature checks out: {headers:?}");
    assert_eq!(headers["x-chum-delivery"], waiting["id"].as_str().unwrap());
    assert_eq!(
        (
            waiting["project"].as_str(),
            waiting["bead_id"].as_str(),
            waiting["gate"].as_str(),
            waiting["round"].as_u64()
        ),
        (Some("demo"), Some("tk-1"), Some("plan"), Some(1))
    );
    assert_eq!(waiting["url"], "https://chum.example.org/ui/runs/shark-demo-tk-1");
    assert!(waiting["summary"].as_str().unwrap().contains("multiply"), "{waiting}");
    assert!(!waiting["deadline"].as_str().unwrap().is_empty());
    let (_, ended) = received.of("webhook", "run_ended").remove(0);
    assert_eq!(ended["outcome"], "integrated");
    assert_eq!(ended["commit"].as_str(), Some(result.commit.as_str()));

    // Slack: its incoming-webhook body, a text with a link.
    let (_, slack) = received.of("slack", "gate_waiting").remove(0);
    assert_eq!(
        slack.as_object().map(|o| o.len()),
        Some(1),
        "Slack's body is {{\"text\"}}: {slack}"
    );
    assert!(slack["text"].as_str().unwrap().contains("|Open in CHUM>"), "{slack}");

    // Matrix: the room, a transaction id per event, the token as a bearer, an m.text message.
    let matrix = received.of("matrix", "gate_waiting");
    let (headers, message) = &matrix[0];
    assert_eq!(message["_room"], ROOM);
    assert_eq!(headers["authorization"], format!("Bearer {MATRIX_TOKEN}").as_str());
    assert_eq!(message["msgtype"], "m.text");
    assert_eq!(message["format"], "org.matrix.custom.html");
    let txns: std::collections::BTreeSet<String> = received
        .all()
        .iter()
        .filter(|(r, _, _)| r == "matrix")
        .map(|(_, _, b)| b["_txn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(txns.len(), 3, "one transaction per event");

    // What Slack and Matrix were sent is what their SDKs say they take (and a message that is
    // not would be caught).
    if let Some(contracts) = notify_contracts() {
        let path = "/_matrix/client/v3/rooms/%21r%3Ae/send/m.room.message/1";
        assert!(!contracts.slack_violations(&json!({"txt": "x"})).is_empty());
        let text = json!({"body": "x", "msgtype": "m.text"});
        assert!(contracts.matrix_violations("PUT", path, &text).is_empty());
        assert!(!contracts.matrix_violations("POST", path, &text).is_empty());
        assert!(
            !contracts
                .matrix_violations("PUT", path, &json!({"body": "x", "msgtype": "m.txt"}))
                .is_empty()
        );
        for (route, _, body) in received.all() {
            let wrong = match route.as_str() {
                "slack" => contracts.slack_violations(&body),
                "matrix" => {
                    let mut content = body.clone();
                    let path = content["_path"].as_str().unwrap_or_default().to_string();
                    if let Some(o) = content.as_object_mut() {
                        o.retain(|k, _| !k.starts_with('_'));
                    }
                    contracts.matrix_violations("PUT", &path, &content)
                }
                _ => Vec::new(),
            };
            assert!(wrong.is_empty(), "{route}: {wrong:?} in {body}");
        }
    }

    // No secret in the worker's log, while the down target's failures are there.
    let log = format!("{}\n{}", first_log.join("\n"), stopped.join("\n"));
    for secret in [SECRET, MATRIX_TOKEN, slack_url.as_str()] {
        assert!(!log.contains(secret), "the log holds a secret: {secret}");
    }
    assert!(
        log.contains("notification not delivered") && log.contains("down"),
        "the failing target is logged"
    );
}
