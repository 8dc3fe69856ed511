//! The Coordinator: one long-lived workflow per project, `merge-queue-<project>`, that hands out
//! what the project's Sharks share, in the order they ask (started by the first Shark that needs
//! it: by its slot ask's update-with-start, or, for the merge queue's `join` and runs from before
//! patch "slot-by-update", as a child that outlives it). Its id and Temporal type keep the names it was first
//! released under (`merge-queue-<project>`, `MergeQueue`), when it kept only the merge queue: a
//! rename would break every Shark in flight that started or signals it.
//!
//! ```text
//! acquire (signal: an approved Shark, its plan's files)  -> waits for an execution slot
//! acquire_now (update: the same ask, from the Shark's local activity) -> granted at once if it
//!   fits, else it waits in line like `acquire`'s
//! release (signal: a Shark's run ended)                   -> its slot and leases are free
//! join    (signal: a Shark whose gates passed)            -> waits in the merge queue
//! done    (signal: the Shark holding the turn)            -> the turn is free
//! loop:
//!   grant slots in order: a request gets one when fewer than `concurrency` Sharks execute and
//!     no executing Shark leases a file its plan overlaps (a blocked one does not hold back the
//!     next): signal `slot_granted` to its Shark
//!   grant the turn at the base branch to the first in line: signal `merge_turn`
//!   wait for the next signal; every minute check that the holders are still open
//!     (a Shark that ended without giving back its slot or turn loses them)
//!   after `EVENTS_PER_RUN` wake-ups: continue as new with the lists (the history stays small)
//! ```
//! Under its turn the Shark itself brings its commit up to the base's tip, runs Semgrep and the
//! definition of done again on exactly that tree when the base had moved, and fast-forwards the
//! base with a compare-and-swap (see `shark::land`). The coordinator changes nothing in the
//! repository and decides nothing about the work: a forged signal can only change the order (or
//! hand out a slot early), never what lands.

use std::error::Error;
use std::time::Duration;

