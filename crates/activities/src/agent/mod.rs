//! Agents: running a coding-agent CLI for a role, its spending caps, the MCP servers it gets, and
//! what aider needs beyond its command.

mod aider;
mod budget;
mod mcp;
mod run;

pub use budget::{
    BudgetStop, CostSource, ProviderTurn, Reservation, affordable, cost_of, has_caps, provider_turn, reserve,
    utc_day_start,
};
pub use mcp::{claude_config, codex_config, env_names, server_paths, servers_for, write_configs};
pub use run::{
    AgentOutcome, AgentRequest, AgentSetupError, Asked, Liveness, Unsupervised, ask_with_one_retry, choose_provider,
    provider_program, run_agent,
};
