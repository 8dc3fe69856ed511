//! The worker configuration (`chum.toml`): schema, defaults and validation.
//!
//! Loading is layered with the `config` crate: the TOML file, then environment overrides named
//! `CHUM__<SECTION>__<KEY>` (e.g. `CHUM__TEMPORAL__ADDRESS`). This module is pure: the caller reads
//! the file and the environment and passes them in, so every error path is unit-tested.
//! Every error names the file, the key and what to do.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::egress::AllowList;
use crate::proto::SharkLimits;

pub mod world;
use world::RawMcpServer;
pub use world::{McpServer, ProjectEnvironment, ResourceLimits, parse_size, show_size};

/// Agent roles. Each maps to a tier, each tier to an ordered list of providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Planner,
    Executor,
    Reviewer,
    Learner,
    Groomer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Planner,
        Role::Executor,
        Role::Reviewer,
        Role::Learner,
        Role::Groomer,
    ];
    /// Roles the Shark cannot run without.
    pub const REQUIRED: [Role; 2] = [Role::Planner, Role::Executor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Planner => "planner",
            Role::Executor => "executor",
            Role::Reviewer => "reviewer",
            Role::Learner => "learner",
            Role::Groomer => "groomer",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an agent CLI's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Claude Code `-p --output-format json`: one JSON object with `result`, `usage`, `total_cost_usd`.
    ClaudeJson,
    /// Codex `exec --json`: JSON lines of events; the last agent message is the answer.
    CodexJsonl,
    /// Plain text: stdout is the answer.
    Text,
}

impl OutputFormat {
    pub fn parse(name: &str) -> Option<OutputFormat> {
        match name {
            "claude-json" => Some(OutputFormat::ClaudeJson),
            "codex-jsonl" => Some(OutputFormat::CodexJsonl),
            "text" => Some(OutputFormat::Text),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::ClaudeJson => "claude-json",
            OutputFormat::CodexJsonl => "codex-jsonl",
            OutputFormat::Text => "text",
        }
    }
}

/// What happens to work that passed its gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationPolicy {
    /// Commit on `chum/<bead>` and leave the branch for a person to merge.
    Branch,
    /// Commit on `chum/<bead>` and fast-forward (or merge) it into the base branch.
    Merge,
}

impl IntegrationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationPolicy::Branch => "branch",
            IntegrationPolicy::Merge => "merge",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemporalSettings {
    pub address: String,
    pub namespace: String,
    pub task_queue: String,
    /// How long the worker keeps retrying to connect before giving up.
    pub connect_timeout: Duration,
    /// Where people look at runs: the Temporal UI (`temporal server start-dev` serves it on :8233).
    pub ui_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_attempts: u32,
    pub max_handoffs: u32,
    pub max_plan_rounds: u32,
    pub max_gate_rejections: u32,
    pub gate_timeout: Duration,
    pub agent_timeout: Duration,
    pub dod_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attempts: 3,
            max_handoffs: 3,
            max_plan_rounds: 3,
            max_gate_rejections: 3,
            gate_timeout: Duration::from_secs(24 * 3600),
            agent_timeout: Duration::from_secs(30 * 60),
            dod_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl Limits {
    /// The limits as carried in a workflow input.
    pub fn to_proto(&self) -> SharkLimits {
        SharkLimits {
            max_attempts: self.max_attempts,
            max_handoffs: self.max_handoffs,
            max_plan_rounds: self.max_plan_rounds,
            max_gate_rejections: self.max_gate_rejections,
            gate_timeout_secs: self.gate_timeout.as_secs().max(1),
            agent_timeout_secs: self.agent_timeout.as_secs().max(1),
            dod_timeout_secs: self.dod_timeout.as_secs().max(1),
        }
    }

    /// The limits a run uses: those in its input, with zero or absent values defaulted.
    pub fn from_proto(limits: Option<&SharkLimits>) -> Limits {
        let d = Limits::default();
        let Some(l) = limits else { return d };
        let or = |v: u32, dv: u32| if v == 0 { dv } else { v };
        let or_secs = |v: u64, dv: Duration| if v == 0 { dv } else { Duration::from_secs(v) };
        Limits {
            max_attempts: or(l.max_attempts, d.max_attempts),
            max_handoffs: or(l.max_handoffs, d.max_handoffs),
            max_plan_rounds: or(l.max_plan_rounds, d.max_plan_rounds),
            max_gate_rejections: or(l.max_gate_rejections, d.max_gate_rejections),
            gate_timeout: or_secs(l.gate_timeout_secs, d.gate_timeout),
            agent_timeout: or_secs(l.agent_timeout_secs, d.agent_timeout),
            dod_timeout: or_secs(l.dod_timeout_secs, d.dod_timeout),
        }
    }
}

/// The checks between execution and integration, run in the project's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A different model reviews the diff against the plan's acceptance criteria.
    Review,
    /// The project's `.semgrep/` rules and CHUM's shipped pack on the changed files.
    Semgrep,
    /// The definition of done: the project's commands.
    Dod,
}

impl Gate {
    pub const DEFAULT_ORDER: [Gate; 3] = [Gate::Review, Gate::Semgrep, Gate::Dod];

    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Review => "review",
            Gate::Semgrep => "semgrep",
            Gate::Dod => "dod",
        }
    }

    pub fn parse(name: &str) -> Option<Gate> {
        Gate::DEFAULT_ORDER.into_iter().find(|g| g.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectConfig {
    pub name: String,
    /// Absolute path of the project's git repository (its main checkout).
    pub repo: PathBuf,
    pub base_branch: String,
    /// Definition-of-done commands, run with `sh -c` in the attempt's worktree, in order.
    pub dod: Vec<String>,
    pub integration: IntegrationPolicy,
    /// The native Beads file, relative to `repo` (default `.beads/issues.jsonl`).
    pub beads_file: PathBuf,
    pub enabled: bool,
    /// The gates every attempt passes, in order (default review, semgrep, dod).
    pub gates: Vec<Gate>,
    /// Count a missing or unusable review verdict as a pass instead of a rejection. Off by default.
    pub review_fail_open: bool,
    /// Where the beads live.
    pub backlog: BacklogBackend,
    /// Sharks the dispatcher runs at once for this project.
    pub concurrency: u32,
    /// Whether its agents and DoD commands run sandboxed (default auto).
    pub sandbox: SandboxMode,
    /// Monte Carlo execution: candidates per attempt (1 = none). A bead label `fanout:N` overrides.
    pub fanout: u32,
    /// How the winning candidate is chosen.
    pub select: SelectMode,
    /// Setup commands, toolchains, caches, copied files and MCP servers of its sandboxes.
    pub environment: ProjectEnvironment,
}

/// How a Monte Carlo attempt picks its winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectMode {
    /// The first candidate to pass every gate; the others are cancelled.
    First,
    /// After all candidates end, the best: gates passed, then fewest review findings, then the
    /// smallest diff, then the quickest definition of done.
    Best,
}

impl SelectMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectMode::First => "first",
            SelectMode::Best => "best",
        }
    }
}

