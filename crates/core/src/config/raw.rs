//! The file as serde reads it: every key optional, unknown keys reported by `serde_ignored`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::world::RawMcpServer;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawConfig {
    pub(super) temporal: RawTemporal,
    pub(super) state_dir: Option<String>,
    pub(super) allow_same_model_review: Option<bool>,
    pub(super) limits: RawLimits,
    pub(super) projects: BTreeMap<String, RawProject>,
    pub(super) providers: BTreeMap<String, RawProvider>,
    pub(super) tiers: BTreeMap<String, Vec<String>>,
    pub(super) roles: BTreeMap<String, String>,
    pub(super) semgrep: RawSemgrep,
    pub(super) learner: RawLearner,
    pub(super) dispatcher: RawDispatcher,
    pub(super) groom: RawGroom,
    pub(super) api: RawApi,
    pub(super) budget: RawBudget,
    pub(super) sandbox: RawSandbox,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawSandbox {
    pub(super) bwrap: Option<String>,
    pub(super) max_processes: Option<u32>,
    pub(super) hide: Vec<String>,
    pub(super) max_memory: Option<String>,
    pub(super) cpu_quota: Option<f64>,
    pub(super) netbridge: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawApi {
    pub(super) enabled: Option<bool>,
    pub(super) bind: Option<String>,
    pub(super) tokens_env: Option<String>,
    pub(super) audit_log: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawGroom {
    pub(super) enabled: Option<bool>,
    pub(super) max_mutations: Option<u32>,
    pub(super) strategic: Option<bool>,
    pub(super) schedule: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) strategic_max_mutations: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawSemgrep {
    pub(super) core: Option<String>,
    pub(super) cli: Option<String>,
    pub(super) timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawDispatcher {
    pub(super) enabled: Option<bool>,
    pub(super) interval: Option<String>,
    pub(super) rounds_per_run: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawLearner {
    pub(super) enabled: Option<bool>,
    pub(super) top_k: Option<u32>,
    pub(super) expiry: Option<String>,
    pub(super) max_lessons_per_run: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTemporal {
    pub(super) address: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) task_queue: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) ui_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawLimits {
    pub(super) max_attempts: Option<u32>,
    pub(super) max_handoffs: Option<u32>,
    pub(super) max_plan_rounds: Option<u32>,
    pub(super) max_gate_rejections: Option<u32>,
    pub(super) gate_timeout: Option<String>,
    pub(super) agent_timeout: Option<String>,
    pub(super) dod_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawProject {
    pub(super) repo: Option<String>,
    pub(super) gates: Option<Vec<String>>,
    pub(super) review_fail_open: Option<bool>,
    pub(super) beads_backend: Option<String>,
    pub(super) beads_cli: Option<String>,
    pub(super) concurrency: Option<u32>,
    pub(super) base_branch: Option<String>,
    pub(super) dod: Vec<String>,
    pub(super) integration: Option<String>,
    pub(super) beads_file: Option<String>,
    pub(super) enabled: Option<bool>,
    pub(super) sandbox: Option<String>,
    pub(super) fanout: Option<u32>,
    pub(super) select: Option<String>,
    pub(super) setup: Vec<String>,
    pub(super) setup_allow_hosts: Vec<String>,
    pub(super) setup_timeout: Option<String>,
    pub(super) toolchains: Vec<String>,
    pub(super) caches: Vec<String>,
    pub(super) copy_files: Vec<String>,
    pub(super) mcp_servers: BTreeMap<String, RawMcpServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawProvider {
    pub(super) command: Vec<String>,
    pub(super) output: Option<String>,
    pub(super) model: Option<String>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) pass_env: Vec<String>,
    pub(super) max_concurrent: Option<u32>,
    pub(super) cooldown: Option<String>,
    pub(super) cost_per_minute_usd: Option<f64>,
    pub(super) network: Option<String>,
    pub(super) allow_hosts: Vec<String>,
    pub(super) mcp_servers: BTreeMap<String, RawMcpServer>,
    pub(super) writable: Vec<String>,
    pub(super) readable: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawBudget {
    pub(super) per_bead_usd: Option<f64>,
    pub(super) per_bead_tokens: Option<u64>,
    pub(super) project_daily_usd: Option<f64>,
    pub(super) project_daily_tokens: Option<u64>,
    pub(super) global_daily_usd: Option<f64>,
    pub(super) global_daily_tokens: Option<u64>,
}
