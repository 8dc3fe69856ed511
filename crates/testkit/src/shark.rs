//! Driving a Shark through the Temporal client, as `chum` and a person would: start it, read its
//! status, decide at its gate, wait for its result; and keeping its history for the replay tests.

use std::time::Duration;

use chum_core::proto::{GateName, GateResult, Phase, SharkInput, SharkLimits, SharkResult, SharkStatus};
use chum_workflows::SharkWorkflow;
use temporalio_client::{
    Client, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHandle, WorkflowQueryOptions,
    WorkflowSignalOptions, WorkflowStartOptions,
};

use crate::paths::workspace_root;

pub type SharkHandle = WorkflowHandle<Client, chum_workflows::SharkRun>;

/// The run's results of one gate, in order.
pub fn gates_of(result: &SharkResult, gate: GateName) -> Vec<&GateResult> {
    result.gate_results.iter().filter(|g| g.gate() == gate).collect()
}

/// The run's first result of one gate.
pub fn first_gate(result: &SharkResult, gate: GateName) -> Option<&GateResult> {
    result.gate_results.iter().find(|g| g.gate() == gate)
}

/// The project's Coordinator's `status` query: slots, leases, the merge queue (a worker must be
/// polling).
pub async fn coordinator_status(client: &Client, project: &str) -> chum_core::proto::CoordinatorStatus {
    client
        .get_workflow_handle::<chum_workflows::CoordinatorRun>(chum_core::ids::coordinator_workflow_id(project))
        .query(
            chum_workflows::CoordinatorWorkflow::status,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .expect("merge queue status")
}

/// Small bounds, so a test that goes wrong ends in seconds, not the defaults' hours.
pub fn limits() -> SharkLimits {
    SharkLimits {
        max_attempts: 3,
        max_handoffs: 3,
        max_plan_rounds: 3,
        max_gate_rejections: 3,
        gate_timeout_secs: 60,
        agent_timeout_secs: 30,
        dod_timeout_secs: 60,
    }
}

pub async fn start_shark(client: &Client, task_queue: &str, input: SharkInput) -> SharkHandle {
    let id = chum_core::ids::shark_workflow_id(&input.project, &input.bead_id);
    client
        .start_workflow(
            SharkWorkflow::run,
            input,
            WorkflowStartOptions::new(task_queue, id).build(),
        )
        .await
        .expect("workflow starts")
}

pub async fn status(handle: &SharkHandle) -> SharkStatus {
    handle
        .query(SharkWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .expect("status query")
}

/// Polls the status query until the run reaches `phase` (and, for the gate, `round`).
pub async fn wait_for_phase(handle: &SharkHandle, phase: Phase, round: u32) -> SharkStatus {
    wait_until(handle, &format!("{phase} (round {round})"), |s| {
        s.phase() == phase && (round == 0 || s.plan_round == round)
    })
    .await
}

/// Polls the status query until the run reaches `phase` in attempt `attempt` (a phase after the
/// gates: its pull request, its result at the gate).
pub async fn wait_for_attempt_phase(handle: &SharkHandle, phase: Phase, attempt: u32) -> SharkStatus {
    wait_until(handle, &format!("{phase} in attempt {attempt}"), |s| {
        s.phase() == phase && s.attempt == attempt
    })
    .await
}

/// Polls the status query (60 s at most) until `reached` holds; a run that ends first fails the test.
async fn wait_until(handle: &SharkHandle, what: &str, reached: impl Fn(&SharkStatus) -> bool) -> SharkStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(handle).await;
        if reached(&s) {
            return s;
        }
        assert!(s.phase() != Phase::Done, "the run ended before {what}; status: {s:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never reached {what}; status: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the status query until at least `count` signals were refused (or 20 s passed) and
/// returns the status then.
pub async fn wait_for_refusals(handle: &SharkHandle, count: usize) -> SharkStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(handle).await;
        if s.rejected_signals.len() >= count || tokio::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn send_approve(handle: &SharkHandle, payload: serde_json::Value) {
    send_raw_approve(handle, chum_workflows::approve_payload(&payload)).await;
}

/// Sends payloads exactly as given, e.g. none at all (`temporal workflow signal` without --input).
pub async fn send_raw_approve(handle: &SharkHandle, payload: temporalio_common::data_converters::RawValue) {
    handle
        .signal(SharkWorkflow::approve, payload, WorkflowSignalOptions::default())
        .await
        .expect("signal delivered");
}

/// Waits for the run's result and records its history as `name`.
pub async fn finish(handle: &SharkHandle, name: &str) -> SharkResult {
    let result = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the run completes");
    record_history(handle, name).await;
    result
}

/// A run's history events (JSON, as Temporal stores them) and, for each, the activity type of
/// the activity event it names by `scheduled_event_id`.
async fn activity_events<W: temporalio_common::HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
    attributes: &str,
) -> Vec<(Option<String>, serde_json::Value)> {
    let json = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history fetched");
    let history: serde_json::Value = serde_json::from_slice(&json).expect("history JSON");
    let events = history["events"].as_array().cloned().unwrap_or_default();
    let scheduled_as = |id: &serde_json::Value| {
        events
            .iter()
            .find(|e| &e["event_id"] == id)
            .and_then(|e| e["attributes"]["ActivityTaskScheduledEventAttributes"]["activity_type"]["name"].as_str())
            .map(str::to_string)
    };
    events
        .iter()
        .filter_map(|e| e["attributes"].get(attributes))
        .map(|a| (scheduled_as(&a["scheduled_event_id"]), a.clone()))
        .collect()
}

/// The results of every completed `activity` of a run, decoded from its history (what the
/// activity really reported, as Temporal stored it).
pub async fn activity_results<W: temporalio_common::HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
    activity: &str,
) -> Vec<serde_json::Value> {
    use base64::Engine as _;
    activity_events(handle, "ActivityTaskCompletedEventAttributes")
        .await
        .into_iter()
        .filter(|(of, _)| of.as_deref() == Some(activity))
        .filter_map(|(_, done)| done["result"]["payloads"][0]["data"].as_str().map(str::to_string))
        .map(|data| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64 payload");
            serde_json::from_slice(&bytes).expect("JSON payload")
        })
        .collect()
}

/// The try number of every start of `activity` in a run's history (1 for a first try; a retry
/// after a heartbeat timeout starts with 2).
pub async fn activity_tries<W: temporalio_common::HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
    activity: &str,
) -> Vec<u64> {
    activity_events(handle, "ActivityTaskStartedEventAttributes")
        .await
        .into_iter()
        .filter(|(of, _)| of.as_deref() == Some(activity))
        .map(|(_, started)| started["attempt"].as_u64().unwrap_or(1))
        .collect()
}

/// How long each durable timer of a run was set for, in order, from its history.
pub async fn timer_durations<W: temporalio_common::HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
) -> Vec<Duration> {
    let json = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history fetched");
    let history: serde_json::Value = serde_json::from_slice(&json).expect("history JSON");
    history["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["attributes"]["TimerStartedEventAttributes"]["start_to_fire_timeout"].as_str())
        .filter_map(|t| t.trim_end_matches('s').parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect()
}

/// Saves the run's history for the replay tests when `CHUM_RECORD_HISTORIES=1`
/// (scripts/record-histories.sh).
pub async fn record_history<W: temporalio_common::HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
    name: &str,
) {
    if std::env::var("CHUM_RECORD_HISTORIES").as_deref() != Ok("1") {
        return;
    }
    let json = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history fetched");
    let dir = workspace_root().join("crates/workflows/tests/histories/current");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), json).unwrap();
    eprintln!("recorded history {name}");
}
