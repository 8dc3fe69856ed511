//! The worker configuration (`chum.toml`): schema, defaults and validation.
//!
//! Loading is layered with the `config` crate: the TOML file, then environment overrides named
//! `CHUM__<SECTION>__<KEY>` (e.g. `CHUM__TEMPORAL__ADDRESS`). This module is pure: the caller reads
//! the file and the environment and passes them in, so every error path is unit-tested.
//! Every error names the file, the key and what to do.

mod agents;
mod codec;
mod commands;
mod cron;
mod forge;
mod named_gates;
mod notify;
mod prices;
mod projects;
mod raw;
mod schema;
mod store;
mod temporal;
mod validate;
mod worker;
pub mod world;

pub use codec::{AES_256_GCM, CODEC_KEY_LEN, CodecKey, CodecSettings};
pub use commands::{expand_command, is_simple_name};
pub use cron::check_cron;
pub use forge::{ForgeConfig, ForgeKind, IntakeConfig, MAX_POLL, RawForge, RawIntake};
pub use named_gates::{DEFAULT_GATE_TIMEOUT, NamedGateConfig, RawGateSandbox, RawNamedGate};
pub use notify::{NOTIFY_EVENTS, NotifyKind, NotifyTarget, NotifyUrl, RawNotify};
pub use prices::{PRICE_TABLE_AS_OF, RawPrice, TokenPrice, table_price};
pub use raw::{
    RawApi, RawBudget, RawCodec, RawConfig, RawDispatcher, RawGroom, RawLearner, RawLimits, RawProject, RawProvider,
    RawRepoMapTokens, RawSandbox, RawSemgrep, RawTemporal,
};
pub use schema::{
    ApiSettings, BacklogBackend, Budget, ChumConfig, DispatcherSettings, GateName, GroomSettings, IntegrationPolicy,
    LearnerSettings, LeaseMode, Limits, MAX_FANOUT, OutputFormat, ProjectConfig, ProviderConfig, RepoMapTokens, Role,
    SandboxMode, SandboxSettings, SelectMode, SemgrepSettings, UpdateMode,
};
pub use store::{DEFAULT_PASSWORD_ENV, PostgresUrl, RawStore, StoreLocation};
pub use temporal::{
    ApiKey, ConnectionSettings, DEFAULT_API_KEY_ENV, Origin, Pem, Setting, TemporalSettings, address_url, tls_wanted,
};
pub use worker::{DEFAULT_HOST_WAIT, RawWorker, WorkerSettings, host_task_queue, is_host_name};
pub use world::{McpServer, ProjectEnvironment, RawMcpServer, ResourceLimits, parse_size, show_size};

use std::path::{Path, PathBuf};

use validate::Validator;

/// A configuration error: which file, which key, what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {file} not found. Copy configs/chum.example.toml to {file} or pass --config <path>")]
    Missing { file: String },
    #[error(
        "no configuration file: looked for {tried}. Copy configs/chum.example.toml to configs/chum.toml, or pass --config <path> (or set CHUM_CONFIG)"
    )]
    NotFound { tried: String },
    #[error("{file}: {detail}")]
    Syntax { file: String, detail: String },
    #[error("{file}: unknown key `{key}`; see configs/chum.example.toml for every valid key")]
    UnknownKey { file: String, key: String },
    #[error("{file}: key `{key}`: {reason}")]
    Invalid { file: String, key: String, reason: String },
}

impl ConfigError {
    /// The offending key, when the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The server when nothing says where: the scheme follows TLS (`http://` without).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:7233";
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_TASK_QUEUE: &str = "chum";
pub const DEFAULT_UI_URL: &str = "http://127.0.0.1:8233";
pub const ENV_PREFIX: &str = "CHUM";

impl ChumConfig {
    /// Whether runs end with the ContinuousLearner: enabled and a learner role configured.
    pub fn learning(&self) -> bool {
        self.learner.enabled && self.roles.contains_key(&Role::Learner)
    }

    /// Whether runs are followed by a TacticalGroom: enabled and a groomer role configured.
    pub fn grooming(&self) -> bool {
        self.groom.enabled && self.roles.contains_key(&Role::Groomer)
    }

    /// Whether the worker keeps a StrategicGroom schedule per project.
    pub fn strategic_grooming(&self) -> bool {
        self.grooming() && self.groom.strategic
    }

