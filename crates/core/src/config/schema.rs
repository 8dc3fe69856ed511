//! The validated configuration's types: what the rest of CHUM reads (`ChumConfig` and its
//! sections). Defaults and checks are in `validate.rs`; the file's shape in `raw.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::egress::AllowList;
use crate::proto::SharkLimits;

use super::world::{McpServer, ProjectEnvironment, ResourceLimits};

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
    /// Aider `--message-file ... --no-pretty`: its last reply, between its usage reports, is the
    /// answer; usage from the analytics log CHUM asks it to write (`AIDER_ANALYTICS_LOG`).
    Aider,
    /// OpenCode `run --format json`: JSON lines of events; the last message's text is the answer,
    /// `step_finish` events carry tokens and cost.
    OpencodeJsonl,
    /// Plain text: stdout is the answer.
    Text,
}

impl OutputFormat {
    pub fn parse(name: &str) -> Option<OutputFormat> {
        match name {
            "claude-json" => Some(OutputFormat::ClaudeJson),
            "codex-jsonl" => Some(OutputFormat::CodexJsonl),
            "aider" => Some(OutputFormat::Aider),
            "opencode-jsonl" => Some(OutputFormat::OpencodeJsonl),
            "text" => Some(OutputFormat::Text),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::ClaudeJson => "claude-json",
            OutputFormat::CodexJsonl => "codex-jsonl",
            OutputFormat::Aider => "aider",
            OutputFormat::OpencodeJsonl => "opencode-jsonl",
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
    /// As `merge`, but the base branch is the remote's (`remote`, default `origin`): the bead's
    /// commit is brought up to the remote base's tip, verified there, and pushed to it (never
    /// forced; a remote that moved meanwhile means update and verify again).
    Push,
    /// Push `chum/<bead>` to the remote and open a pull request on the project's forge; a person
    /// merges it there (CHUM waits, and closes the bead with the merge commit).
    PullRequest,
}

impl IntegrationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationPolicy::Branch => "branch",
            IntegrationPolicy::Merge => "merge",
            IntegrationPolicy::Push => "push",
            IntegrationPolicy::PullRequest => "pr",
        }
    }
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

/// The checks between execution and integration, run in the project's order: the wire type
/// itself (`GateName::Review`, `Semgrep`, `Dod`; see `GateName::CHECKS`), so the order a project
/// configures is the order its runs record.
pub use crate::proto::GateName;

/// How a Monte Carlo attempt picks its winner (the wire type; never `Unspecified` in a config).
pub use crate::proto::SelectMode;

/// How a bead's commit is brought up to a base that moved on (the wire type; never
/// `Unspecified` in a config).
pub use crate::proto::UpdateMode;

