//! The forge stand-in: a fake GitHub checked against GitHub's published OpenAPI descriptions.

pub mod contract;
pub mod github;
mod serve;

pub use contract::{contract, contracts_installed};
pub use github::{FakeGitHub, Served, deliver, signature};