use chum_core::activity_contract::CoordinatorActivities;
use chum_core::coordination::{grants, same_run, why_waiting};
use chum_core::proto::{
    CoordinatorInput, CoordinatorStatus, QueueEntry, RunOpenRequest, SlotAnswer, SlotRelease, SlotRequest, TurnDone,
};
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::workflows::{select, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ContinueAsNewOptions, SignalWorkflowOptions, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::shark::SharkWorkflow;

/// Wake-ups before the coordinator continues as new.
const EVENTS_PER_RUN: u32 = 200;
/// How often the coordinator checks that the Sharks holding slots or the turn are still open.
const HOLDER_CHECK: Duration = Duration::from_secs(60);
/// Turns given back that the status keeps.
const RECENT: usize = 20;

#[workflow]
#[derive(Default)]
pub struct CoordinatorWorkflow {
    status: CoordinatorStatus,
    /// A signal came in since the loop last looked.
    changed: bool,
    /// The run's body has taken over what the previous run handed over: before that (an update
    /// that comes with the start or the continue-as-new), the lists are not yet all here, so an
    /// `acquire_now` only gets in line and the loop grants it.
    ready: bool,
}

#[workflow_methods]
impl CoordinatorWorkflow {
    #[run(name = "MergeQueue")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: CoordinatorInput) -> WorkflowResult<()> {
        // A signal delivered with the start (the first Shark's `acquire` or `join` often comes in
        // the same workflow task) was handled before this body ran: runs after this marker keep
        // it, after what the previous run handed over. Before it, such a request was lost and its
        // Shark waited for good.
        let keep_early = ctx.patched("coordinator-early-signals");
        ctx.state_mut(|s| {
            let early_slots = std::mem::take(&mut s.status.waiting_for_slot);
            let early_joins = std::mem::take(&mut s.status.waiting);
            s.status.project = input.project.clone();
            s.status.executing = input.executing.clone();
            s.status.waiting_for_slot = input.waiting_for_slot.clone();
            s.status.waiting = input.waiting.clone();
            if keep_early {
                keep_early_signals(&mut s.status, early_slots, early_joins);
            }
            s.status.holder = input.holder.clone();
            s.status.turns = input.turns_before;
            s.status.landed = input.landed_before;
            s.status.not_landed = input.not_landed_before;
            s.status.reverifications = input.reverifications_before;
            s.ready = true;
        });
        for _ in 0..EVENTS_PER_RUN {
            grant_slots(ctx).await;
            grant_turn(ctx).await;
            let holders = ctx.state(|s| !s.status.executing.is_empty() || s.status.holder.is_some());
            let mut timer = std::pin::pin!(ctx.timer(HOLDER_CHECK));
            let signalled = select! {
                woke = ctx.wait_condition(|s| s.changed) => match woke {
                    Ok(()) => true,
                    // Cancelled by a person: the coordinator ends; the next Shark that needs it
                    // starts a new one.
                    Err(_) => return Ok(()),
                },
                _ = timer => false,
            };
            if signalled {
                timer.cancel();
            } else if holders {
                check_holders(ctx).await;
            }
            ctx.state_mut(|s| s.changed = false);
        }
        let next = ctx.state(|s| CoordinatorInput {
            project: input.project.clone(),
            executing: s.status.executing.clone(),
            waiting_for_slot: s.status.waiting_for_slot.clone(),
            waiting: s.status.waiting.clone(),
            holder: s.status.holder.clone(),
            turns_before: s.status.turns,
            landed_before: s.status.landed,
            not_landed_before: s.status.not_landed,
            reverifications_before: s.status.reverifications,
        });
        ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
        Ok(())
    }

    /// An approved Shark asks for an execution slot and leases on its plan's files (asking twice
    /// keeps its first place).
    #[signal(name = "acquire")]
    pub fn acquire(&mut self, _ctx: &mut SyncWorkflowContext<Self>, request: SlotRequest) {
        self.take_ask(request);
    }

    /// An approved Shark asks for a slot and hears at once whether it has it (runs after patch
    /// "slot-by-update" ask this way, through a local activity, which saves them the signal's
    /// round trips; older runs signal `acquire`). In line behind others, it gets `slot_granted`
    /// later like a signalled ask. Asking twice keeps the first place and answers the same.
    #[update(name = "acquire_now")]
    pub fn acquire_now(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        request: SlotRequest,
    ) -> Result<SlotAnswer, Box<dyn Error + Send + Sync>> {
        let entry = request.entry.clone().unwrap_or_default();
        self.take_ask(request);
        let granted = self.ready && grant_if_it_fits(&mut self.status, &entry);
        Ok(SlotAnswer {
            granted,
            granted_ms: crate::epoch_ms(ctx.workflow_time()),
        })
    }

    /// A Shark's run ended: its slot and leases are free, and it leaves any line it was in.
    #[signal(name = "release")]
    pub fn release(&mut self, _ctx: &mut SyncWorkflowContext<Self>, release: SlotRelease) {
        let it = |e: &QueueEntry| e.workflow_id == release.workflow_id && e.run_id == release.run_id;
        self.status.executing.retain(|e| !it(e));
        self.status
            .waiting_for_slot
            .retain(|r| !r.entry.as_ref().is_some_and(it));
        self.status.waiting.retain(|e| !it(e));
        self.changed = true;
    }

    /// A Shark whose gates passed waits in the merge queue (joining twice keeps its first place).
    #[signal(name = "join")]
    pub fn join(&mut self, _ctx: &mut SyncWorkflowContext<Self>, entry: QueueEntry) {
        join_queue(&mut self.status, entry);
        self.changed = true;
    }

    /// The Shark holding the turn gives it back, with what became of it. Anyone else's `done` is
    /// ignored (it cannot take a turn away).
    #[signal(name = "done")]
    pub fn done(&mut self, _ctx: &mut SyncWorkflowContext<Self>, done: TurnDone) {
        let holds = self
            .status
            .holder
            .as_ref()
            .is_some_and(|h| h.workflow_id == done.workflow_id && h.run_id == done.run_id);
        if !holds {
            return;
        }
        self.status.holder = None;
        if done.landed {
            self.status.landed += 1;
        } else {
            self.status.not_landed += 1;
        }
        self.status.reverifications += u64::from(done.reverifications);
        push_recent(&mut self.status, done);
        self.changed = true;
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> CoordinatorStatus {
        self.status.clone()
    }
}

impl CoordinatorWorkflow {
    /// A slot request joins the line (asking twice keeps the first place).
    fn take_ask(&mut self, request: SlotRequest) {
        let concurrency = request.concurrency;
        if ask_for_slot(&mut self.status, request) {
            self.status.concurrency = concurrency;
        }
        self.changed = true;
    }
}

/// Adds the requests signalled before the run's body started to what the previous run handed
/// over, each once, in the order they came.
fn keep_early_signals(status: &mut CoordinatorStatus, slots: Vec<SlotRequest>, joins: Vec<QueueEntry>) {
    for request in slots {
        ask_for_slot(status, request);
    }
    for entry in joins {
        join_queue(status, entry);
    }
}

/// Puts a request in line for a slot unless its run already holds one or waits for one (asking
/// twice keeps the first place). Whether it was added.
fn ask_for_slot(status: &mut CoordinatorStatus, request: SlotRequest) -> bool {
    let entry = request.entry.clone().unwrap_or_default();
    let known = status.executing.iter().any(|e| same_run(e, &entry))
        || status
            .waiting_for_slot
            .iter()
            .any(|r| r.entry.as_ref().is_some_and(|e| same_run(e, &entry)));
    if !known {
        status.waiting_for_slot.push(request);
    }
    !known
}

/// Gives `entry` its slot now if it is in line and fits (the same rule as the loop's
/// `grant_slots`, which hands out the rest); whether it holds a slot.
fn grant_if_it_fits(status: &mut CoordinatorStatus, entry: &QueueEntry) -> bool {
    if status.executing.iter().any(|e| same_run(e, entry)) {
        return true;
    }
    let Some(at) = status
        .waiting_for_slot
        .iter()
        .position(|r| r.entry.as_ref().is_some_and(|e| same_run(e, entry)))
    else {
        return false;
    };
    if !grants(&status.waiting_for_slot, &status.executing, status.concurrency).contains(&at) {
        return false;
    }
    let request = status.waiting_for_slot.remove(at);
    status.executing.push(request.entry.unwrap_or_default());
    true
}

/// Puts a Shark in the merge queue unless it is in line or holds the turn already.
fn join_queue(status: &mut CoordinatorStatus, entry: QueueEntry) {
    let queued = status.waiting.iter().any(|e| same_run(e, &entry))
        || status.holder.as_ref().is_some_and(|h| same_run(h, &entry));
    if !queued {
        status.waiting.push(entry);
    }
}

fn push_recent(status: &mut CoordinatorStatus, done: TurnDone) {
    if status.recent.len() >= RECENT {
        status.recent.remove(0);
    }
    status.recent.push(done);
}

/// Hands out the slots that fit now, in order, and says why the others wait.
async fn grant_slots(ctx: &WorkflowContext<CoordinatorWorkflow>) {
    let granted: Vec<SlotRequest> = ctx.state_mut(|s| {
        let concurrency = s.status.concurrency;
        let positions = grants(&s.status.waiting_for_slot, &s.status.executing, concurrency);
        let mut granted = Vec::new();
        for i in positions.into_iter().rev() {
            granted.push(s.status.waiting_for_slot.remove(i));
        }
        granted.reverse();
        for request in &granted {
            s.status.executing.push(request.entry.clone().unwrap_or_default());
        }
        s.status.waiting_why = s
            .status
            .waiting_for_slot
            .iter()
            .map(|r| why_waiting(r, &s.status.executing, concurrency).unwrap_or_default())
            .collect();
        granted
    });
    for request in granted {
        let entry = request.entry.unwrap_or_default();
        let told = ctx
            .external_workflow(entry.workflow_id.clone(), Some(entry.run_id.clone()))
            .signal(
                SharkWorkflow::slot_granted,
                RawValue::default(),
                SignalWorkflowOptions::default(),
            )
            .await;
        if told.is_err() {
            // The Shark is gone: its slot goes to the next.
            ctx.state_mut(|s| s.status.executing.retain(|e| !same_run(e, &entry)));
        }
    }
}

/// Gives the turn at the base branch to the first in line, if nobody holds it.
async fn grant_turn(ctx: &WorkflowContext<CoordinatorWorkflow>) {
    loop {
        let next = ctx.state_mut(|s| {
            if s.status.holder.is_some() || s.status.waiting.is_empty() {
                return None;
            }
            let next = s.status.waiting.remove(0);
            s.status.holder = Some(next.clone());
            s.status.turns += 1;
            Some(next)
        });
        let Some(next) = next else { return };
        let told = ctx
            .external_workflow(next.workflow_id.clone(), Some(next.run_id.clone()))
            .signal(
                SharkWorkflow::merge_turn,
                RawValue::default(),
                SignalWorkflowOptions::default(),
            )
            .await;
        if told.is_ok() {
            return;
        }
        // The Shark is gone: the turn goes to the next in line.
        ctx.state_mut(|s| s.status.holder = None);
    }
}

/// Takes back the slots and the turn of Sharks whose runs have ended.
async fn check_holders(ctx: &WorkflowContext<CoordinatorWorkflow>) {
    let holders: Vec<QueueEntry> = ctx.state(|s| {
        s.status
            .executing
            .iter()
            .chain(s.status.holder.as_ref())
            .cloned()
            .collect()
    });
    for holder in holders {
        let request = RunOpenRequest {
            workflow_id: holder.workflow_id.clone(),
            run_id: holder.run_id.clone(),
        };
        let open = ctx
            .execute_activity(CoordinatorActivities::run_open, request, check_options())
            .await
            .map(|r| r.open)
            // Not knowing is not closed: ask again next time.
            .unwrap_or(true);
        if open {
            continue;
        }
        ctx.state_mut(|s| {
            s.status.executing.retain(|e| !same_run(e, &holder));
            if s.status.holder.as_ref().is_some_and(|h| same_run(h, &holder)) {
                s.status.holder = None;
                s.status.not_landed += 1;
                push_recent(
                    &mut s.status,
                    TurnDone {
                        workflow_id: holder.workflow_id.clone(),
                        run_id: holder.run_id.clone(),
                        problem: "the run ended without giving the turn back".into(),
                        ..TurnDone::default()
                    },
                );
            }
        });
    }
}

fn check_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            temporalio_common::RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_attempts(3)
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use chum_core::proto::LeaseMode;
    use chum_core::workflow_contract::{ACQUIRE_NOW_UPDATE, ACQUIRE_SIGNAL, COORDINATOR_WORKFLOW_TYPE, STATUS_QUERY};
    use temporalio_common::{QueryDefinition, SignalDefinition, UpdateDefinition, WorkflowDefinition};

    use super::*;

    fn ask(bead: &str, files: &[&str]) -> SlotRequest {
        SlotRequest {
            entry: Some(QueueEntry {
                workflow_id: format!("shark-demo-{bead}"),
                run_id: "r1".into(),
                bead_id: bead.into(),
                files: files.iter().map(|f| f.to_string()).collect(),
                ..QueueEntry::default()
            }),
            concurrency: 2,
            leases: LeaseMode::Strict as i32,
        }
    }

    /// What `acquire_now` does once the run's body is ready: the ask joins the line, then is
    /// granted if it fits.
    fn asked(coordinator: &mut CoordinatorWorkflow, request: SlotRequest) -> bool {
        let entry = request.entry.clone().unwrap_or_default();
        coordinator.take_ask(request);
        grant_if_it_fits(&mut coordinator.status, &entry)
    }

    /// The activities crate reaches the Coordinator by these names (it cannot see this crate).
    #[test]
    fn the_coordinators_names_are_the_contracts() {
        assert_eq!(CoordinatorWorkflow::run.name(), COORDINATOR_WORKFLOW_TYPE);
        assert_eq!(CoordinatorWorkflow::acquire_now.name(), ACQUIRE_NOW_UPDATE);
        assert_eq!(CoordinatorWorkflow::acquire.name(), ACQUIRE_SIGNAL);
        assert_eq!(CoordinatorWorkflow::status.name(), STATUS_QUERY);
    }

    #[test]
    fn an_ask_that_fits_is_granted_at_once_and_the_rest_wait_in_line() {
        let mut coordinator = CoordinatorWorkflow::default();
        assert!(asked(&mut coordinator, ask("a", &["src/a.rs"])));
        // Its plan overlaps a's lease: in line, answered "not yet".
        assert!(!asked(&mut coordinator, ask("b", &["src/a.rs"])));
        assert!(asked(&mut coordinator, ask("c", &["src/c.rs"])));
        // Two execute (the concurrency): a third waits even on free files.
        assert!(!asked(&mut coordinator, ask("d", &["src/d.rs"])));
        let status = &coordinator.status;
        let executing: Vec<&str> = status.executing.iter().map(|e| e.bead_id.as_str()).collect();
        assert_eq!(executing, ["a", "c"]);
        let waiting: Vec<&str> = status
            .waiting_for_slot
            .iter()
            .filter_map(|r| r.entry.as_ref())
            .map(|e| e.bead_id.as_str())
            .collect();
        assert_eq!(waiting, ["b", "d"]);
    }

    #[test]
    fn asking_again_answers_the_same_and_keeps_the_place() {
        let mut coordinator = CoordinatorWorkflow::default();
        assert!(asked(&mut coordinator, ask("a", &["src/a.rs"])));
        assert!(asked(&mut coordinator, ask("a", &["src/a.rs"])));
        assert!(!asked(&mut coordinator, ask("b", &["src/a.rs"])));
        assert!(!asked(&mut coordinator, ask("b", &["src/a.rs"])));
        assert_eq!(coordinator.status.executing.len(), 1);
        assert_eq!(coordinator.status.waiting_for_slot.len(), 1);
    }
}
