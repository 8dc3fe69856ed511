//! PROPOSE as a pull request (the `pr` policy, runs started after patch "pull-requests"): a person
//! merges the work on the project's forge, not CHUM.
//!
//! ```text
//! commit the gated tree on chum/<bead> (held)
//! push it (leased on what this run pushed last) and open or update the pull request
//! with `approve_result`: the result gate waits here, the result on the pull request
//!   (approved -> the body shows it; rejected -> the next attempt, which updates it)
//! give the execution slot back: nothing runs while people look
//! until the pull request is decided or `wait` runs out, asking the forge (a webhook wakes early):
//!   merged            -> the bead closes with the merge commit
//!   closed unmerged   -> the bead is blocked with who closed it
//!   changes requested -> the next attempt, the review as its findings (a slot first)
//! ```

use std::time::Duration;

use chum_core::activity_contract::SharkActivities;
use chum_core::gate_text::short_commit;
use chum_core::ids::WAITING_MEMO;
use chum_core::proto::{
    ExecuteReport, GateName, GateResult, IntegrationReport, Phase, PullRequestCheck, PullRequestReport,
    PullRequestRequest, PullRequestState,
};
use chum_core::pull_request::{self, BodyParts, next_poll};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{CancellableFuture, MemoValue, TimerResult};

use super::land::Landing;
use super::options::forge_options;
use super::result_gate::ResultDecision;
use super::slots::SlotProblem;
use super::{Approved, Setup, Shark};

/// How a run waits for its pull request (the project's `forge.poll` and `forge.wait`), and
/// whether the result gate waits on it.
#[derive(Clone, Copy)]
pub(super) struct Waiting {
    pub poll: Duration,
    pub wait: Duration,
    pub result_gate: bool,
}

