//! CHUM's domain: the wire contract generated from `proto/chum/v1`, the configuration schema, and
//! the pure logic every other crate shares (plan validation, gate payloads, agent output parsing,
//! prompts).
//!
//! Architecture invariant: nothing in this crate does I/O or reads the clock; every function is a
//! function of its arguments, so the workflows crate can call it deterministically.

pub mod activity_contract;
pub mod agent_output;
pub mod backlog;
pub mod backlog_view;
pub mod candidate;
pub mod config;
pub mod coordination;
pub mod egress;
pub mod forge_intake;
pub mod gate;
pub mod gate_text;
pub mod ids;
pub mod lesson;
pub mod live_config;
pub mod new_bead;
pub mod plan;
pub mod prompt;
pub mod proto;
pub mod pull_request;
pub mod repo_map;
pub mod review;
pub mod text;
pub mod workflow_contract;
