//! Everything in CHUM with side effects: agent processes, git worktrees and integration,
//! definition-of-done commands, the Beads backlog, the artifact store, reading the config file.
//!
//! Architecture invariant: activities are idempotent per (bead, run, attempt). A retried activity
//! finds its earlier work (the commit trailer, the note already on the bead, a fresh worktree)
//! instead of doing it twice. Payloads carry artifact paths and short excerpts, never whole logs.

pub mod agent;
pub mod artifacts;
pub mod backlog;
pub mod beads;
pub mod beads_cli;
pub mod budget;
pub mod child_env;
pub mod dispatcher;
pub mod egress;
pub mod git;
pub mod groom;
pub mod learner;
pub mod log_context;
pub mod mcp;
pub mod process;
pub mod project_command;
pub mod repo_map;
pub mod sandbox;
pub mod semgrep;
pub mod shark;
pub mod store;
pub mod workspace;

pub use dispatcher::DispatcherActivitiesImpl;
pub use groom::GroomActivitiesImpl;
pub use learner::LearnerActivitiesImpl;
pub use shark::SharkActivitiesImpl;
