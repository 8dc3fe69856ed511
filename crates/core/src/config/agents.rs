//! Validation of the agents' sections: `[providers.<name>]`, `[tiers]`, `[roles]`, and the
//! cross-model review check over them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::commands::unknown_placeholder;
use super::raw::*;
use super::validate::Validator;
use super::*;

impl Validator {
    /// `[providers.<name>]`: each agent CLI, its command, output and world.
    pub(super) fn providers(
        &self,
        raw: BTreeMap<String, RawProvider>,
        tokens_env: &str,
    ) -> Result<BTreeMap<String, ProviderConfig>, ConfigError> {
        let mut providers = BTreeMap::new();
        for (name, p) in raw {
            let key = |k: &str| format!("providers.{name}.{k}");
            if p.command.is_empty() || p.command[0].trim().is_empty() {
                return Err(self.invalid(
                    key("command"),
                    "must name the agent program, e.g. [\"claude\", \"-p\", \"--output-format\", \"json\"]",
                ));
            }
            for arg in &p.command {
                if let Some(bad) = unknown_placeholder(arg) {
                    return Err(self.invalid(
                        key("command"),
                        format!("unknown placeholder {{{bad}}} in {arg:?}; known: {{model}}, {{prompt_file}}, {{workdir}}, {{config_dir}}, {{mcp_config}}"),
                    ));
                }
            }
            let output_name = p.output.unwrap_or_else(|| "text".to_string());
            let output = OutputFormat::parse(&output_name).ok_or_else(|| {
                self.invalid(
                    key("output"),
                    format!("{output_name:?} is not one of \"claude-json\", \"codex-jsonl\", \"aider\", \"opencode-jsonl\", \"text\""),
                )
            })?;
            let cooldown = self.duration(&key("cooldown"), p.cooldown.as_deref(), Duration::ZERO)?;
            match p.network.as_deref() {
                None | Some("deny") => {}
                Some("allow") => {
                    return Err(self.invalid(
                        key("network"),
                        "\"allow\" shared the worker's whole network with the agent and is gone: list the hosts it needs instead, e.g. `allow_hosts = [\"api.anthropic.com\"]` (or [\"*\"] for any host, logged loudly), and remove `network`",
                    ));
                }
                Some(other) => {
                    return Err(self.invalid(
                        key("network"),
                        format!(
                            "{other:?} is not \"deny\" (the default); to let the agent reach hosts, use allow_hosts"
                        ),
                    ));
                }
            }
            let allow_hosts = self.allow_hosts(&key("allow_hosts"), &p.allow_hosts)?;
            if p.network.is_some() && !allow_hosts.is_empty() {
                return Err(self.invalid(
                    key("network"),
                    "network = \"deny\" and allow_hosts contradict each other; remove one",
                ));
            }
            for var in p.env.keys() {
                if *var == tokens_env {
                    return Err(self.invalid(
                        key("env"),
                        format!("{var} holds the API's tokens and is never given to an agent"),
                    ));
                }
            }
            let pass_env = self.env_names(&key("pass_env"), &p.pass_env, tokens_env)?;
            let cost_per_minute_usd = match p.cost_per_minute_usd {
                Some(c) if !c.is_finite() || c < 0.0 => {
                    return Err(self.invalid(key("cost_per_minute_usd"), format!("{c} is not an amount of USD")));
                }
                other => other.unwrap_or(0.0),
            };
            let price = self.price(&key("price"), p.price, p.model.as_deref().unwrap_or_default())?;
            let mcp_servers = self.mcp_servers(&key("mcp_servers"), p.mcp_servers, tokens_env)?;
            for (field, paths) in [("writable", &p.writable), ("readable", &p.readable)] {
                for path in paths.iter() {
                    if path.trim().is_empty() {
                        return Err(self.invalid(key(field), "an empty path"));
                    }
                    if let Some(bad) = unknown_placeholder(path) {
                        return Err(self.invalid(key(field), format!("unknown placeholder {{{bad}}} in {path:?}")));
                    }
                }
            }
            providers.insert(
                name.clone(),
                ProviderConfig {
                    name,
                    command: p.command,
                    output,
                    model: p.model.unwrap_or_default(),
                    env: p.env,
                    pass_env,
                    max_concurrent: p.max_concurrent.unwrap_or(0),
                    cooldown,
                    cost_per_minute_usd,
                    price,
                    allow_hosts,
                    mcp_servers,
                    writable: p.writable,
                    readable: p.readable,
                },
            );
        }
        Ok(providers)
    }

