//! Replay tests: every recorded Shark, learner, dispatcher and groom path must replay against the current workflow code.
//!
//! The histories in `tests/histories/current/` were recorded from real runs by
//! `scripts/record-histories.sh`; `legacy/` keeps runs of older workflow versions. A change to
//! the Shark that would break runs already in flight (a different activity, order or timer) fails
//! here. Re-record only on purpose, with the change, behind a patch marker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chum_client::codec::data_converter;
use chum_core::activity_contract::SharkActivities;
use chum_core::proto::{PlanRequest, SharkInput, SharkResult};
use chum_workflows::{
    CoordinatorWorkflow, DispatcherWorkflow, LearnerWorkflow, NotifierWorkflow, SharkWorkflow, StrategicGroomWorkflow,
    TacticalGroomWorkflow,
};
use temporalio_client::WorkflowHistory;
use temporalio_common::data_converters::DataConverter;
use temporalio_sdk::workflow_replayer::{WorkflowReplayFailure, WorkflowReplayer, WorkflowReplayerOptions};
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

mod support;

/// Where the histories live: `current/` holds one per path of today's workflows, re-recorded by
/// `scripts/record-histories.sh`; `legacy/<what changed>/` holds runs recorded by older versions
/// (before a patch marker), which prove a run in flight during an upgrade goes on after it. Those
/// cannot be re-recorded and are never deleted by the script.
fn histories_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/histories")
}

/// Every `*.json` under `dir`, as (name relative to the histories folder, path), sorted.
fn histories_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap_or_else(|e| panic!("{}: {e}", next.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let name = path
                    .strip_prefix(histories_dir())
                    .expect("under the histories folder")
                    .with_extension("")
                    .display()
                    .to_string();
                found.push((name, path));
            }
        }
    }
    found.sort();
    found
}

fn load_path(path: &Path) -> WorkflowHistory {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}; record it with scripts/record-histories.sh", path.display()));
    WorkflowHistory::from_json(&bytes).unwrap_or_else(|e| panic!("{}: not a history: {e}", path.display()))
}

fn load(name: &str) -> WorkflowHistory {
    load_path(&histories_dir().join(format!("{name}.json")))
}

/// The data converter of a worker with the replay key (see `support`).
fn decrypting() -> DataConverter {
    data_converter(Some(&Arc::new(support::replay_codec("replay.rs"))))
}

#[tokio::test]
async fn every_recorded_history_replays_deterministically() {
    let mut options = WorkflowReplayerOptions::new()
        .register_workflow::<SharkWorkflow>()
        .expect("registers")
        .register_workflow::<LearnerWorkflow>()
        .expect("registers")
        .register_workflow::<DispatcherWorkflow>()
        .expect("registers")
        .register_workflow::<TacticalGroomWorkflow>()
        .expect("registers")
        .register_workflow::<StrategicGroomWorkflow>()
        .expect("registers")
        .register_workflow::<CoordinatorWorkflow>()
        .expect("registers")
        .register_workflow::<NotifierWorkflow>()
        .expect("registers")
        .build();
    // As a worker with `[temporal.codec]` on: histories recorded encrypted and in clear both replay.
    options.data_converter = decrypting();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    let all = histories_under(&histories_dir());
    let current = all.iter().filter(|(name, _)| name.starts_with("current/")).count();
    // One per path of the Shark, the learner, the dispatcher and the groomers; a recording that
    // lost most of its files must not pass as "everything replays".
    assert!(
        current >= 40,
        "only {current} histories in current/; run scripts/record-histories.sh"
    );
    assert!(all.len() > current, "the legacy histories are gone");
    let results = replayer
        .replay_workflows(all.iter().map(|(_, path)| load_path(path)))
        .await
        .expect("replay runs");
    assert_eq!(results.len(), all.len());
    for ((name, _), result) in all.iter().zip(&results) {
        assert!(
            result.history.events().len() > 5,
            "{name}: history too short to mean anything"
        );
        assert!(result.replay_failure.is_none(), "{name}: {:?}", result.replay_failure);
    }
}

