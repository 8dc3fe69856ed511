//! Running processes the way CHUM needs them: their environment, process groups and timeouts,
//! the bubblewrap sandbox, the egress proxy, and a project's own commands.

mod child_env;
mod egress;
mod process;
mod program;
mod project_command;
mod sandbox;

pub use child_env::{ChildEnv, FROM_WORKER, proxy_vars};
pub use egress::{
    BRIDGE_PORT, EgressClient, EgressProxy, own_addresses, proxy_url, refused_counts, socket_path, surroundings,
};
pub use process::{ProcessOutcome, ProcessSpec, read_capped, read_tail, run_process};
pub use program::{ProgramError, given_path};
pub use project_command::{
    CannotStart, CommandError, CommandRun, EXCERPT_CHARS, ProjectCommand, can_start, run_project_command,
};
pub use sandbox::{
    Enforced, Network, Prepared, RunCgroups, RunLimits, SandboxError, SandboxPolicy, Sandboxing, argument_paths,
    explain_not_found, hidden_paths, is_hidden, locate_bwrap, locate_netbridge, machine_path, prepare, program_paths,
    project_mounts, reap_orphans, resolve, scratch_dirs, wrap,
};
