//! Every payload a recorded history holds decodes into today's type for it, and encodes back to
//! the same JSON.
//!
//! Replay proves the workflows issue the same commands; this proves the data they read on the way
//! still reads the same: a field that became an enum (gate names, select mode, groom kind, bead
//! status) must decode the strings older runs recorded, and write them the same way again, or a
//! run in flight during an upgrade would see a different value (or fail to decode at all).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chum_core::proto::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod support;

fn histories() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/histories")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn replay_codec() -> &'static chum_client::codec::AesGcmCodec {
    static CODEC: std::sync::OnceLock<chum_client::codec::AesGcmCodec> = std::sync::OnceLock::new();
    CODEC.get_or_init(|| support::replay_codec("payloads.rs"))
}

/// The JSON inside a history payload (`{"metadata": ..., "data": <base64>}`), decrypted first
/// when it was recorded encrypted (`binary/encrypted`, the replay key).
fn payload_json(payload: &Value) -> Option<Value> {
    use base64::Engine as _;
    use temporalio_common::protos::temporal::api::common::v1::Payload;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.decode(text).ok();
    let recorded = Payload {
        metadata: payload["metadata"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), b64(v.as_str()?)?)))
            .collect(),
        data: b64(payload["data"].as_str()?)?,
        ..Default::default()
    };
    let plain = replay_codec()
        .decrypt(recorded)
        .unwrap_or_else(|e| panic!("a recorded payload does not decrypt with the replay key: {e}"));
    serde_json::from_slice(&plain.data).ok()
}

fn first_payload(payloads: &Value) -> Option<Value> {
    payloads["payloads"].get(0).and_then(payload_json)
}

/// Decodes `json` as `T`, encodes it again and checks that every field the recording had comes
/// back with the same value (fields added since are left out of the comparison).
fn round_trip<T: DeserializeOwned + Serialize>(what: &str, json: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(json.clone()).map_err(|e| format!("{what} does not decode: {e}"))?;
    let again = serde_json::to_value(&typed).map_err(|e| format!("{what} does not encode: {e}"))?;
    same_where_recorded(json, &again).map_err(|path| {
        format!(
            "{what}: {path} was recorded as {} and is written back differently",
            pointer(json, &path)
        )
    })
}

fn pointer(json: &Value, path: &str) -> Value {
    json.pointer(path).cloned().unwrap_or(Value::Null)
}