/// How the files a plan names are leased (the wire type; never `Unspecified` in a config).
pub use crate::proto::LeaseMode;

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectConfig {
    pub name: String,
    /// Absolute path of the project's git repository (its main checkout).
    pub repo: PathBuf,
    pub base_branch: String,
    /// Definition-of-done commands, run with `sh -c` in the attempt's worktree, in order.
    pub dod: Vec<String>,
    pub integration: IntegrationPolicy,
    /// With the `push` policy: the git remote (by name, as `git remote` lists it in `repo`) whose
    /// base branch beads land on.
    pub remote: String,
    /// With the `push` policy: the name of an environment variable of the worker's holding a token
    /// for an HTTPS remote, handed to git through `GIT_ASKPASS` (never in argv, logs or history).
    /// None: git's own mechanisms only (an SSH agent, or no credentials).
    pub remote_token_env: Option<String>,
    /// The forge the repository lives on (required by the `pr` policy).
    pub forge: Option<super::ForgeConfig>,
    /// Issues with a label on the forge become beads (`[projects.<name>.intake]`).
    pub intake: Option<super::IntakeConfig>,
    /// The native Beads file, relative to `repo` (default `.beads/issues.jsonl`).
    pub beads_file: PathBuf,
    pub enabled: bool,
    /// The gates every attempt passes, in order (default semgrep, review, dod, then the named
    /// gates); `GateName::Named` stands for the next of `named_gates`.
    pub gates: Vec<GateName>,
    /// The project's own gates (`[[projects.<name>.gate]]`), in the order `gates` places them.
    pub named_gates: Vec<super::NamedGateConfig>,
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
    /// With the `merge` policy, how a bead's commit is brought up to a base that moved on.
    pub update: UpdateMode,
    /// With the `merge` policy, whether the review runs again too (not only Semgrep and the DoD)
    /// when a bead's work is brought up to a base that moved on.
    pub rereview_on_update: bool,
    /// A person approves each bead's result (its diff, verdicts, evidence) before it is
    /// integrated; a bead's label `approve-result` asks for it too.
    pub approve_result: bool,
    /// How the files a plan names are leased while its Shark executes.
    pub leases: LeaseMode,
    /// Sharks the dispatcher keeps before execution (planning, at their gate, waiting for a slot)
    /// besides the `concurrency` that execute.
    pub plan_ahead: u32,
    /// Setup commands, toolchains, caches, copied files and MCP servers of its sandboxes.
    pub environment: ProjectEnvironment,
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

impl ProjectConfig {
    /// Where beads land, as people read it: the base branch, or the remote's (`origin/main`).
    pub fn landing_branch(&self) -> String {
        match self.integration {
            IntegrationPolicy::Push | IntegrationPolicy::PullRequest => format!("{}/{}", self.remote, self.base_branch),
            _ => self.base_branch.clone(),
        }
    }
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
    /// What its tokens cost when it reports tokens but no cost (its `price`, else the table's
    /// price for its `model`); such costs are marked computed. None: not computed.
    pub price: Option<super::prices::TokenPrice>,
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
    pub temporal: super::temporal::TemporalSettings,
    /// Where CHUM keeps its own state: artifacts, logs.
    pub state_dir: PathBuf,
    /// Where lessons, rules, runs, usage and groom records live: `state_dir`'s SQLite file, or a
    /// Postgres database that several workers share.
    pub store: super::store::StoreLocation,
    /// `[worker]`: this worker's host name, and whether attempts are bound to one host of several.
    pub worker: super::worker::WorkerSettings,
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
    /// Who is told when a gate waits, is about to time out, and when a run ends.
    pub notify: Vec<super::notify::NotifyTarget>,
    /// How much of the ranked repo map each role's prompt carries.
    pub repo_map_tokens: RepoMapTokens,
    /// Let the reviewer be the same model as the executor (another provider name running the same
    /// program and model). Off: cross-model review means another model.
    pub allow_same_model_review: bool,
}

/// Tokens of ranked repo map (see `core::repo_map`) each role's prompt carries, estimated as
/// `repo_map::estimated_tokens` does; 0 leaves the map out. The learner gets none: it reads a
/// finished run, not the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepoMapTokens {
    pub planner: u32,
    pub executor: u32,
    pub reviewer: u32,
    /// Both groomers: the tactical one's map is about the finished bead, the strategic one's
    /// about the whole repository.
    pub groomer: u32,
}

impl RepoMapTokens {
    /// Most a role may be given: a map larger than this crowds the work out of the prompt.
    pub const MAX: u32 = 32_768;

    pub fn for_role(&self, role: Role) -> u32 {
        match role {
            Role::Planner => self.planner,
            Role::Executor => self.executor,
            Role::Reviewer => self.reviewer,
            Role::Groomer => self.groomer,
            Role::Learner => 0,
        }
    }
}

impl Default for RepoMapTokens {
    /// The planner chooses the files, so it sees the most; the executor and reviewer work from a
    /// plan that names them; the strategic groomer surveys the whole repository.
    fn default() -> RepoMapTokens {
        RepoMapTokens {
            planner: 2048,
            executor: 1024,
            reviewer: 1024,
            groomer: 3072,
        }
    }
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
    /// Where people reach the console (links in notifications), without a trailing slash;
    /// default `http://<bind>`.
    pub public_url: String,
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
