//! A project's own commands, run in an attempt's worktree the way its agents run: definition-of-
//! done commands (no network) and setup commands (the project's `setup_allow_hosts`), with the
//! project's toolchains and caches mounted, the child environment of `child_env`, and its limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chum_core::config::{ChumConfig, ProjectConfig, show_size};
use chum_core::egress::AllowList;
use chum_core::text::tail_excerpt;

use crate::agent::Liveness;
use crate::exec::ChildEnv;
use crate::exec::EgressClient;
use crate::exec::{self as sandbox, Network, SandboxError, SandboxPolicy};
use crate::exec::{ProcessOutcome, ProcessSpec, read_tail, run_process};
use crate::store::RunArtifacts;

/// Bytes of a command's output kept per stream in the artifact store.
const CAPTURE_LIMIT: u64 = 8 * 1024 * 1024;
/// Characters of failing output carried in payloads and prompts.
pub const EXCERPT_CHARS: usize = 3000;

/// One project command to run.
pub struct ProjectCommand<'a> {
    pub command: &'a str,
    pub worktree: &'a Path,
    /// Names its artifacts, e.g. `dod-1-2` or `setup-1-1`.
    pub name: String,
    pub timeout: Duration,
    /// Hosts it may reach (`None` or empty: no network).
    pub allow_hosts: Option<&'a AllowList>,
}

/// How it went.
pub struct CommandRun {
    pub outcome: ProcessOutcome,
    /// The tail of what it printed (stdout, then stderr), with CHUM's notes appended.
    pub output: String,
    pub sandbox: String,
    pub stdout_path: PathBuf,
}

impl CommandRun {
    pub fn passed(&self) -> bool {
        self.outcome.success()
    }
}

/// Runs `cmd` with `sh -c` in its worktree, sandboxed as the project says. An error only when it
/// cannot be started at all (the sandbox cannot be made, the process cannot be spawned); the
/// activity reports that as retryable or as a configuration problem.
pub async fn run_project_command(
    config: &ChumConfig,
    project: &ProjectConfig,
    artifacts: &RunArtifacts,
    cmd: ProjectCommand<'_>,
    liveness: &impl Liveness,
) -> Result<CommandRun, CommandError> {
    let scratch = artifacts.path(&format!("{}.sandbox", cmd.name));
    let (home, tmp) = sandbox::scratch_dirs(&scratch)
        .map_err(|e| CommandError::Storage(format!("cannot make {}: {e}", scratch.display())))?;
    let mut env = ChildEnv::new(&home, &tmp);
    env.set("CHUM_WORKTREE", cmd.worktree.display().to_string());
    env.set("CHUM_PROJECT", project.name.clone());
    let spec = ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), cmd.command.to_string()],
        cwd: cmd.worktree.to_path_buf(),
        env: env.into_vec(),
        stdin: None,
        timeout: cmd.timeout,
        stdout_path: artifacts.path(&format!("{}.log", cmd.name)),
        stderr_path: artifacts.path(&format!("{}.stderr.log", cmd.name)),
        capture_limit: CAPTURE_LIMIT,
        cgroup_procs: Vec::new(),
    };
    // Project commands run agent-written code: the same sandbox as the agents.
    let policy = command_policy(project, cmd.worktree, scratch);
    let sandboxing = sandbox::resolve(project.sandbox, &config.sandbox)?;
    let network = match cmd.allow_hosts {
        Some(allow) if !allow.is_empty() => Some(Network {
            allow,
            around: crate::exec::surroundings(config).await,
            client: EgressClient {
                // The kind of command (`setup`), not its run: a `/metrics` label stays bounded.
                name: format!("{}:{}", project.name, cmd.name.split('-').next().unwrap_or("command")),
                log_file: artifacts.path(&format!("{}.egress.log", cmd.name)),
            },
        }),
        _ => None,
    };
    let prepared = sandbox::prepare(spec, &sandboxing, &config.sandbox, &policy, network)?;
    let described = prepared.sandboxing.describe();
    tracing::info!(command = %cmd.command, sandbox = %described, network = %prepared.network, "project command starting");
    let outcome = run_process(
        &prepared.spec,
        Duration::from_secs(5),
        || liveness.heartbeat(),
        liveness.cancelled(),
    )
    .await
    .map_err(|e| CommandError::Start(format!("could not run `{}`: {e}", cmd.command)))?;
    let stdout = read_tail(&prepared.spec.stdout_path, 64 * 1024)
        .await
        .unwrap_or_default();
    let stderr = read_tail(&prepared.spec.stderr_path, 64 * 1024)
        .await
        .unwrap_or_default();
    let combined = match (stdout.trim().is_empty(), stderr.trim().is_empty()) {
        (_, true) => stdout,
        (true, false) => stderr,
        (false, false) => format!("{stdout}\n[stderr]\n{stderr}"),
    };
    let mut output = tail_excerpt(&combined, EXCERPT_CHARS);
    if outcome.timed_out {
        output.push_str(&format!("\n[chum: killed after {}s]", cmd.timeout.as_secs()));
    }
    if prepared.process_limit_hit() {
        output.push_str("\n[chum: the process limit ([sandbox] max_processes) was reached]");
    }
    if prepared.memory_limit_hit() {
        output.push_str(&format!(
            "\n[chum: killed at the memory limit ([sandbox] max_memory = {})]",
            config.sandbox.limits.max_memory.map(show_size).unwrap_or_default()
        ));
    }
    for refused in prepared.egress_refused() {
        output.push_str(&format!("\n[chum: network refused: {refused}]"));
    }
    if outcome.exit_code == Some(127)
        && prepared.sandboxing.is_sandboxed()
        && let Some(hint) = sandbox::explain_not_found(cmd.command, &config.sandbox, &policy)
    {
        output.push_str(&format!("\n[chum: {hint}]"));
    }
    let stdout_path = prepared.spec.stdout_path.clone();
    let memory_killed = prepared.memory_limit_hit();
    drop(prepared);
    let mut outcome = outcome;
    if memory_killed {
        // Killed at its limit: a failure whatever the shell's exit code says.
        outcome.exit_code = outcome.exit_code.filter(|c| *c != 0).or(Some(137));
    }
    Ok(CommandRun {
        outcome,
        output,
        sandbox: described,
        stdout_path,
    })
}

