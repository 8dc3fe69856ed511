//! Intake and grooming from the command line: `chum create`, `chum backlog`, `chum pause|resume`,
//! `chum dispatcher`, `chum groom [log|now]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::output::Out;
use anyhow::{Context, Result, bail};
use chum_activities::backlog::Backlog;
use chum_client::control::{ControlError, ControlErrorKind};
use chum_core::backlog::{backlog_rows, rows_listing};
use chum_core::config::ChumConfig;
use chum_core::new_bead::{KnownBeads, NewBead, NewBeadError};
use chum_core::proto::{DispatcherStatus, GroomResult};
use chum_workflows::StrategicGroomRun;
use temporalio_client::schedules::ScheduleOverlapPolicy;
use temporalio_client::{Client, WorkflowGetResultOptions};

/// What `chum create` takes.
pub struct CreateArgs<'a> {
    pub id: Option<&'a str>,
    pub title: &'a str,
    pub acceptance: &'a str,
    pub description: &'a str,
    pub priority: i64,
    pub issue_type: &'a str,
    pub depends_on: &'a [String],
    /// Labels, e.g. `fanout:3` (Monte Carlo candidates) or `select:best`.
    pub labels: &'a [String],
}

/// Adds a bead to the project's backlog (native file or the `bd`/`br` CLI).
pub async fn create(config: &ChumConfig, project: &str, args: CreateArgs<'_>) -> Result<ExitCode> {
    let project = config.project(project).map_err(anyhow::Error::msg)?;
    let backlog = Backlog::of(project);
    let items = backlog.items().await.map_err(anyhow::Error::msg)?;
    let title = args.title.trim();
    let new = NewBead {
        id: args.id.map(str::to_string),
        acceptance_criteria: args.acceptance.to_string(),
        title: title.to_string(),
        description: args.description.to_string(),
        priority: args.priority,
        issue_type: args.issue_type.to_string(),
        labels: args.labels.to_vec(),
        dependencies: args
            .depends_on
            .iter()
            .map(|d| (d.clone(), "blocks".to_string()))
            .collect(),
        created_by: crate::os_user(),
    };
    new.check(&KnownBeads::of(&items)).map_err(|e| match e {
        NewBeadError::EmptyTitle => {
            anyhow::anyhow!("the title is empty; say what the work is, e.g. chum create \"Add a --verbose flag\"")
        }
        NewBeadError::Label(why) => anyhow::anyhow!("--label {why}"),
        NewBeadError::UnknownDependency(dep) => anyhow::anyhow!(
            "--depends-on {dep}: no such bead in {}; `chum backlog` lists them",
            project.name
        ),
        other => anyhow::anyhow!("{other}; `chum backlog` lists the beads"),
    })?;
    let id = backlog.create(&new).await.map_err(anyhow::Error::msg)?;
    println!("created {id}: {title}");
    if !args.depends_on.is_empty() {
        println!("  waits for: {}", args.depends_on.join(", "));
    }
    if config.dispatcher.enabled && project.enabled {
        println!(
            "  the dispatcher starts its Shark once it is ready (checks every {}); follow it with `chum watch {id}`",
            humantime::format_duration(config.dispatcher.interval)
        );
    } else {
        println!(
            "  the dispatcher is off for {}; start it with `chum submit {id}`",
            project.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `chum retry` did, for scripts.
#[derive(serde::Serialize)]
struct Reopened<'a> {
    id: &'a str,
    was: String,
    status: String,
}

/// Opens a blocked bead again for the dispatcher. Only a blocked bead: a closed one is done (a new
/// bead is new work), an open one is already waiting, one in progress has a Shark.
pub async fn retry(config: &ChumConfig, out: Out, project: &str, id: &str, note: &str) -> Result<ExitCode> {
    use chum_core::proto::BeadStatus;
    let project_config = config.project(project).map_err(crate::output::usage)?;
    let backlog = Backlog::of(project_config);
    let bead = backlog.get(id).await.map_err(|e| {
        if e.is_not_found() {
            crate::output::failed(format!("no bead {id} in {project}; `chum backlog --all` lists them"))
        } else {
            crate::output::failed(e)
        }
    })?;
    let state = bead.state();
    match state {
        BeadStatus::Blocked => {}
        BeadStatus::Closed => {
            return Err(crate::output::failed(format!(
                "{id} is closed (`chum backlog --all` shows its evidence); for more work on it, `chum create` a new bead"
            )));
        }
        BeadStatus::Open => {
            return Err(crate::output::failed(format!(
                "{id} is open already; the dispatcher starts it once it is ready (`chum backlog` says what it waits for)"
            )));
        }
        _ => {
            return Err(crate::output::failed(format!(
                "{id} is {}; a Shark has it (`chum status {id}`), cancel that run first (`chum cancel {id}`)",
                bead.status
            )));
        }
    }
    let why = if note.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", note.trim())
    };
    let written = format!("reopened by {} with `chum retry`{why}", crate::os_user());
    let status = backlog
        .update(id, BeadStatus::Open, &written, "")
        .await
        .map_err(crate::output::failed)?;
    if !out.text() {
        out.one(&Reopened {
            id,
            was: bead.status.clone(),
            status,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{id} is open again (was {}): {}", bead.status, bead.title);
    if config.dispatcher.enabled && project_config.enabled {
        println!("  the dispatcher starts a new Shark once it is ready; follow it with `chum watch {id}`");
    } else {
        println!("  the dispatcher is off for {project}; start it with `chum submit {id}`");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the backlog as the dispatcher sees it (with `all`, closed beads and their evidence too),
/// and, when the server answers, what the Sharks of the beads in progress are doing: executing,
/// waiting for a person, or waiting for an execution slot (and why).
pub async fn show_backlog(config: &ChumConfig, out: Out, project: &str, all: bool) -> Result<ExitCode> {
    let project_config = config.project(project).map_err(crate::output::usage)?;
    let items = Backlog::of(project_config)
        .items()
        .await
        .map_err(crate::output::failed)?;
    // Every row for the counts; closed ones are listed only with `all`.
    let mut rows = backlog_rows(&items);
    let in_progress: Vec<String> = rows
        .iter()
        .filter(|r| r.state == "in_progress")
        .map(|r| r.id.clone())
        .collect();
    let mut unknown = None;
    if !in_progress.is_empty() {
        match crate::coordination::run_states(config, project, &in_progress).await {
            Ok(states) => {
                for row in &mut rows {
                    if let Some(state) = states.get(&row.id) {
                        row.run = state.clone();
                    }
                }
            }
            Err(why) => unknown = Some(why),
        }
    }
    if !out.text() {
        rows.retain(|r| all || r.state != "closed");
        out.list(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", rows_listing(&rows, all));
    let closed = items
        .iter()
        .filter(|i| i.state() == chum_core::proto::BeadStatus::Closed)
        .count();
    if !all && closed > 0 {
        println!("({closed} closed bead(s) not shown; `chum backlog --all` lists them with their evidence)");
    }
    if let Some(why) = unknown {
        println!("(what the beads in progress wait for is not shown: {why}; is the server up (`make up`)?)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The recent groom outcomes from the store.
pub fn groom_log(config: &ChumConfig, out: Out, project: &str, limit: u32) -> Result<ExitCode> {
    let store = chum_activities::store::Store::for_config(config)?;
    let records = store.recent_groom_outcomes(Some(project), limit)?;
    if !out.text() {
        out.list(&records)?;
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        if config.grooming() {
            println!(
                "no groom outcomes for {project} yet: a TacticalGroom runs after each Shark ends, and `chum groom now` runs the strategic one"
            );
        } else {
            println!(
                "grooming is off for {}: set [roles] groomer (and [groom] enabled) to groom the backlog after each run",
                config.source.display()
            );
        }
    }
    for r in records {
        let after = if r.bead_id.is_empty() {
            String::new()
        } else {
            format!(" after {}", r.bead_id)
        };
        let verdict = if r.outcome.applied {
            let created = if r.outcome.created_id.is_empty() {
                String::new()
            } else {
                format!(" → {}", r.outcome.created_id)
            };
            format!("applied  {}{created}", r.outcome.description)
        } else {
            format!("REFUSED  {}: {}", r.outcome.description, r.outcome.reason)
        };
        println!(
            "{} [{}{after}] {verdict}",
            crate::render::utc_time(r.created_ms),
            r.kind
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A dispatcher call's error, with what to do when the worker never started one.
fn no_dispatcher(config: &ChumConfig, project: &str, e: ControlError) -> anyhow::Error {
    let id = chum_core::ids::dispatcher_workflow_id(project);
    match e.kind {
        ControlErrorKind::NotFound => anyhow::anyhow!(
            "there is no dispatcher {id}: the worker starts one per enabled project when it starts \
             ([dispatcher] enabled = {}); is the worker running (`make up`)?",
            config.dispatcher.enabled
        ),
        _ => anyhow::anyhow!("cannot reach {id}: {e}"),
    }
}

pub async fn dispatcher_status(client: &Client, config: &ChumConfig, project: &str) -> Result<DispatcherStatus> {
    chum_client::dispatcher::status(client, project)
        .await
        .map_err(|e| no_dispatcher(config, project, e))
}

/// `chum dispatcher`; `runs` says what the Sharks it started are doing now, by workflow id.
pub fn render_dispatcher(s: &DispatcherStatus, runs: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let state = if s.paused {
        "PAUSED (`chum resume` starts it again)"
    } else {
        "running"
    };
    let _ = writeln!(out, "dispatcher-{}: {state}, {} rounds", s.project, s.rounds);
    if let Some(r) = &s.last_round {
        let _ = writeln!(
            out,
            "  last round: {} ready, {} running (at most {} executing, {} more planning or at their gate), started {:?}, waiting {:?}",
            r.ready, r.running, r.concurrency, r.plan_ahead, r.to_start, r.waiting
        );
        if !r.taken_from_forge.is_empty() {
            let _ = writeln!(out, "  taken from forge issues: {}", r.taken_from_forge.join(", "));
        }
        if !r.intake_problem.is_empty() {
            let _ = writeln!(out, "  forge issues: {}", r.intake_problem);
        }
        if r.awaiting_pull_request > 0 {
            let _ = writeln!(
                out,
                "  {} of the running wait for people on their pull request and take no capacity",
                r.awaiting_pull_request
            );
        }
        if !r.problem.is_empty() {
            let _ = writeln!(out, "  problem: {}", r.problem);
        }
    }
    if !s.started.is_empty() {
        let _ = writeln!(out, "  started: {}", s.started.join(", "));
    }
    for (id, state) in runs {
        let _ = writeln!(out, "  {id}: {state}");
    }
    for skipped in &s.skipped {
        let _ = writeln!(out, "  skipped: {skipped}");
    }
    out
}

/// `chum pause` / `chum resume`: signals the project's dispatcher and confirms it took effect.
pub async fn pause_or_resume(client: &Client, config: &ChumConfig, project: &str, pause: bool) -> Result<ExitCode> {
    let id = chum_core::ids::dispatcher_workflow_id(project);
    // Fails with a clear message when there is no dispatcher.
    dispatcher_status(client, config, project).await?;
    chum_client::dispatcher::set_paused(client, project, pause, &crate::os_user())
        .await
        .map_err(|e| no_dispatcher(config, project, e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = dispatcher_status(client, config, project).await?;
        if status.paused == pause {
            if pause {
                println!("paused {id}: no new Sharks start; running ones go on. `chum resume {project}` undoes it.");
            } else {
                println!("resumed {id}: a round runs now.");
            }
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() > deadline {
            println!("sent; {id} has not processed it yet (is a worker running?)");
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// `chum groom now`: triggers the project's StrategicGroom schedule and waits for the groom.
pub async fn groom_now(client: &Client, project: &str, timeout: Duration) -> Result<ExitCode> {
    let id = chum_core::ids::strategic_schedule_id(project);
    let schedule = client.get_schedule_handle(id.clone());
    let before = schedule.describe(Default::default()).await.map_err(|e| {
        anyhow::anyhow!(
            "there is no schedule {id} ({e}); the worker creates it when a groomer role is configured \
             and [groom] strategic is on. Is the worker running?"
        )
    })?;
    let seen = before.recent_actions().len();
    let last = before.recent_actions().last().map(|a| a.workflow_id.clone());
    schedule
        .trigger(ScheduleOverlapPolicy::Skip, Default::default())
        .await
        .with_context(|| format!("triggering {id}"))?;
    println!("triggered {id}; waiting for the strategic groom ...");
    let deadline = Instant::now() + timeout;
    let started = loop {
        let now = schedule.describe(Default::default()).await?;
        let actions = now.recent_actions();
        if let Some(a) = actions.last()
            && (actions.len() > seen || Some(&a.workflow_id) != last.as_ref())
        {
            break a.workflow_id.clone();
        }
        if Instant::now() > deadline {
            bail!("the schedule did not start a groom within {}s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let handle = client.get_workflow_handle::<StrategicGroomRun>(started.clone());
    let result = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        handle.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .with_context(|| format!("{started} did not finish in time; it keeps running"))?
    .with_context(|| format!("reading the result of {started}"))?;
    print!("{}", render_groom(&started, &result));
    Ok(if result.error.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn render_groom(workflow_id: &str, r: &GroomResult) -> String {
    let mut out = format!(
        "{} groom {workflow_id}: {} applied, {} refused\n",
        r.kind, r.applied, r.rejected
    );
    for o in &r.outcomes {
        if o.applied {
            let created = if o.created_id.is_empty() {
                String::new()
            } else {
                format!(" → {}", o.created_id)
            };
            let _ = writeln!(out, "  applied  {}{created}", o.description);
        } else {
            let _ = writeln!(out, "  REFUSED  {}: {}", o.description, o.reason);
        }
    }
    if let Some(b) = &r.briefing {
        let short = &b.commit[..b.commit.len().min(12)];
        let place = if b.merged {
            "on the base branch".to_string()
        } else {
            format!("on its branch ({})", b.problem)
        };
        let _ = writeln!(out, "  briefing: {} in commit {short} {place}", b.path);
    }
    if !r.error.is_empty() {
        let _ = writeln!(out, "  error: {}", r.error);
    }
    out
}
