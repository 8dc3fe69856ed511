//! Running a coding-agent CLI for a role: choose the provider, render its command, give it the
//! prompt (stdin or a file, never a shell string), enforce the timeout on its process group,
//! keep its output as artifacts and read its answer and usage.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chum_core::agent_output::{AgentAnswer, parse_agent_output};
use chum_core::config::{ChumConfig, NotConfigured, OutputFormat, ProviderConfig, Role, expand_command, show_size};
use chum_core::proto::{AgentRunSummary, RunRef};
use chum_core::text::{excerpt, tail_excerpt};

use super::budget::{self, CostSource, cost_of};
use crate::exec::ChildEnv;
use crate::exec::EgressClient;
use crate::exec::{self as sandbox, Network, ProgramError, SandboxError, SandboxPolicy};
use crate::exec::{ProcessSpec, read_capped, read_tail, run_process};
use crate::store::RunArtifacts;
use crate::store::{Store, UsageRecord};

/// Bytes of agent output kept per stream (the rest is counted and dropped with a note).
const CAPTURE_LIMIT: u64 = 16 * 1024 * 1024;
/// Bytes of stdout read back for parsing the answer.
const PARSE_LIMIT: usize = 16 * 1024 * 1024;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Keeps an activity alive and stoppable while a long process runs.
pub trait Liveness {
    fn heartbeat(&self) -> impl Future<Output = ()>;
    fn cancelled(&self) -> impl Future<Output = ()>;
    /// The step (its run and activity) and which try of it this is; `None` outside an activity.
    fn step_try(&self) -> Option<(String, u32)> {
        None
    }
}

impl Liveness for temporalio_sdk::activities::ActivityContext {
    async fn heartbeat(&self) {
        let _ = self.record_heartbeat(()).await;
    }
    async fn cancelled(&self) {
        temporalio_sdk::activities::ActivityContext::cancelled(self).await
    }
    fn step_try(&self) -> Option<(String, u32)> {
        let info = self.info();
        let run = info.workflow_run_id.clone().unwrap_or_default();
        Some((format!("{run}/{}", info.activity_id), info.attempt))
    }
}

/// For running outside an activity (tests, tools): no heartbeats, never cancelled.
pub struct Unsupervised;

impl Liveness for Unsupervised {
    async fn heartbeat(&self) {}
    async fn cancelled(&self) {
        std::future::pending::<()>().await
    }
}

/// Why an agent could not even be started. These are not retried.
#[derive(Debug, thiserror::Error)]
pub enum AgentSetupError {
    #[error(transparent)]
    Config(#[from] NotConfigured),
    /// The sandbox the project asks for cannot be had.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{0}")]
    MissingBinary(String),
    /// A spending cap is reached; no agent was started.
    #[error("budget exhausted: {0}")]
    Budget(String),
    /// The state directory could not be written or read (disk full, read-only, gone): worth
    /// retrying once someone frees space, unlike a configuration mistake.
    #[error("{0}")]
    Storage(String),
}

pub struct AgentRequest<'a> {
    pub role: Role,
    pub run: &'a RunRef,
    /// Plan round or attempt number, passed to the agent as `CHUM_ATTEMPT`.
    pub round: u32,
    /// Redo number within the attempt, passed as `CHUM_HANDOFF`.
    pub handoff: u32,
    /// Executor and reviewer have swapped (see [`choose_provider`]).
    pub swapped: bool,
    /// Monte Carlo candidate (1-based; 0 without fanout): picks its executor from the tier
    /// (candidate k takes the k-th installed provider, round robin) and is passed as `CHUM_CANDIDATE`.
    pub candidate: u32,
    pub prompt: String,
    pub workdir: &'a Path,
    pub timeout: Duration,
    /// Names the artifacts, e.g. "plan-1" or "execute-2".
    pub artifact_prefix: String,
}

pub struct AgentOutcome {
    pub summary: AgentRunSummary,
    /// The run was stopped because the activity was cancelled; the caller should report that.
    pub cancelled: bool,
    /// The parsed answer, or why there is none (timed out, crashed, reported an error, garbage).
    pub answer: Result<AgentAnswer, String>,
}

