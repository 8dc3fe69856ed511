//! The agent's world in the configuration: what a sandboxed process may see, reach and use.
//! Environment variables passed by name (`pass_env`), the network allow-list (`allow_hosts`),
//! MCP servers, a project's environment (setup commands, toolchains, caches, copied files) and
//! the sandbox's resource limits. Parsed and checked here; enforced by the activities.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Validator};
use crate::egress::AllowList;

/// An MCP server an agent may use, started by the agent CLI inside the agent's sandbox (so it has
/// the same view, limits and allow-list). Written into the CLI's own configuration for each run.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServer {
    pub name: String,
    /// The program (a name on PATH or an absolute path, e.g. from `.tools/npm`).
    pub command: String,
    pub args: Vec<String>,
    /// Names of environment variables passed to it; values come from the worker's environment.
    pub env: Vec<String>,
}

/// What a project's processes need besides the worktree: set up once per worktree, with the
/// toolchains and caches of the machine mounted into the sandbox.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProjectEnvironment {
    /// Commands run with `sh -c` in a fresh worktree before the agent (e.g. `python3 -m venv .venv`),
    /// sandboxed like the DoD but with `setup_allow_hosts` as their network.
    pub setup: Vec<String>,
    pub setup_allow_hosts: AllowList,
    /// Limit of all setup commands of one worktree together.
    pub setup_timeout: Duration,
    /// Paths mounted read-only into every sandbox of the project (`~/` = the worker's home; such
    /// paths are also mounted at the same place under the sandbox's own HOME).
    pub toolchains: Vec<String>,
    /// Paths mounted read-write and shared between runs (package caches).
    pub caches: Vec<String>,
    /// Files copied from the main checkout into each worktree (never committed).
    pub copy_files: Vec<String>,
    /// MCP servers for the project's agents, beside their provider's.
    pub mcp_servers: Vec<McpServer>,
}

/// The sandbox's resource limits per run (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceLimits {
    pub max_memory: Option<u64>,
    /// CPU cores' worth of time per run, e.g. 1.5.
    pub cpu_quota: Option<f64>,
}

