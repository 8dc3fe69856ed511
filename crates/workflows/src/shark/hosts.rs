//! Several workers on several hosts (`[worker] several_hosts`; runs started after patch
//! "several-hosts"). An attempt's worktree, the agents and gates that run in it, its commit and
//! its push all need one host's disk, so each attempt first claims a host: `claim_host` goes to
//! the shared task queue, and whichever worker picks it up answers with the task queue only it
//! polls (Temporal's worker-specific task queue). Every host-bound step of the attempt goes there,
//! waiting at most `host_wait` to be picked up. A host that stops answering (killed, cut off) is
//! noticed that way: a step it was running misses its heartbeats and is retried on its queue,
//! where nobody picks it up. The attempt then starts over on another host, from the remote; if the
//! lost host had already landed the work, the new host finds it on the remote by its `Chum-Run:`
//! trailer and the run closes with that commit instead of making a second one.
//!
//! Not host-bound: loading and updating the bead (the shared backlog), planning (a throwaway
//! checkout any host has), the pull request's state (the forge), the run record (the store).

use std::time::Duration;

use chum_core::activity_contract::SharkActivities;
use chum_core::ids::bead_branch;
use chum_core::proto::{HostClaimRequest, IntegrationReport};
use temporalio_common::ActivityDefinition;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_common::protos::temporal::api::enums::v1::TimeoutType;
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
use temporalio_sdk::{ActivityExecutionError, ActivityOptions};

use super::ending::failure_chain;
use super::options::quick_options;
use super::{Setup, Shark};

/// The patch marker of runs whose attempts claim a host.
pub(super) const SEVERAL_HOSTS: &str = "several-hosts";

/// How many times one run moves to another host before a lost host fails it.
const MAX_HOST_MOVES: u32 = 3;

/// Where the attempt's host-bound steps go: the host's own task queue, and how long a step may
/// wait there to be picked up.
#[derive(Debug, Clone)]
pub(super) struct HostBinding {
    pub host: String,
    pub task_queue: String,
    pub wait: Duration,
}

/// What claiming a host found.
pub(super) enum HostPin {
    /// The attempt runs on the claimed host (or, with one host, wherever it always did).
    Pinned,
    /// The lost host had landed the run's work before it stopped answering: this is it.
    Landed(IntegrationReport),
}

impl Shark<'_> {
    /// HOST: claims the host this attempt runs on (several hosts only). `lost`: the host the
    /// previous try of the attempt lost, whose landed work is looked for first.
    pub(super) async fn pin_host(
        &self,
        setup: &Setup,
        lost: Option<String>,
    ) -> Result<HostPin, ActivityExecutionError> {
        if !setup.several_hosts || !self.ctx.patched(SEVERAL_HOSTS) {
            return Ok(HostPin::Pinned);
        }
        let lost = lost.unwrap_or_default();
        let request = HostClaimRequest {
            run: Some(self.run.clone()),
            lost_host: lost.clone(),
        };
        let claim = self
            .ctx
            .execute_activity(SharkActivities::claim_host, request, quick_options())
            .await?;
        self.ctx.state_mut(|s| {
            s.host = Some(HostBinding {
                host: claim.host.clone(),
                task_queue: claim.task_queue.clone(),
                wait: setup.host_wait,
            });
            s.status.host = claim.host.clone();
            if !lost.is_empty() {
                s.status.hosts_lost.push(lost);
            }
        });
        if claim.landed_commit.is_empty() {
            return Ok(HostPin::Pinned);
        }
        self.ctx.state_mut(|s| s.status.commit = claim.landed_commit.clone());
        Ok(HostPin::Landed(IntegrationReport {
            branch: bead_branch(&self.run.bead_id),
            commit: claim.landed_commit,
            merged: true,
            base_branch: claim.base_branch,
            already_committed: true,
            problem: String::new(),
        }))
    }

    /// A candidate works on its parent's host (the parent integrates the winner's worktree there).
    pub(super) fn bind_host(&self, binding: Option<HostBinding>) {
        if let Some(binding) = binding {
            self.ctx.state_mut(|s| {
                s.status.host = binding.host.clone();
                s.host = Some(binding);
            });
        }
    }

    /// The attempt's host, if it has one.
    pub(super) fn host(&self) -> Option<HostBinding> {
        self.ctx.state(|s| s.host.clone())
    }

    /// `options` for a host-bound step: sent to the attempt's host, when it has one.
    pub(super) fn on_host(&self, mut options: ActivityOptions) -> ActivityOptions {
        if let Some(binding) = self.host() {
            options.task_queue = Some(binding.task_queue);
            options.schedule_to_start_timeout = Some(binding.wait);
        }
        options
    }

    /// Quick bookkeeping that is host-bound (git in the worktree, Semgrep on it): on the
    /// attempt's host as a regular activity when it has one (a local activity runs wherever the
    /// workflow task does), else as [`Shark::quick`] always did.
    pub(super) async fn quick_on_host<AD>(
        &self,
        activity: AD,
        input: impl Into<AD::Input>,
    ) -> Result<AD::Output, ActivityExecutionError>
    where
        AD: ActivityDefinition,
        AD::Output: TemporalDeserializable,
    {
        if self.host().is_some() {
            self.ctx
                .execute_activity(activity, input, self.on_host(quick_options()))
                .await
        } else {
            self.quick(activity, input).await
        }
    }

    /// Whether `err` means the attempt's host stopped answering and the attempt may move to
    /// another (at most [`MAX_HOST_MOVES`] times a run): the host it lost, to look on the remote
    /// for what it had landed.
    pub(super) fn moves_host(&self, err: &ActivityExecutionError, moves: &mut u32) -> Option<String> {
        let binding = self.host()?;
        if !host_lost(err) || *moves >= MAX_HOST_MOVES {
            return None;
        }
        *moves += 1;
        self.ctx.state_mut(|s| s.host = None);
        Some(binding.host)
    }
}

/// A step waited on its host's queue longer than `host_wait` (a schedule-to-start timeout, which
/// only host-bound steps have): nobody polls that queue any more.
pub(super) fn host_lost(err: &ActivityExecutionError) -> bool {
    failure_chain(err).any(|f| {
        matches!(&f.failure_info, Some(FailureInfo::TimeoutFailureInfo(info))
            if info.timeout_type == TimeoutType::ScheduleToStart as i32)
    })
}
