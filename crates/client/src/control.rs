//! What people do to runs, as client calls: read a Shark's status, list the running ones, approve
//! or reject a plan (and confirm the run took the decision), cancel, start. Shared by the HTTP API
//! and the `chum` CLI so both behave the same.

use std::time::{Duration, Instant};

use chum_core::config::ChumConfig;
use chum_core::ids::{check_bead_id, shark_workflow_id};
use chum_core::proto::{Phase, SharkInput, SharkResult, SharkStatus};
use chum_workflows::{SharkRun, SharkWorkflow, approve_payload};
use futures::StreamExt;
use temporalio_client::errors::{
    ClientError, WorkflowInteractionError, WorkflowQueryError, WorkflowStartError, WorkflowUpdateError,
};
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowExecuteUpdateOptions, WorkflowExecutionStatus, WorkflowGetResultOptions,
    WorkflowHandle, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};

/// Why a control call did not do what was asked. The kind decides the HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub kind: ControlErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlErrorKind {
    /// No such run, bead or project.
    NotFound,
    /// The request is malformed (a bad bead id, an empty feedback).
    Invalid,
    /// The run is not in a state where this makes sense (not at the gate, already running), or
    /// the workflow itself refused the decision.
    Conflict,
    /// Temporal or a worker did not answer.
    Unavailable,
}

impl ControlError {
    pub(crate) fn new(kind: ControlErrorKind, message: impl Into<String>) -> ControlError {
        ControlError {
            kind,
            message: message.into(),
        }
    }
}

/// What a Temporal client error means here, read from its type and gRPC code (never its text).
pub(crate) enum ClientFault<'a> {
    NotFound,
    Rpc(&'a temporalio_client::tonic::Status),
    Other,
}

/// The client errors this module meets, as a [`ClientFault`].
pub(crate) trait ClientFaultOf: std::fmt::Display {
    fn fault(&self) -> ClientFault<'_>;
}

impl ClientFaultOf for WorkflowQueryError {
    fn fault(&self) -> ClientFault<'_> {
        match self {
            WorkflowQueryError::NotFound(_) => ClientFault::NotFound,
            WorkflowQueryError::Rpc(status) => ClientFault::Rpc(status),
            _ => ClientFault::Other,
        }
    }
}

impl ClientFaultOf for WorkflowInteractionError {
    fn fault(&self) -> ClientFault<'_> {
        match self {
            WorkflowInteractionError::NotFound(_) => ClientFault::NotFound,
            WorkflowInteractionError::Rpc(status) => ClientFault::Rpc(status),
            _ => ClientFault::Other,
        }
    }
}

impl ClientFaultOf for WorkflowUpdateError {
    fn fault(&self) -> ClientFault<'_> {
        match self {
            WorkflowUpdateError::NotFound(_) => ClientFault::NotFound,
            WorkflowUpdateError::Rpc(status) => ClientFault::Rpc(status),
            _ => ClientFault::Other,
        }
    }
}

impl ClientFaultOf for ClientError {
    fn fault(&self) -> ClientFault<'_> {
        match self {
            ClientError::Rpc(status) => ClientFault::Rpc(status),
            _ => ClientFault::Other,
        }
    }
}

pub(crate) fn from_client(workflow_id: &str, what: &str, err: impl ClientFaultOf) -> ControlError {
    use temporalio_client::tonic::Code;
    // Some calls report a missing run as a plain RPC status.
    let fault = match err.fault() {
        ClientFault::Rpc(status) if status.code() == Code::NotFound => ClientFault::NotFound,
        fault => fault,
    };
    match fault {
        ClientFault::NotFound => {
            ControlError::new(ControlErrorKind::NotFound, format!("there is no run {workflow_id}"))
        }
        ClientFault::Rpc(status) if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) => {
            ControlError::new(
                ControlErrorKind::Unavailable,
                format!("no worker answered the {what} of {workflow_id}; is a worker running?"),
            )
        }
        ClientFault::Rpc(status) if status.code() == Code::Unavailable => ControlError::new(
            ControlErrorKind::Unavailable,
            format!(
                "Temporal did not answer the {what} of {workflow_id}: {}",
                status.message()
            ),
        ),
        _ => ControlError::new(
            ControlErrorKind::Unavailable,
            format!("cannot {what} {workflow_id}: {err}"),
        ),
    }
}

/// A run's workflow id from a bead id (in `project`) or a workflow id (`shark-...`).
pub fn run_id_of(project: &str, target: &str) -> Result<String, ControlError> {
    if chum_core::ids::is_shark_workflow_id(target) {
        return Ok(target.to_string());
    }
    check_bead_id(target).map_err(|e| ControlError::new(ControlErrorKind::Invalid, e))?;
    Ok(shark_workflow_id(project, target))
}

pub fn shark(client: &Client, workflow_id: &str) -> WorkflowHandle<Client, SharkRun> {
    client.get_workflow_handle::<SharkRun>(workflow_id.to_string())
}

