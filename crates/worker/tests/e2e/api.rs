//! The HTTP API against a real worker, dev server, git repository and scripted agent: a bead is
//! created, approved and followed over HTTP; every control route needs a token and lands in the
//! audit log; bad requests get JSON 4xx answers, never a 500.

use std::time::Duration;

use chum_core::proto::Phase;
use chum_testkit::*;
use futures::StreamExt;
use serde_json::{Value, json};

const TOKEN: &str = "alice-token-0123456789";
const READ_TOKEN: &str = "viewer-token-0123456789";

/// Scrapes `/metrics` and parses it with a Prometheus text parser.
async fn scrape(http: &reqwest::Client, url: &str) -> prometheus_parse::Scrape {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// The sum of the samples of `name` whose labels include `labels`.
fn metric(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Reads Server-Sent Events until `done` (or the deadline), returning (event, data) pairs.
async fn read_events(response: reqwest::Response, on_event: impl Fn(&str, &Value)) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if name.is_empty() {
                continue; // keep-alive comment
            }
            let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            on_event(&name, &value);
            let done = name == "done";
            events.push((name, value));
            if done {
                return events;
            }
        }
    }
    panic!("the event stream ended without `done`: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_approves_and_follows_a_bead_over_http() {
    let h = &Harness::with_steps("api", good_work()).await;
    h.with_metrics_worker(|client, sdk_metrics| async move {
        let tokens = vec![
            worker::api::ApiToken::control("alice", TOKEN),
            worker::api::ApiToken::read("viewer", READ_TOKEN),
        ];
        let (base, _stop) = h.start_api(client.clone(), tokens, Some(sdk_metrics)).await;
        let http = http_client();
        let url = |path: &str| format!("{base}{path}");

        // Reads are open on loopback.
        let health = http.get(url("/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let health: Value = health.json().await.unwrap();
        assert_eq!(health["ok"], true, "{health}");
        let projects: Value = http.get(url("/projects")).send().await.unwrap().json().await.unwrap();
        assert_eq!(projects["projects"][0]["name"], "demo");
        assert_eq!(projects["projects"][0]["backlog"]["ready"], 2, "{projects}");

        let before = scrape(&http, &url("/metrics")).await;
        assert_eq!(
            metric(&before, "chum_sharks_finished_total", &[("outcome", "integrated")]),
            0.0
        );

        // Control without a token, or with a wrong one: refused, recorded.
        let refused = http
            .post(url("/beads"))
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        let wrong = http
            .post(url("/runs/shark-demo-tk-1/approve"))
            .bearer_auth("alice-token-0123456788")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);

        // Create + start.
        let created = http
            .post(url("/beads"))
            .bearer_auth(TOKEN)
            .json(
                &json!({"title": "Add multiply, via the API", "description": "calc needs multiply(a, b)",
                          "priority": 0, "id": "tk-api"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["workflow_id"], "shark-demo-tk-api", "{created}");
        let run = "shark-demo-tk-api";

        // Follow it live; approve when the plan is at the gate.
        let events = http.get(url(&format!("/runs/{run}/events"))).send().await.unwrap();
        assert_eq!(events.status(), 200);
        assert!(
            events.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let (gate_tx, mut gate_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let reader = tokio::spawn(read_events(events, move |name, data| {
            if name == "phase" && data["phase"] == "awaiting_approval" {
                let _ = gate_tx.send(());
            }
        }));
        tokio::time::timeout(Duration::from_secs(60), gate_rx.recv())
            .await
            .expect("the plan reached the gate");
        // A read token views, it never decides: 403, and the refusal is on record.
        let read_only = http
            .post(url(&format!("/runs/{run}/approve")))
            .bearer_auth(READ_TOKEN)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(read_only.status(), 403);
        let body: Value = read_only.json().await.unwrap();
        assert_eq!(body["error"], "forbidden", "{body}");
        assert!(
            h.audit_lines().iter().any(|l| l["who"] == "viewer"
                && l["action"] == "approve"
                && l["result"].as_str().unwrap_or("").contains("read token")),
            "the read token's refusal is audited"
        );
        let bad_body = http
            .post(url(&format!("/runs/{run}/approve")))
            .bearer_auth(TOKEN)
            .body("yes please")
            .send()
            .await
            .unwrap();
        assert_eq!(bad_body.status(), 400);
        let approved = http
            .post(url(&format!("/runs/{run}/approve")))
            .bearer_auth(TOKEN)
            .json(&json!({"feedback": "looks right"}))
            .send()
            .await
            .unwrap();
        assert_eq!(approved.status(), 200);
        let approved: Value = approved.json().await.unwrap();
        assert_eq!(
            (approved["by"].as_str(), approved["confirmed"].as_bool()),
            (Some("alice"), Some(true))
        );

        let events = reader.await.unwrap();
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"status"));
        let phases: Vec<&str> = events
            .iter()
            .filter(|(n, _)| n == "phase")
            .filter_map(|(_, d)| d["phase"].as_str())
            .collect();
        // Phases of regular activities; the local ones (loading, semgrep, integrating) may pass
        // within one workflow task, between two looks (the run's own phase list has them all).
        for phase in ["awaiting_approval", "executing", "review", "dod"] {
            assert!(phases.contains(&phase), "{phase} missing from {phases:?}");
        }
        assert!(
            events
                .iter()
                .any(|(n, d)| n == "gate" && d["gate"] == "dod" && d["passed"] == true),
            "{events:?}"
        );
        let (_, done) = events.last().unwrap();
        assert_eq!(done["outcome"], "integrated", "{done}");

        // The finished run and its bead.
        let status: Value = http
            .get(url(&format!("/runs/{run}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["status"]["phase"], "done");
        assert_eq!(status["status"]["outcome"], "integrated");
        assert!(status["links"]["temporal_ui"].as_str().unwrap().ends_with(run));
        let bead: Value = http
            .get(url("/beads/demo/tk-api"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(bead["bead"]["status"], "closed", "{bead}");
        assert_eq!(bead["runs"].as_array().unwrap().len(), 1, "{bead}");

        // The metrics moved: one integrated run, its gates, its usage; the SDK's worker metrics too.
        let after = scrape(&http, &url("/metrics")).await;
        assert_eq!(
            metric(
                &after,
                "chum_sharks_finished_total",
                &[("project", "demo"), ("outcome", "integrated")]
            ),
            1.0
        );
        assert!(
            metric(
                &after,
                "chum_gate_results_total",
                &[("gate", "dod"), ("result", "pass")]
            ) >= 1.0
        );
        assert!(metric(&after, "chum_agent_tokens_total", &[("phase", "executor")]) > 0.0);
        assert!(metric(&after, "chum_agent_cost_usd_total", &[("phase", "planner")]) > 0.0);
        assert!(metric(&after, "chum_phase_duration_seconds_count", &[("phase", "executing")]) >= 1.0);
        assert_eq!(
            metric(&after, "chum_queue_depth", &[("project", "demo")]),
            2.0,
            "the two ready demo beads nobody started"
        );
        assert!(
            after.samples.iter().any(|s| s.metric.starts_with("temporal_")),
            "the SDK's worker metrics are served too"
        );

        // Deciding on a finished run is a conflict, recorded like everything else.
        let late = http
            .post(url(&format!("/runs/{run}/reject")))
            .bearer_auth(TOKEN)
            .json(&json!({"feedback": "too late"}))
            .send()
            .await
            .unwrap();
        assert_eq!(late.status(), 409);

        // Bad ids, bodies and routes: JSON 4xx, never 500.
        for (method, path, body, expected) in [
            ("GET", "/runs/not-a-run", None, 404),
            ("GET", "/runs/shark-demo-nope", None, 404),
            ("GET", "/beads/demo/..%2F..%2Fetc", None, 400),
            ("GET", "/beads/nope/tk-1", None, 404),
            ("GET", "/nowhere", None, 404),
            ("POST", "/beads", Some("{}"), 400),
            ("POST", "/beads", Some("{\"title\": \"t\", \"priority\": 9}"), 400),
            (
                "POST",
                "/beads",
                Some("{\"title\": \"t\", \"depends_on\": [\"tk-zz\"]}"),
                400,
            ),
            ("POST", "/beads", Some("{\"title\": \"t\", \"unknown\": 1}"), 400),
            ("POST", "/runs/shark-demo-tk-1/reject", Some("{}"), 400),
            ("POST", "/runs/shark-demo-nope/cancel", None, 404),
        ] {
            let request = match method {
                "GET" => http.get(url(path)),
                _ => http
                    .post(url(path))
                    .bearer_auth(TOKEN)
                    .body(body.unwrap_or("").to_string()),
            };
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), expected, "{method} {path}");
            let answer: Value = response
                .json()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
            assert!(
                answer["error"].is_string() && answer["detail"].is_string(),
                "{method} {path}: {answer}"
            );
        }

        // Every control request is in the audit log, with who, what, when and the result.
        let audit = h.audit_lines();
        // Audit first: each authorized control request is on record before it is acted on (create,
        // approve x2 (bad body + ok), reject, the 6 POSTs above), then its result; the 2 refused
        // requests and the read token's approval have their refusal only.
        let requested = audit.iter().filter(|l| l["result"] == "requested").count();
        assert_eq!(requested, 1 + 2 + 1 + 6, "{audit:#?}");
        assert_eq!(audit.len() - requested, 2 + 1 + 1 + 2 + 1 + 6, "{audit:#?}");
        for line in &audit {
            for key in ["ts", "who", "action", "target", "result", "remote"] {
                assert!(line[key].is_string(), "{key} missing: {line}");
            }
        }
        assert_eq!(audit[0]["who"], "anonymous");
        assert!(audit[0]["result"].as_str().unwrap().starts_with("refused"));
        // The store holds the same entries (newest first), as a shared store holds every worker's.
        let stored = chum_activities::store::Store::for_config(&h.config)
            .unwrap()
            .audit_entries(1000)
            .unwrap();
        let text = |line: &serde_json::Value, key: &str| line[key].as_str().unwrap_or_default().to_string();
        let as_stored: Vec<(String, String, String)> = audit
            .iter()
            .rev()
            .map(|l| (text(l, "who"), text(l, "action"), text(l, "result")))
            .collect();
        let stored: Vec<(String, String, String)> = stored.into_iter().map(|e| (e.who, e.action, e.result)).collect();
        assert_eq!(stored, as_stored);
        assert!(
            audit
                .iter()
                .any(|l| l["action"] == "approve" && l["who"] == "alice" && l["result"] == "ok" && l["target"] == run)
        );
        assert!(
            audit
                .iter()
                .any(|l| l["action"] == "reject" && l["result"].as_str().unwrap().starts_with("conflict"))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_control_routes_refuse_and_are_recorded() {
    let h = &Harness::with_steps("api-no-tokens", Vec::new()).await;
    h.with_worker(|client| async move {
        let (base, _stop) = h.start_api(client, Vec::new(), None).await;
        let http = http_client();
        for path in [
            "/beads",
            "/runs/shark-demo-tk-1/approve",
            "/runs/shark-demo-tk-1/reject",
            "/runs/shark-demo-tk-1/cancel",
        ] {
            let response = http
                .post(format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .json(&json!({"title": "x", "feedback": "y"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{path}");
            let body: Value = response.json().await.unwrap();
            assert!(body["detail"].as_str().unwrap().contains("CHUM_API_TOKENS"), "{body}");
        }
        let audit = h.audit_lines();
        assert_eq!(audit.len(), 4);
        assert!(
            audit
                .iter()
                .all(|l| l["result"].as_str().unwrap().contains("no API tokens"))
        );
        // Nothing was started.
        let runs = chum_client::control::running(&h.client()).await.unwrap();
        assert!(runs.is_empty());
    })
    .await;
}

/// A decision whose audit line cannot be written is not taken: the audit log goes to a device
/// that is always full, the approval is refused with the reason, and the Shark still waits at its
/// gate with no decision (before, the signal was sent first and the audit failed after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_cannot_be_audited_is_not_taken() {
    let h = &Harness::start(
        "api-audit-full",
        HarnessOptions::with_steps(good_work()).with_config(|c| c.api.audit_log = Some("/dev/full".into())),
    )
    .await;
    h.with_worker(|client| async move {
        let tokens = vec![worker::api::ApiToken::control("alice", TOKEN)];
        let (base, _stop) = h.start_api(client.clone(), tokens, None).await;
        let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
        wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
        let response = http_client()
            .post(format!("{base}/runs/shark-demo-tk-1/approve"))
            .bearer_auth(TOKEN)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "audit_unavailable", "{body}");
        assert!(body["detail"].as_str().unwrap().contains("/dev/full"), "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let still = status(&handle).await;
        assert_eq!(still.phase(), Phase::AwaitingApproval, "{still:?}");
        assert!(still.decisions.is_empty(), "an unaudited decision was taken: {still:?}");
        handle
            .terminate(temporalio_client::WorkflowTerminateOptions::default())
            .await
            .unwrap();
    })
    .await;
}