impl Shark<'_> {
    pub(super) async fn propose_pull_request(
        &self,
        setup: &Setup,
        approved: &Approved,
        report: &ExecuteReport,
        attempt: u32,
        candidate: u32,
        waiting: &Waiting,
    ) -> Landing {
        let result_gate = waiting.result_gate;
        let integration = match self.commit_held(setup, approved, report, attempt, candidate).await {
            Ok(integration) => integration,
            Err(ended) => return ended,
        };
        let opened = match self.publish(setup, approved, &integration, attempt, result_gate).await {
            Ok(opened) => opened,
            Err(ended) => return ended,
        };

        // RESULT GATE on the pull request (runs started after patch "result-on-pull-request"):
        // the result is there for people to see while CHUM's gate waits for their decision.
        if result_gate {
            let mut failed = integration.clone();
            match self.wait_for_result(setup, approved, report, attempt).await {
                ResultDecision::Approved => {
                    // The body now shows the decision instead of how to make it.
                    if let Err(ended) = self.publish(setup, approved, &integration, attempt, false).await {
                        return ended;
                    }
                }
                ResultDecision::Rejected(why) => return Landing::Redo { feedback: why },
                ResultDecision::TimedOut(reason) => {
                    failed.problem = format!("{reason}; pull request #{} stays open at {}", opened.number, opened.url);
                    return Landing::Failed(failed);
                }
                ResultDecision::Cancelled => return Landing::Cancelled,
                ResultDecision::Unreachable(why) => {
                    failed.problem = why;
                    return Landing::Failed(failed);
                }
            }
        }

        // People take their time: the slot goes to someone who works meanwhile, and the memo
        // tells the dispatcher this run takes none of the project's capacity.
        self.give_slot_back().await;
        self.mark_waiting(true);
        self.enter_phase(Phase::AwaitingPullRequest, attempt);
        let started = self.now_ms();
        // The backoff, and how long the forge asked to be left alone (its rate limit) once.
        let mut backoff = None;
        let mut asked = Duration::ZERO;
        loop {
            let elapsed = Duration::from_millis((self.now_ms() - started).max(0) as u64);
            let Some(left) = waiting.wait.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
                let mut failed = integration;
                failed.problem = format!(
                    "nobody merged or closed pull request #{} within {}s; it stays open at {}",
                    opened.number,
                    waiting.wait.as_secs(),
                    opened.url
                );
                self.record_pull_request(attempt, false, failed.problem.clone());
                return Landing::Failed(failed);
            };
            let next = next_poll(backoff, waiting.poll, asked).min(left);
            backoff = Some(next_poll(backoff, waiting.poll, Duration::ZERO));
            match self.sleep_or_forge_event(next).await {
                Ok(()) => {}
                Err(()) => return Landing::Cancelled,
            }
            // A webhook during the check below wakes the next wait at once.
            self.ctx.state_mut(|s| s.forge_event = false);
            let check = PullRequestCheck {
                run: Some(self.run.clone()),
                number: opened.number,
                head: opened.head.clone(),
            };
            let status = match self
                .ctx
                .execute_activity(SharkActivities::check_pull_request, check, forge_options())
                .await
            {
                Ok(status) => status,
                Err(err) => return Landing::Error(Box::new(err)),
            };
            match status.state() {
                PullRequestState::Merged => {
                    self.record_pull_request(
                        attempt,
                        true,
                        format!(
                            "#{} merged by {} as {}",
                            opened.number,
                            status.actor,
                            short_commit(&status.merge_commit)
                        ),
                    );
                    self.ctx.state_mut(|s| s.status.commit = status.merge_commit.clone());
                    return Landing::Landed(IntegrationReport {
                        commit: status.merge_commit,
                        merged: true,
                        ..integration
                    });
                }
                PullRequestState::Closed => {
                    let mut failed = integration;
                    let by = if status.actor.is_empty() {
                        String::new()
                    } else {
                        format!(" by {}", status.actor)
                    };
                    failed.problem = format!(
                        "pull request #{} was closed without being merged{by}; the work is on branch {}",
                        opened.number, failed.branch
                    );
                    self.record_pull_request(attempt, false, failed.problem.clone());
                    return Landing::Failed(failed);
                }
                PullRequestState::ChangesRequested => {
                    self.record_pull_request(attempt, false, status.feedback.clone());
                    // The next attempt works on the code again: it counts, and needs a slot.
                    self.mark_waiting(false);
                    if setup.concurrency > 0 {
                        match self.acquire_slot(setup, &approved.plan).await {
                            Ok(()) => {}
                            Err(SlotProblem::Cancelled) => return Landing::Cancelled,
                            Err(SlotProblem::Unreachable(why)) => {
                                let mut failed = integration;
                                failed.problem = why;
                                return Landing::Failed(failed);
                            }
                        }
                    }
                    return Landing::Redo {
                        feedback: status.feedback,
                    };
                }
                PullRequestState::Open | PullRequestState::Unspecified => {
                    // The forge's rate limit says when it may be asked again (the next wait only).
                    asked = Duration::from_secs(u64::from(status.wait_secs));
                }
            }
        }
    }

    /// Pushes the held commit and opens the pull request, or updates the open one (its body from
    /// the run so far; `awaiting_result`: it says how to decide at the result gate).
    async fn publish(
        &self,
        setup: &Setup,
        approved: &Approved,
        integration: &IntegrationReport,
        attempt: u32,
        awaiting_result: bool,
    ) -> Result<PullRequestReport, Landing> {
        let (verdict, gates, usage, leased_head) = self.ctx.state(|s| {
            (
                s.passed_verdict.clone(),
                s.status.gate_results.clone(),
                s.status.usage,
                s.pushed_head.clone(),
            )
        });
        let body = pull_request::body(&BodyParts {
            bead: &setup.bead,
            plan: &approved.plan,
            approved_by: &approved.by,
            verdict: verdict.as_ref(),
            gates: &gates,
            usage: usage.as_ref(),
            workflow_id: &self.run.workflow_id,
            awaiting_result,
        });
        let request = PullRequestRequest {
            run: Some(self.run.clone()),
            branch: integration.branch.clone(),
            commit: integration.commit.clone(),
            title: pull_request::title(&setup.bead),
            body,
            leased_head,
        };
        let opened = match self
            .ctx
            .execute_activity(
                SharkActivities::open_pull_request,
                request,
                self.on_host(forge_options()),
            )
            .await
        {
            Ok(opened) => opened,
            Err(err) => return Err(Landing::Error(Box::new(err))),
        };
        if !opened.problem.is_empty() {
            self.record_pull_request(attempt, false, opened.problem.clone());
            let mut failed = integration.clone();
            failed.problem = opened.problem;
            return Err(Landing::Failed(failed));
        }
        self.ctx.state_mut(|s| {
            s.pushed_head = opened.head.clone();
            s.status.pull_request_url = opened.url.clone();
            s.status.pull_request_number = opened.number;
            s.status.commit = opened.head.clone();
        });
        let verb = if opened.created { "opened" } else { "updated" };
        self.record_pull_request(
            attempt,
            true,
            format!(
                "{verb} #{} with {}: {}",
                opened.number,
                short_commit(&opened.head),
                opened.url
            ),
        );
        Ok(opened)
    }

    /// Sleeps durably for `pause`, or until a webhook says something happened. `Err`: cancelled.
    async fn sleep_or_forge_event(&self, pause: Duration) -> Result<(), ()> {
        let mut timer = std::pin::pin!(self.ctx.timer(pause));
        let woken = select! {
            waited = self.ctx.wait_condition(|s| s.forge_event) => waited.is_ok(),
            fired = timer.as_mut() => return if matches!(fired, TimerResult::Fired) { Ok(()) } else { Err(()) },
        };
        // A dropped timer stays pending server-side until the run closes; cancel it.
        timer.cancel();
        if woken { Ok(()) } else { Err(()) }
    }

    /// Sets or clears the memo the dispatcher reads (`chum_core::ids::WAITING_MEMO`).
    fn mark_waiting(&self, waiting: bool) {
        let value = waiting.then(|| MemoValue::new("pull_request".to_string()));
        // A memo that cannot be written leaves the run counted, nothing worse.
        let _ = self.ctx.upsert_memo([(WAITING_MEMO, value)]);
    }

    fn record_pull_request(&self, attempt: u32, passed: bool, excerpt: String) {
        self.push_gate(GateResult {
            gate: GateName::PullRequest as i32,
            round: attempt,
            passed,
            excerpt,
            ..GateResult::default()
        });
    }
}
