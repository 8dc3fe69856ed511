//! WAIT FOR A SLOT (runs started after patch "execution-slots"): an approved plan executes only
//! when one of the project's `concurrency` execution slots is free and no executing Shark leases
//! a file it plans to touch; a Shark waiting for a person holds no slot. The slot and the leases
//! are the run's until it ends, whatever its outcome; the project's Coordinator hands them out and
//! takes back those of a run that ended without giving them back.
//!
//! Runs after patch "slot-by-update" ask through a local activity that reaches the Coordinator
//! with the Temporal client (its `acquire_now` update, started with it if needed): a free slot
//! then costs the Shark no workflow task of its own, where the child start and the signals each
//! way cost four. The slot is still given back by a signal sent with the run's last workflow
//! task: a local activity would free it before that task is done, and a worker that died then
//! would leave the run's end (its last steps run again on the next worker) after the next
//! run's start.

use chum_core::activity_contract::CoordinatorActivities;
use chum_core::ids::coordinator_workflow_id;
use chum_core::proto::{CoordinatorInput, Phase, Plan, QueueEntry, SlotAsk, SlotRelease, SlotRequest};
use temporalio_sdk::{SignalWorkflowOptions, WorkflowCancellationToken};

use super::options::{coordinator_options, slot_local_options};
use super::{Setup, Shark};
use crate::coordinator::CoordinatorWorkflow;

impl Shark<'_> {
    /// Starts the project's Coordinator if it is not running (a child that outlives this run).
    pub(super) async fn ensure_coordinator(&self) -> String {
        let id = coordinator_workflow_id(&self.run.project);
        let input = CoordinatorInput {
            project: self.run.project.clone(),
            ..CoordinatorInput::default()
        };
        // Already running (started by another Shark): that is the one this run talks to.
        let _ = self
            .ctx
            .start_child_workflow(CoordinatorWorkflow::run, input, coordinator_options(&id))
            .await;
        id
    }

    /// Waits for an execution slot and the leases on the plan's files. `Err` when the run was
    /// cancelled while it waited, or the coordinator could not be reached (the reason).
    pub(super) async fn acquire_slot(&self, setup: &Setup, plan: &Plan) -> Result<(), SlotProblem> {
        self.enter_phase(Phase::WaitingForSlot, 0);
        let request = SlotRequest {
            entry: Some(QueueEntry {
                workflow_id: self.run.workflow_id.clone(),
                run_id: self.run.run_id.clone(),
                bead_id: self.run.bead_id.clone(),
                joined_ms: self.now_ms(),
                files: plan.files.clone(),
                ..QueueEntry::default()
            }),
            concurrency: setup.concurrency,
            leases: setup.leases as i32,
        };
        self.ctx.state_mut(|s| s.slot_asked = true);
        if self.ctx.patched(SLOT_BY_UPDATE) {
            let ask = SlotAsk {
                project: self.run.project.clone(),
                request: Some(request),
            };
            let answer = self
                .ctx
                .execute_local_activity(CoordinatorActivities::ask_for_slot, ask, slot_local_options())
                .await
                .map_err(|e| {
                    SlotProblem::Unreachable(format!(
                        "the coordinator {} could not be asked for a slot: {e}",
                        coordinator_workflow_id(&self.run.project)
                    ))
                })?;
            if answer.granted {
                self.ctx.state_mut(|s| {
                    s.slot_granted = true;
                    s.clock_floor_ms = s.clock_floor_ms.max(answer.granted_ms);
                });
            }
        } else {
            self.signal_for_slot(request).await?;
        }
        self.ctx
            .wait_condition(|s| s.slot_granted)
            .await
            .map_err(|_| SlotProblem::Cancelled)
    }

    /// The ask as runs before patch "slot-by-update" made it: the Coordinator started as a
    /// child, then signalled.
    async fn signal_for_slot(&self, request: SlotRequest) -> Result<(), SlotProblem> {
        let coordinator = self.ensure_coordinator().await;
        self.ctx
            .external_workflow(coordinator.clone(), None)
            .signal(CoordinatorWorkflow::acquire, request, SignalWorkflowOptions::default())
            .await
            .map_err(|e| SlotProblem::Unreachable(format!("the coordinator {coordinator} could not be reached: {e}")))
    }

    /// Gives back the slot and the leases while the run waits for people (its pull request); a
    /// later attempt asks again.
    pub(super) async fn give_slot_back(&self) {
        self.release_slot().await;
        self.ctx.state_mut(|s| {
            s.slot_asked = false;
            s.slot_granted = false;
        });
    }

    /// Gives back the slot and the leases (the run has ended). Sent whatever the run's own
    /// cancellation; a coordinator that misses it takes them back when it finds the run closed.
    pub(super) async fn release_slot(&self) {
        if !self.ctx.state(|s| s.slot_asked) {
            return;
        }
        let release = SlotRelease {
            workflow_id: self.run.workflow_id.clone(),
            run_id: self.run.run_id.clone(),
        };
        let options = SignalWorkflowOptions::builder()
            .cancellation_token(WorkflowCancellationToken::new())
            .build();
        let _ = self
            .ctx
            .external_workflow(coordinator_workflow_id(&self.run.project), None)
            .signal(CoordinatorWorkflow::release, release, options)
            .await;
    }
}

/// The patch marker of the slot asked and given back through local activities.
const SLOT_BY_UPDATE: &str = "slot-by-update";

/// Why a run did not get its slot.
pub(super) enum SlotProblem {
    Cancelled,
    Unreachable(String),
}
