//! Test support for CHUM's end-to-end tests and its benchmark. Everything is real but the model:
//! a Temporal dev server from `.tools/`, the worker's own registration, git, semgrep, bubblewrap,
//! and the scripted agent playing the steps a test writes as types.
//!
//! `use chum_testkit::*;` brings the lot:
//! - [`Harness`] (one test's world) and [`HarnessOptions`], with the configuration changed on the
//!   config file's own type (`RawConfig`, see [`config`]);
//! - the calc [`project`] with what a good and a bad change to it look like, and fixture requests;
//! - typed scenario [`steps`] (`Step::executor().attempt(2).write(...)`);
//! - [`shark`]: starting a Shark, its status, its gate, its result and history;
//! - [`processes`]: agent processes, an HTTP stub, free ports, the worker binary;
//! - [`paths`]: the workspace's binaries and the tools setup installed;
//! - [`browser`]: headless Chromium over WebDriver, for the console's pages;
//! - [`notify_contract`]: what Slack and Matrix accept, from their official SDKs;
//! - [`postgres`]: Debian's Postgres on a temporary directory, a fresh database per test;
//! - [`tls_proxy`]: a TLS-terminating proxy in front of a dev server, with certificates made by
//!   the test.

pub mod browser;
pub mod config;
pub mod forge;
pub mod harness;
pub mod notify_contract;
pub mod paths;
pub mod postgres;
pub mod processes;
pub mod project;
pub mod shark;
pub mod steps;
pub mod tls_proxy;

pub use browser::{Browser, browser_tools};
pub use chum_scripted_agent::scenario::{Scenario, Step, Usage};
pub use config::{HarnessConfig, load_config, small_config};
pub use harness::{Configure, Harness, HarnessOptions};
pub use notify_contract::{NotifyContracts, notify_contracts};
pub use paths::*;
pub use processes::*;
pub use project::*;
pub use shark::*;
pub use steps::*;
pub use tls_proxy::{ProxyOptions, SERVER_NAME, TestPki, TlsProxy};
