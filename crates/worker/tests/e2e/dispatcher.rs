//! The Dispatcher end to end on a real dev server: ready beads become Sharks without a manual
//! start, in dependency order, within the project's concurrency, never twice for the same bead,
//! also across a worker restart.

use std::time::Duration;

use chum_core::proto::{DispatcherStatus, Phase};
use chum_testkit::*;
use chum_workflows::{DispatcherRun, DispatcherWorkflow};
use serde_json::json;
use temporalio_client::{Client, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowQueryOptions};

/// tk-b depends on tk-a; tk-c is independent but of lower priority.
const BEADS: &str = concat!(
    r#"{"id":"tk-a","title":"First","status":"open","priority":1,"issue_type":"task","created_at":"2026-11-22T00:00:01Z","updated_at":"2026-11-22T00:00:01Z"}"#,
    "\n",
    r#"{"id":"tk-b","title":"Second, after the first","status":"open","priority":0,"issue_type":"task","created_at":"2026-11-22T00:00:02Z","updated_at":"2026-11-22T00:00:02Z","dependencies":[{"issue_id":"tk-b","depends_on_id":"tk-a","type":"blocks","created_at":"2026-11-22T00:00:02Z","created_by":"t","metadata":"{}","thread_id":""}]}"#,
    "\n",
    r#"{"id":"tk-c","title":"Independent","status":"open","priority":3,"issue_type":"task","created_at":"2026-11-22T00:00:03Z","updated_at":"2026-11-22T00:00:03Z"}"#,
    "\n"
);

fn steps() -> Vec<Step> {
    let mut steps = vec![planner(
        r#"{"summary": "do it", "steps": ["write the file"], "acceptance_criteria": ["the file exists"], "files": ["out.txt"]}"#,
    )];
    for bead in ["tk-a", "tk-b", "tk-c"] {
        steps.push(
            Step::executor()
                .bead(bead)
                .answer("done")
                .write(&format!("{bead}.txt"), &format!("{bead}\n")),
        );
    }
    steps
}

/// The DoD gate only, one Shark at a time (none planning ahead), a dispatcher round every second.
fn dispatching(c: &mut chum_core::config::RawConfig) {
    let project = c.project();
    project.gates = Some(vec!["dod".into()]);
    project.concurrency = Some(1);
    project.plan_ahead = Some(0);
    c.dispatcher.interval = Some("1s".into());
}