/// Most candidates one attempt may run.
pub const MAX_FANOUT: u32 = 8;

/// Whether agent and DoD processes run in a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// bubblewrap when it works on this machine; otherwise unsandboxed, said loudly.
    Auto,
    /// bubblewrap, or the run fails with the reason.
    Bwrap,
    /// No sandbox.
    None,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Bwrap => "bwrap",
            SandboxMode::None => "none",
        }
    }
}

/// The sandbox, machine-wide.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSettings {
    /// The bubblewrap program; found on PATH (or installed by `scripts/setup.sh`) when not set.
    pub bwrap: Option<PathBuf>,
    /// Processes a sandboxed run may have at once (a fork bomb hits this, then the timeout).
    pub max_processes: u32,
    /// Paths hidden from sandboxed processes (an empty directory is mounted over each), besides
    /// the worker's home directory, which is always hidden. Paths CHUM needs inside them (the
    /// worktree, the agent program, the prompt) are mounted back.
    pub hide: Vec<PathBuf>,
    /// Memory and CPU per run, enforced with cgroups where the machine lets CHUM create them.
    pub limits: ResourceLimits,
    /// The `chum-netbridge` program that carries a sandbox's proxy traffic to the worker; found
    /// next to the worker binary or on PATH when not set.
    pub netbridge: Option<PathBuf>,
}

/// How a project's backlog is read and written.
#[derive(Debug, Clone, PartialEq)]
pub enum BacklogBackend {
    /// `<repo>/<beads_file>`, the JSONL classic Beads keeps in git (no Beads install needed).
    Native,
    /// The `bd` or `br` program, with `--json`.
    Cli { program: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    /// argv template. Placeholders: `{model}`, `{prompt_file}` (prompt in a file instead of on
    /// stdin), `{workdir}` (where the agent runs), `{config_dir}` (the config file's directory).
    pub command: Vec<String>,
    pub output: OutputFormat,
    pub model: String,
    /// Extra environment variables for the agent process (values written in the config).
    pub env: BTreeMap<String, String>,
    /// Variables passed from the worker's environment by name (API keys): nothing else of the
    /// worker's environment reaches the agent.
    pub pass_env: Vec<String>,
    /// Runs of this provider at once in one worker (0 = no limit).
    pub max_concurrent: u32,
    /// Least time between the starts of two runs of this provider (rate limits).
    pub cooldown: Duration,
    /// What a minute of this provider costs, for budgets, when it reports no cost itself (a
    /// `text` provider); such figures are marked estimated. 0 = not estimated.
    pub cost_per_minute_usd: f64,
    /// The hosts the sandboxed agent may reach, through the worker's egress proxy (empty: no
    /// network at all).
    pub allow_hosts: AllowList,
    /// MCP servers the agent may use (written into its CLI's configuration for each run).
    pub mcp_servers: Vec<McpServer>,
    /// More paths the sandboxed agent may write (placeholders as in `command`).
    pub writable: Vec<String>,
    /// More paths it may read when they are hidden (placeholders as in `command`).
    pub readable: Vec<String>,
}

impl ProviderConfig {
    pub fn takes_prompt_file(&self) -> bool {
        self.command.iter().any(|a| a.contains("{prompt_file}"))
    }

    /// The model this provider runs, as far as the configuration tells: its program (by name) and
    /// its `model`. Two providers with the same identity are the same model, whatever their names.
    pub fn model_identity(&self) -> (String, String) {
        let program = self.command.first().map(String::as_str).unwrap_or_default();
        let name = program.rsplit('/').next().unwrap_or(program).to_string();
        (name, self.model.trim().to_ascii_lowercase())
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ChumConfig {
    /// The file it was read from (for messages) and the directory relative paths start from.
    pub source: PathBuf,
    pub config_dir: PathBuf,
    pub temporal: TemporalSettings,
    /// Where CHUM keeps its own state: artifacts, logs.
    pub state_dir: PathBuf,
    pub limits: Limits,
    pub projects: BTreeMap<String, ProjectConfig>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub tiers: BTreeMap<String, Vec<String>>,
    pub roles: BTreeMap<Role, String>,
    pub semgrep: SemgrepSettings,
    pub learner: LearnerSettings,
    pub dispatcher: DispatcherSettings,
    pub groom: GroomSettings,
    pub api: ApiSettings,
    pub budget: Budget,
    pub sandbox: SandboxSettings,
    /// Let the reviewer be the same model as the executor (another provider name running the same
    /// program and model). Off: cross-model review means another model.
    pub allow_same_model_review: bool,
}

/// Spending caps, checked before every agent call against the usage the agents reported
/// (0 = no cap). A day is a UTC calendar day.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Budget {
    pub per_bead_usd: f64,
    pub per_bead_tokens: u64,
    pub project_daily_usd: f64,
    pub project_daily_tokens: u64,
    pub global_daily_usd: f64,
    pub global_daily_tokens: u64,
}

/// The worker's HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub enabled: bool,
    /// Where it listens. Anything but a loopback address needs tokens.
    pub bind: std::net::SocketAddr,
    /// The environment variable holding the bearer tokens: `name:token` pairs, comma-separated.
    pub tokens_env: String,
    /// The append-only audit log of control actions (JSON lines).
    pub audit_log: PathBuf,
}

/// Backlog grooming: a TacticalGroom after every Shark, a StrategicGroom on a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct GroomSettings {
    /// Groom at all (needs `roles.groomer`).
    pub enabled: bool,
    /// Changes one tactical groom may make.
    pub max_mutations: u32,
    /// Run the StrategicGroom from a Temporal Schedule per project.
    pub strategic: bool,
    /// Cron expression of the strategic groom (5 fields: minute hour day-of-month month day-of-week).
    pub schedule: String,
    /// IANA time zone the cron expression is read in.
    pub timezone: String,
    /// Changes one strategic groom may make.
    pub strategic_max_mutations: u32,
}

/// The per-project Dispatcher the worker starts: ready beads become Sharks without a manual start.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatcherSettings {
    pub enabled: bool,
    /// Time between rounds.
    pub interval: Duration,
    /// Rounds before the dispatcher continues as new (its history stays small).
    pub rounds_per_run: u32,
}

/// The learning loop: lessons from every run, fed back into prompts, crystallized into rules.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerSettings {
    /// Start the ContinuousLearner after runs (needs `roles.learner`).
    pub enabled: bool,
    /// Lessons put into a planner's or executor's prompt.
    pub top_k: u32,
    /// Lessons unused for this long drop out of prompts (they stay in the store).
    pub expiry: Duration,
    /// Lessons taken from one run at most.
    pub max_lessons_per_run: u32,
}

/// How the Semgrep gate runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SemgrepSettings {
    /// The `semgrep-core` engine; found next to the `semgrep` on PATH when not set.
    pub core: Option<PathBuf>,
    /// Limit of one scan.
    pub timeout: Duration,
    /// The `semgrep` CLI, for validating and testing generated rules; found on PATH or next to
    /// `core` when not set.
    pub cli: Option<PathBuf>,
}