/// Why a project command could not even start.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The sandbox the project asks for cannot be had (bwrap missing, bridge missing).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The artifact store cannot be written.
    #[error("{0}")]
    Storage(String),
    /// The process could not be spawned.
    #[error("{0}")]
    Start(String),
}

/// What a project command's sandbox holds: `workdir` writable, the repository's `.git` readable
/// (worktrees point into it), the project's toolchains and caches, a scratch HOME and TMPDIR.
fn command_policy(project: &ProjectConfig, workdir: &Path, scratch: PathBuf) -> SandboxPolicy {
    let (toolchains, caches) = sandbox::project_mounts(&project.environment);
    SandboxPolicy {
        workdir: workdir.to_path_buf(),
        scratch,
        readable: vec![project.repo.join(".git")],
        toolchains,
        caches,
        ..SandboxPolicy::default()
    }
}

/// Why a project command's program would not start (what `chum doctor` reports).
#[derive(Debug, thiserror::Error)]
pub enum CannotStart {
    #[error("an empty command")]
    Empty,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The check itself could not be run (no scratch directory, no shell).
    #[error("cannot run the check: {0}")]
    Check(#[from] std::io::Error),
    /// The program is not there, with what to do about it.
    #[error("{0}")]
    NotFound(String),
}

/// Whether `command`'s program can be found inside the project's sandbox (for `chum doctor`):
/// `command -v <program>` run in a scratch directory with the project's mounts. `Ok` names where
/// it was found; `Err` says why not and what to do.
pub async fn can_start(config: &ChumConfig, project: &ProjectConfig, command: &str) -> Result<String, CannotStart> {
    let Some(word) = command
        .split_whitespace()
        .find(|w| !w.contains('=') || w.starts_with('/') || w.starts_with('.'))
    else {
        return Err(CannotStart::Empty);
    };
    if word.starts_with("./") || !word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        return Ok(format!("`{word}` (in the worktree; not checked)"));
    }
    let dir = tempfile::tempdir()?;
    let scratch = dir.path().join("sandbox");
    let (home, tmp) = sandbox::scratch_dirs(&scratch)?;
    let spec = ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), format!("command -v {word}")],
        cwd: dir.path().to_path_buf(),
        env: ChildEnv::new(&home, &tmp).into_vec(),
        stdin: None,
        timeout: Duration::from_secs(10),
        stdout_path: dir.path().join("out"),
        stderr_path: dir.path().join("err"),
        capture_limit: 64 * 1024,
        cgroup_procs: Vec::new(),
    };
    let policy = command_policy(project, dir.path(), scratch);
    let sandboxing = sandbox::resolve(project.sandbox, &config.sandbox)?;
    let prepared = sandbox::prepare(spec, &sandboxing, &config.sandbox, &policy, None)?;
    let outcome = run_process(
        &prepared.spec,
        Duration::from_secs(5),
        || async {},
        std::future::pending::<()>(),
    )
    .await?;
    let found = read_tail(&prepared.spec.stdout_path, 4096).await.unwrap_or_default();
    if outcome.success() {
        return Ok(format!("`{word}` is {}", found.trim()));
    }
    Err(CannotStart::NotFound(
        sandbox::explain_not_found(word, &config.sandbox, &policy)
            .unwrap_or_else(|| format!("`{word}` is not found inside the sandbox (nor on the worker's PATH)")),
    ))
}
