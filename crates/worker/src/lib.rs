//! The CHUM worker, as a library so integration tests run exactly what the binary runs.
//!
//! Architecture invariant: this crate is wiring only (config, connection, registration, signal
//! handling); logic lives in core, workflows and activities.

pub mod api;
mod console;
pub mod metrics;

use chum_core::live_config::LiveConfig;

use chum_activities::{
    CoordinatorActivitiesImpl, DispatcherActivitiesImpl, GroomActivitiesImpl, LearnerActivitiesImpl,
    NotifyActivitiesImpl, SharkActivitiesImpl,
};
use chum_core::config::ChumConfig;
use chum_core::proto::{DispatcherInput, StrategicGroomInput};
use chum_workflows::{
    CoordinatorWorkflow, DispatcherWorkflow, LearnerWorkflow, NotifierWorkflow, SharkWorkflow, StrategicGroomWorkflow,
    TacticalGroomWorkflow,
};
use temporalio_client::schedules::{CreateScheduleOptions, ScheduleAction, ScheduleOverlapPolicy, ScheduleSpec};
use temporalio_client::{Client, WorkflowStartOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// The longest an activity's heartbeats wait in the SDK before one goes to the server. The SDK's
/// own choice is 80% of the heartbeat timeout (8 s of the Shark's 10 s), which leaves a busy
/// machine 2 s of slack before the server times out an activity that is still running and
/// retries it beside itself; at 4 s, a heartbeat can be 6 s late.
const HEARTBEAT_THROTTLE: std::time::Duration = std::time::Duration::from_secs(4);

/// A worker polling the configured task queue with every CHUM workflow and activity registered.
/// Builds the worker. Its activities take the configuration in force when each one starts, so a
/// `LiveConfig::reload` reaches the next activity of every run.
pub fn build_worker(runtime: &Runtime, client: Client, config: impl Into<LiveConfig>) -> anyhow::Result<Worker> {
    let config: LiveConfig = config.into();
    let options = WorkerOptions::new(config.current().temporal.task_queue.clone())
        .register_workflow::<SharkWorkflow>()?
        .register_workflow::<LearnerWorkflow>()?
        .register_workflow::<DispatcherWorkflow>()?
        .register_workflow::<TacticalGroomWorkflow>()?
        .register_workflow::<StrategicGroomWorkflow>()?
        .register_workflow::<CoordinatorWorkflow>()?
        .register_workflow::<NotifierWorkflow>()?
        .register_activities(SharkActivitiesImpl::new(config.clone()))
        .register_activities(LearnerActivitiesImpl::new(config.clone()))
        .register_activities(GroomActivitiesImpl::new(config.clone()))
        .register_activities(NotifyActivitiesImpl::new(config.clone()))
        .register_activities(DispatcherActivitiesImpl::new(config))
        .register_activities(CoordinatorActivitiesImpl)
        .max_heartbeat_throttle_interval(HEARTBEAT_THROTTLE)
        .build();
    Ok(Worker::new(runtime, client, options)?)
}

/// With `[worker] several_hosts`: a second worker polling only this host's own task queue
/// (`<task_queue>@<host>`), where the Shark sends the host-bound steps of the attempts this host
/// claimed. Only the Shark's activities are registered there; workflows and every other activity
/// stay on the shared queue. `None` with one host.
pub fn build_host_worker(
    runtime: &Runtime,
    client: Client,
    config: impl Into<LiveConfig>,
) -> anyhow::Result<Option<Worker>> {
    let config: LiveConfig = config.into();
    let current = config.current();
    if !current.worker.several_hosts {
        return Ok(None);
    }
    let options = WorkerOptions::new(current.worker.host_task_queue(&current.temporal.task_queue))
        .register_activities(SharkActivitiesImpl::new(config.clone()))
        .max_heartbeat_throttle_interval(HEARTBEAT_THROTTLE)
        .build();
    Ok(Some(Worker::new(runtime, client, options)?))
}

/// Re-reads the configuration file and puts in force what can change while the worker runs
/// (SIGHUP). A file that does not load changes nothing: the error says why and the running
/// configuration stays. Dispatchers of projects added by the reload are started; running
/// dispatchers pick up new limits and intervals on their next round by themselves.
pub async fn reload_config(
    live: &LiveConfig,
    path: &std::path::Path,
    client: &Client,
) -> Result<chum_core::live_config::ConfigChange, String> {
    let loaded = chum_client::settings::load_config(path)
        .map_err(|e| format!("the configuration was not reloaded (the running one stays): {e}"))?;
    let change = live.reload(loaded);
    if change
        .applied
        .iter()
        .any(|c| c.starts_with("[projects.") || c == "[dispatcher]")
    {
        let config = live.current();
        for line in start_dispatchers(client, &config).await {
            tracing::info!("{line}");
        }
        for line in ensure_strategic_schedules(client, &config).await {
            tracing::info!("{line}");
        }
    }
    Ok(change)
}

/// Starts the Dispatcher of every enabled project (one that is already running is left as it is).
/// Returns one line per project for the log.
pub async fn start_dispatchers(client: &Client, config: &ChumConfig) -> Vec<String> {
    let mut lines = Vec::new();
    if !config.dispatcher.enabled {
        return vec!["dispatchers are disabled ([dispatcher] enabled = false); start Sharks with `chum submit`".into()];
    }
    for project in config.projects.values().filter(|p| p.enabled) {
        let input = DispatcherInput {
            project: project.name.clone(),
            interval_secs: config.dispatcher.interval.as_secs().max(1),
            rounds_per_run: config.dispatcher.rounds_per_run,
            limits: Some(config.limits.to_proto()),
            paused: false,
            rounds_before: 0,
        };
        let id = chum_core::ids::dispatcher_workflow_id(&project.name);
        let options = WorkflowStartOptions::new(config.temporal.task_queue.clone(), id.clone()).build();
        let line = match client.start_workflow(DispatcherWorkflow::run, input, options).await {
            Ok(_) => format!("started {id}"),
            Err(temporalio_client::errors::WorkflowStartError::AlreadyStarted { .. }) => {
                format!("{id} is already running")
            }
            Err(e) => format!("could not start {id}: {e}"),
        };
        lines.push(line);
    }
    lines
}

fn strategic_spec(config: &ChumConfig) -> ScheduleSpec {
    ScheduleSpec::builder()
        .cron_strings(vec![config.groom.schedule.clone()])
        .timezone_name(config.groom.timezone.clone())
        .build()
}

fn strategic_action(config: &ChumConfig, project: &str) -> ScheduleAction {
    ScheduleAction::start_workflow(
        StrategicGroomWorkflow::run,
        StrategicGroomInput {
            project: project.to_string(),
        },
        config.temporal.task_queue.clone(),
        chum_core::ids::strategic_schedule_id(project),
    )
}

/// Creates (or brings up to date with the config) the StrategicGroom schedule of every enabled
/// project. Returns one line per project for the log.
pub async fn ensure_strategic_schedules(client: &Client, config: &ChumConfig) -> Vec<String> {
    if !config.strategic_grooming() {
        return vec!["strategic grooming is off (needs roles.groomer, [groom] enabled and strategic)".into()];
    }
    let mut lines = Vec::new();
    for project in config.projects.values().filter(|p| p.enabled) {
        let id = chum_core::ids::strategic_schedule_id(&project.name);
        let when = format!("\"{}\" ({})", config.groom.schedule, config.groom.timezone);
        let options = CreateScheduleOptions::builder()
            .action(strategic_action(config, &project.name))
            .spec(strategic_spec(config))
            .overlap_policy(ScheduleOverlapPolicy::Skip)
            .note(format!("CHUM strategic groom of {}", project.name))
            .build();
        let line = match client.create_schedule(id.clone(), options).await {
            Ok(_) => format!("created schedule {id}: {when}"),
            Err(temporalio_client::schedules::ScheduleError::Rpc(status))
                if status.code() == temporalio_client::tonic::Code::AlreadyExists =>
            {
                let spec = strategic_spec(config);
                let action = strategic_action(config, &project.name);
                let handle = client.get_schedule_handle(id.clone());
                match handle
                    .update(
                        move |u| {
                            u.set_spec(spec).set_action(action);
                        },
                        Default::default(),
                    )
                    .await
                {
                    Ok(()) => format!("schedule {id}: {when}"),
                    Err(e) => format!("could not update schedule {id}: {e}"),
                }
            }
            Err(e) => format!("could not create schedule {id}: {e}"),
        };
        lines.push(line);
    }
    lines
}