/// Checks a 5-field cron expression (minute hour day-of-month month day-of-week) or a `@daily`-style
/// shorthand. Temporal has the last word; this catches the common mistakes with a clear message.
pub fn check_cron(expr: &str) -> Result<(), String> {
    const SHORTHANDS: [&str; 7] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    let expr = expr.trim();
    if SHORTHANDS.contains(&expr) {
        return Ok(());
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{expr:?} has {} fields; a cron expression has 5 (minute hour day-of-month month day-of-week), e.g. \"0 6 * * *\"",
            fields.len()
        ));
    }
    for field in fields {
        if !field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?'))
        {
            return Err(format!("{expr:?}: the field {field:?} is not valid cron syntax"));
        }
    }
    Ok(())
}

/// A configuration error: which file, which key, what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {file} not found. Copy configs/chum.example.toml to {file} or pass --config <path>")]
    Missing { file: String },
    #[error(
        "no configuration file: looked for {tried}. Copy configs/chum.example.toml to configs/chum.toml, or pass --config <path> (or set CHUM_CONFIG)"
    )]
    NotFound { tried: String },
    #[error("{file}: {detail}")]
    Syntax { file: String, detail: String },
    #[error("{file}: unknown key `{key}`; see configs/chum.example.toml for every valid key")]
    UnknownKey { file: String, key: String },
    #[error("{file}: key `{key}`: {reason}")]
    Invalid { file: String, key: String, reason: String },
}