/// Every value in `recorded` equals the one at the same place in `written`; a recorded empty
/// string may come back as an enum's unspecified value (fields that were strings before).
fn same_where_recorded(recorded: &Value, written: &Value) -> Result<(), String> {
    fn walk(recorded: &Value, written: &Value, path: &mut String) -> Result<(), String> {
        match (recorded, written) {
            (Value::Object(r), Value::Object(w)) => {
                for (key, value) in r {
                    let len = path.len();
                    path.push('/');
                    path.push_str(key);
                    walk(value, w.get(key).unwrap_or(&Value::Null), path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            (Value::Array(r), Value::Array(w)) if r.len() == w.len() => {
                for (i, (r, w)) in r.iter().zip(w).enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(r, w, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            (Value::String(r), Value::String(w)) if r.is_empty() && w == "unspecified" => Ok(()),
            (Value::Number(r), Value::Number(w)) if r.as_f64() == w.as_f64() => Ok(()),
            (r, w) if r == w => Ok(()),
            _ => Err(path.clone()),
        }
    }
    walk(recorded, written, &mut String::new())
}

/// The input and output types of every activity, by its name in the history.
fn check_activity(name: &str, input: Option<&Value>, output: Option<&Value>) -> Result<(), String> {
    macro_rules! pair {
        ($req:ty, $res:ty) => {{
            if let Some(json) = input {
                round_trip::<$req>(&format!("{name} input"), json)?;
            }
            if let Some(json) = output {
                round_trip::<$res>(&format!("{name} result"), json)?;
            }
            Ok(())
        }};
    }
    match name {
        "load_bead" => pair!(LoadBeadRequest, LoadBeadResult),
        "plan" => pair!(PlanRequest, PlanDraft),
        "execute" => pair!(ExecuteRequest, ExecuteReport),
        "review" => pair!(ReviewRequest, ReviewReport),
        "semgrep" => pair!(SemgrepRequest, SemgrepReport),
        "run_dod" => pair!(DodRequest, DodReport),
        "run_named_gate" => pair!(NamedGateRequest, DodReport),
        "integrate" => pair!(IntegrateRequest, IntegrationReport),
        "update_bead" => pair!(UpdateBeadRequest, UpdateBeadResult),
        "record_run" => pair!(RunRecord, RunRecorded),
        "discard_candidates" => pair!(DiscardCandidatesRequest, DiscardCandidatesReport),
        "extract_lessons" => pair!(LearnerInput, LessonsReport),
        "crystallize_rule" => pair!(CrystallizeRequest, RuleReport),
        "dispatch_round" => pair!(DispatchRequest, DispatchReport),
        "propose_mutations" => pair!(GroomRequest, GroomProposal),
        "apply_mutations" => pair!(ApplyMutationsRequest, ApplyMutationsReport),
        "commit_briefing" => pair!(BriefingRequest, BriefingReport),
        "update_to_base" => pair!(UpdateToBaseRequest, UpdateToBaseReport),
        "land" => pair!(LandRequest, LandReport),
        "open_pull_request" => pair!(PullRequestRequest, PullRequestReport),
        "check_pull_request" => pair!(PullRequestCheck, PullRequestStatus),
        "run_open" => pair!(RunOpenRequest, RunOpenReport),
        "ask_for_slot" => pair!(SlotAsk, SlotAnswer),
        "claim_host" => pair!(HostClaimRequest, HostClaim),
        "deliver_notification" => pair!(NotifyEvent, NotifyReport),
        other => Err(format!("activity {other:?} has no type here: add it to check_activity")),
    }
}

/// The input and result types of every workflow, by its type name.
fn check_workflow(name: &str, input: Option<&Value>, output: Option<&Value>) -> Result<(), String> {
    macro_rules! pair {
        ($input:ty, $output:ty) => {{
            if let Some(json) = input {
                round_trip::<$input>(&format!("{name} input"), json)?;
            }
            if let Some(json) = output {
                round_trip::<$output>(&format!("{name} result"), json)?;
            }
            Ok(())
        }};
    }
    match name {
        "Shark" => pair!(SharkInput, SharkResult),
        "ContinuousLearner" => pair!(LearnerInput, LearnerResult),
        "TacticalGroom" => pair!(TacticalGroomInput, GroomResult),
        "StrategicGroom" => pair!(StrategicGroomInput, GroomResult),
        "Dispatcher" => pair!(DispatcherInput, Value),
        "MergeQueue" => pair!(CoordinatorInput, Value),
        "Notifier" => pair!(NotifyEvent, NotifierResult),
        other => Err(format!("workflow {other:?} has no type here: add it to check_workflow")),
    }
}

/// Checks every payload of one history; returns how many were checked.
fn check_history(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let history: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let events = history["events"].as_array().cloned().unwrap_or_default();
    let mut activity_of: BTreeMap<i64, String> = BTreeMap::new();
    let mut child_of: BTreeMap<i64, String> = BTreeMap::new();
    let mut workflow = String::new();
    let mut checked = 0;
    for event in &events {
        let id = event["event_id"].as_i64().unwrap_or_default();
        let Some((kind, a)) = event["attributes"].as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match kind.as_str() {
            "WorkflowExecutionStartedEventAttributes" => {
                workflow = a["workflow_type"]["name"].as_str().unwrap_or_default().to_string();
                check_workflow(&workflow, first_payload(&a["input"]).as_ref(), None)?;
                checked += 1;
            }
            "WorkflowExecutionCompletedEventAttributes" => {
                check_workflow(&workflow, None, first_payload(&a["result"]).as_ref())?;
                checked += 1;
            }
            "WorkflowExecutionContinuedAsNewEventAttributes" => {
                check_workflow(&workflow, first_payload(&a["input"]).as_ref(), None)?;
                checked += 1;
            }
            "ActivityTaskScheduledEventAttributes" => {
                let name = a["activity_type"]["name"].as_str().unwrap_or_default().to_string();
                check_activity(&name, first_payload(&a["input"]).as_ref(), None)?;
                activity_of.insert(id, name);
                checked += 1;
            }
            "ActivityTaskCompletedEventAttributes" => {
                let scheduled = a["scheduled_event_id"].as_i64().unwrap_or_default();
                let name = activity_of.get(&scheduled).cloned().unwrap_or_default();
                check_activity(&name, None, first_payload(&a["result"]).as_ref())?;
                checked += 1;
            }
            "MarkerRecordedEventAttributes" if a["marker_name"] == "core_local_activity" => {
                let Some(data) = first_payload(&a["details"]["data"]) else {
                    continue;
                };
                let name = data["activity_type"].as_str().unwrap_or_default();
                if let Some(result) = first_payload(&a["details"]["result"]) {
                    check_activity(name, None, Some(&result))?;
                    checked += 1;
                }
            }
            "StartChildWorkflowExecutionInitiatedEventAttributes" => {
                let name = a["workflow_type"]["name"].as_str().unwrap_or_default().to_string();
                check_workflow(&name, first_payload(&a["input"]).as_ref(), None)?;
                child_of.insert(id, name);
                checked += 1;
            }
            "ChildWorkflowExecutionCompletedEventAttributes" => {
                let initiated = a["initiated_event_id"].as_i64().unwrap_or_default();
                let name = child_of.get(&initiated).cloned().unwrap_or_default();
                check_workflow(&name, None, first_payload(&a["result"]).as_ref())?;
                checked += 1;
            }
            "WorkflowExecutionSignaledEventAttributes" if workflow == "MergeQueue" => {
                let Some(json) = first_payload(&a["input"]) else {
                    continue;
                };
                match a["signal_name"].as_str().unwrap_or_default() {
                    "join" => round_trip::<QueueEntry>("join signal", &json)?,
                    "done" => round_trip::<TurnDone>("done signal", &json)?,
                    "acquire" => round_trip::<SlotRequest>("acquire signal", &json)?,
                    "release" => round_trip::<SlotRelease>("release signal", &json)?,
                    _ => {}
                }
                checked += 1;
            }
            // The Coordinator's one update is `acquire_now`; the Shark's is `approve`.
            "WorkflowExecutionUpdateAcceptedEventAttributes" => {
                if let Some(json) = first_payload(&a["accepted_request"]["input"]["args"]) {
                    if workflow == "MergeQueue" {
                        round_trip::<SlotRequest>("acquire_now update", &json)?;
                    } else {
                        round_trip::<GateDecision>("approve update", &json)?;
                    }
                    checked += 1;
                }
            }
            "WorkflowExecutionUpdateCompletedEventAttributes" => {
                if let Some(json) = first_payload(&a["outcome"]["value"]["Success"]) {
                    if workflow == "MergeQueue" {
                        round_trip::<SlotAnswer>("acquire_now update result", &json)?;
                    } else {
                        round_trip::<GateReceipt>("approve update result", &json)?;
                    }
                    checked += 1;
                }
            }
            _ => {}
        }
    }
    Ok(checked)
}

#[test]
fn every_recorded_payload_decodes_into_its_type_and_encodes_back_the_same() {
    let all = histories();
    assert!(all.len() >= 40, "only {} histories found", all.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &all {
        match check_history(path) {
            Ok(n) => checked += n,
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every history has at least its start, and Sharks dozens of activities.
    assert!(
        checked > 10 * all.len(),
        "only {checked} payloads checked in {} histories",
        all.len()
    );
}

#[test]
fn a_gate_name_from_before_the_enum_decodes_and_an_unknown_one_is_refused() {
    let recorded = serde_json::json!({"gate": "semgrep", "round": 1, "passed": false});
    let result: GateResult = serde_json::from_value(recorded.clone()).unwrap();
    assert_eq!(result.gate(), GateName::Semgrep);
    assert_eq!(serde_json::to_value(&result).unwrap()["gate"], "semgrep");
    let gates: ProjectGates =
        serde_json::from_value(serde_json::json!({"order": ["dod", "review"], "select": "best"})).unwrap();
    assert_eq!(gates.order().collect::<Vec<_>>(), [GateName::Dod, GateName::Review]);
    assert_eq!(gates.select(), SelectMode::Best);
    let keep: UpdateBeadRequest = serde_json::from_value(serde_json::json!({"status": ""})).unwrap();
    assert_eq!(keep.status(), BeadStatus::Unspecified);
    let err = serde_json::from_value::<GateResult>(serde_json::json!({"gate": "vibes"})).unwrap_err();
    assert!(err.to_string().contains("unknown gate_name \"vibes\""), "{err}");
    // The checker itself notices a value written back differently.
    assert!(
        same_where_recorded(
            &recorded,
            &serde_json::json!({"gate": "dod", "round": 1, "passed": false})
        )
        .is_err()
    );
}