/// The run's `status` query (works for finished runs too, while a worker is polling).
pub async fn status(client: &Client, workflow_id: &str) -> Result<SharkStatus, ControlError> {
    shark(client, workflow_id)
        .query(SharkWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| from_client(workflow_id, "status query", e))
}

/// The running Sharks with their status (or why it could not be read), by workflow id.
pub async fn running(client: &Client) -> Result<Vec<(String, Result<SharkStatus, ControlError>)>, ControlError> {
    let mut ids: Vec<String> = runs(client, false, usize::MAX)
        .await?
        .into_iter()
        .map(|r| r.workflow_id)
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        let s = status(client, &id).await;
        out.push((id, s));
    }
    Ok(out)
}

/// One Shark run as Temporal's visibility lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunSummary {
    pub workflow_id: String,
    pub run_id: String,
    /// Temporal's execution status, lower case: running, completed, failed, canceled, terminated,
    /// timed_out, ...
    pub status: String,
    /// Milliseconds since the epoch (0: unknown).
    pub started_ms: i64,
    /// 0 while the run is open.
    pub closed_ms: i64,
}

fn epoch_ms(time: Option<std::time::SystemTime>) -> i64 {
    time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn status_name(status: WorkflowExecutionStatus) -> &'static str {
    match status {
        WorkflowExecutionStatus::Running => "running",
        WorkflowExecutionStatus::Completed => "completed",
        WorkflowExecutionStatus::Failed => "failed",
        WorkflowExecutionStatus::Canceled => "canceled",
        WorkflowExecutionStatus::Terminated => "terminated",
        WorkflowExecutionStatus::ContinuedAsNew => "continued_as_new",
        WorkflowExecutionStatus::TimedOut => "timed_out",
        WorkflowExecutionStatus::Paused => "paused",
        _ => "unknown",
    }
}

/// The Shark runs Temporal knows (running only, or all), newest first, at most `limit`; Monte
/// Carlo candidates are left out (they are part of their parent's run).
pub async fn runs(client: &Client, all: bool, limit: usize) -> Result<Vec<RunSummary>, ControlError> {
    let query = if all {
        "WorkflowType = 'Shark'"
    } else {
        "WorkflowType = 'Shark' AND ExecutionStatus = 'Running'"
    };
    let mut stream = client.list_workflows(query, Default::default());
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| from_client("Sharks", "list", e))?;
        // Monte Carlo candidates are Shark runs too, but they are part of their parent's run.
        if chum_core::ids::is_candidate_workflow_id(info.id()) {
            continue;
        }
        out.push(RunSummary {
            workflow_id: info.id().to_string(),
            run_id: info.run_id().to_string(),
            status: status_name(info.status()).to_string(),
            started_ms: epoch_ms(info.start_time()),
            closed_ms: epoch_ms(info.close_time()),
        });
    }
    out.sort_by(|a, b| {
        b.started_ms
            .cmp(&a.started_ms)
            .then_with(|| a.workflow_id.cmp(&b.workflow_id))
    });
    out.truncate(limit);
    Ok(out)
}

/// How a run ended, from the server alone (no worker needed): its result, or why there is none.
pub enum Closed {
    Result(Box<SharkResult>),
    /// Failed, cancelled, terminated or timed out: the workflow's own status and message.
    Without {
        status: String,
        message: String,
    },
}

/// `None` while the run is open; how it ended once it is closed (from its result and history,
/// which the server keeps: no worker has to answer a query).
pub async fn closed(client: &Client, workflow_id: &str) -> Result<Option<Closed>, ControlError> {
    let handle = shark(client, workflow_id);
    let described = handle
        .describe(Default::default())
        .await
        .map_err(|e| from_client(workflow_id, "description", e))?;
    let status = described.status();
    if status == WorkflowExecutionStatus::Running {
        return Ok(None);
    }
    match handle.get_result(WorkflowGetResultOptions::default()).await {
        Ok(result) => Ok(Some(Closed::Result(Box::new(result)))),
        Err(e) => Ok(Some(Closed::Without {
            status: status_name(status).to_string(),
            message: e.to_string(),
        })),
    }
}

/// A person's decision on the plan at the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub approved: bool,
    pub feedback: String,
    pub by: String,
}

/// What became of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionReceipt {
    /// The plan round it decided.
    pub round: u32,
    /// The run recorded it (false: sent, but the run has not processed it yet).
    pub confirmed: bool,
}

/// How long `decide` waits for the run to take a decision sent as the update.
const UPDATE_WAIT: Duration = Duration::from_secs(20);