impl ConfigError {
    /// The offending key, when the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    temporal: RawTemporal,
    state_dir: Option<String>,
    allow_same_model_review: Option<bool>,
    limits: RawLimits,
    projects: BTreeMap<String, RawProject>,
    providers: BTreeMap<String, RawProvider>,
    tiers: BTreeMap<String, Vec<String>>,
    roles: BTreeMap<String, String>,
    semgrep: RawSemgrep,
    learner: RawLearner,
    dispatcher: RawDispatcher,
    groom: RawGroom,
    api: RawApi,
    budget: RawBudget,
    sandbox: RawSandbox,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSandbox {
    bwrap: Option<String>,
    max_processes: Option<u32>,
    hide: Vec<String>,
    max_memory: Option<String>,
    cpu_quota: Option<f64>,
    netbridge: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawApi {
    enabled: Option<bool>,
    bind: Option<String>,
    tokens_env: Option<String>,
    audit_log: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawGroom {
    enabled: Option<bool>,
    max_mutations: Option<u32>,
    strategic: Option<bool>,
    schedule: Option<String>,
    timezone: Option<String>,
    strategic_max_mutations: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSemgrep {
    core: Option<String>,
    cli: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawDispatcher {
    enabled: Option<bool>,
    interval: Option<String>,
    rounds_per_run: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawLearner {
    enabled: Option<bool>,
    top_k: Option<u32>,
    expiry: Option<String>,
    max_lessons_per_run: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTemporal {
    address: Option<String>,
    namespace: Option<String>,
    task_queue: Option<String>,
    connect_timeout: Option<String>,
    ui_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawLimits {
    max_attempts: Option<u32>,
    max_handoffs: Option<u32>,
    max_plan_rounds: Option<u32>,
    max_gate_rejections: Option<u32>,
    gate_timeout: Option<String>,
    agent_timeout: Option<String>,
    dod_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawProject {
    repo: Option<String>,
    gates: Option<Vec<String>>,
    review_fail_open: Option<bool>,
    beads_backend: Option<String>,
    beads_cli: Option<String>,
    concurrency: Option<u32>,
    base_branch: Option<String>,
    dod: Vec<String>,
    integration: Option<String>,
    beads_file: Option<String>,
    enabled: Option<bool>,
    sandbox: Option<String>,
    fanout: Option<u32>,
    select: Option<String>,
    setup: Vec<String>,
    setup_allow_hosts: Vec<String>,
    setup_timeout: Option<String>,
    toolchains: Vec<String>,
    caches: Vec<String>,
    copy_files: Vec<String>,
    mcp_servers: BTreeMap<String, RawMcpServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawProvider {
    command: Vec<String>,
    output: Option<String>,
    model: Option<String>,
    env: BTreeMap<String, String>,
    pass_env: Vec<String>,
    max_concurrent: Option<u32>,
    cooldown: Option<String>,
    cost_per_minute_usd: Option<f64>,
    network: Option<String>,
    allow_hosts: Vec<String>,
    mcp_servers: BTreeMap<String, RawMcpServer>,
    writable: Vec<String>,
    readable: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawBudget {
    per_bead_usd: Option<f64>,
    per_bead_tokens: Option<u64>,
    project_daily_usd: Option<f64>,
    project_daily_tokens: Option<u64>,
    global_daily_usd: Option<f64>,
    global_daily_tokens: Option<u64>,
}

pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:7233";
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_TASK_QUEUE: &str = "chum";
pub const DEFAULT_UI_URL: &str = "http://127.0.0.1:8233";
pub const ENV_PREFIX: &str = "CHUM";
/// `{mcp_config}` is filled in per run by the activities (the MCP configuration file CHUM writes).
const PLACEHOLDERS: [&str; 5] = ["model", "prompt_file", "workdir", "config_dir", "mcp_config"];

impl ChumConfig {
    /// Whether runs end with the ContinuousLearner: enabled and a learner role configured.
    pub fn learning(&self) -> bool {
        self.learner.enabled && self.roles.contains_key(&Role::Learner)
    }

    /// Whether runs are followed by a TacticalGroom: enabled and a groomer role configured.
    pub fn grooming(&self) -> bool {
        self.groom.enabled && self.roles.contains_key(&Role::Groomer)
    }

    /// Whether the worker keeps a StrategicGroom schedule per project.
    pub fn strategic_grooming(&self) -> bool {
        self.grooming() && self.groom.strategic
    }

    /// Parses and validates a configuration.
    ///
    /// `source` is the file the text came from: it is named in errors and relative paths
    /// (`repo`, `state_dir`) start from its directory. `env` holds the process environment; only
    /// `CHUM__...` variables are used.
    pub fn from_toml(
        text: &str,
        source: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ChumConfig, ConfigError> {
        let file = source.display().to_string();
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|e| ConfigError::Syntax {
                file: file.clone(),
                detail: e.to_string(),
            })?;

        let mut unknown = Vec::new();
        let raw: RawConfig = serde_ignored::deserialize(layered, |path| {
            unknown.push(path.to_string());
        })
        .map_err(|e| ConfigError::Syntax {
            file: file.clone(),
            detail: e.to_string(),
        })?;
        if let Some(key) = unknown.into_iter().next() {
            return Err(ConfigError::UnknownKey { file, key });
        }
        let config_dir = source
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Validator { file, config_dir }.validate(raw, source)
    }

    /// The provider names of a role's tier, in order of preference.
    pub fn providers_for(&self, role: Role) -> Result<Vec<&ProviderConfig>, String> {
        let tier = self
            .roles
            .get(&role)
            .ok_or_else(|| format!("no tier is configured for role `{role}` under [roles]"))?;
        let names = self
            .tiers
            .get(tier)
            .ok_or_else(|| format!("tier `{tier}` of role `{role}` is not defined"))?;
        Ok(names.iter().filter_map(|n| self.providers.get(n)).collect())
    }

    pub fn project(&self, name: &str) -> Result<&ProjectConfig, String> {
        self.projects.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.projects.keys().map(String::as_str).collect();
            format!(
                "project `{name}` is not configured in {} (configured: {})",
                self.source.display(),
                known.join(", ")
            )
        })
    }
}

struct Validator {
    file: String,
    config_dir: PathBuf,
}

impl Validator {
    fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn duration(&self, key: &str, value: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
        let Some(text) = value else { return Ok(default) };
        let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
            self.invalid(
                key,
                format!("{text:?} is not a duration ({e}); write e.g. \"90s\", \"30m\" or \"24h\""),
            )
        })?;
        if parsed.is_zero() {
            return Err(self.invalid(key, "must be longer than zero"));
        }
        Ok(parsed)
    }

    fn path(&self, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        lexically_normal(&if p.is_absolute() { p } else { self.config_dir.join(p) })
    }

    fn non_empty(&self, key: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
        match value {
            None => Ok(default.to_string()),
            Some(v) if v.trim().is_empty() => Err(self.invalid(key, "must not be empty")),
            Some(v) => Ok(v),
        }
    }

    fn validate(self, raw: RawConfig, source: &Path) -> Result<ChumConfig, ConfigError> {
        let temporal = TemporalSettings {
            address: self.non_empty("temporal.address", raw.temporal.address, DEFAULT_ADDRESS)?,
            namespace: self.non_empty("temporal.namespace", raw.temporal.namespace, DEFAULT_NAMESPACE)?,
            task_queue: self.non_empty("temporal.task_queue", raw.temporal.task_queue, DEFAULT_TASK_QUEUE)?,
            connect_timeout: self.duration(
                "temporal.connect_timeout",
                raw.temporal.connect_timeout.as_deref(),
                Duration::from_secs(60),
            )?,
            ui_url: self.non_empty("temporal.ui_url", raw.temporal.ui_url, DEFAULT_UI_URL)?,
        };
        if !(temporal.address.starts_with("http://") || temporal.address.starts_with("https://")) {
            return Err(self.invalid(
                "temporal.address",
                format!("{:?} must be a URL such as \"http://127.0.0.1:7233\"", temporal.address),
            ));
        }

        let d = Limits::default();
        let count = |key: &str, v: Option<u32>, dv: u32| -> Result<u32, ConfigError> {
            match v {
                None => Ok(dv),
                Some(0) => Err(self.invalid(key, "must be at least 1")),
                Some(n) if n > 100 => Err(self.invalid(key, format!("{n} is more than the maximum of 100"))),
                Some(n) => Ok(n),
            }
        };
        let limits = Limits {
            max_attempts: count("limits.max_attempts", raw.limits.max_attempts, d.max_attempts)?,
            max_handoffs: count("limits.max_handoffs", raw.limits.max_handoffs, d.max_handoffs)?,
            max_plan_rounds: count("limits.max_plan_rounds", raw.limits.max_plan_rounds, d.max_plan_rounds)?,
            max_gate_rejections: count(
                "limits.max_gate_rejections",
                raw.limits.max_gate_rejections,
                d.max_gate_rejections,
            )?,
            gate_timeout: self.duration(
                "limits.gate_timeout",
                raw.limits.gate_timeout.as_deref(),
                d.gate_timeout,
            )?,
            agent_timeout: self.duration(
                "limits.agent_timeout",
                raw.limits.agent_timeout.as_deref(),
                d.agent_timeout,
            )?,
            dod_timeout: self.duration("limits.dod_timeout", raw.limits.dod_timeout.as_deref(), d.dod_timeout)?,
        };

        let tokens_env = raw
            .api
            .tokens_env
            .clone()
            .unwrap_or_else(|| "CHUM_API_TOKENS".to_string());
        if tokens_env.is_empty() || !tokens_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.invalid(
                "api.tokens_env",
                "must be the name of an environment variable, e.g. CHUM_API_TOKENS",
            ));
        }
        let mut providers = BTreeMap::new();
        for (name, p) in raw.providers {
            let key = |k: &str| format!("providers.{name}.{k}");
            if p.command.is_empty() || p.command[0].trim().is_empty() {
                return Err(self.invalid(
                    key("command"),
                    "must name the agent program, e.g. [\"claude\", \"-p\", \"--output-format\", \"json\"]",
                ));
            }
            for arg in &p.command {
                if let Some(bad) = unknown_placeholder(arg) {
                    return Err(self.invalid(
                        key("command"),
                        format!("unknown placeholder {{{bad}}} in {arg:?}; known: {{model}}, {{prompt_file}}, {{workdir}}, {{config_dir}}, {{mcp_config}}"),
                    ));
                }
            }
            let output_name = p.output.unwrap_or_else(|| "text".to_string());
            let output = OutputFormat::parse(&output_name).ok_or_else(|| {
                self.invalid(
                    key("output"),
                    format!("{output_name:?} is not one of \"claude-json\", \"codex-jsonl\", \"text\""),
                )
            })?;
            let cooldown = self.duration(&key("cooldown"), p.cooldown.as_deref(), Duration::ZERO)?;
            match p.network.as_deref() {
                None | Some("deny") => {}
                Some("allow") => {
                    return Err(self.invalid(
                        key("network"),
                        "\"allow\" shared the worker's whole network with the agent and is gone: list the hosts it needs instead, e.g. `allow_hosts = [\"api.anthropic.com\"]` (or [\"*\"] for any host, logged loudly), and remove `network`",
                    ));
                }
                Some(other) => {
                    return Err(self.invalid(
                        key("network"),
                        format!(
                            "{other:?} is not \"deny\" (the default); to let the agent reach hosts, use allow_hosts"
                        ),
                    ));
                }
            }
            let allow_hosts = self.allow_hosts(&key("allow_hosts"), &p.allow_hosts)?;
            if p.network.is_some() && !allow_hosts.is_empty() {
                return Err(self.invalid(
                    key("network"),
                    "network = \"deny\" and allow_hosts contradict each other; remove one",
                ));
            }
            for var in p.env.keys() {
                if *var == tokens_env {
                    return Err(self.invalid(
                        key("env"),
                        format!("{var} holds the API's tokens and is never given to an agent"),
                    ));
                }
            }
            let pass_env = self.env_names(&key("pass_env"), &p.pass_env, &tokens_env)?;
            let cost_per_minute_usd = match p.cost_per_minute_usd {
                Some(c) if !c.is_finite() || c < 0.0 => {
                    return Err(self.invalid(key("cost_per_minute_usd"), format!("{c} is not an amount of USD")));
                }
                other => other.unwrap_or(0.0),
            };
            let mcp_servers = self.mcp_servers(&key("mcp_servers"), p.mcp_servers, &tokens_env)?;
            for (field, paths) in [("writable", &p.writable), ("readable", &p.readable)] {
                for path in paths.iter() {
                    if path.trim().is_empty() {
                        return Err(self.invalid(key(field), "an empty path"));
                    }
                    if let Some(bad) = unknown_placeholder(path) {
                        return Err(self.invalid(key(field), format!("unknown placeholder {{{bad}}} in {path:?}")));
                    }
                }
            }
            providers.insert(
                name.clone(),
                ProviderConfig {
                    name,
                    command: p.command,
                    output,
                    model: p.model.unwrap_or_default(),
                    env: p.env,
                    pass_env,
                    max_concurrent: p.max_concurrent.unwrap_or(0),
                    cooldown,
                    cost_per_minute_usd,
                    allow_hosts,
                    mcp_servers,
                    writable: p.writable,
                    readable: p.readable,
                },
            );
        }

        for (tier, names) in &raw.tiers {
            if names.is_empty() {
                return Err(self.invalid(format!("tiers.{tier}"), "must list at least one provider"));
            }
            for n in names {
                if !providers.contains_key(n) {
                    return Err(self.invalid(
                        format!("tiers.{tier}"),
                        format!(
                            "provider `{n}` is not defined; add a [providers.{n}] section or remove it from the tier"
                        ),
                    ));
                }
            }
        }

        let mut roles = BTreeMap::new();
        for (role_name, tier) in raw.roles {
            let role = Role::parse(&role_name).ok_or_else(|| {
                self.invalid(
                    format!("roles.{role_name}"),
                    "is not a role; roles are planner, executor, reviewer, learner, groomer",
                )
            })?;
            if !raw.tiers.contains_key(&tier) {
                return Err(self.invalid(
                    format!("roles.{role_name}"),
                    format!("tier `{tier}` is not defined; add `{tier} = [\"<provider>\"]` under [tiers]"),
                ));
            }
            roles.insert(role, tier);
        }
        for role in Role::REQUIRED {
            if !roles.contains_key(&role) {
                return Err(self.invalid(
                    format!("roles.{role}"),
                    "is required: map it to a tier, e.g. `[roles] planner = \"fast\"`",
                ));
            }
        }

        if raw.projects.is_empty() {
            return Err(self.invalid(
                "projects",
                "no project is configured; add a [projects.<name>] section with `repo = \"<path to a git repository>\"`",
            ));
        }
        let mut projects = BTreeMap::new();
        for (name, p) in raw.projects {
            let key = |k: &str| format!("projects.{name}.{k}");
            if !is_simple_name(&name) {
                return Err(self.invalid(
                    format!("projects.{name}"),
                    "project names may only use letters, digits, '-' and '_'",
                ));
            }
            let repo = p
                .repo
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| self.invalid(key("repo"), "is required: the path of the project's git repository"))?;
            let base_branch = self.non_empty(&key("base_branch"), p.base_branch, "main")?;
            let integration = match p.integration.as_deref().unwrap_or("branch") {
                "branch" => IntegrationPolicy::Branch,
                "merge" => IntegrationPolicy::Merge,
                other => {
                    return Err(self.invalid(
                        key("integration"),
                        format!("{other:?} is not one of \"branch\", \"merge\""),
                    ));
                }
            };
            if let Some(i) = p.dod.iter().position(|c| c.trim().is_empty()) {
                return Err(self.invalid(format!("{}[{i}]", key("dod")), "an empty command"));
            }
            let beads_file = PathBuf::from(p.beads_file.unwrap_or_else(|| ".beads/issues.jsonl".to_string()));
            if beads_file.is_absolute() || beads_file.components().any(|c| c.as_os_str() == "..") {
                return Err(self.invalid(key("beads_file"), "must be a path inside the repository"));
            }
            let gates = match p.gates {
                None => Gate::DEFAULT_ORDER.to_vec(),
                Some(names) => {
                    let mut gates = Vec::new();
                    for name in names {
                        let gate = Gate::parse(&name).ok_or_else(|| {
                            self.invalid(
                                key("gates"),
                                format!("{name:?} is not a gate; gates are \"review\", \"semgrep\", \"dod\""),
                            )
                        })?;
                        if gates.contains(&gate) {
                            return Err(self.invalid(key("gates"), format!("{name:?} is listed twice")));
                        }
                        gates.push(gate);
                    }
                    gates
                }
            };
            let backlog = match p.beads_backend.as_deref().unwrap_or("native") {
                "native" => BacklogBackend::Native,
                "cli" => BacklogBackend::Cli {
                    program: self.non_empty(&key("beads_cli"), p.beads_cli, "bd")?,
                },
                other => {
                    return Err(self.invalid(
                        key("beads_backend"),
                        format!("{other:?} is not one of \"native\", \"cli\""),
                    ));
                }
            };
            let concurrency = match p.concurrency {
                None => 1,
                Some(0) => return Err(self.invalid(key("concurrency"), "must be at least 1")),
                Some(n) if n > 32 => {
                    return Err(self.invalid(key("concurrency"), format!("{n} is more than the maximum of 32")));
                }
                Some(n) => n,
            };
            let sandbox = match p.sandbox.as_deref().unwrap_or("auto") {
                "auto" => SandboxMode::Auto,
                "bwrap" => SandboxMode::Bwrap,
                "none" => SandboxMode::None,
                other => {
                    return Err(self.invalid(
                        key("sandbox"),
                        format!("{other:?} is not one of \"auto\", \"bwrap\", \"none\""),
                    ));
                }
            };
            let fanout = match p.fanout {
                None => 1,
                Some(n) if (1..=MAX_FANOUT).contains(&n) => n,
                Some(n) => {
                    return Err(self.invalid(key("fanout"), format!("{n} is not between 1 and {MAX_FANOUT}")));
                }
            };
            let select = match p.select.as_deref().unwrap_or("first") {
                "first" => SelectMode::First,
                "best" => SelectMode::Best,
                other => {
                    return Err(self.invalid(key("select"), format!("{other:?} is not one of \"first\", \"best\"")));
                }
            };
            if let Some(i) = p.setup.iter().position(|c| c.trim().is_empty()) {
                return Err(self.invalid(format!("{}[{i}]", key("setup")), "an empty command"));
            }
            let environment = ProjectEnvironment {
                setup: p.setup,
                setup_allow_hosts: self.allow_hosts(&key("setup_allow_hosts"), &p.setup_allow_hosts)?,
                setup_timeout: self.duration(
                    &key("setup_timeout"),
                    p.setup_timeout.as_deref(),
                    Duration::from_secs(600),
                )?,
                toolchains: self.machine_paths(&key("toolchains"), &p.toolchains)?,
                caches: self.machine_paths(&key("caches"), &p.caches)?,
                copy_files: self.repo_files(&key("copy_files"), &p.copy_files)?,
                mcp_servers: self.mcp_servers(&key("mcp_servers"), p.mcp_servers, &tokens_env)?,
            };
            projects.insert(
                name.clone(),
                ProjectConfig {
                    name,
                    repo: self.path(&repo),
                    base_branch,
                    dod: p.dod,
                    integration,
                    beads_file,
                    enabled: p.enabled.unwrap_or(true),
                    gates,
                    review_fail_open: p.review_fail_open.unwrap_or(false),
                    backlog,
                    concurrency,
                    sandbox,
                    fanout,
                    select,
                    environment,
                },
            );
        }

        let allow_same_model_review = raw.allow_same_model_review.unwrap_or(false);
        if let Some(project) = projects.values().find(|p| p.gates.contains(&Gate::Review)) {
            self.check_reviewer(&roles, &raw.tiers, &providers, &project.name, allow_same_model_review)?;
        }

        let semgrep = SemgrepSettings {
            core: raw.semgrep.core.as_deref().map(|p| self.path(p)),
            cli: raw.semgrep.cli.as_deref().map(|p| self.path(p)),
            timeout: self.duration(
                "semgrep.timeout",
                raw.semgrep.timeout.as_deref(),
                Duration::from_secs(30),
            )?,
        };
        let dispatcher = DispatcherSettings {
            enabled: raw.dispatcher.enabled.unwrap_or(true),
            interval: self.duration(
                "dispatcher.interval",
                raw.dispatcher.interval.as_deref(),
                Duration::from_secs(10),
            )?,
            rounds_per_run: match raw.dispatcher.rounds_per_run {
                Some(0) => return Err(self.invalid("dispatcher.rounds_per_run", "must be at least 1")),
                Some(n) => n,
                None => 100,
            },
        };
        let bounded = |key: &str, value: Option<u32>, default: u32| -> Result<u32, ConfigError> {
            match value {
                Some(0) => Err(self.invalid(key, "must be at least 1")),
                Some(n) if n > 50 => Err(self.invalid(key, format!("{n} is more than the maximum of 50"))),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        let schedule = raw.groom.schedule.unwrap_or_else(|| "0 6 * * *".to_string());
        if let Err(why) = check_cron(&schedule) {
            return Err(self.invalid("groom.schedule", why));
        }
        let timezone = raw.groom.timezone.unwrap_or_else(|| "UTC".to_string());
        if timezone.is_empty()
            || !timezone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
        {
            return Err(self.invalid(
                "groom.timezone",
                format!("{timezone:?} is not an IANA time zone name such as \"UTC\" or \"Europe/Berlin\""),
            ));
        }
        let groom = GroomSettings {
            enabled: raw.groom.enabled.unwrap_or(true),
            max_mutations: bounded("groom.max_mutations", raw.groom.max_mutations, 5)?,
            strategic: raw.groom.strategic.unwrap_or(true),
            schedule,
            timezone,
            strategic_max_mutations: bounded("groom.strategic_max_mutations", raw.groom.strategic_max_mutations, 10)?,
        };
        let learner = LearnerSettings {
            enabled: raw.learner.enabled.unwrap_or(true),
            top_k: match raw.learner.top_k {
                Some(n) if n > 50 => {
                    return Err(self.invalid("learner.top_k", format!("{n} is more than the maximum of 50")));
                }
                Some(n) => n,
                None => 5,
            },
            expiry: self.duration(
                "learner.expiry",
                raw.learner.expiry.as_deref(),
                Duration::from_secs(90 * 24 * 3600),
            )?,
            max_lessons_per_run: match raw.learner.max_lessons_per_run {
                Some(0) => return Err(self.invalid("learner.max_lessons_per_run", "must be at least 1")),
                Some(n) => n.min(20),
                None => 5,
            },
        };

        let state_dir = self.path(raw.state_dir.as_deref().unwrap_or(".chum"));
        let bind_text = raw.api.bind.unwrap_or_else(|| "127.0.0.1:8900".to_string());
        let bind: std::net::SocketAddr = bind_text.parse().map_err(|_| {
            self.invalid(
                "api.bind",
                format!("{bind_text:?} is not an address with a port, e.g. \"127.0.0.1:8900\" or \"0.0.0.0:8900\""),
            )
        })?;
        let usd = |key: &str, v: Option<f64>| -> Result<f64, ConfigError> {
            match v {
                Some(x) if !x.is_finite() || x < 0.0 => {
                    Err(self.invalid(key, format!("{x} is not an amount of USD (0 = no cap)")))
                }
                Some(x) => Ok(x),
                None => Ok(0.0),
            }
        };
        let budget = Budget {
            per_bead_usd: usd("budget.per_bead_usd", raw.budget.per_bead_usd)?,
            per_bead_tokens: raw.budget.per_bead_tokens.unwrap_or(0),
            project_daily_usd: usd("budget.project_daily_usd", raw.budget.project_daily_usd)?,
            project_daily_tokens: raw.budget.project_daily_tokens.unwrap_or(0),
            global_daily_usd: usd("budget.global_daily_usd", raw.budget.global_daily_usd)?,
            global_daily_tokens: raw.budget.global_daily_tokens.unwrap_or(0),
        };
        let sandbox = SandboxSettings {
            bwrap: match raw.sandbox.bwrap.as_deref() {
                Some(p) if p.trim().is_empty() => return Err(self.invalid("sandbox.bwrap", "is empty")),
                Some(p) => Some(self.path(p)),
                None => None,
            },
            max_processes: match raw.sandbox.max_processes {
                Some(n) if n < 8 => {
                    return Err(self.invalid(
                        "sandbox.max_processes",
                        format!("{n} is too few to run an agent (at least 8)"),
                    ));
                }
                Some(n) => n,
                None => 512,
            },
            hide: {
                let mut hide = Vec::new();
                for p in &raw.sandbox.hide {
                    if p.trim().is_empty() {
                        return Err(self.invalid("sandbox.hide", "an empty path"));
                    }
                    hide.push(self.path(p));
                }
                hide
            },
            limits: self.resource_limits(raw.sandbox.max_memory.as_deref(), raw.sandbox.cpu_quota)?,
            netbridge: match raw.sandbox.netbridge.as_deref() {
                Some(p) if p.trim().is_empty() => return Err(self.invalid("sandbox.netbridge", "is empty")),
                Some(p) => Some(self.path(p)),
                None => None,
            },
        };
        let api = ApiSettings {
            enabled: raw.api.enabled.unwrap_or(true),
            bind,
            tokens_env,
            audit_log: match raw.api.audit_log.as_deref() {
                Some(p) if p.trim().is_empty() => return Err(self.invalid("api.audit_log", "is empty")),
                Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
                Some(p) => state_dir.join(p),
                None => state_dir.join("audit.log"),
            },
        };
        Ok(ChumConfig {
            source: source.to_path_buf(),
            config_dir: self.config_dir,
            temporal,
            state_dir,
            limits,
            projects,
            providers,
            tiers: raw.tiers,
            roles,
            semgrep,
            learner,
            dispatcher,
            groom,
            api,
            budget,
            sandbox,
            allow_same_model_review,
        })
    }

    /// Cross-model review needs a reviewer that can be a different model from the executor: another
    /// program or another `model` (another provider name is not enough, unless
    /// `allow_same_model_review = true`).
    fn check_reviewer(
        &self,
        roles: &BTreeMap<Role, String>,
        tiers: &BTreeMap<String, Vec<String>>,
        providers: &BTreeMap<String, ProviderConfig>,
        project: &str,
        allow_same_model: bool,
    ) -> Result<(), ConfigError> {
        let Some(reviewer_tier) = roles.get(&Role::Reviewer) else {
            return Err(self.invalid(
                "roles.reviewer",
                format!(
                    "is required because project `{project}` runs the \"review\" gate: map it to a tier whose provider differs from the executor's, or remove \"review\" from `projects.{project}.gates`"
                ),
            ));
        };
        let executor_tier = &roles[&Role::Executor];
        let executors = &tiers[executor_tier];
        let reviewers = &tiers[reviewer_tier];
        if !executors.iter().any(|e| reviewers.iter().any(|r| r != e)) {
            return Err(self.invalid(
                "roles.reviewer",
                format!(
                    "the reviewer must be a different provider from the executor, but tiers `{executor_tier}` (executor) and `{reviewer_tier}` (reviewer) only offer {}; add another provider to tier `{reviewer_tier}`",
                    reviewers.join(", ")
                ),
            ));
        }
        let identity = |name: &String| providers.get(name).map(ProviderConfig::model_identity);
        let other_model = executors
            .iter()
            .any(|e| reviewers.iter().any(|r| identity(r) != identity(e)));
        if !other_model && !allow_same_model {
            let (program, model) = identity(&executors[0]).unwrap_or_default();
            let model = if model.is_empty() {
                "(no model set)".to_string()
            } else {
                model
            };
            return Err(self.invalid(
                "roles.reviewer",
                format!(
                    "every reviewer in tier `{reviewer_tier}` runs the same model as an executor in `{executor_tier}` ({program}, model {model}); cross-model review needs another program or another `model`. Set a different model on one provider, add one, or set allow_same_model_review = true to accept same-model review (it is logged)"
                ),
            ));
        }
        Ok(())
    }
}

/// `a/b/../c` as `a/c`, without touching the file system (paths in messages stay readable).
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Names that end up in paths, branch names and workflow ids.
pub fn is_simple_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}')?;
        let name = &after[..end];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !PLACEHOLDERS.contains(&name)
        {
            return Some(name.to_string());
        }
        rest = &after[end + 1..];
    }
    None
}

/// Expands the placeholders of a provider's argv template.
pub fn expand_command(
    template: &[String],
    model: &str,
    prompt_file: &Path,
    workdir: &Path,
    config_dir: &Path,
) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            arg.replace("{model}", model)
                .replace("{prompt_file}", &prompt_file.display().to_string())
                .replace("{workdir}", &workdir.display().to_string())
                .replace("{config_dir}", &config_dir.display().to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [temporal]
        address = "http://127.0.0.1:7233"
        [limits]
        max_attempts = 2
        gate_timeout = "2h"
        [projects.demo]
        repo = "../demo"
        dod = ["python3 -m unittest"]
        integration = "merge"
        [providers.scripted]
        command = ["chum-scripted-agent", "--scenario", "{config_dir}/scenario.toml"]
        output = "claude-json"
        [providers.other]
        command = ["other-agent"]
        [tiers]
        fast = ["scripted"]
        review = ["other", "scripted"]
        [roles]
        planner = "fast"
        executor = "fast"
        reviewer = "review"
    "#;

    fn load(text: &str) -> Result<ChumConfig, ConfigError> {
        ChumConfig::from_toml(text, Path::new("/etc/chum/chum.toml"), Vec::new())
    }

    fn load_env(text: &str, env: &[(&str, &str)]) -> Result<ChumConfig, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        ChumConfig::from_toml(text, Path::new("/etc/chum/chum.toml"), env)
    }

    #[test]
    fn a_good_config_loads_with_defaults_and_resolved_paths() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.temporal.task_queue, "chum");
        assert_eq!(c.limits.max_attempts, 2);
        assert_eq!(c.limits.gate_timeout, Duration::from_secs(7200));
        assert_eq!(c.limits.max_plan_rounds, 3);
        let demo = c.project("demo").unwrap();
        assert_eq!(demo.repo, PathBuf::from("/etc/demo"));
        assert_eq!(demo.base_branch, "main");
        assert_eq!(demo.integration, IntegrationPolicy::Merge);
        assert_eq!(demo.beads_file, PathBuf::from(".beads/issues.jsonl"));
        assert_eq!(c.state_dir, PathBuf::from("/etc/chum/.chum"));
        let planners = c.providers_for(Role::Planner).unwrap();
        assert_eq!(planners[0].name, "scripted");
        assert_eq!(planners[0].output, OutputFormat::ClaudeJson);
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let c = load_env(
            GOOD,
            &[
                ("CHUM__TEMPORAL__ADDRESS", "http://10.0.0.1:7233"),
                ("CHUM__LIMITS__MAX_ATTEMPTS", "5"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.temporal.address, "http://10.0.0.1:7233");
        assert_eq!(c.limits.max_attempts, 5);
    }

    fn expect_invalid(text: &str, key: &str, reason_part: &str) {
        let err = load(text).expect_err("config should be rejected");
        let msg = err.to_string();
        assert_eq!(err.key(), Some(key), "{msg}");
        assert!(msg.contains("/etc/chum/chum.toml"), "names the file: {msg}");
        assert!(msg.contains(reason_part), "{msg}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let text = GOOD.replace("dod = [", "dod_comands = [\"x\"]\n dod = [");
        expect_invalid(&text, "projects.demo.dod_comands", "unknown key");
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        let text = GOOD.replace("\"2h\"", "\"two hours\"");
        expect_invalid(&text, "limits.gate_timeout", "write e.g.");
    }

    #[test]
    fn undefined_providers_and_tiers_are_rejected() {
        expect_invalid(
            &GOOD.replace("fast = [\"scripted\"]", "fast = [\"claude\"]"),
            "tiers.fast",
            "provider `claude` is not defined",
        );
        expect_invalid(
            &GOOD.replace("executor = \"fast\"", "executor = \"premium\""),
            "roles.executor",
            "tier `premium` is not defined",
        );
        expect_invalid(
            &GOOD.replace("executor = \"fast\"", ""),
            "roles.executor",
            "is required",
        );
        expect_invalid(
            &GOOD.replace("planner = \"fast\"", "planer = \"fast\""),
            "roles.planer",
            "is not a role",
        );
    }

    #[test]
    fn intake_and_grooming_settings_have_defaults_and_checked_values() {
        let c = load(GOOD).unwrap();
        assert!(c.dispatcher.enabled);
        assert_eq!(c.dispatcher.interval, Duration::from_secs(10));
        assert_eq!(c.project("demo").unwrap().concurrency, 1);
        assert_eq!(c.groom.schedule, "0 6 * * *");
        assert_eq!(c.groom.timezone, "UTC");
        assert_eq!((c.groom.max_mutations, c.groom.strategic_max_mutations), (5, 10));
        assert!(!c.grooming(), "no groomer role, no grooming");
        let with_groomer = GOOD.replace("[roles]", "[roles]\ngroomer = \"fast\"");
        let c = load(&with_groomer).unwrap();
        assert!(c.grooming() && c.strategic_grooming());

        let groom = |section: &str| format!("{GOOD}\n[groom]\n{section}\n");
        expect_invalid(&groom("schedule = \"daily\""), "groom.schedule", "has 1 fields");
        expect_invalid(&groom("schedule = \"0 6 * * * *\""), "groom.schedule", "has 6 fields");
        expect_invalid(
            &groom("schedule = \"0 6 * * $\""),
            "groom.schedule",
            "not valid cron syntax",
        );
        expect_invalid(&groom("timezone = \"Berlin time\""), "groom.timezone", "IANA");
        expect_invalid(&groom("max_mutations = 0"), "groom.max_mutations", "at least 1");
        expect_invalid(
            &groom("strategic_max_mutations = 99"),
            "groom.strategic_max_mutations",
            "maximum of 50",
        );
        expect_invalid(&groom("cron = \"x\""), "groom.cron", "unknown key");
        assert!(load(&groom("schedule = \"@daily\"\ntimezone = \"America/New_York\"")).is_ok());
        expect_invalid(
            &format!("{GOOD}\n[dispatcher]\nrounds_per_run = 0\n"),
            "dispatcher.rounds_per_run",
            "at least 1",
        );
    }

    #[test]
    fn bad_values_are_rejected_with_their_key() {
        expect_invalid(
            &GOOD.replace("\"merge\"", "\"rebase\""),
            "projects.demo.integration",
            "\"rebase\"",
        );
        expect_invalid(
            &GOOD.replace("max_attempts = 2", "max_attempts = 0"),
            "limits.max_attempts",
            "at least 1",
        );
        expect_invalid(
            &GOOD.replace("\"claude-json\"", "\"xml\""),
            "providers.scripted.output",
            "\"xml\"",
        );
        expect_invalid(
            &GOOD.replace("{config_dir}/scenario", "{confdir}/scenario"),
            "providers.scripted.command",
            "{confdir}",
        );
        expect_invalid(
            &GOOD.replace("repo = \"../demo\"", ""),
            "projects.demo.repo",
            "is required",
        );
        expect_invalid(
            &GOOD.replace("http://127.0.0.1:7233", "127.0.0.1:7233"),
            "temporal.address",
            "must be a URL",
        );
    }

    #[test]
    fn gates_default_to_review_semgrep_dod_and_are_checked() {
        let c = load(GOOD).unwrap();
        let demo = c.project("demo").unwrap();
        assert_eq!(demo.gates, Gate::DEFAULT_ORDER);
        assert!(!demo.review_fail_open);
        let custom = GOOD.replace(
            "integration = \"merge\"",
            "integration = \"merge\"\ngates = [\"dod\", \"semgrep\"]\nreview_fail_open = true",
        );
        let c = load(&custom).unwrap();
        assert_eq!(c.project("demo").unwrap().gates, [Gate::Dod, Gate::Semgrep]);
        assert!(c.project("demo").unwrap().review_fail_open);
        expect_invalid(
            &GOOD.replace("integration = \"merge\"", "gates = [\"lint\"]"),
            "projects.demo.gates",
            "\"lint\" is not a gate",
        );
        expect_invalid(
            &GOOD.replace("integration = \"merge\"", "gates = [\"dod\", \"dod\"]"),
            "projects.demo.gates",
            "listed twice",
        );
    }

    #[test]
    fn the_reviewer_must_be_able_to_differ_from_the_executor() {
        expect_invalid(
            &GOOD.replace("review = [\"other\", \"scripted\"]", "review = [\"scripted\"]"),
            "roles.reviewer",
            "must be a different provider from the executor",
        );
        expect_invalid(
            &GOOD.replace("reviewer = \"review\"", ""),
            "roles.reviewer",
            "runs the \"review\" gate",
        );
        // Without the review gate, no reviewer is needed.
        let no_review = GOOD
            .replace("reviewer = \"review\"", "")
            .replace("integration = \"merge\"", "gates = [\"dod\"]");
        assert!(load(&no_review).is_ok());
    }

    #[test]
    fn wrong_types_and_bad_toml_name_the_file() {
        let err = load(&GOOD.replace("max_attempts = 2", "max_attempts = \"two\"")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/chum/chum.toml: "), "{msg}");
        assert!(msg.contains("max_attempts"), "names the key: {msg}");
        let err = load("[projects.demo\nrepo = 1").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn a_config_without_projects_says_how_to_add_one() {
        let text = GOOD.replace("[projects.demo]", "[unused_section_is_unknown]");
        assert!(load(&text).is_err());
        let no_projects: String = GOOD
            .lines()
            .filter(|l| {
                !l.contains("repo =")
                    && !l.contains("dod =")
                    && !l.contains("integration =")
                    && !l.contains("[projects.demo]")
            })
            .collect::<Vec<_>>()
            .join("\n");
        expect_invalid(&no_projects, "projects", "[projects.<name>]");
    }

    #[test]
    fn the_shipped_configs_load() {
        // The example documents every key; if it stops loading, the docs no longer match the code.
        for (path, text) in [
            (
                "configs/chum.example.toml",
                include_str!("../../../../configs/chum.example.toml"),
            ),
            (
                "configs/demo/chum.toml",
                include_str!("../../../../configs/demo/chum.toml"),
            ),
        ] {
            let c = ChumConfig::from_toml(text, Path::new(path), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !c.projects.is_empty() && c.providers_for(Role::Executor).is_ok(),
                "{path}"
            );
        }
    }

    #[test]
    fn placeholders_expand() {
        let argv = expand_command(
            &[
                "agent".into(),
                "--model={model}".into(),
                "{prompt_file}".into(),
                "{config_dir}/s.toml".into(),
            ],
            "opus",
            Path::new("/tmp/p.md"),
            Path::new("/wt"),
            Path::new("/cfg"),
        );
        assert_eq!(argv, vec!["agent", "--model=opus", "/tmp/p.md", "/cfg/s.toml"]);
    }

    #[test]
    fn limits_round_trip_through_the_workflow_input_and_default_zeroes() {
        let l = Limits {
            max_attempts: 4,
            ..Limits::default()
        };
        assert_eq!(Limits::from_proto(Some(&l.to_proto())), l);
        assert_eq!(Limits::from_proto(Some(&SharkLimits::default())), Limits::default());
        assert_eq!(Limits::from_proto(None), Limits::default());
    }
}
