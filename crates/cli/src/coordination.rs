//! What the project's Sharks wait for: `chum queue` (the coordinator's execution slots, leases
//! and merge queue), and the notes `chum backlog` and `chum dispatcher` put beside each bead in
//! progress (executing, waiting for a person, waiting for a slot and why).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;
use chum_client::control::ControlErrorKind;
use chum_core::config::ChumConfig;
use chum_core::ids::shark_workflow_id;
use chum_core::proto::{CoordinatorStatus, EnumName, Phase, QueueEntry, SharkStatus};
use temporalio_client::Client;

/// How long `chum backlog` waits for the server and each answer before it shows the backlog
/// without saying what the beads in progress wait for.
const LOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// The project's coordinator (slots, leases, merge queue), or what it means that there is none yet.
pub async fn queue_status(client: &Client, project: &str) -> Result<CoordinatorStatus> {
    chum_client::coordinator::status(client, project)
        .await
        .map_err(|e| match e.kind {
            ControlErrorKind::NotFound => crate::output::failed(format!(
                "no coordinator for {project} yet: it starts when the project's first plan is approved"
            )),
            _ => anyhow::anyhow!("{}", e.message),
        })
}

/// `chum queue`: execution slots and leases, then the merge queue.
pub fn render_queue(s: &CoordinatorStatus) -> String {
    let mut out = String::new();
    let bead = |e: &QueueEntry| format!("{} ({})", e.bead_id, e.workflow_id);
    let _ = writeln!(
        out,
        "{}: {} of {} execution slot(s) taken",
        chum_core::ids::coordinator_workflow_id(&s.project),
        s.executing.len(),
        s.concurrency.max(1)
    );
    for e in &s.executing {
        let files = if e.files.is_empty() {
            "no planned files".to_string()
        } else {
            format!("leases {}", e.files.join(", "))
        };
        let _ = writeln!(out, "  executing: {} {files}", bead(e));
    }
    for (i, r) in s.waiting_for_slot.iter().enumerate() {
        let why = s.waiting_why.get(i).map(String::as_str).unwrap_or_default();
        let entry = r.entry.clone().unwrap_or_default();
        let _ = writeln!(out, "  waiting for a slot: {}: {why}", bead(&entry));
    }
    let _ = writeln!(
        out,
        "merge queue: {} turns, {} landed, {} not landed, {} re-verification(s) on a moved base",
        s.turns, s.landed, s.not_landed, s.reverifications
    );
    let turn = |e: &QueueEntry| format!("{} (attempt {}, {})", e.bead_id, e.attempt, e.workflow_id);
    match &s.holder {
        Some(h) => {
            let _ = writeln!(out, "  holding the turn: {}", turn(h));
        }
        None => {
            let _ = writeln!(out, "  nobody holds the turn");
        }
    }
    if s.waiting.is_empty() {
        let _ = writeln!(out, "  nobody waits");
    }
    for (i, w) in s.waiting.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, turn(w));
    }
    for done in &s.recent {
        let what = if done.landed {
            format!("landed {}", chum_core::gate_text::short_commit(&done.commit))
        } else {
            format!("not landed: {}", done.problem.lines().next().unwrap_or_default())
        };
        let _ = writeln!(out, "  recent: {} {what}", done.workflow_id);
    }
    out
}

/// What the Shark of a bead in progress is doing, in a few words: "executing (attempt 1)",
/// "waiting for a person: ...", "waiting for an execution slot: ...".
pub fn run_state(status: &SharkStatus, coordinator: Option<&CoordinatorStatus>) -> String {
    match status.phase() {
        Phase::AwaitingApproval => format!(
            "waiting for a person: plan round {} is at the gate (`chum approve {}`)",
            status.plan_round, status.bead_id
        ),
        Phase::WaitingForSlot => {
            let why = coordinator.and_then(|c| {
                c.waiting_for_slot
                    .iter()
                    .position(|r| r.entry.as_ref().is_some_and(|e| e.bead_id == status.bead_id))
                    .and_then(|i| c.waiting_why.get(i))
            });
            match why {
                Some(why) if !why.is_empty() => format!("waiting for an execution slot: {why}"),
                _ => "waiting for an execution slot".to_string(),
            }
        }
        Phase::Queued => "waiting for its turn at the base branch".to_string(),
        Phase::Planning => format!("planning (round {})", status.plan_round),
        Phase::Executing | Phase::Review | Phase::Semgrep | Phase::Dod | Phase::Gate | Phase::Integrating => {
            format!(
                "{} (attempt {}/{})",
                status.phase().name(),
                status.attempt,
                status.max_attempts
            )
        }
        other => other.name(),
    }
}

/// What the Sharks of `beads` (in progress) are doing, by bead id; `Err` says why nothing could
/// be asked (the server is not reachable). A bead whose Shark does not answer has no entry.
pub async fn run_states(
    config: &ChumConfig,
    project: &str,
    beads: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let client = chum_client::connect::connect(&config.temporal, "chum-cli", LOOK_TIMEOUT, |_, _, _| {})
        .await
        .map_err(|e| format!("Temporal at {} is not reachable ({e})", config.temporal.address))?;
    Ok(run_states_with(&client, project, beads).await)
}

/// [`run_states`] on a connected client.
pub async fn run_states_with(client: &Client, project: &str, beads: &[String]) -> BTreeMap<String, String> {
    let ids: Vec<String> = beads.iter().map(|b| shark_workflow_id(project, b)).collect();
    let by_id = states_of_runs(client, project, &ids).await;
    beads
        .iter()
        .zip(&ids)
        .filter_map(|(bead, id)| by_id.get(id).map(|state| (bead.clone(), state.clone())))
        .collect()
}

/// What the open Shark runs among `workflow_ids` are doing, by workflow id (runs that ended or do
/// not answer have no entry).
pub async fn states_of_runs(client: &Client, project: &str, workflow_ids: &[String]) -> BTreeMap<String, String> {
    let coordinator = tokio::time::timeout(LOOK_TIMEOUT, chum_client::coordinator::status(client, project))
        .await
        .ok()
        .and_then(Result::ok);
    let mut states = BTreeMap::new();
    for id in workflow_ids {
        let asked = tokio::time::timeout(LOOK_TIMEOUT, chum_client::control::status(client, id)).await;
        if let Ok(Ok(status)) = asked
            && status.phase() != Phase::Done
        {
            states.insert(id.clone(), run_state(&status, coordinator.as_ref()));
        }
    }
    states
}
