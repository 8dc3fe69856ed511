//! The forge stand-ins: a fake GitHub checked against GitHub's published OpenAPI descriptions,
//! and a fake GitLab held to GitLab's recorded answers (GitLab publishes no description of the
//! API CHUM uses in any registry).

pub mod contract;
pub mod github;
pub mod gitlab;
mod gitlab_serve;
pub mod recorded;
mod serve;

pub use contract::{contract, contracts_installed};
pub use github::{FakeGitHub, Served, deliver, signature};
pub use gitlab::{FakeGitLab, deliver_gitlab};
pub use recorded::gitlab_recordings_installed;