/// An MCP server as the config file writes it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMcpServer {
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// Variables CHUM sets itself in every child's environment: a configuration may not pass them.
const SET_BY_CHUM: [&str; 10] = [
    "HOME",
    "TMPDIR",
    "PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

impl Validator {
    /// `pass_env`-style names: well formed, not CHUM's own, never the API's tokens.
    pub(super) fn env_names(&self, key: &str, names: &[String], tokens_env: &str) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for name in names {
            let well_formed = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !well_formed {
                return Err(self.invalid(
                    key,
                    format!("{name:?} is not an environment variable name; list names only (values come from the worker's environment), e.g. [\"ANTHROPIC_API_KEY\"]"),
                ));
            }
            if name == tokens_env || name == "CHUM_API_TOKENS" {
                return Err(self.invalid(
                    key,
                    format!("{name} holds the API's tokens and is never passed to an agent or command"),
                ));
            }
            if *name == self.api_key_env || name.starts_with("TEMPORAL_") {
                return Err(self.invalid(
                    key,
                    format!("{name} is how the worker reaches Temporal (its address, certificates or API key); no agent or command is ever given it"),
                ));
            }
            if self.codec_key_envs.contains(name) {
                return Err(self.invalid(
                    key,
                    format!("{name} holds a key of [temporal.codec] and is never passed to an agent or command"),
                ));
            }
            if name.starts_with("CHUM_") || SET_BY_CHUM.contains(&name.as_str()) {
                return Err(self.invalid(
                    key,
                    format!("{name} is set by CHUM itself (see README, \"What an agent's environment holds\")"),
                ));
            }
            if out.contains(name) {
                return Err(self.invalid(key, format!("{name} is listed twice")));
            }
            out.push(name.clone());
        }
        Ok(out)
    }

    pub(super) fn allow_hosts(&self, key: &str, entries: &[String]) -> Result<AllowList, ConfigError> {
        let list = AllowList::parse(entries).map_err(|why| self.invalid(key, why))?;
        if list.allows_any() && list.rules().len() > 1 {
            return Err(self.invalid(key, "\"*\" allows any host; list it alone"));
        }
        Ok(list)
    }

    pub(super) fn mcp_servers(
        &self,
        key: &str,
        raw: BTreeMap<String, RawMcpServer>,
        tokens_env: &str,
    ) -> Result<Vec<McpServer>, ConfigError> {
        let mut servers = Vec::new();
        for (name, server) in raw {
            let key = format!("{key}.{name}");
            if !super::is_simple_name(&name) {
                return Err(self.invalid(key, "MCP server names may only use letters, digits, '-' and '_'"));
            }
            let command = server.command.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                self.invalid(
                    format!("{key}.command"),
                    "is required: the program that serves MCP on stdio",
                )
            })?;
            servers.push(McpServer {
                name,
                command,
                args: server.args,
                env: self.env_names(&format!("{key}.env"), &server.env, tokens_env)?,
            });
        }
        Ok(servers)
    }

    /// Paths for `toolchains`/`caches`: absolute or `~/...`.
    pub(super) fn machine_paths(&self, key: &str, paths: &[String]) -> Result<Vec<String>, ConfigError> {
        for path in paths {
            let ok = path.starts_with("~/") || Path::new(path).is_absolute();
            if !ok || path.trim() != path.as_str() {
                return Err(self.invalid(
                    key,
                    format!(
                        "{path:?} must be an absolute path or start with \"~/\" (the worker's home), e.g. \"~/.cargo\""
                    ),
                ));
            }
        }
        Ok(paths.to_vec())
    }

    /// `copy_files`: relative paths inside the repository.
    pub(super) fn repo_files(&self, key: &str, paths: &[String]) -> Result<Vec<String>, ConfigError> {
        for path in paths {
            let p = Path::new(path);
            if path.trim().is_empty() || p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
                return Err(self.invalid(key, format!("{path:?} must be a path inside the repository")));
            }
        }
        Ok(paths.to_vec())
    }

    pub(super) fn resource_limits(
        &self,
        max_memory: Option<&str>,
        cpu_quota: Option<f64>,
    ) -> Result<ResourceLimits, ConfigError> {
        let max_memory = match max_memory {
            None => None,
            Some(text) => {
                let bytes = parse_size(text).map_err(|why| self.invalid("sandbox.max_memory", why))?;
                if bytes < 16 * 1024 * 1024 {
                    return Err(self.invalid(
                        "sandbox.max_memory",
                        format!("{text:?} is too little to run an agent (at least 16 MiB)"),
                    ));
                }
                Some(bytes)
            }
        };
        let cpu_quota = match cpu_quota {
            Some(q) if !q.is_finite() || q < 0.01 => {
                return Err(self.invalid(
                    "sandbox.cpu_quota",
                    format!("{q} is not a number of CPU cores (e.g. 1.5)"),
                ));
            }
            other => other,
        };
        Ok(ResourceLimits { max_memory, cpu_quota })
    }
}

/// `"512MiB"`, `"2GiB"`, `"2G"`, `"1500000"` (bytes). K/M/G are powers of 1024, like cgroups'.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. \"512MiB\" or \"2GiB\""))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "KB" => 1 << 10,
        "M" | "MiB" | "MB" => 1 << 20,
        "G" | "GiB" | "GB" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A size as people write it, for messages and `chum doctor`.