/// Sends the decision, if the run is at the gate, and says whether the run took it. Runs started
/// after patch "approve-update" get the `approve` update: its validator refuses a malformed or
/// out-of-gate decision at once, with the reason, before anything is written to history. Older
/// runs get the signal, and the run's status is read until it shows the decision or a refusal.
pub async fn decide(client: &Client, workflow_id: &str, decision: &Decision) -> Result<DecisionReceipt, ControlError> {
    if !decision.approved && decision.feedback.trim().is_empty() {
        return Err(ControlError::new(
            ControlErrorKind::Invalid,
            "a rejection needs feedback: what the planner should change",
        ));
    }
    let before = status(client, workflow_id).await?;
    // A plan at the gate, or (with `approve_result`) the result of an attempt.
    if !matches!(before.phase(), Phase::AwaitingApproval | Phase::AwaitingResultApproval) {
        return Err(ControlError::new(
            ControlErrorKind::Conflict,
            format!(
                "{workflow_id} is not waiting for approval (phase: {}); nothing was sent",
                before.phase()
            ),
        ));
    }
    let payload = approve_payload(&serde_json::json!({
        "approved": decision.approved,
        "feedback": decision.feedback,
        "by": decision.by,
    }));
    if before.approve_update {
        let handle = shark(client, workflow_id);
        let update = handle.execute_update(SharkWorkflow::decide, payload, WorkflowExecuteUpdateOptions::default());
        return match tokio::time::timeout(UPDATE_WAIT, update).await {
            Ok(Ok(receipt)) => Ok(DecisionReceipt {
                round: receipt.round,
                confirmed: true,
            }),
            Ok(Err(WorkflowUpdateError::Failed(failure))) => Err(ControlError::new(
                ControlErrorKind::Conflict,
                format!("the run refused the decision: {}", failure.message),
            )),
            Ok(Err(e)) => Err(from_client(workflow_id, "approve update", e)),
            // Sent, but no worker took it yet: it is applied when one does (see `chum status`).
            Err(_) => Ok(DecisionReceipt {
                round: gate_round(&before),
                confirmed: false,
            }),
        };
    }
    shark(client, workflow_id)
        .signal(SharkWorkflow::approve, payload, WorkflowSignalOptions::default())
        .await
        .map_err(|e| from_client(workflow_id, "signal", e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = status(client, workflow_id).await?;
        if now.decisions.len() > before.decisions.len() {
            return Ok(DecisionReceipt {
                round: gate_round(&before),
                confirmed: true,
            });
        }
        if let Some(refused) = now.rejected_signals.get(before.rejected_signals.len()) {
            return Err(ControlError::new(
                ControlErrorKind::Conflict,
                format!("the run refused the decision: {}", refused.reason),
            ));
        }
        if Instant::now() > deadline {
            return Ok(DecisionReceipt {
                round: gate_round(&before),
                confirmed: false,
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// What a decision is about: the plan's round, or the attempt whose result is at the gate.
fn gate_round(status: &SharkStatus) -> u32 {
    if status.phase() == Phase::AwaitingResultApproval {
        status.attempt
    } else {
        status.plan_round
    }
}

/// Tells a Shark that something happened to its pull request on the forge (a webhook came). The
/// run reads what happened from the forge itself; this only makes it look now.
pub async fn forge_event(client: &Client, workflow_id: &str) -> Result<(), ControlError> {
    let payload = chum_workflows::json_payload(&serde_json::json!({}));
    shark(client, workflow_id)
        .signal(SharkWorkflow::forge_event, payload, WorkflowSignalOptions::default())
        .await
        .map_err(|e| from_client(workflow_id, "signal", e))
}

/// Asks the run to stop: the running agent is killed, the bead reopened with a note.
pub async fn cancel(client: &Client, workflow_id: &str, reason: &str) -> Result<(), ControlError> {
    // Fails with NotFound for a run that does not exist.
    status(client, workflow_id).await?;
    shark(client, workflow_id)
        .cancel(WorkflowCancelOptions::builder().reason(reason.to_string()).build())
        .await
        .map_err(|e| from_client(workflow_id, "cancel", e))
}

/// Starts the Shark of a bead; an already-running one is a conflict.
pub async fn start(client: &Client, config: &ChumConfig, project: &str, bead: &str) -> Result<String, ControlError> {
    check_bead_id(bead).map_err(|e| ControlError::new(ControlErrorKind::Invalid, e))?;
    config
        .project(project)
        .map_err(|e| ControlError::new(ControlErrorKind::NotFound, e.to_string()))?;
    let id = shark_workflow_id(project, bead);
    let input = SharkInput {
        project: project.to_string(),
        bead_id: bead.to_string(),
        limits: Some(config.limits.to_proto()),
        candidate: None,
    };
    let options = WorkflowStartOptions::new(config.temporal.task_queue.clone(), id.clone()).build();
    match client.start_workflow(SharkWorkflow::run, input, options).await {
        Ok(_) => Ok(id),
        Err(WorkflowStartError::AlreadyStarted { .. }) => Err(ControlError::new(
            ControlErrorKind::Conflict,
            format!("a Shark for bead {bead} is already running ({id})"),
        )),
        Err(e) => Err(ControlError::new(
            ControlErrorKind::Unavailable,
            format!("could not start {id}: {e}"),
        )),
    }
}