async fn dispatcher_status(client: &Client) -> DispatcherStatus {
    client
        .get_workflow_handle::<DispatcherRun>("dispatcher-demo")
        .query(DispatcherWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .expect("dispatcher status")
}

/// Waits for the Shark of `bead` to reach the gate, and approves it.
async fn approve_when_ready(client: &Client, bead: &str) {
    let handle = client.get_workflow_handle::<chum_workflows::SharkRun>(format!("shark-demo-{bead}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = handle
            .query(
                chum_workflows::SharkWorkflow::status,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            && s.phase() == Phase::AwaitingApproval
        {
            send_approve(&handle, json!({"approved": true, "by": "dispatch-test"})).await;
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{bead} never reached the gate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_beads_run_in_dependency_order_once_each_across_a_worker_restart() {
    let options = HarnessOptions {
        steps: steps(),
        beads: Some(BEADS.into()),
        dod: vec!["true".into()],
        ..Default::default()
    }
    .with_config(dispatching)
    .with_config(|c| c.dispatcher.rounds_per_run = Some(4));
    let h = &Harness::start("dispatch", options).await;

    // Worker 1: the dispatcher starts tk-a (ready, highest priority among ready), which waits at
    // the gate; nothing else starts (concurrency 1; tk-b waits for tk-a).
    let first_run = h
        .with_worker(|client| async move {
            let lines = worker::start_dispatchers(&client, &h.config).await;
            assert_eq!(lines, ["started dispatcher-demo"]);
            wait_until("tk-a at the gate", async || {
                let s = dispatcher_status(&client).await;
                s.started.iter().any(|id| id == "shark-demo-tk-a")
            })
            .await;
            let status = dispatcher_status(&client).await;
            assert_eq!(status.started, ["shark-demo-tk-a"], "{status:?}");
            assert_eq!(h.read_bead("tk-a")["status"], "in_progress");
            assert_eq!(h.read_bead("tk-b")["status"], "open");
            let handle = client.get_workflow_handle::<DispatcherRun>("dispatcher-demo");
            handle
                .describe(Default::default())
                .await
                .expect("described")
                .run_id()
                .to_string()
        })
        .await;

    // Worker 2 (a restart): the same Sharks go on; tk-a is approved and closes; then tk-b (now
    // unblocked, priority 0) and tk-c follow, one at a time.
    h.with_worker(|client| async move {
        approve_when_ready(&client, "tk-a").await;
        wait_until("tk-a closed", async || h.read_bead("tk-a")["status"] == "closed").await;
        approve_when_ready(&client, "tk-b").await;
        wait_until("tk-b closed", async || h.read_bead("tk-b")["status"] == "closed").await;
        approve_when_ready(&client, "tk-c").await;
        wait_until("tk-c closed", async || h.read_bead("tk-c")["status"] == "closed").await;

        // Each bead's Shark ran exactly once.
        for bead in ["tk-a", "tk-b", "tk-c"] {
            let mut runs = client.list_workflows(format!("WorkflowId = 'shark-demo-{bead}'"), Default::default());
            let mut count = 0;
            while let Some(run) = futures::StreamExt::next(&mut runs).await {
                run.expect("listed");
                count += 1;
            }
            assert_eq!(count, 1, "{bead} started {count} times");
        }
        // tk-b's Shark started only after tk-a's had closed.
        let describe = |bead: &str| {
            let handle = client.get_workflow_handle::<chum_workflows::SharkRun>(format!("shark-demo-{bead}"));
            async move { handle.describe(Default::default()).await.expect("described") }
        };
        let a = describe("tk-a").await;
        let b = describe("tk-b").await;
        assert!(
            b.start_time().unwrap() >= a.close_time().unwrap(),
            "tk-b started before tk-a closed"
        );
        // After `rounds_per_run` rounds the dispatcher continues as new, carrying its state.
        wait_until("a continue-as-new", async || {
            dispatcher_status(&client).await.rounds >= 5
        })
        .await;
        let handle = client.get_workflow_handle::<DispatcherRun>("dispatcher-demo");
        let now = handle.describe(Default::default()).await.expect("described");
        assert_ne!(now.run_id(), first_run, "a new run");
        if std::env::var("CHUM_RECORD_HISTORIES").as_deref() == Ok("1") {
            // The first run, which ended in continue-as-new, is a replay fixture.
            let first = WorkflowExecutionInfo::builder()
                .namespace("default")
                .workflow_id("dispatcher-demo")
                .run_id(first_run.clone())
                .build()
                .bind_untyped(client.clone());
            let json = first
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .to_json()
                .await
                .unwrap();
            std::fs::write(
                workspace_root().join("crates/workflows/tests/histories/current/dispatcher_rounds.json"),
                json,
            )
            .unwrap();
        }
    })
    .await;

    for bead in ["tk-a", "tk-b", "tk-c"] {
        let b = h.read_bead(bead);
        assert_eq!(b["status"], "closed", "{bead}");
        assert!(
            b["close_reason"].as_str().unwrap().contains("commit"),
            "{bead} closed with evidence: {b}"
        );
    }
    assert!(h.repo.join("tk-a.txt").exists() && h.repo.join("tk-b.txt").exists() && h.repo.join("tk-c.txt").exists());
}

/// `pause` stops new Sharks (a running one goes on); `resume` starts the next at once. Any payload
/// is accepted: a malformed one never wedges the dispatcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_dispatcher_starts_nothing_until_it_is_resumed() {
    let options = HarnessOptions {
        steps: steps(),
        beads: Some(BEADS.into()),
        dod: vec!["true".into()],
        ..Default::default()
    }
    .with_config(dispatching);
    let h = &Harness::start("dispatch-pause", options).await;
    h.with_worker(|client| async move {
        worker::start_dispatchers(&client, &h.config).await;
        wait_until("tk-a started", async || {
            dispatcher_status(&client).await.started == ["shark-demo-tk-a"]
        })
        .await;
        let handle = client.get_workflow_handle::<DispatcherRun>("dispatcher-demo");
        let signal = temporalio_client::WorkflowSignalOptions::default;
        // A payload that is not even JSON: taken as a pause all the same.
        let mut garbage = chum_workflows::json_payload(&json!(null));
        garbage.payloads[0].data = b"{not json".to_vec();
        handle
            .signal(DispatcherWorkflow::pause, garbage, signal())
            .await
            .expect("pause sent");
        wait_until("paused", async || dispatcher_status(&client).await.paused).await;

        // The running Shark goes on and closes its bead; nothing new starts while paused.
        approve_when_ready(&client, "tk-a").await;
        wait_until("tk-a closed", async || h.read_bead("tk-a")["status"] == "closed").await;
        let rounds = dispatcher_status(&client).await.rounds;
        wait_until("three more rounds", async || {
            dispatcher_status(&client).await.rounds >= rounds + 3
        })
        .await;
        let status = dispatcher_status(&client).await;
        assert_eq!(status.started, ["shark-demo-tk-a"], "{status:?}");
        assert_eq!(
            h.read_bead("tk-b")["status"],
            "open",
            "ready, but the dispatcher is paused"
        );

        handle
            .signal(
                DispatcherWorkflow::resume,
                chum_workflows::json_payload(&json!({"by": "test"})),
                signal(),
            )
            .await
            .expect("resume sent");
        wait_until("tk-b started after resume", async || {
            dispatcher_status(&client).await.started.len() == 2
        })
        .await;
        let status = dispatcher_status(&client).await;
        assert!(!status.paused);
        assert_eq!(status.started, ["shark-demo-tk-a", "shark-demo-tk-b"]);
    })
    .await;
}