/// Resolves the program of a provider's command: a path (relative to the config directory) or
/// a name on PATH.
fn resolve_program(provider: &ProviderConfig, config_dir: &Path) -> Result<PathBuf, ProgramError> {
    let program = expand_command(
        &provider.command[..1],
        &provider.model,
        Path::new(""),
        Path::new(""),
        config_dir,
    )
    .swap_remove(0);
    if program.contains('/') {
        let path = if Path::new(&program).is_absolute() {
            PathBuf::from(program)
        } else {
            config_dir.join(program)
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(ProgramError::Missing {
                program: "the program".into(),
                path,
                given_by: format!("providers.{}.command", provider.name),
            })
        }
    } else {
        which::which(&program).map_err(|_| {
            ProgramError::not_found(
                format!("`{program}`"),
                "is not on PATH",
                format!("install it or give its path in providers.{}.command", provider.name),
            )
        })
    }
}

/// The program a provider runs, resolved (for `chum doctor`), or why it cannot be found.
pub fn provider_program(config: &ChumConfig, provider: &ProviderConfig) -> Result<PathBuf, ProgramError> {
    resolve_program(provider, &config.config_dir)
}

/// A provider and the program it runs, resolved.
type Installed<'a> = (&'a ProviderConfig, PathBuf);

/// The installed providers of a role's tier, in order, and what is missing.
fn installed(config: &ChumConfig, role: Role) -> Result<(Vec<Installed<'_>>, Vec<String>), AgentSetupError> {
    let providers = config.providers_for(role)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for provider in providers {
        match resolve_program(provider, &config.config_dir) {
            Ok(path) => found.push((provider, path)),
            Err(why) => missing.push(format!("provider `{}`: {why}", provider.name)),
        }
    }
    Ok((found, missing))
}

fn not_installed(config: &ChumConfig, role: Role, missing: &[String]) -> AgentSetupError {
    AgentSetupError::MissingBinary(format!(
        "no agent program for role `{role}` is installed ({}). Install it (README: \"Using a real agent\") or point the role's tier in {} at an installed provider",
        missing.join("; "),
        config.source.display()
    ))
}

/// The provider that plays `role`: the first installed provider of its tier. The executor and the
/// reviewer are chosen as a pair so that they differ (the reviewer is the first installed provider
/// of its tier that is not the executor); `swapped` exchanges the two, after a review rejection.
pub fn choose_provider(
    config: &ChumConfig,
    role: Role,
    swapped: bool,
    candidate: u32,
) -> Result<Installed<'_>, AgentSetupError> {
    if !matches!(role, Role::Executor | Role::Reviewer) {
        let (found, missing) = installed(config, role)?;
        return found
            .into_iter()
            .next()
            .ok_or_else(|| not_installed(config, role, &missing));
    }
    let (executors, missing) = installed(config, Role::Executor)?;
    if executors.is_empty() {
        return Err(not_installed(config, Role::Executor, &missing));
    }
    let pick = (candidate.max(1) as usize - 1) % executors.len();
    let executor = executors
        .into_iter()
        .nth(pick)
        .ok_or_else(|| not_installed(config, Role::Executor, &missing))?;
    if role == Role::Executor && !swapped {
        return Ok(executor);
    }
    // Cross-model: another model, not only another provider name (unless the configuration
    // says `allow_same_model_review`).
    let (reviewers, mut missing) = installed(config, Role::Reviewer)?;
    let differs = |p: &ProviderConfig| {
        if config.allow_same_model_review {
            p.name != executor.0.name
        } else {
            p.model_identity() != executor.0.model_identity()
        }
    };
    let reviewer = reviewers.into_iter().find(|(p, _)| differs(p)).ok_or_else(|| {
        missing.push(format!(
            "the executor is `{}` and the reviewer must be another model",
            executor.0.name
        ));
        not_installed(config, Role::Reviewer, &missing)
    })?;
    if config.allow_same_model_review && reviewer.0.model_identity() == executor.0.model_identity() {
        tracing::warn!(executor = %executor.0.name, reviewer = %reviewer.0.name,
            "allow_same_model_review = true: the reviewer runs the same model as the executor");
    }
    Ok(match (role, swapped) {
        (Role::Reviewer, false) | (Role::Executor, true) => reviewer,
        _ => executor,
    })
}

/// What [`ask_with_one_retry`] got: the last run's summary, and the parsed answer or why there is
/// none.
pub struct Asked<T> {
    pub summary: AgentRunSummary,
    pub answer: Result<T, String>,
    /// The activity was cancelled during a run; the caller reports that.
    pub cancelled: bool,
}