    /// `[tiers]`: each lists providers that exist.
    pub(super) fn tiers(
        &self,
        tiers: &BTreeMap<String, Vec<String>>,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<(), ConfigError> {
        for (tier, names) in tiers {
            if names.is_empty() {
                return Err(self.invalid(format!("tiers.{tier}"), "must list at least one provider"));
            }
            for n in names {
                if !providers.contains_key(n) {
                    return Err(self.invalid(
                        format!("tiers.{tier}"),
                        format!(
                            "provider `{n}` is not defined; add a [providers.{n}] section or remove it from the tier"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[roles]`: every role names a tier; the required roles are there.
    pub(super) fn roles(
        &self,
        raw: BTreeMap<String, String>,
        tiers: &BTreeMap<String, Vec<String>>,
    ) -> Result<BTreeMap<Role, String>, ConfigError> {
        let mut roles = BTreeMap::new();
        for (role_name, tier) in raw {
            let role = Role::parse(&role_name).ok_or_else(|| {
                self.invalid(
                    format!("roles.{role_name}"),
                    "is not a role; roles are planner, executor, reviewer, learner, groomer",
                )
            })?;
            if !tiers.contains_key(&tier) {
                return Err(self.invalid(
                    format!("roles.{role_name}"),
                    format!("tier `{tier}` is not defined; add `{tier} = [\"<provider>\"]` under [tiers]"),
                ));
            }
            roles.insert(role, tier);
        }
        for role in Role::REQUIRED {
            if !roles.contains_key(&role) {
                return Err(self.invalid(
                    format!("roles.{role}"),
                    "is required: map it to a tier, e.g. `[roles] planner = \"fast\"`",
                ));
            }
        }
        Ok(roles)
    }

    /// Cross-model review needs a reviewer that can be a different model from the executor: another
    /// program or another `model` (another provider name is not enough, unless
    /// `allow_same_model_review = true`).
    pub(super) fn check_reviewer(
        &self,
        roles: &BTreeMap<Role, String>,
        tiers: &BTreeMap<String, Vec<String>>,
        providers: &BTreeMap<String, ProviderConfig>,
        project: &str,
        allow_same_model: bool,
    ) -> Result<(), ConfigError> {
        let Some(reviewer_tier) = roles.get(&Role::Reviewer) else {
            return Err(self.invalid(
                "roles.reviewer",
                format!(
                    "is required because project `{project}` runs the \"review\" gate: map it to a tier whose provider differs from the executor's, or remove \"review\" from `projects.{project}.gates`"
                ),
            ));
        };
        let executor_tier = &roles[&Role::Executor];
        let executors = &tiers[executor_tier];
        let reviewers = &tiers[reviewer_tier];
        if !executors.iter().any(|e| reviewers.iter().any(|r| r != e)) {
            return Err(self.invalid(
                "roles.reviewer",
                format!(
                    "the reviewer must be a different provider from the executor, but tiers `{executor_tier}` (executor) and `{reviewer_tier}` (reviewer) only offer {}; add another provider to tier `{reviewer_tier}`",
                    reviewers.join(", ")
                ),
            ));
        }
        let identity = |name: &String| providers.get(name).map(ProviderConfig::model_identity);
        let other_model = executors
            .iter()
            .any(|e| reviewers.iter().any(|r| identity(r) != identity(e)));
        if !other_model && !allow_same_model {
            let (program, model) = identity(&executors[0]).unwrap_or_default();
            let model = if model.is_empty() {
                "(no model set)".to_string()
            } else {
                model
            };
            return Err(self.invalid(
                "roles.reviewer",
                format!(
                    "every reviewer in tier `{reviewer_tier}` runs the same model as an executor in `{executor_tier}` ({program}, model {model}); cross-model review needs another program or another `model`. Set a different model on one provider, add one, or set allow_same_model_review = true to accept same-model review (it is logged)"
                ),
            ));
        }
        Ok(())
    }
}
