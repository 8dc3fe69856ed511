//! The environment of every process CHUM starts for an agent, a definition-of-done or setup
//! command, an MCP server or Semgrep: empty, plus an allow-list. Nothing else of the worker's
//! environment (its tokens, cloud keys, other providers' keys, `CHUM_API_TOKENS`) reaches them,
//! sandboxed or not.
//!
//! What a child gets:
//! - `PATH`, `LANG`, `LC_ALL`, `TERM` as the worker has them;
//! - `HOME` and `TMPDIR`: the run's own scratch directories;
//! - CHUM's contract variables (`CHUM_ROLE`, `CHUM_BEAD_ID`, ... for agents; `CHUM_WORKTREE` for
//!   DoD and setup commands), documented in README;
//! - `HTTPS_PROXY`/`HTTP_PROXY` (and their lower-case forms) when its sandbox has a proxy;
//! - its provider's `env` (values from the config file) and `pass_env` (names; values from the
//!   worker's environment).

use std::collections::BTreeMap;
use std::path::Path;

/// Taken from the worker's environment for every child.
pub const FROM_WORKER: [&str; 4] = ["PATH", "LANG", "LC_ALL", "TERM"];

/// A child's environment, built up from nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChildEnv {
    vars: BTreeMap<String, String>,
}

impl ChildEnv {
    /// [`FROM_WORKER`] from the worker, `HOME` and `TMPDIR` the child's own.
    pub fn new(home: &Path, tmp: &Path) -> ChildEnv {
        let mut env = ChildEnv::default();
        for name in FROM_WORKER {
            if let Ok(value) = std::env::var(name) {
                env.set(name, value);
            }
        }
        env.set("HOME", home.display().to_string());
        env.set("TMPDIR", tmp.display().to_string());
        env
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut ChildEnv {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Values of `names` from the worker's environment; returns the names the worker does not
    /// have (for a warning: the agent will miss them).
    pub fn pass(&mut self, names: &[String]) -> Vec<String> {
        let mut missing = Vec::new();
        for name in names {
            match std::env::var(name) {
                Ok(value) => {
                    self.set(name.clone(), value);
                }
                Err(_) => missing.push(name.clone()),
            }
        }
        missing
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn names(&self) -> Vec<&str> {
        self.vars.keys().map(String::as_str).collect()
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.vars.into_iter().collect()
    }
}

/// The variables that point every HTTP client at `url` (the sandbox's bridge to the egress
/// proxy): npm, Node, Python, curl, git and Rust's HTTP crates each read one of them.
pub fn proxy_vars(url: &str) -> Vec<(String, String)> {
    let names = [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    let mut vars: Vec<(String, String)> = names.into_iter().map(|n| (n.to_string(), url.to_string())).collect();
    // Nothing is bypassed: there is no other way out.
    vars.extend([
        ("NO_PROXY".to_string(), String::new()),
        ("no_proxy".to_string(), String::new()),
    ]);
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_gets_the_allow_list_and_nothing_else() {
        // SAFETY: tests in this module are the only ones touching these variables.
        unsafe {
            std::env::set_var("CHUM_API_TOKENS", "alice:secret");
            std::env::set_var("CHUM_CHILD_ENV_TEST_KEY", "k-123");
        }
        let mut env = ChildEnv::new(Path::new("/scratch/home"), Path::new("/scratch/tmp"));
        let missing = env.pass(&["CHUM_CHILD_ENV_TEST_KEY".into(), "CHUM_NOT_SET_ANYWHERE".into()]);
        assert_eq!(missing, vec!["CHUM_NOT_SET_ANYWHERE"]);
        assert_eq!(env.get("CHUM_CHILD_ENV_TEST_KEY"), Some("k-123"));
        assert_eq!(env.get("HOME"), Some("/scratch/home"));
        assert!(env.get("CHUM_API_TOKENS").is_none());
        for name in env.names() {
            assert!(
                FROM_WORKER.contains(&name) || ["HOME", "TMPDIR", "CHUM_CHILD_ENV_TEST_KEY"].contains(&name),
                "{name} was not asked for"
            );
        }
    }
}
