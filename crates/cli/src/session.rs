//! The commands that talk to Temporal: submit, approve/reject, status, runs, cancel, watch,
//! learned. Errors say what to do next and carry their exit code (see `output`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chum_client::control::{Closed, ControlError, ControlErrorKind};
use chum_core::config::ChumConfig;
use chum_core::ids::check_bead_id;
use chum_core::proto::{EnumName, Outcome, Phase, SharkStatus};
use chum_workflows::SharkRun;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowHandle};

use crate::output::{Exit, Out, failed, not_answered, usage};
use crate::render;

pub struct Session {
    pub config: ChumConfig,
    project: Option<String>,
    pub client: Client,
    out: Out,
}

type SharkHandle = WorkflowHandle<Client, SharkRun>;

impl Session {
    pub async fn connect(config: ChumConfig, project: Option<String>, out: Out) -> Result<Session> {
        let client = chum_client::connect::connect(&config.temporal, "chum-cli", Duration::from_secs(5), |_, _, _| {})
            .await
            .map_err(|e| not_answered(format!("{e:#}")))?;
        Ok(Session {
            config,
            project,
            client,
            out,
        })
    }

    pub fn project_name(&self) -> Result<String> {
        crate::reports::only_project(&self.config, self.project.as_deref())
    }

    /// A project named on the command line (checked), or the default one.
    pub fn named_project(&self, project: Option<String>) -> Result<String> {
        match project {
            Some(p) => {
                self.config.project(&p).map_err(usage)?;
                Ok(p)
            }
            None => self.project_name(),
        }
    }

    /// A bead id or a workflow id, as a workflow id.
    fn workflow_id(&self, target: &str) -> Result<String> {
        // A workflow id names its project; only a bead id needs one.
        let project = if chum_core::ids::is_shark_workflow_id(target) {
            String::new()
        } else {
            self.project_name()?
        };
        chum_client::control::run_id_of(&project, target).map_err(|e| usage(e.message))
    }

    fn handle(&self, target: &str) -> Result<SharkHandle> {
        Ok(self.client.get_workflow_handle::<SharkRun>(self.workflow_id(target)?))
    }

    async fn query(&self, handle: &SharkHandle) -> Result<SharkStatus> {
        let id = &handle.info().workflow_id;
        chum_client::control::status(&self.client, id)
            .await
            .map_err(|e| self.explain(e))
    }

    /// A control error with what to do next, for a person at a terminal, and its exit code.
    fn explain(&self, e: ControlError) -> anyhow::Error {
        match e.kind {
            ControlErrorKind::NotFound => failed(format!("{}; start one with `chum submit <bead>`", e.message)),
            ControlErrorKind::Unavailable => not_answered(format!(
                "{} (task queue `{}`, Temporal at {}; `make up` starts both)",
                e.message, self.config.temporal.task_queue, self.config.temporal.address
            )),
            ControlErrorKind::Invalid => usage(e.message),
            ControlErrorKind::Conflict => failed(e.message),
        }
    }