/// `binary/encrypted` as a history's JSON holds a payload's encoding (base64).
const ENCRYPTED_ENCODING: &str = "YmluYXJ5L2VuY3J5cHRlZA==";

/// A replayer of the Shark alone, with `data_converter` when given.
fn shark_replayer(data_converter: Option<DataConverter>) -> WorkflowReplayer {
    let mut options = WorkflowReplayerOptions::new()
        .register_workflow::<SharkWorkflow>()
        .expect("registers")
        .build();
    if let Some(converter) = data_converter {
        options.data_converter = converter;
    }
    WorkflowReplayer::new(options).expect("replayer")
}

/// Every payload of `history` that is not encrypted, its data decoded.
fn clear_payloads(history: &serde_json::Value) -> Vec<String> {
    use base64::Engine as _;
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let (Some(metadata), Some(data)) = (map.get("metadata"), map.get("data").and_then(|d| d.as_str()))
                    && metadata["encoding"] != ENCRYPTED_ENCODING
                    && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data)
                {
                    out.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(history, &mut out);
    out
}

/// The Shark's encrypted run (recorded with `[temporal.codec]` on) holds ciphertext only, in
/// Temporal's encoding, and replays with the key that encrypted it.
#[tokio::test]
async fn an_encrypted_history_holds_ciphertext_and_replays_with_its_key() {
    let path = histories_dir().join("current/codec_encrypted_integrated.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; record it with scripts/record-histories.sh", path.display()));
    assert!(text.contains(ENCRYPTED_ENCODING), "recorded without the codec");
    // What stays in clear is the SDK's own bookkeeping (patch markers, a local activity's
    // sequence number, type and timing, TemporalChangeVersion): never the bead, the plan or the
    // work.
    let clear = clear_payloads(&serde_json::from_str(&text).expect("JSON"));
    assert!(!clear.is_empty(), "the SDK's markers are in clear");
    for payload in &clear {
        assert!(
            !payload.contains("multiply") && !payload.contains("codename") && !payload.contains("calc"),
            "a payload with the bead's data is in clear: {payload}"
        );
    }
    let results = shark_replayer(Some(decrypting()))
        .replay_workflows([load("current/codec_encrypted_integrated")])
        .await
        .expect("replay runs");
    assert!(results[0].replay_failure.is_none(), "{:?}", results[0].replay_failure);
}

/// Without the key the encrypted run cannot be read: replay fails, it does not pass by accident.
#[tokio::test]
async fn an_encrypted_history_does_not_replay_without_its_key() {
    let results = shark_replayer(None)
        .replay_workflows([load("current/codec_encrypted_integrated")])
        .await
        .expect("replay runs");
    assert!(results[0].replay_failure.is_some(), "replayed without decrypting");
}

#[test]
fn histories_are_only_in_current_or_legacy() {
    for entry in std::fs::read_dir(histories_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            name == "current" || name == "legacy",
            "tests/histories/{name}: put a history in current/ (recorded by scripts/record-histories.sh) or legacy/<what changed>/"
        );
    }
}

/// A Shark that changed its first step: it plans before loading the bead. Registered under the
/// same workflow type, it must be reported as nondeterministic against a recorded run.
#[workflow]
#[derive(Default)]
struct ReorderedShark;

#[workflow_methods]
impl ReorderedShark {
    #[run(name = "Shark")]
    async fn run(ctx: &mut WorkflowContext<Self>, _input: SharkInput) -> WorkflowResult<SharkResult> {
        ctx.execute_activity(
            SharkActivities::plan,
            PlanRequest::default(),
            ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
        )
        .await?;
        Ok(SharkResult::default())
    }
}

#[tokio::test]
async fn a_changed_workflow_is_reported_as_nondeterministic() {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<ReorderedShark>()
        .expect("registers")
        .build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    let results = replayer
        .replay_workflows([load("current/approved_pass")])
        .await
        .expect("replay runs");
    match &results[0].replay_failure {
        Some(WorkflowReplayFailure::Nondeterminism { message }) => {
            assert!(message.contains("Nondeterminism"), "{message}");
        }
        other => panic!("expected a nondeterminism failure, got {other:?}"),
    }
}