    /// Parses and validates a configuration.
    ///
    /// `source` is the file the text came from: it is named in errors and relative paths
    /// (`repo`, `state_dir`) start from its directory. `env` holds the process environment; only
    /// `CHUM__...` variables are used.
    pub fn from_toml(
        text: &str,
        source: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ChumConfig, ConfigError> {
        let file = source.display().to_string();
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(overrides.clone())),
            )
            .build()
            .map_err(|e| ConfigError::Syntax {
                file: file.clone(),
                detail: e.to_string(),
            })?;

        let mut unknown = Vec::new();
        let raw: RawConfig = serde_ignored::deserialize(layered, |path| {
            // serde_ignored writes an optional table's `Some` as `?`: the file has no such level.
            unknown.push(path.to_string().replace(".?.", "."));
        })
        .map_err(|e| ConfigError::Syntax {
            file: file.clone(),
            detail: e.to_string(),
        })?;
        if let Some(key) = unknown.into_iter().next() {
            return Err(ConfigError::UnknownKey { file, key });
        }
        let config_dir = source
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Validator {
            file,
            config_dir,
            overrides: overrides.into_iter().collect(),
            api_key_env: String::new(),
            codec_key_envs: Vec::new(),
        }
        .validate(raw, source)
    }

    /// The provider names of a role's tier, in order of preference.
    pub fn providers_for(&self, role: Role) -> Result<Vec<&ProviderConfig>, NotConfigured> {
        let tier = self.roles.get(&role).ok_or(NotConfigured::Role(role))?;
        let names = self.tiers.get(tier).ok_or_else(|| NotConfigured::Tier {
            tier: tier.clone(),
            role,
        })?;
        Ok(names.iter().filter_map(|n| self.providers.get(n)).collect())
    }