    pub async fn submit(&self, bead: &str) -> Result<ExitCode> {
        check_bead_id(bead).map_err(usage)?;
        let project = self.project_name()?;
        // Refuse early what the Shark would refuse anyway, with the reason.
        let project_config = self.config.project(&project).map_err(usage)?;
        let found = chum_activities::backlog::Backlog::of(project_config)
            .get(bead)
            .await
            .map_err(failed)?;
        if found.state() == chum_core::proto::BeadStatus::Closed {
            return Err(failed(format!("bead {bead} is already closed; nothing to do")));
        }
        let id = chum_client::control::start(&self.client, &self.config, &project, bead)
            .await
            .map_err(|e| match e.kind {
                ControlErrorKind::Conflict => failed(format!("{}; follow it with `chum watch {bead}`", e.message)),
                ControlErrorKind::Unavailable => {
                    not_answered(format!("{}; is the Temporal server up (`make up`)?", e.message))
                }
                _ => self.explain(e),
            })?;
        println!("started {id}");
        println!("  watch:   chum watch {bead}");
        println!("  approve: chum approve {bead}   (once the plan is at the gate)");
        println!("  UI:      {}", render::ui_link(&self.config, &id));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn decide(&self, target: &str, approved: bool, feedback: String, by: Option<String>) -> Result<ExitCode> {
        let id = self.workflow_id(target)?;
        self.refuse_if_ended(&id, target).await?;
        // The OS account deciding is on record whatever --by says (it is free text).
        let user = crate::os_user();
        let by = match by.map(|b| b.trim().to_string()).filter(|b| !b.is_empty()) {
            Some(name) if name != user => format!("{name} (OS user {user})"),
            _ => user,
        };
        let decision = chum_client::control::Decision {
            approved,
            feedback,
            by: by.clone(),
        };
        let receipt = chum_client::control::decide(&self.client, &id, &decision)
            .await
            .map_err(|e| self.explain(e))?;
        if receipt.confirmed {
            let verb = if approved { "approved" } else { "rejected" };
            println!("{verb} the plan of {id} (round {}) as {by}", receipt.round);
        } else {
            println!(
                "sent; no worker has taken it yet (is a worker running?); `chum status {target}` shows when it does"
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A run's state: live from its `status` query while it runs; from its result once it is
    /// closed (the server keeps it: no worker has to be running). Exit 1 when it did not integrate.
    pub async fn status(&self, target: &str) -> Result<ExitCode> {
        let handle = self.handle(target)?;
        let id = handle.info().workflow_id.clone();
        match chum_client::control::closed(&self.client, &id)
            .await
            .map_err(|e| self.explain(e))?
        {
            None => {
                let status = self.query(&handle).await?;
                if self.out.text() {
                    print!("{}", render::status(&self.config, &id, &status));
                } else {
                    self.out.one(&status)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(Closed::Result(result)) => {
                if self.out.text() {
                    print!("{}", render::summary(&self.config, &id, "", &result));
                } else {
                    self.out.one(&*result)?;
                }
                Ok(outcome_code(result.outcome()))
            }
            Some(Closed::Without { status, message }) => {
                if self.out.text() {
                    println!("{id}: {status}: {message}");
                } else {
                    self.out
                        .one(&serde_json::json!({"workflow_id": id, "status": status, "message": message}))?;
                }
                Ok(Exit::Failed.into())
            }
        }
    }

    /// The diff of the result at the gate (`approve_result`), from the artifact store.
    pub async fn show_diff(&self, target: &str) -> Result<ExitCode> {
        let handle = self.handle(target)?;
        let id = handle.info().workflow_id.clone();
        self.refuse_if_ended(&id, target).await?;
        let status = self.query(&handle).await?;
        if status.result_diff_artifact.is_empty() || status.phase() != chum_core::proto::Phase::AwaitingResultApproval {
            return Err(crate::output::failed(format!(
                "{id} has no result waiting for approval (phase: {}); `chum show {target}` shows where it is",
                status.phase()
            )));
        }
        let diff = std::fs::read_to_string(&status.result_diff_artifact).map_err(|e| {
            crate::output::failed(format!(
                "cannot read the diff {}: {e}; is this the machine the worker runs on?",
                status.result_diff_artifact
            ))
        })?;
        if self.out.text() {
            println!("# {id}, attempt {}: {}", status.attempt, status.result_diff_stat.trim());
            print!("{diff}");
        } else {
            self.out.one(&serde_json::json!({
                "workflow_id": id,
                "attempt": status.attempt,
                "diff_artifact": status.result_diff_artifact,
                "diff_stat": status.result_diff_stat,
                "diff": diff,
            }))?;
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A closed run takes no decision and no cancel; say so from the server alone (a query would
    /// wait for a worker that may not be running).
    async fn refuse_if_ended(&self, id: &str, target: &str) -> Result<()> {
        match chum_client::control::closed(&self.client, id)
            .await
            .map_err(|e| self.explain(e))?
        {
            None => Ok(()),
            Some(_) => Err(failed(format!(
                "{id} has already ended; `chum status {target}` says how"
            ))),
        }
    }

    /// `chum cancel`: the running agent is killed, the bead reopened with a note.
    pub async fn cancel(&self, target: &str, reason: &str) -> Result<ExitCode> {
        let id = self.workflow_id(target)?;
        self.refuse_if_ended(&id, target).await?;
        chum_client::control::cancel(&self.client, &id, reason)
            .await
            .map_err(|e| self.explain(e))?;
        println!(
            "asked {id} to stop; the running agent is killed and the bead reopened (follow it: chum watch {target})"
        );
        Ok(ExitCode::SUCCESS)
    }

    /// `chum runs`: the Shark runs Temporal knows, newest first.
    pub async fn runs(&self, all: bool, limit: usize) -> Result<ExitCode> {
        let runs = chum_client::control::runs(&self.client, all, limit)
            .await
            .map_err(|e| self.explain(e))?;
        if !self.out.text() {
            self.out.list(&runs)?;
            return Ok(ExitCode::SUCCESS);
        }
        if runs.is_empty() {
            let which = if all { "" } else { " running (--all: finished ones too)" };
            println!("no Shark runs{which}");
        }
        for r in &runs {
            println!(
                "{:<32} {:<11} started {}  closed {}",
                r.workflow_id,
                r.status,
                render::utc_time(r.started_ms),
                render::utc_time(r.closed_ms)
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `chum gc`: removes what finished runs left in the project (see `chum_activities::repo::plan_gc`).
    /// Which beads are running comes from Temporal; without an answer nothing is removed.
    pub async fn gc(&self, project: &str, dry_run: bool) -> Result<ExitCode> {
        let config = self.config.project(project).map_err(usage)?;
        let prefix = chum_core::ids::shark_workflow_id(project, "");
        let running: std::collections::BTreeSet<String> = chum_client::control::runs(&self.client, false, usize::MAX)
            .await
            .map_err(|e| self.explain(e))?
            .into_iter()
            .filter_map(|r| r.workflow_id.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let plan = chum_activities::repo::plan_gc(config, &running)
            .await
            .map_err(|e| failed(format!("cannot look at {}: {e}", config.repo.display())))?;
        if !dry_run {
            chum_activities::repo::apply_gc(config, &plan)
                .await
                .map_err(|e| failed(format!("cleaning up {}: {e}", config.repo.display())))?;
        }
        if !self.out.text() {
            self.out.one(&serde_json::json!({"dry_run": dry_run, "plan": plan}))?;
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", render::gc(&plan, dry_run));
        Ok(ExitCode::SUCCESS)
    }

    /// `chum status` without a target: every running Shark with its phase.
    pub async fn list(&self) -> Result<ExitCode> {
        let running = chum_client::control::running(&self.client)
            .await
            .map_err(|e| self.explain(e))?;
        if !self.out.text() {
            let rows: Vec<serde_json::Value> = running
                .iter()
                .map(|(id, status)| match status {
                    Ok(s) => serde_json::json!({"workflow_id": id, "status": s}),
                    Err(e) => serde_json::json!({"workflow_id": id, "error": e.message}),
                })
                .collect();
            self.out.list(&rows)?;
            return Ok(ExitCode::SUCCESS);
        }
        for (id, status) in &running {
            match status {
                Ok(s) => println!(
                    "{id:<32} {:<18} plan round {} attempt {}/{}",
                    s.phase().name(),
                    s.plan_round,
                    s.attempt,
                    s.max_attempts
                ),
                Err(e) => println!("{id:<32} (status unavailable: {e})"),
            }
        }
        if running.is_empty() {
            println!(
                "no Shark is running; the dispatcher starts ready beads (`chum backlog`), or `chum submit <bead>`"
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Waits for the learner of the bead's latest run and prints what it learned.
    pub async fn learned(&self, target: &str, timeout: Duration) -> Result<ExitCode> {
        let handle = self.handle(target)?;
        let status = self.query(&handle).await?;
        if status.learner_workflow_id.is_empty() {
            return Err(failed(format!(
                "{} started no learner (phase {}; learning needs a learner role, and a run that was integrated, escalated or rejected)",
                handle.info().workflow_id,
                status.phase()
            )));
        }
        println!("waiting for {} ...", status.learner_workflow_id);
        let learner = self
            .client
            .get_workflow_handle::<chum_workflows::LearnerRun>(status.learner_workflow_id.clone());
        let result = tokio::time::timeout(timeout, learner.get_result(WorkflowGetResultOptions::default()))
            .await
            .with_context(|| format!("the learner did not finish within {}s", timeout.as_secs()))?
            .with_context(|| format!("reading the result of {}", status.learner_workflow_id))?;
        print!("{}", render::learned(&result));
        Ok(ExitCode::SUCCESS)
    }

    /// Waits until the run exists: with the dispatcher on, a ready bead's Shark appears within a
    /// round or two of the bead becoming ready.
    async fn wait_for_run(&self, handle: &SharkHandle, target: &str, deadline: Instant) -> Result<()> {
        let id = &handle.info().workflow_id;
        let mut announced = false;
        loop {
            match handle.describe(Default::default()).await {
                Ok(_) => return Ok(()),
                Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_)) => {
                    if !self.config.dispatcher.enabled {
                        return Err(failed(format!(
                            "there is no run {id}; start one with `chum submit {target}`"
                        )));
                    }
                    if !announced {
                        println!(
                            "waiting for the dispatcher to start {id} (it starts ready beads every {}; `chum backlog` shows what waits for what)",
                            humantime::format_duration(self.config.dispatcher.interval)
                        );
                        announced = true;
                    }
                    if Instant::now() > deadline {
                        return Err(failed(format!(
                            "{id} was not started in time; is the worker running, and is the bead ready (`chum backlog`, `chum dispatcher`)?"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(not_answered(format!(
                        "cannot look up {id}: {e}; is the Temporal server at {} up?",
                        self.config.temporal.address
                    )));
                }
            }
        }
    }

    pub async fn watch(&self, target: &str, until: Option<Phase>, timeout: Duration) -> Result<ExitCode> {
        let handle = self.handle(target)?;
        let id = handle.info().workflow_id.clone();
        self.wait_for_run(&handle, target, Instant::now() + timeout).await?;
        let started = Instant::now();
        let mut printer = render::Progress::default();
        loop {
            let status = self.query(&handle).await?;
            print!("{}", printer.update(&status));
            if until == Some(status.phase()) {
                if status.phase() == Phase::AwaitingApproval {
                    print!("{}", render::plan(&status));
                    println!(
                        "  approve: chum approve {}   reject: chum reject {} --feedback \"...\"",
                        target, target
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            if status.phase() == Phase::Done {
                break;
            }
            if started.elapsed() > timeout {
                return Err(failed(format!(
                    "{id} did not finish within {}s; it keeps running; check `chum status {target}`",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let result = handle
            .get_result(WorkflowGetResultOptions::default())
            .await
            .with_context(|| format!("reading the result of {id}"))?;
        print!(
            "{}",
            render::summary(
                &self.config,
                &id,
                &handle.info().run_id.clone().unwrap_or_default(),
                &result
            )
        );
        Ok(outcome_code(result.outcome()))
    }
}

/// 0 for a run that integrated its work, 1 for every other ending.
fn outcome_code(outcome: Outcome) -> ExitCode {
    if outcome == Outcome::Integrated {
        ExitCode::SUCCESS
    } else {
        Exit::Failed.into()
    }
}
