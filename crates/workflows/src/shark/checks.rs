//! The gates on one execution, in the project's order; the first that fails decides.
//! REVIEW (another model, per criterion, fail-closed), SEMGREP (known mistakes, in milliseconds),
//! DOD (the project's own commands). Each runs on exactly the tree the execution recorded.

use chum_core::activity_contract::SharkActivities;
use chum_core::coordination::outside_plan;
use chum_core::gate_text::{discarded_note, dod_artifact, dod_feedback, dod_summary, semgrep_finding_line};
use chum_core::proto::{
    DodRequest, ExecuteReport, GateName, GateResult, LeaseMode, Phase, Plan, ReviewRequest, SemgrepRequest,
};
use chum_core::review::{findings_for_redo, rejection_reasons};
use temporalio_sdk::ActivityExecutionError;

use super::named_gates::Moment;
use super::options::{agent_options, dod_options};
use super::{Setup, Shark};

/// What the gates of one execution decided.
pub(super) enum GatesVerdict {
    Passed,
    /// Back to the executor within the attempt, with the findings; a review rejection also swaps
    /// executor and reviewer.
    Redo {
        feedback: String,
        swap: bool,
    },
    /// The attempt has failed (the definition of done did not pass).
    Failed {
        feedback: String,
    },
    /// A named gate with `fail = "block"` failed: the run stops, the bead is blocked.
    Blocked {
        gate: String,
        feedback: String,
    },
}

/// One execution, as the gates see it.
pub(super) struct Step<'a> {
    pub setup: &'a Setup,
    pub plan: &'a Plan,
    pub report: &'a ExecuteReport,
    pub attempt: u32,
    pub handoff: u32,
    pub swapped: bool,
    /// Monte Carlo candidate (0 without fanout).
    pub candidate: u32,
    /// Checked again under the merge queue's turn (1, 2, ...); 0 for the attempt's own gates.
    pub verification: u32,
}

