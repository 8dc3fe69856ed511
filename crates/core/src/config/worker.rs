//! `[worker]`: who this worker is among several. Each worker has a host name (default: the
//! machine's, filled in by the loader, since this module does no I/O) and, with `several_hosts`,
//! polls a task queue of its own beside the shared one: every host-bound step of an attempt (the
//! worktree, the agents in it, its gates, the commit and the push) runs on the one host that
//! claimed the attempt.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Validator;
use super::{ConfigError, IntegrationPolicy, ProjectConfig};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawWorker {
    pub host: Option<String>,
    pub several_hosts: Option<bool>,
    pub host_wait: Option<String>,
}

/// How long a host-bound step waits for its host by default before the attempt moves on.
pub const DEFAULT_HOST_WAIT: Duration = Duration::from_secs(60);

/// `[worker]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// This worker's name among several; empty until the loader fills in the machine's hostname.
    pub host: String,
    /// Several workers on several hosts share the task queue: attempts are bound to one host.
    pub several_hosts: bool,
    /// How long a host-bound step may wait for its host to pick it up (Temporal's schedule-to-start
    /// timeout) before the host counts as gone and the attempt starts over on another.
    pub host_wait: Duration,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            host: String::new(),
            several_hosts: false,
            host_wait: DEFAULT_HOST_WAIT,
        }
    }
}

impl WorkerSettings {
    /// The task queue only this host polls: `<task_queue>@<host>`.
    pub fn host_task_queue(&self, task_queue: &str) -> String {
        host_task_queue(task_queue, &self.host)
    }
}

/// The task queue only `host` polls (Temporal's worker-specific task queue).
pub fn host_task_queue(task_queue: &str, host: &str) -> String {
    format!("{task_queue}@{host}")
}

/// Whether `host` can name a worker: letters, digits, '.', '-' and '_', at most 64 characters.
pub fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 64
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Validator {
    /// `[worker]`, checked against the projects: several hosts integrate only through a remote.
    pub(super) fn worker<'a>(
        &self,
        raw: RawWorker,
        projects: impl IntoIterator<Item = &'a ProjectConfig>,
    ) -> Result<WorkerSettings, ConfigError> {
        let host = match raw.host {
            None => String::new(),
            Some(host) if is_host_name(host.trim()) => host.trim().to_string(),
            Some(host) => {
                return Err(self.invalid(
                    "worker.host",
                    format!(
                        "{host:?} cannot name a worker: use letters, digits, '.', '-' and '_' (at most 64), or leave it out for the machine's hostname"
                    ),
                ));
            }
        };
        let several_hosts = raw.several_hosts.unwrap_or(false);
        let host_wait = self.duration("worker.host_wait", raw.host_wait.as_deref(), DEFAULT_HOST_WAIT)?;
        if several_hosts {
            let local = projects
                .into_iter()
                .find(|p| p.enabled && matches!(p.integration, IntegrationPolicy::Branch | IntegrationPolicy::Merge));
            if let Some(project) = local {
                return Err(self.invalid(
                    "worker.several_hosts",
                    format!(
                        "project {:?} integrates into one host's checkout (integration = {:?}), which the other hosts never see; with several hosts set its integration to \"push\" or \"pr\" (through its remote)",
                        project.name,
                        project.integration.as_str()
                    ),
                ));
            }
        }
        Ok(WorkerSettings {
            host,
            several_hosts,
            host_wait,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_queue_names_the_host() {
        assert_eq!(host_task_queue("chum", "build-1"), "chum@build-1");
        assert!(is_host_name("build-1.example.org"));
        assert!(!is_host_name(""));
        assert!(!is_host_name("a b"));
        assert!(!is_host_name("a@b"));
    }
}