pub fn show_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChumConfig;

    const BASE: &str = r#"
        [projects.demo]
        repo = "demo"
        gates = ["dod"]
        PROJECT
        [providers.a]
        command = ["agent"]
        PROVIDER
        [tiers]
        t = ["a"]
        [roles]
        planner = "t"
        executor = "t"
        [sandbox]
        SANDBOX
    "#;

    fn load(provider: &str, project: &str, sandbox: &str) -> Result<ChumConfig, ConfigError> {
        let text = BASE
            .replace("PROVIDER", provider)
            .replace("PROJECT", project)
            .replace("SANDBOX", sandbox);
        ChumConfig::from_toml(&text, Path::new("/etc/chum/chum.toml"), Vec::new())
    }

    fn refused(provider: &str, project: &str, sandbox: &str, key: &str, says: &str) {
        let err = load(provider, project, sandbox).expect_err("refused");
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }

    #[test]
    fn the_agents_world_loads_from_the_config() {
        let c = load(
            "pass_env = [\"ANTHROPIC_API_KEY\"]\nallow_hosts = [\"api.anthropic.com\", \"192.0.2.7:8080\"]\n[providers.a.mcp_servers.docs]\ncommand = \"docs-mcp\"\nenv = [\"DOCS_TOKEN\"]",
            "toolchains = [\"~/.cargo\"]\ncaches = [\"/var/cache/pip\"]\nsetup = [\"make deps\"]\nsetup_allow_hosts = [\"pypi.org\"]\ncopy_files = [\".env.local\"]",
            "max_memory = \"2GiB\"\ncpu_quota = 1.5",
        )
        .unwrap();
        let a = &c.providers["a"];
        assert_eq!(a.pass_env, vec!["ANTHROPIC_API_KEY"]);
        assert_eq!(a.allow_hosts.rules().len(), 2);
        assert_eq!(a.mcp_servers[0].env, vec!["DOCS_TOKEN"]);
        let env = &c.projects["demo"].environment;
        assert_eq!(env.toolchains, vec!["~/.cargo"]);
        assert_eq!(env.setup_timeout, Duration::from_secs(600));
        assert_eq!(c.sandbox.limits.max_memory, Some(2 << 30));
        assert_eq!(c.sandbox.limits.cpu_quota, Some(1.5));
    }

    #[test]
    fn what_would_open_the_sandbox_is_refused_with_its_key() {
        refused("network = \"allow\"", "", "", "providers.a.network", "allow_hosts = [");
        refused(
            "pass_env = [\"CHUM_API_TOKENS\"]",
            "",
            "",
            "providers.a.pass_env",
            "never passed",
        );
        refused(
            "pass_env = [\"sk-ant-123=x\"]",
            "",
            "",
            "providers.a.pass_env",
            "names only",
        );
        refused("pass_env = [\"HOME\"]", "", "", "providers.a.pass_env", "set by CHUM");
        refused(
            "pass_env = [\"TEMPORAL_API_KEY\"]",
            "",
            "",
            "providers.a.pass_env",
            "reaches Temporal",
        );
        refused(
            "pass_env = [\"TEMPORAL_TLS_CLIENT_KEY_DATA\"]",
            "",
            "",
            "providers.a.pass_env",
            "reaches Temporal",
        );
        refused(
            "env = { CHUM_API_TOKENS = \"x\" }",
            "",
            "",
            "providers.a.env",
            "never given",
        );
        refused(
            "allow_hosts = [\"https://api.anthropic.com\"]",
            "",
            "",
            "providers.a.allow_hosts",
            "is a URL",
        );
        refused(
            "allow_hosts = [\"*\", \"a.com\"]",
            "",
            "",
            "providers.a.allow_hosts",
            "alone",
        );
        refused(
            "network = \"deny\"\nallow_hosts = [\"a.com\"]",
            "",
            "",
            "providers.a.network",
            "contradict",
        );
        refused(
            "[providers.a.mcp_servers.x]\nargs = []",
            "",
            "",
            "providers.a.mcp_servers.x.command",
            "required",
        );
        refused(
            "",
            "toolchains = [\"cargo\"]",
            "",
            "projects.demo.toolchains",
            "absolute path",
        );
        refused(
            "",
            "copy_files = [\"../secret\"]",
            "",
            "projects.demo.copy_files",
            "inside the repository",
        );
        refused(
            "",
            "setup_allow_hosts = [\"*.pypi.org\"]",
            "",
            "projects.demo.setup_allow_hosts",
            "wildcards",
        );
        refused("", "", "max_memory = \"1MiB\"", "sandbox.max_memory", "too little");
        refused(
            "",
            "",
            "cpu_quota = -1.0",
            "sandbox.cpu_quota",
            "not a number of CPU cores",
        );
    }

    #[test]
    fn sizes_read_like_cgroups_write_them() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3TB").unwrap_err().contains("unknown unit"));
        assert_eq!(show_size(2 << 30), "2 GiB");
        assert_eq!(show_size(300 << 20), "300 MiB");
    }
}