impl Shark<'_> {
    /// Runs the project's gates in order on one execution; the first that fails decides.
    pub(super) async fn run_gates(&self, step: &Step<'_>) -> Result<GatesVerdict, ActivityExecutionError> {
        if let Some(verdict) = self.check_plan_files(step) {
            return Ok(verdict);
        }
        let mut so_far: Vec<String> = Vec::new();
        for (index, gate) in step.setup.gates.iter().enumerate() {
            let results_before = self.ctx.state(|s| s.status.gate_results.len());
            let verdict = match gate {
                GateName::Review => self.review_gate(step, &so_far).await?,
                GateName::Semgrep => self.semgrep_gate(step).await?,
                GateName::Dod => self.dod_gate(step).await?,
                GateName::Named => self.named_gate_at(step, index, Moment::Attempt).await?,
                other => {
                    // The config is validated at start; another gate here can only come from a
                    // hand-made history. Skip it visibly rather than pass or fail on it.
                    self.push_gate(GateResult {
                        gate: *other as i32,
                        round: step.attempt,
                        handoff: step.handoff,
                        passed: true,
                        excerpt: "unknown gate: skipped".into(),
                        ..GateResult::default()
                    });
                    None
                }
            };
            if let Some(verdict) = verdict {
                return Ok(verdict);
            }
            // A gate that does not run now (a named gate before integration) adds no line.
            let last = self.ctx.state(|s| {
                (s.status.gate_results.len() > results_before)
                    .then(|| s.status.gate_results.last().cloned())
                    .flatten()
            });
            if let Some(last) = last {
                so_far.push(format!(
                    "{}: {}",
                    last.label(),
                    last.excerpt.lines().next().unwrap_or_default()
                ));
            }
        }
        Ok(GatesVerdict::Passed)
    }

    /// LEASES: the files the execution changed outside those its plan names (and leased) are
    /// reported in the run; with `leases = "strict"` they send the work back, like a finding.
    fn check_plan_files(&self, step: &Step<'_>) -> Option<GatesVerdict> {
        let leased = matches!(step.setup.leases, LeaseMode::On | LeaseMode::Strict);
        if !leased || step.plan.files.is_empty() {
            return None;
        }
        let outside = outside_plan(&step.report.changed_files, &step.plan.files);
        if outside.is_empty() {
            return None;
        }
        let strict = step.setup.leases == LeaseMode::Strict;
        self.push_gate(GateResult {
            gate: GateName::Execute as i32,
            round: step.attempt,
            handoff: step.handoff,
            passed: !strict,
            excerpt: format!(
                "changed files outside its plan (which leases {}): {}",
                step.plan.files.join(", "),
                outside.join(", ")
            ),
            ..GateResult::default()
        });
        strict.then(|| GatesVerdict::Redo {
            feedback: format!(
                "You changed files the plan does not name: {}. Another bead may be working on them. \
                 Change only the planned files ({}); undo the other changes.",
                outside.join(", "),
                step.plan.files.join(", ")
            ),
            swap: false,
        })
    }

    /// REVIEW: a different model checks the diff against the plan; fail-closed.
    pub(super) async fn review_gate(
        &self,
        step: &Step<'_>,
        so_far: &[String],
    ) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
        let agent_timeout = self.limits.agent_timeout;
        self.enter_phase(Phase::Review, step.attempt);
        let mut request = ReviewRequest {
            run: Some(self.run.clone()),
            bead: Some(step.setup.bead.clone()),
            plan: Some(step.plan.clone()),
            worktree: step.report.worktree.clone(),
            base_commit: step.report.base_commit.clone(),
            attempt: step.attempt,
            handoff: step.handoff,
            swapped: step.swapped,
            gates_so_far: so_far.join("\n"),
            retry_error: String::new(),
            timeout_secs: agent_timeout.as_secs(),
            candidate: step.candidate,
            tree: step.report.tree.clone(),
            verification: step.verification,
        };
        let mut review = self
            .ctx
            .execute_activity(
                SharkActivities::review,
                request.clone(),
                self.on_host(agent_options(agent_timeout)),
            )
            .await?;
        self.add_usage(review.agent.as_ref());
        if review.verdict.is_none() {
            // One retry, told what was wrong with the answer.
            request.retry_error = review.error.clone();
            review = self
                .ctx
                .execute_activity(
                    SharkActivities::review,
                    request,
                    self.on_host(agent_options(agent_timeout)),
                )
                .await?;
            self.add_usage(review.agent.as_ref());
        }
        let agent = review.agent.clone().unwrap_or_default();
        let mut result = GateResult {
            gate: GateName::Review as i32,
            round: step.attempt,
            handoff: step.handoff,
            verification: step.verification,
            duration_ms: agent.duration_ms,
            artifact: agent.stdout_artifact.clone(),
            provider: agent.provider.clone(),
            ..GateResult::default()
        };
        let Some(verdict) = review.verdict else {
            let reason = format!("review unavailable: {}", review.error);
            if step.setup.fail_open {
                result.passed = true;
                result.excerpt = format!("{reason}; passed because review_fail_open = true");
                self.push_gate(result);
                return Ok(None);
            }
            result.excerpt = reason.clone();
            self.push_gate(result);
            return Ok(Some(GatesVerdict::Redo {
                feedback: format!("The review could not be done ({reason}); the redo is reviewed by the other model."),
                swap: true,
            }));
        };
        let reasons = rejection_reasons(&verdict, step.plan);
        let discarded = discarded_note("the reviewer", &review.discarded);
        if reasons.is_empty() {
            // The pull request's body shows each criterion with this evidence.
            self.ctx.state_mut(|s| s.passed_verdict = Some(verdict.clone()));
            result.passed = true;
            result.excerpt = format!(
                "approved by {}: {} criteria met, {} finding(s){discarded}",
                agent.provider,
                verdict.criteria.len(),
                verdict.findings.len()
            );
            self.push_gate(result);
            return Ok(None);
        }
        let findings = findings_for_redo(&verdict, &reasons);
        result.excerpt = format!("rejected by {}{discarded}\n{findings}", agent.provider);
        self.push_gate(result);
        Ok(Some(GatesVerdict::Redo {
            feedback: findings,
            swap: true,
        }))
    }

    /// SEMGREP: known mistakes, in milliseconds; findings go back to the executor.
    pub(super) async fn semgrep_gate(&self, step: &Step<'_>) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
        self.enter_phase(Phase::Semgrep, step.attempt);
        let request = SemgrepRequest {
            run: Some(self.run.clone()),
            worktree: step.report.worktree.clone(),
            changed_files: step.report.changed_files.clone(),
            attempt: step.attempt,
            handoff: step.handoff,
            tree: step.report.tree.clone(),
            verification: step.verification,
        };
        let scan = self.quick_on_host(SharkActivities::semgrep, request).await?;
        self.ctx.state_mut(|s| {
            for q in &scan.quarantined {
                if !s.status.quarantined_rules.iter().any(|known| known.file == q.file) {
                    s.status.quarantined_rules.push(q.clone());
                }
            }
        });
        let mut quarantine = if scan.quarantined.is_empty() {
            String::new()
        } else {
            format!("; {} rule file(s) quarantined", scan.quarantined.len())
        };
        // Runs recorded before the baseline report 0 here, so their excerpts are unchanged.
        if scan.preexisting_ignored > 0 {
            quarantine.push_str(&format!(
                "; {} pre-existing finding(s) on untouched lines ignored",
                scan.preexisting_ignored
            ));
        }
        let mut result = GateResult {
            gate: GateName::Semgrep as i32,
            round: step.attempt,
            handoff: step.handoff,
            verification: step.verification,
            passed: scan.passed,
            duration_ms: scan.duration_ms,
            artifact: scan.artifact.clone(),
            ..GateResult::default()
        };
        if scan.passed {
            result.excerpt = format!(
                "clean: {} file(s), {} rule file(s){quarantine}",
                scan.files_scanned, scan.rule_files
            );
            self.push_gate(result);
            return Ok(None);
        }
        let mut findings = String::from("Semgrep found known mistakes; fix each one:\n");
        for f in &scan.findings {
            findings.push_str(&semgrep_finding_line(f));
        }
        result.excerpt = format!("{} finding(s){quarantine}\n{findings}", scan.findings.len());
        self.push_gate(result);
        Ok(Some(GatesVerdict::Redo {
            feedback: findings,
            swap: false,
        }))
    }

    /// DOD: the project's own commands; a failure ends the attempt with the real output.
    pub(super) async fn dod_gate(&self, step: &Step<'_>) -> Result<Option<GatesVerdict>, ActivityExecutionError> {
        let dod_timeout = self.limits.dod_timeout;
        self.enter_phase(Phase::Dod, step.attempt);
        let request = DodRequest {
            run: Some(self.run.clone()),
            worktree: step.report.worktree.clone(),
            attempt: step.attempt,
            timeout_secs: dod_timeout.as_secs(),
            tree: step.report.tree.clone(),
            verification: step.verification,
        };
        let dod = self
            .ctx
            .execute_activity(
                SharkActivities::run_dod,
                request,
                self.on_host(dod_options(dod_timeout)),
            )
            .await?;
        let mut summary = dod_summary(&dod);
        summary.push_str(&discarded_note("the DoD", &dod.discarded));
        self.push_gate(GateResult {
            gate: GateName::Dod as i32,
            round: step.attempt,
            handoff: step.handoff,
            verification: step.verification,
            passed: dod.passed,
            duration_ms: dod.duration_ms,
            excerpt: summary,
            artifact: dod_artifact(&dod),
            ..GateResult::default()
        });
        if dod.passed {
            Ok(None)
        } else {
            Ok(Some(GatesVerdict::Failed {
                feedback: dod_feedback(&dod),
            }))
        }
    }
}