    pub fn project(&self, name: &str) -> Result<&ProjectConfig, NotConfigured> {
        self.projects.get(name).ok_or_else(|| NotConfigured::Project {
            name: name.to_string(),
            file: self.source.display().to_string(),
            known: self.projects.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

/// Something a caller asked for by name that the configuration does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotConfigured {
    #[error("project `{name}` is not configured in {file} (configured: {known})")]
    Project { name: String, file: String, known: String },
    #[error("no tier is configured for role `{0}` under [roles]")]
    Role(Role),
    #[error("tier `{tier}` of role `{role}` is not defined")]
    Tier { tier: String, role: Role },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SharkLimits;
    use std::time::Duration;

    pub(super) const GOOD: &str = r#"
        [temporal]
        address = "http://127.0.0.1:7233"
        [limits]
        max_attempts = 2
        gate_timeout = "2h"
        [projects.demo]
        repo = "../demo"
        dod = ["python3 -m unittest"]
        integration = "merge"
        [providers.scripted]
        command = ["chum-scripted-agent", "--scenario", "{config_dir}/scenario.toml"]
        output = "claude-json"
        [providers.other]
        command = ["other-agent"]
        [tiers]
        fast = ["scripted"]
        review = ["other", "scripted"]
        [roles]
        planner = "fast"
        executor = "fast"
        reviewer = "review"
    "#;

    fn load(text: &str) -> Result<ChumConfig, ConfigError> {
        ChumConfig::from_toml(text, Path::new("/etc/chum/chum.toml"), Vec::new())
    }

    fn load_env(text: &str, env: &[(&str, &str)]) -> Result<ChumConfig, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        ChumConfig::from_toml(text, Path::new("/etc/chum/chum.toml"), env)
    }

    #[test]
    fn a_good_config_loads_with_defaults_and_resolved_paths() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.temporal.task_queue, "chum");
        assert_eq!(c.limits.max_attempts, 2);
        assert_eq!(c.limits.gate_timeout, Duration::from_secs(7200));
        assert_eq!(c.limits.max_plan_rounds, 3);
        let demo = c.project("demo").unwrap();
        assert_eq!(demo.repo, PathBuf::from("/etc/demo"));
        assert_eq!(demo.base_branch, "main");
        assert_eq!(demo.integration, IntegrationPolicy::Merge);
        assert_eq!(demo.beads_file, PathBuf::from(".beads/issues.jsonl"));
        assert_eq!(c.state_dir, PathBuf::from("/etc/chum/.chum"));
        let planners = c.providers_for(Role::Planner).unwrap();
        assert_eq!(planners[0].name, "scripted");
        assert_eq!(planners[0].output, OutputFormat::ClaudeJson);
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let c = load_env(
            GOOD,
            &[
                ("CHUM__TEMPORAL__ADDRESS", "http://10.0.0.1:7233"),
                ("CHUM__LIMITS__MAX_ATTEMPTS", "5"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.temporal.address, "http://10.0.0.1:7233");
        assert_eq!(c.limits.max_attempts, 5);
    }

    fn expect_invalid(text: &str, key: &str, reason_part: &str) {
        let err = load(text).expect_err("config should be rejected");
        let msg = err.to_string();
        assert_eq!(err.key(), Some(key), "{msg}");
        assert!(msg.contains("/etc/chum/chum.toml"), "names the file: {msg}");
        assert!(msg.contains(reason_part), "{msg}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let text = GOOD.replace("dod = [", "dod_comands = [\"x\"]\n dod = [");
        expect_invalid(&text, "projects.demo.dod_comands", "unknown key");
    }

    #[test]
    fn a_provider_is_priced_by_its_config_or_by_the_table_for_its_model() {
        let config = load(&GOOD.replace(
            "[providers.other]\n        command = [\"other-agent\"]",
            "[providers.other]\n        command = [\"codex\"]\n        model = \"gpt-5-codex\"",
        ))
        .expect("valid");
        let table = config.providers["other"].price.expect("the table knows gpt-5-codex");
        assert_eq!((table.input_usd_per_mtok, table.output_usd_per_mtok), (1.25, 10.0));
        assert_eq!(config.providers["scripted"].price, None, "no model, no price");
        let priced = GOOD.replace(
            "output = \"claude-json\"",
            "output = \"claude-json\"\n        price = { input_usd_per_mtok = 0.5, output_usd_per_mtok = 2 }",
        );
        let own = load(&priced).expect("valid").providers["scripted"]
            .price
            .expect("its own price");
        assert_eq!((own.input_usd_per_mtok, own.output_usd_per_mtok), (0.5, 2.0));
        expect_invalid(
            &priced.replace("output_usd_per_mtok = 2", "output_usd_per_mtok = -2"),
            "providers.scripted.price.output_usd_per_mtok",
            "not an amount of USD",
        );
        expect_invalid(
            &priced.replace(", output_usd_per_mtok = 2", ""),
            "providers.scripted.price.output_usd_per_mtok",
            "names both",
        );
    }

    #[test]
    fn notify_targets_are_named_and_say_what_they_miss() {
        let text = format!(
            "{GOOD}\n[[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example.com/chum\"\nsecret_env = \"HOOK_SECRET\"\n\n\
             [[notify]]\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\nevents = [\"run_ended\"]\n\n\
             [[notify]]\nkind = \"matrix\"\nname = \"team-room\"\nurl = \"https://matrix.example.org\"\nroom = \"!abc:example.org\"\ntoken_env = \"MATRIX_TOKEN\"\n"
        );
        let config = load(&text).expect("valid");
        let names: Vec<&str> = config.notify.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["webhook-1", "slack-2", "team-room"]);
        assert_eq!(config.notify[1].url, NotifyUrl::Env("SLACK_URL".into()));
        assert!(config.notify[1].wants("run_ended") && !config.notify[1].wants("gate_waiting"));
        assert!(config.notify[0].wants("gate_expiring"), "all events by default");
        assert_eq!(config.api.public_url, "http://127.0.0.1:8900");
        let notify = |body: &str| format!("{GOOD}\n[[notify]]\n{body}\n");
        expect_invalid(
            &notify("kind = \"webhook\"\nurl = \"https://h.example\""),
            "notify[0].secret_env",
            "signed with",
        );
        expect_invalid(&notify("kind = \"pager\""), "notify[0].kind", "\"pager\"");
        expect_invalid(&notify("kind = \"slack\""), "notify[0].url", "url_env");
        expect_invalid(
            &notify("kind = \"slack\"\nurl = \"https://user:pw@hooks.slack.com/x\""),
            "notify[0].url",
            "without credentials",
        );
        expect_invalid(
            &notify("kind = \"matrix\"\nurl = \"https://m.example\"\ntoken_env = \"T\"\nroom = \"general\""),
            "notify[0].room",
            "room id",
        );
        expect_invalid(
            &notify("kind = \"slack\"\nurl_env = \"S\"\nevents = [\"gate_opened\"]"),
            "notify[0].events",
            "gate_waiting, gate_expiring, run_ended",
        );
        expect_invalid(
            &notify("kind = \"slack\"\nurl_env = \"CHUM_API_TOKENS\""),
            "notify[0].url_env",
            "API's tokens",
        );
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        let text = GOOD.replace("\"2h\"", "\"two hours\"");
        expect_invalid(&text, "limits.gate_timeout", "write e.g.");
    }

    #[test]
    fn undefined_providers_and_tiers_are_rejected() {
        expect_invalid(
            &GOOD.replace("fast = [\"scripted\"]", "fast = [\"claude\"]"),
            "tiers.fast",
            "provider `claude` is not defined",
        );
        expect_invalid(
            &GOOD.replace("executor = \"fast\"", "executor = \"premium\""),
            "roles.executor",
            "tier `premium` is not defined",
        );
        expect_invalid(
            &GOOD.replace("executor = \"fast\"", ""),
            "roles.executor",
            "is required",
        );
        expect_invalid(
            &GOOD.replace("planner = \"fast\"", "planer = \"fast\""),
            "roles.planer",
            "is not a role",
        );
    }

    #[test]
    fn intake_and_grooming_settings_have_defaults_and_checked_values() {
        let c = load(GOOD).unwrap();
        assert!(c.dispatcher.enabled);
        assert_eq!(c.dispatcher.interval, Duration::from_secs(10));
        assert_eq!(c.project("demo").unwrap().concurrency, 1);
        assert_eq!(c.groom.schedule, "0 6 * * *");
        assert_eq!(c.groom.timezone, "UTC");
        assert_eq!((c.groom.max_mutations, c.groom.strategic_max_mutations), (5, 10));
        assert!(!c.grooming(), "no groomer role, no grooming");
        let with_groomer = GOOD.replace("[roles]", "[roles]\ngroomer = \"fast\"");
        let c = load(&with_groomer).unwrap();
        assert!(c.grooming() && c.strategic_grooming());

        let groom = |section: &str| format!("{GOOD}\n[groom]\n{section}\n");
        expect_invalid(&groom("schedule = \"daily\""), "groom.schedule", "has 1 fields");
        expect_invalid(&groom("schedule = \"0 6 * * * *\""), "groom.schedule", "has 6 fields");
        expect_invalid(
            &groom("schedule = \"0 6 * * $\""),
            "groom.schedule",
            "not valid cron syntax",
        );
        expect_invalid(&groom("timezone = \"Berlin time\""), "groom.timezone", "IANA");
        expect_invalid(&groom("max_mutations = 0"), "groom.max_mutations", "at least 1");
        expect_invalid(
            &groom("strategic_max_mutations = 99"),
            "groom.strategic_max_mutations",
            "maximum of 50",
        );
        expect_invalid(&groom("cron = \"x\""), "groom.cron", "unknown key");
        assert!(load(&groom("schedule = \"@daily\"\ntimezone = \"America/New_York\"")).is_ok());
        expect_invalid(
            &format!("{GOOD}\n[dispatcher]\nrounds_per_run = 0\n"),
            "dispatcher.rounds_per_run",
            "at least 1",
        );
    }

    #[test]
    fn several_hosts_need_a_name_and_integration_through_the_remote() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.worker, WorkerSettings::default());
        assert_eq!(c.worker.host, "", "the loader fills in the hostname");
        // GOOD's project merges into one host's checkout.
        expect_invalid(
            &format!("{GOOD}\n[worker]\nseveral_hosts = true\n"),
            "worker.several_hosts",
            "\"push\" or \"pr\"",
        );
        let pushing = GOOD.replace("integration = \"merge\"", "integration = \"push\"");
        let c = load(&format!(
            "{pushing}\n[worker]\nhost = \"build-2\"\nseveral_hosts = true\nhost_wait = \"30s\"\n"
        ))
        .unwrap();
        assert!(c.worker.several_hosts);
        assert_eq!(c.worker.host_wait, Duration::from_secs(30));
        assert_eq!(c.worker.host_task_queue(&c.temporal.task_queue), "chum@build-2");
        expect_invalid(
            &format!("{GOOD}\n[worker]\nhost = \"build 2\"\n"),
            "worker.host",
            "cannot name a worker",
        );
        expect_invalid(
            &format!("{GOOD}\n[worker]\nhost_wait = \"soon\"\n"),
            "worker.host_wait",
            "not a duration",
        );
        // A backlog several hosts share lives outside each checkout.
        let shared = GOOD.replace(
            "integration = \"merge\"",
            "integration = \"merge\"\n        beads_file = \"/mnt/shared/issues.jsonl\"",
        );
        assert_eq!(
            load(&shared).unwrap().projects["demo"].beads_file,
            PathBuf::from("/mnt/shared/issues.jsonl")
        );
        let escaping = GOOD.replace(
            "integration = \"merge\"",
            "integration = \"merge\"\n        beads_file = \"../issues.jsonl\"",
        );
        expect_invalid(&escaping, "projects.demo.beads_file", "inside the repository");
    }

    #[test]
    fn the_repo_map_budget_is_per_role_with_defaults_and_a_maximum() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.repo_map_tokens, RepoMapTokens::default());
        assert_eq!(c.repo_map_tokens.for_role(Role::Planner), 2048);
        assert_eq!(c.repo_map_tokens.for_role(Role::Learner), 0, "the learner gets no map");
        let section = |body: &str| format!("{GOOD}\n[repo_map_tokens]\n{body}\n");
        let c = load(&section("planner = 4096\nexecutor = 0")).unwrap();
        assert_eq!((c.repo_map_tokens.planner, c.repo_map_tokens.executor), (4096, 0));
        assert_eq!(c.repo_map_tokens.reviewer, RepoMapTokens::default().reviewer);
        expect_invalid(
            &section("reviewer = 100000"),
            "repo_map_tokens.reviewer",
            "maximum of 32768",
        );
        expect_invalid(&section("learner = 512"), "repo_map_tokens.learner", "unknown key");
        let c = load_env(GOOD, &[("CHUM__REPO_MAP_TOKENS__GROOMER", "512")]).unwrap();
        assert_eq!(c.repo_map_tokens.groomer, 512);
    }

    #[test]
    fn the_push_policy_lands_on_a_named_remote_with_credentials_by_variable_name() {
        let push = GOOD.replace("integration = \"merge\"", "integration = \"push\"");
        let demo = load(&push).expect("valid").projects["demo"].clone();
        assert_eq!(demo.integration, IntegrationPolicy::Push);
        assert_eq!(
            (demo.remote.as_str(), demo.remote_token_env.as_deref()),
            ("origin", None)
        );
        assert_eq!(demo.landing_branch(), "origin/main");
        let named = push.replace(
            "integration = \"push\"",
            "integration = \"push\"\nremote = \"forge\"\nremote_token_env = \"GITHUB_TOKEN\"",
        );
        let demo = load(&named).expect("valid").projects["demo"].clone();
        assert_eq!(
            (demo.remote.as_str(), demo.remote_token_env.as_deref()),
            ("forge", Some("GITHUB_TOKEN"))
        );
        expect_invalid(
            &push.replace(
                "integration = \"push\"",
                "integration = \"push\"\nremote = \"--upload-pack=x\"",
            ),
            "projects.demo.remote",
            "not a remote's name",
        );
        expect_invalid(
            &push.replace(
                "integration = \"push\"",
                "integration = \"push\"\nremote_token_env = \"ghp_abc123 secret\"",
            ),
            "projects.demo.remote_token_env",
            "not an environment variable name",
        );
    }

    #[test]
    fn the_pr_policy_needs_a_forge_named_by_repository_and_token_variable() {
        let pr = GOOD.replace("integration = \"merge\"", "integration = \"pr\"");
        expect_invalid(&pr, "projects.demo.forge", "needs the forge");
        let with = |forge: &str| {
            pr.replace(
                "integration = \"pr\"",
                &format!("integration = \"pr\"\nforge = {forge}"),
            )
        };
        let demo = load(&with(r#"{ repo = "octo-org/app", token_env = "GITHUB_TOKEN" }"#))
            .expect("valid")
            .projects["demo"]
            .clone();
        let forge = demo.forge.expect("a forge");
        assert_eq!(demo.integration, IntegrationPolicy::PullRequest);
        assert_eq!(
            (
                forge.kind,
                forge.repo.as_str(),
                forge.api_url.as_str(),
                forge.token_env.as_str()
            ),
            (
                ForgeKind::GitHub,
                "octo-org/app",
                "https://api.github.com",
                "GITHUB_TOKEN"
            )
        );
        assert_eq!(
            (forge.poll.as_secs(), forge.wait.as_secs(), forge.webhook_secret_env),
            (60, 14 * 24 * 3600, None)
        );
        expect_invalid(
            &with(r#"{ repo = "app", token_env = "T" }"#),
            "projects.demo.forge.repo",
            "<owner>/<name>",
        );
        expect_invalid(
            &with(r#"{ repo = "o/a" }"#),
            "projects.demo.forge.token_env",
            "is required",
        );
        expect_invalid(
            &with(r#"{ repo = "o/a", token_env = "ghp_123 456" }"#),
            "projects.demo.forge.token_env",
            "not an environment variable name",
        );
        expect_invalid(
            &with(r#"{ repo = "o/a", token_env = "T", api_url = "https://me:pw@github.example" }"#),
            "projects.demo.forge.api_url",
            "without credentials",
        );
        expect_invalid(
            &with(r#"{ repo = "o/a", token_env = "T", poll = "1h" }"#),
            "projects.demo.forge.poll",
            "at most 15m",
        );
        expect_invalid(
            &with(r#"{ repo = "o/a", token_env = "T", kind = "gitea" }"#),
            "projects.demo.forge.kind",
            "\"gitea\"",
        );
        expect_invalid(
            &with(r#"{ repo = "o/a", token_env = "T", colour = "red" }"#),
            "projects.demo.forge.colour",
            "unknown key",
        );
        // Issues as intake come from the project's forge.
        let intake = |forge: &str, intake: &str| {
            GOOD.replace(
                "integration = \"merge\"",
                &format!("integration = \"merge\"\n{forge}\nintake = {intake}"),
            )
        };
        let forge = r#"forge = { repo = "o/a", token_env = "T" }"#;
        let demo = load(&intake(forge, r#"{ forge = "github" }"#)).expect("valid").projects["demo"].clone();
        assert_eq!(demo.intake.map(|i| i.label), Some("chum".to_string()));
        expect_invalid(
            &intake("", r#"{ forge = "github" }"#),
            "projects.demo.intake.forge",
            "add forge =",
        );
        expect_invalid(
            &intake(forge, r#"{ forge = "github", label = "chum:done" }"#),
            "projects.demo.intake.label",
            "cannot be",
        );
        expect_invalid(
            &intake(forge, r#"{ forge = "jira" }"#),
            "projects.demo.intake.forge",
            "\"jira\"",
        );
        expect_invalid(
            &intake(forge, r#"{ forge = "gitlab" }"#),
            "projects.demo.intake.forge",
            "project's own forge",
        );
        // GitLab: its API root by default, and groups nest.
        let gitlab = r#"forge = { kind = "gitlab", repo = "group/sub/app", token_env = "GITLAB_TOKEN" }"#;
        let demo = load(&intake(gitlab, r#"{ forge = "gitlab" }"#))
            .expect("valid")
            .projects["demo"]
            .clone();
        let forge = demo.forge.expect("a forge");
        assert_eq!(
            (forge.kind, forge.repo.as_str(), forge.api_url.as_str()),
            (ForgeKind::GitLab, "group/sub/app", "https://gitlab.com/api/v4")
        );
        expect_invalid(
            &with(r#"{ repo = "group/sub/app", token_env = "T" }"#),
            "projects.demo.forge.repo",
            "<owner>/<name>",
        );
        expect_invalid(
            &with(r#"{ kind = "gitlab", repo = "group//app", token_env = "T" }"#),
            "projects.demo.forge.repo",
            "<owner>/<name>",
        );
    }

    #[test]
    fn bad_values_are_rejected_with_their_key() {
        expect_invalid(
            &GOOD.replace("\"merge\"", "\"rebase\""),
            "projects.demo.integration",
            "\"rebase\"",
        );
        expect_invalid(
            &GOOD.replace("max_attempts = 2", "max_attempts = 0"),
            "limits.max_attempts",
            "at least 1",
        );
        expect_invalid(
            &GOOD.replace("\"claude-json\"", "\"xml\""),
            "providers.scripted.output",
            "\"xml\"",
        );
        expect_invalid(
            &GOOD.replace("{config_dir}/scenario", "{confdir}/scenario"),
            "providers.scripted.command",
            "{confdir}",
        );
        expect_invalid(
            &GOOD.replace("repo = \"../demo\"", ""),
            "projects.demo.repo",
            "is required",
        );
        expect_invalid(
            &GOOD.replace("http://127.0.0.1:7233", "grpc://127.0.0.1:7233"),
            "temporal.address",
            "neither host:port nor",
        );
    }

    #[test]
    fn gates_default_to_semgrep_review_dod_and_are_checked() {
        let c = load(GOOD).unwrap();
        let demo = c.project("demo").unwrap();
        assert_eq!(demo.gates, GateName::DEFAULT_ORDER);
        assert!(!demo.review_fail_open);
        let custom = GOOD.replace(
            "integration = \"merge\"",
            "integration = \"merge\"\ngates = [\"dod\", \"semgrep\"]\nreview_fail_open = true",
        );
        let c = load(&custom).unwrap();
        assert_eq!(c.project("demo").unwrap().gates, [GateName::Dod, GateName::Semgrep]);
        assert!(c.project("demo").unwrap().review_fail_open);
        expect_invalid(
            &GOOD.replace("integration = \"merge\"", "gates = [\"lint\"]"),
            "projects.demo.gates",
            "\"lint\" is not a gate",
        );
        expect_invalid(
            &GOOD.replace("integration = \"merge\"", "gates = [\"dod\", \"dod\"]"),
            "projects.demo.gates",
            "listed twice",
        );
    }

    #[test]
    fn the_reviewer_must_be_able_to_differ_from_the_executor() {
        expect_invalid(
            &GOOD.replace("review = [\"other\", \"scripted\"]", "review = [\"scripted\"]"),
            "roles.reviewer",
            "must be a different provider from the executor",
        );
        expect_invalid(
            &GOOD.replace("reviewer = \"review\"", ""),
            "roles.reviewer",
            "runs the \"review\" gate",
        );
        // Without the review gate, no reviewer is needed.
        let no_review = GOOD
            .replace("reviewer = \"review\"", "")
            .replace("integration = \"merge\"", "gates = [\"dod\"]");
        assert!(load(&no_review).is_ok());
    }

    #[test]
    fn wrong_types_and_bad_toml_name_the_file() {
        let err = load(&GOOD.replace("max_attempts = 2", "max_attempts = \"two\"")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/chum/chum.toml: "), "{msg}");
        assert!(msg.contains("max_attempts"), "names the key: {msg}");
        let err = load("[projects.demo\nrepo = 1").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn a_config_without_projects_says_how_to_add_one() {
        let text = GOOD.replace("[projects.demo]", "[unused_section_is_unknown]");
        assert!(load(&text).is_err());
        let no_projects: String = GOOD
            .lines()
            .filter(|l| {
                !l.contains("repo =")
                    && !l.contains("dod =")
                    && !l.contains("integration =")
                    && !l.contains("[projects.demo]")
            })
            .collect::<Vec<_>>()
            .join("\n");
        expect_invalid(&no_projects, "projects", "[projects.<name>]");
    }

    #[test]
    fn the_shipped_configs_load() {
        // The example documents every key; if it stops loading, the docs no longer match the code.
        for (path, text) in [
            (
                "configs/chum.example.toml",
                include_str!("../../../../configs/chum.example.toml"),
            ),
            (
                "configs/demo/chum.toml",
                include_str!("../../../../configs/demo/chum.toml"),
            ),
            ("configs/docker.toml", include_str!("../../../../configs/docker.toml")),
        ] {
            let c = ChumConfig::from_toml(text, Path::new(path), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !c.projects.is_empty() && c.providers_for(Role::Executor).is_ok(),
                "{path}"
            );
        }
    }

    #[test]
    fn placeholders_expand() {
        let argv = expand_command(
            &[
                "agent".into(),
                "--model={model}".into(),
                "{prompt_file}".into(),
                "{config_dir}/s.toml".into(),
            ],
            "opus",
            Path::new("/tmp/p.md"),
            Path::new("/wt"),
            Path::new("/cfg"),
        );
        assert_eq!(argv, vec!["agent", "--model=opus", "/tmp/p.md", "/cfg/s.toml"]);
    }

    #[test]
    fn limits_round_trip_through_the_workflow_input_and_default_zeroes() {
        let l = Limits {
            max_attempts: 4,
            ..Limits::default()
        };
        assert_eq!(Limits::from_proto(Some(&l.to_proto())), l);
        assert_eq!(Limits::from_proto(Some(&SharkLimits::default())), Limits::default());
        assert_eq!(Limits::from_proto(None), Limits::default());
    }
}
