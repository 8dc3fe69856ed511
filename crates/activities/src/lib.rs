//! Everything in CHUM with side effects: agent processes, git worktrees and integration,
//! definition-of-done commands, the Beads backlog, the artifact store, reading the config file.
//!
//! Architecture invariant: activities are idempotent per (bead, run, attempt). A retried activity
//! finds its earlier work (the commit trailer, the note already on the bead, a fresh worktree)
//! instead of doing it twice. Payloads carry artifact paths and short excerpts, never whole logs.

pub mod agent;
pub mod backlog;
pub mod clock;
pub mod coordinator;
pub mod dispatcher;
mod error;
pub mod exec;
pub mod forge;
pub mod groom;
pub mod learner;
pub mod log_context;
pub mod notify;
pub mod repo;
pub mod semgrep;
pub mod shark;
pub mod store;

pub use coordinator::CoordinatorActivitiesImpl;
pub use dispatcher::DispatcherActivitiesImpl;
pub use groom::GroomActivitiesImpl;
pub use learner::LearnerActivitiesImpl;
pub use notify::NotifyActivitiesImpl;
pub use shark::SharkActivitiesImpl;