/// Runs `role`'s agent on `prompt`; when its answer cannot be used (`parse` says why), once more
/// with the reason under "Your previous answer could not be used". The runs are rounds 1 and 2,
/// their artifacts `<prefix>-1` and `<prefix>-2`.
#[allow(clippy::too_many_arguments)]
pub async fn ask_with_one_retry<T>(
    config: &ChumConfig,
    artifacts: &RunArtifacts,
    role: Role,
    run: &RunRef,
    workdir: &Path,
    prompt: &str,
    prefix: &str,
    liveness: &impl Liveness,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Asked<T>, AgentSetupError> {
    let mut retry_error = String::new();
    let mut summary = AgentRunSummary::default();
    for round in 1..=2u32 {
        let mut text = prompt.to_string();
        if !retry_error.is_empty() {
            text.push_str(&format!("\n## Your previous answer could not be used\n{retry_error}\n"));
        }
        let request = AgentRequest {
            role,
            run,
            round,
            handoff: 0,
            swapped: false,
            candidate: 0,
            prompt: text,
            workdir,
            timeout: config.limits.agent_timeout,
            artifact_prefix: format!("{prefix}-{round}"),
        };
        let outcome = run_agent(config, artifacts, request, liveness).await?;
        summary = outcome.summary;
        if outcome.cancelled {
            return Ok(Asked {
                summary,
                answer: Err("cancelled".into()),
                cancelled: true,
            });
        }
        match outcome.answer.and_then(|a| parse(&a.text)) {
            Ok(answer) => {
                return Ok(Asked {
                    summary,
                    answer: Ok(answer),
                    cancelled: false,
                });
            }
            Err(e) => retry_error = e,
        }
    }
    Ok(Asked {
        summary,
        answer: Err(retry_error),
        cancelled: false,
    })
}

pub async fn run_agent(
    config: &ChumConfig,
    artifacts: &RunArtifacts,
    request: AgentRequest<'_>,
    liveness: &impl Liveness,
) -> Result<AgentOutcome, AgentSetupError> {
    let (provider, program) = choose_provider(config, request.role, request.swapped, request.candidate)?;
    // Checked and reserved in one step, so runs starting at once cannot all take the last dollar.
    let reservation = budget::reserve(config, provider, request.role, request.run, crate::clock::now_ms())?;
    let _turn = budget::provider_turn(provider, || liveness.heartbeat()).await;
    let prefix = &request.artifact_prefix;
    let prompt_path = artifacts
        .write(&format!("{prefix}.prompt.md"), request.prompt.as_bytes())
        .await
        .map_err(|e| {
            AgentSetupError::Storage(format!(
                "cannot write to the artifact store {}: {e}",
                artifacts.dir().display()
            ))
        })?;
    let argv = expand_command(
        &provider.command,
        &provider.model,
        &prompt_path,
        request.workdir,
        &config.config_dir,
    );
    let project = config.projects.get(&request.run.project);
    // Made first so a full or read-only disk is a storage error, not a sandbox one.
    let scratch = artifacts.path(&format!("{prefix}.sandbox"));
    let (home, tmp) = sandbox::scratch_dirs(&scratch).map_err(|e| {
        AgentSetupError::Storage(format!(
            "cannot make the agent's scratch directory {}: {e}",
            scratch.display()
        ))
    })?;
    // The agent's whole environment: nothing of the worker's but what is listed (child_env).
    let mut env = ChildEnv::new(&home, &tmp);
    for (name, value) in &provider.env {
        env.set(name.clone(), value.clone());
    }
    let missing = env.pass(&provider.pass_env);
    if !missing.is_empty() {
        tracing::warn!(provider = %provider.name, ?missing, "pass_env names variables the worker's environment does not have; the agent runs without them");
    }
    let contract = [
        ("CHUM_ROLE", request.role.to_string()),
        ("CHUM_BEAD_ID", request.run.bead_id.clone()),
        ("CHUM_PROJECT", request.run.project.clone()),
        ("CHUM_ATTEMPT", request.round.to_string()),
        ("CHUM_HANDOFF", request.handoff.to_string()),
        ("CHUM_PROVIDER", provider.name.clone()),
        ("CHUM_WORKFLOW_ID", request.run.workflow_id.clone()),
        ("CHUM_CANDIDATE", request.candidate.to_string()),
    ];
    for (name, value) in contract {
        env.set(name, value);
    }
    let aider_log = (provider.output == OutputFormat::Aider).then(|| super::aider::files(&mut env, &scratch));
    // MCP servers: the CLI's configuration for this run, and their variables by name.
    let mcp_servers = crate::agent::servers_for(provider, project);
    let mut mcp_config = String::new();
    if !mcp_servers.is_empty() || provider.command.iter().any(|a| a.contains("{mcp_config}")) {
        let written = crate::agent::write_configs(&mcp_servers, &home, &scratch)
            .map_err(|e| AgentSetupError::Storage(format!("cannot write the agent's MCP configuration: {e}")))?;
        mcp_config = written.display().to_string();
        env.set("CHUM_MCP_CONFIG", mcp_config.clone());
        // Claude Code connects MCP servers in the background in `-p` mode, so a model's first
        // turns can find the tools "still connecting"; a headless run waits for them instead
        // (the provider's `env` can say otherwise).
        if !mcp_servers.is_empty() && env.get("MCP_CONNECTION_NONBLOCKING").is_none() {
            env.set("MCP_CONNECTION_NONBLOCKING", "false");
        }
        let missing = env.pass(&crate::agent::env_names(&mcp_servers));
        if !missing.is_empty() {
            tracing::warn!(provider = %provider.name, ?missing, "MCP servers name variables the worker's environment does not have");
        }
    }
    let spec = ProcessSpec {
        program,
        args: argv[1..]
            .iter()
            .map(|a| a.replace("{mcp_config}", &mcp_config))
            .collect(),
        cwd: request.workdir.to_path_buf(),
        env: env.into_vec(),
        stdin: if provider.takes_prompt_file() {
            None
        } else {
            Some(request.prompt.clone().into_bytes())
        },
        timeout: request.timeout,
        stdout_path: artifacts.path(&format!("{prefix}.stdout.log")),
        stderr_path: artifacts.path(&format!("{prefix}.stderr.log")),
        capture_limit: CAPTURE_LIMIT,
        cgroup_procs: Vec::new(),
    };
    // The agent runs sandboxed as its project says (auto when the run names no project).
    let mode = project
        .map(|p| p.sandbox)
        .unwrap_or(chum_core::config::SandboxMode::Auto);
    let expand = |paths: &[String]| -> Vec<PathBuf> {
        expand_command(
            paths,
            &provider.model,
            &prompt_path,
            request.workdir,
            &config.config_dir,
        )
        .into_iter()
        .map(PathBuf::from)
        .collect()
    };
    // Files the command names (prompt, scenario, config) are shown by `sandbox::wrap`; the config
    // directory as a whole is not (it may sit beside things the agent has no business reading).
    let mut readable = Vec::new();
    if let Some(project) = project {
        // A worktree's `.git` file points into the repository's `.git`: git needs to read it.
        readable.push(project.repo.join(".git"));
    }
    readable.extend(expand(&provider.readable));
    readable.extend(mcp_servers.iter().flat_map(crate::agent::server_paths));
    let (toolchains, caches) = project
        .map(|p| sandbox::project_mounts(&p.environment))
        .unwrap_or_default();
    let policy = SandboxPolicy {
        workdir: request.workdir.to_path_buf(),
        scratch,
        readable,
        writable: expand(&provider.writable),
        toolchains,
        caches,
    };
    let sandboxing = sandbox::resolve(mode, &config.sandbox)?;
    let network = Network {
        allow: &provider.allow_hosts,
        around: crate::exec::surroundings(config).await,
        client: EgressClient {
            name: provider.name.clone(),
            log_file: artifacts.path(&format!("{prefix}.egress.log")),
        },
    };
    let prepared = sandbox::prepare(spec, &sandboxing, &config.sandbox, &policy, Some(network))?;
    let spec = prepared.spec.clone();
    tracing::info!(
        provider = %provider.name,
        role = %request.role,
        sandbox = %prepared.sandboxing.describe(),
        network = %prepared.network,
        limits = ?prepared.cgroups.as_ref().map(|c| c.enforced()),
        "agent starting"
    );
    let mut summary = AgentRunSummary {
        provider: provider.name.clone(),
        sandbox: prepared.sandboxing.describe(),
        network: prepared.network.clone(),
        role: request.role.to_string(),
        prompt_artifact: prompt_path.display().to_string(),
        stdout_artifact: spec.stdout_path.display().to_string(),
        stderr_artifact: spec.stderr_path.display().to_string(),
        ..AgentRunSummary::default()
    };
    let outcome = match run_process(&spec, HEARTBEAT_EVERY, || liveness.heartbeat(), liveness.cancelled()).await {
        Ok(outcome) => outcome,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !prepared.sandboxing.is_sandboxed() => {
            return Err(AgentSetupError::MissingBinary(format!(
                "agent program {} of provider `{}` could not be started: {e}",
                spec.program.display(),
                provider.name
            )));
        }
        Err(e) if is_storage_error(&e) => {
            return Err(AgentSetupError::Storage(format!(
                "cannot write the agent's output to the artifact store {}: {e}",
                artifacts.dir().display()
            )));
        }
        Err(e) => {
            return Ok(AgentOutcome {
                answer: Err(format!("the agent could not be run: {e}")),
                summary,
                cancelled: false,
            });
        }
    };
    summary.process_limit_hit = prepared.process_limit_hit();
    summary.memory_limit_hit = prepared.memory_limit_hit();
    summary.egress_refused = prepared.egress_refused();
    // The run is over: its cgroups (and whatever is left in them) and its proxy go.
    drop(prepared);
    summary.exit_code = outcome.code();
    summary.timed_out = outcome.timed_out;
    summary.duration_ms = outcome.duration.as_millis() as u64;

    let stdout = read_capped(&spec.stdout_path, PARSE_LIMIT).await.unwrap_or_default();
    let stderr_tail = read_tail(&spec.stderr_path, 4096).await.unwrap_or_default();
    // Read whatever it printed, even when it failed: an error answer still reports what it cost.
    let parsed = (!outcome.cancelled && outcome.stdout_bytes <= CAPTURE_LIMIT)
        .then(|| parse_agent_output(provider.output, &stdout));
    let mut reported = parsed.as_ref().and_then(|p| p.as_ref().ok()).map(|a| a.usage);
    if let (Some(usage), Some(log)) = (reported.as_mut(), &aider_log) {
        super::aider::exact_usage(usage, log).await;
    }
    let answer = if outcome.cancelled {
        Err("the agent run was cancelled".to_string())
    } else if summary.memory_limit_hit {
        Err(format!(
            "the agent was killed at its memory limit ([sandbox] max_memory = {})",
            config.sandbox.limits.max_memory.map(show_size).unwrap_or_default()
        ))
    } else if outcome.timed_out {
        Err(format!(
            "the agent did not finish within {}s and was killed with its process group",
            request.timeout.as_secs()
        ))
    } else if outcome.stdout_bytes > CAPTURE_LIMIT {
        // Its answer comes last, past what was kept: say so instead of a confusing parse error.
        Err(format!(
            "the agent wrote {} bytes to stdout, more than the {} kept; its answer was lost ({} ends with a truncation note)",
            outcome.stdout_bytes,
            CAPTURE_LIMIT,
            spec.stdout_path.display()
        ))
    } else {
        match parsed {
            Some(Ok(answer)) if answer.is_error => {
                Err(format!("the agent reported an error: {}", excerpt(&answer.text, 500)))
            }
            Some(Ok(answer)) if outcome.exit_code != Some(0) && answer.text.trim().is_empty() => Err(format!(
                "the agent exited with code {} and gave no answer; stderr: {}",
                outcome.code(),
                tail_excerpt(&stderr_tail, 500)
            )),
            Some(Ok(answer)) => Ok(answer),
            Some(Err(parse_error)) if outcome.exit_code != Some(0) => Err(format!(
                "the agent exited with code {}; stderr: {}; {parse_error}",
                outcome.code(),
                tail_excerpt(&stderr_tail, 500)
            )),
            Some(Err(parse_error)) => Err(parse_error),
            None => Err("the agent gave no answer".to_string()),
        }
    };
    if let Ok(a) = &answer {
        summary.is_error = false;
        summary.result_excerpt = excerpt(&a.text, 500);
    } else {
        summary.is_error = true;
    }
    // What the run cost, as the agent reported it (errors included), for budgets, `chum usage`
    // and /metrics; a provider that reports no cost has it computed from its tokens and price, or
    // estimated from its time when it has a rate.
    let (usage, source) = cost_of(provider, reported, summary.duration_ms);
    summary.usage = (reported.is_some() || source == CostSource::Estimated).then_some(usage);
    let record = UsageRecord {
        project: request.run.project.clone(),
        bead_id: request.run.bead_id.clone(),
        workflow_id: request.run.workflow_id.clone(),
        run_id: request.run.run_id.clone(),
        role: request.role.to_string(),
        attempt: request.round,
        handoff: request.handoff,
        provider: provider.name.clone(),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cost_usd: usage.cost_usd,
        duration_ms: summary.duration_ms,
        created_ms: crate::clock::now_ms(),
        estimated: source == CostSource::Estimated,
        computed: source == CostSource::Computed,
    };
    let recorded = match reservation {
        Some(reservation) => reservation.settle(&record),
        None => Store::for_config(config).and_then(|s| s.record_usage(&record)),
    };
    if let Err(e) = recorded {
        tracing::warn!(provider = %provider.name, "usage not recorded: {e}");
    }
    Ok(AgentOutcome {
        summary,
        answer,
        cancelled: outcome.cancelled,
    })
}

/// A full or read-only disk (the artifact store), as opposed to a program that cannot run.
pub(crate) fn is_storage_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::QuotaExceeded
    )
}
