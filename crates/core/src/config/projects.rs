//! Validation of `[projects.<name>]`: each repository, its gates, commands, backlog and environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::*;
use super::validate::Validator;
use super::*;

impl Validator {
    /// `[projects.<name>]`: each repository, its gates, commands, backlog and environment.
    pub(super) fn projects(
        &self,
        raw: BTreeMap<String, RawProject>,
        tokens_env: &str,
    ) -> Result<BTreeMap<String, ProjectConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.invalid(
                "projects",
                "no project is configured; add a [projects.<name>] section with `repo = \"<path to a git repository>\"`",
            ));
        }
        let mut projects = BTreeMap::new();
        for (name, p) in raw {
            let key = |k: &str| format!("projects.{name}.{k}");
            if !is_simple_name(&name) {
                return Err(self.invalid(
                    format!("projects.{name}"),
                    "project names may only use letters, digits, '-' and '_'",
                ));
            }
            let repo = p
                .repo
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| self.invalid(key("repo"), "is required: the path of the project's git repository"))?;
            let base_branch = self.non_empty(&key("base_branch"), p.base_branch, "main")?;
            let integration = match p.integration.as_deref().unwrap_or("branch") {
                "branch" => IntegrationPolicy::Branch,
                "merge" => IntegrationPolicy::Merge,
                "push" => IntegrationPolicy::Push,
                "pr" => IntegrationPolicy::PullRequest,
                other => {
                    return Err(self.invalid(
                        key("integration"),
                        format!("{other:?} is not one of \"branch\", \"merge\", \"push\", \"pr\""),
                    ));
                }
            };
            let remote = self.non_empty(&key("remote"), p.remote, "origin")?;
            if remote.starts_with('-') || remote.chars().any(|c| c.is_whitespace() || c == ':') {
                return Err(self.invalid(
                    key("remote"),
                    format!("{remote:?} is not a remote's name; name one `git remote` lists in the repository, e.g. \"origin\""),
                ));
            }
            let remote_token_env = match p.remote_token_env {
                None => None,
                Some(name) => self
                    .env_names(&key("remote_token_env"), std::slice::from_ref(&name), tokens_env)?
                    .into_iter()
                    .next(),
            };
            let forge = self.forge(&name, p.forge, integration, tokens_env)?;
            let intake = self.intake(&name, p.intake, forge.as_ref())?;
            if let Some(i) = p.dod.iter().position(|c| c.trim().is_empty()) {
                return Err(self.invalid(format!("{}[{i}]", key("dod")), "an empty command"));
            }
            let beads_file = PathBuf::from(p.beads_file.unwrap_or_else(|| ".beads/issues.jsonl".to_string()));
            // Relative: inside the repository. Absolute: a backlog kept outside the checkout, e.g.
            // one file on a volume several hosts share.
            if beads_file.components().any(|c| c.as_os_str() == "..") {
                return Err(self.invalid(
                    key("beads_file"),
                    "must be a path inside the repository (relative to `repo`, without \"..\"), or an absolute path",
                ));
            }
            let (gates, named_gates) = self.named_gates(&name, p.gate, p.gates)?;
            let backlog = match p.beads_backend.as_deref().unwrap_or("native") {
                "native" => BacklogBackend::Native,
                "cli" => BacklogBackend::Cli {
                    program: self.non_empty(&key("beads_cli"), p.beads_cli, "bd")?,
                },
                other => {
                    return Err(self.invalid(
                        key("beads_backend"),
                        format!("{other:?} is not one of \"native\", \"cli\""),
                    ));
                }
            };
            let concurrency = match p.concurrency {
                None => 1,
                Some(0) => return Err(self.invalid(key("concurrency"), "must be at least 1")),
                Some(n) if n > 64 => {
                    return Err(self.invalid(key("concurrency"), format!("{n} is more than the maximum of 64")));
                }
                Some(n) => n,
            };
            let sandbox = match p.sandbox.as_deref().unwrap_or("auto") {
                "auto" => SandboxMode::Auto,
                "bwrap" => SandboxMode::Bwrap,
                "none" => SandboxMode::None,
                other => {
                    return Err(self.invalid(
                        key("sandbox"),
                        format!("{other:?} is not one of \"auto\", \"bwrap\", \"none\""),
                    ));
                }
            };
            let fanout = match p.fanout {
                None => 1,
                Some(n) if (1..=MAX_FANOUT).contains(&n) => n,
                Some(n) => {
                    return Err(self.invalid(key("fanout"), format!("{n} is not between 1 and {MAX_FANOUT}")));
                }
            };
            let update = match p.update.as_deref().unwrap_or("rebase") {
                "rebase" => UpdateMode::Rebase,
                "merge" => UpdateMode::Merge,
                other => {
                    return Err(self.invalid(key("update"), format!("{other:?} is not one of \"rebase\", \"merge\"")));
                }
            };
            let leases = match p.leases.as_deref().unwrap_or("on") {
                "on" => LeaseMode::On,
                "strict" => LeaseMode::Strict,
                "off" => LeaseMode::Off,
                other => {
                    return Err(self.invalid(
                        key("leases"),
                        format!("{other:?} is not one of \"on\", \"strict\", \"off\""),
                    ));
                }
            };
            let plan_ahead = match p.plan_ahead {
                None => 3,
                Some(n) if n > 32 => {
                    return Err(self.invalid(key("plan_ahead"), format!("{n} is more than the maximum of 32")));
                }
                Some(n) => n,
            };
            let select = match p.select.as_deref().unwrap_or("first") {
                "first" => SelectMode::First,
                "best" => SelectMode::Best,
                other => {
                    return Err(self.invalid(key("select"), format!("{other:?} is not one of \"first\", \"best\"")));
                }
            };
            if let Some(i) = p.setup.iter().position(|c| c.trim().is_empty()) {
                return Err(self.invalid(format!("{}[{i}]", key("setup")), "an empty command"));
            }
            let environment = ProjectEnvironment {
                setup: p.setup,
                setup_allow_hosts: self.allow_hosts(&key("setup_allow_hosts"), &p.setup_allow_hosts)?,
                setup_timeout: self.duration(
                    &key("setup_timeout"),
                    p.setup_timeout.as_deref(),
                    Duration::from_secs(600),
                )?,
                toolchains: self.machine_paths(&key("toolchains"), &p.toolchains)?,
                caches: self.machine_paths(&key("caches"), &p.caches)?,
                copy_files: self.repo_files(&key("copy_files"), &p.copy_files)?,
                mcp_servers: self.mcp_servers(&key("mcp_servers"), p.mcp_servers, tokens_env)?,
            };
            projects.insert(
                name.clone(),
                ProjectConfig {
                    name,
                    repo: self.path(&repo),
                    base_branch,
                    dod: p.dod,
                    integration,
                    remote,
                    remote_token_env,
                    forge,
                    intake,
                    beads_file,
                    enabled: p.enabled.unwrap_or(true),
                    gates,
                    named_gates,
                    review_fail_open: p.review_fail_open.unwrap_or(false),
                    backlog,
                    concurrency,
                    sandbox,
                    fanout,
                    select,
                    update,
                    rereview_on_update: p.rereview_on_update.unwrap_or(false),
                    approve_result: p.approve_result.unwrap_or(false),
                    leases,
                    plan_ahead,
                    environment,
                },
            );
        }
        Ok(projects)
    }
}
