//! The file as serde reads it: every key optional, unknown keys reported by `serde_ignored`.
//! Public, and `Serialize`, so a config file can be written as a type (the test kit and `chum
//! demo` do) rather than as text: what it writes is what the validator reads. None of it is
//! validated; `ChumConfig::from_toml` is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::world::RawMcpServer;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawConfig {
    pub temporal: RawTemporal,
    pub state_dir: Option<String>,
    pub allow_same_model_review: Option<bool>,
    pub limits: RawLimits,
    pub projects: BTreeMap<String, RawProject>,
    pub providers: BTreeMap<String, RawProvider>,
    pub tiers: BTreeMap<String, Vec<String>>,
    pub roles: BTreeMap<String, String>,
    pub semgrep: RawSemgrep,
    pub learner: RawLearner,
    pub dispatcher: RawDispatcher,
    pub groom: RawGroom,
    pub api: RawApi,
    pub budget: RawBudget,
    pub sandbox: RawSandbox,
    pub notify: Vec<super::notify::RawNotify>,
    pub repo_map_tokens: RawRepoMapTokens,
    pub store: super::store::RawStore,
    pub worker: super::worker::RawWorker,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawRepoMapTokens {
    pub planner: Option<u32>,
    pub executor: Option<u32>,
    pub reviewer: Option<u32>,
    pub groomer: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawSandbox {
    pub bwrap: Option<String>,
    pub max_processes: Option<u32>,
    pub hide: Vec<String>,
    pub max_memory: Option<String>,
    pub cpu_quota: Option<f64>,
    pub netbridge: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawApi {
    pub enabled: Option<bool>,
    pub bind: Option<String>,
    pub tokens_env: Option<String>,
    pub audit_log: Option<String>,
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawGroom {
    pub enabled: Option<bool>,
    pub max_mutations: Option<u32>,
    pub strategic: Option<bool>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub strategic_max_mutations: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawSemgrep {
    pub core: Option<String>,
    pub cli: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawDispatcher {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub rounds_per_run: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLearner {
    pub enabled: Option<bool>,
    pub top_k: Option<u32>,
    pub expiry: Option<String>,
    pub max_lessons_per_run: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawTemporal {
    pub address: Option<String>,
    pub namespace: Option<String>,
    pub task_queue: Option<String>,
    pub connect_timeout: Option<String>,
    pub ui_url: Option<String>,
    pub profile: Option<String>,
    pub tls: Option<bool>,
    pub server_ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub server_name: Option<String>,
    pub api_key_env: Option<String>,
    /// `[temporal.codec]`
    pub codec: Option<RawCodec>,
}

/// `[temporal.codec]`: payload encryption; key ids and the variables holding the keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawCodec {
    pub kind: Option<String>,
    pub encrypt_with: Option<String>,
    pub keys: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLimits {
    pub max_attempts: Option<u32>,
    pub max_handoffs: Option<u32>,
    pub max_plan_rounds: Option<u32>,
    pub max_gate_rejections: Option<u32>,
    pub gate_timeout: Option<String>,
    pub agent_timeout: Option<String>,
    pub dod_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawProject {
    pub repo: Option<String>,
    pub gates: Option<Vec<String>>,
    /// `[[projects.<name>.gate]]`
    pub gate: Vec<super::named_gates::RawNamedGate>,
    pub review_fail_open: Option<bool>,
    pub beads_backend: Option<String>,
    pub beads_cli: Option<String>,
    pub concurrency: Option<u32>,
    pub base_branch: Option<String>,
    pub dod: Vec<String>,
    pub integration: Option<String>,
    pub remote: Option<String>,
    pub remote_token_env: Option<String>,
    pub forge: Option<super::forge::RawForge>,
    pub intake: Option<super::forge::RawIntake>,
    pub beads_file: Option<String>,
    pub enabled: Option<bool>,
    pub sandbox: Option<String>,
    pub fanout: Option<u32>,
    pub select: Option<String>,
    pub update: Option<String>,
    pub rereview_on_update: Option<bool>,
    pub approve_result: Option<bool>,
    pub leases: Option<String>,
    pub plan_ahead: Option<u32>,
    pub setup: Vec<String>,
    pub setup_allow_hosts: Vec<String>,
    pub setup_timeout: Option<String>,
    pub toolchains: Vec<String>,
    pub caches: Vec<String>,
    pub copy_files: Vec<String>,
    pub mcp_servers: BTreeMap<String, RawMcpServer>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawProvider {
    pub command: Vec<String>,
    pub output: Option<String>,
    pub model: Option<String>,
    pub env: BTreeMap<String, String>,
    pub pass_env: Vec<String>,
    pub max_concurrent: Option<u32>,
    pub cooldown: Option<String>,
    pub cost_per_minute_usd: Option<f64>,
    pub price: Option<super::prices::RawPrice>,
    pub network: Option<String>,
    pub allow_hosts: Vec<String>,
    pub mcp_servers: BTreeMap<String, RawMcpServer>,
    pub writable: Vec<String>,
    pub readable: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawBudget {
    pub per_bead_usd: Option<f64>,
    pub per_bead_tokens: Option<u64>,
    pub project_daily_usd: Option<f64>,
    pub project_daily_tokens: Option<u64>,
    pub global_daily_usd: Option<f64>,
    pub global_daily_tokens: Option<u64>,
}
