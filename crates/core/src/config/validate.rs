//! Validation: the raw file becomes a [`ChumConfig`], one method per section, or a
//! [`ConfigError`] that names the file, the key and what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::commands::lexically_normal;
use super::raw::*;
use super::*;

pub(super) struct Validator {
    pub(super) file: String,
    pub(super) config_dir: PathBuf,
    /// The `CHUM__...` variables that were layered over the file (to say where a value came from).
    pub(super) overrides: BTreeMap<String, String>,
    /// `temporal.api_key_env`, which no agent or command is ever given.
    pub(super) api_key_env: String,
    /// The variables holding `[temporal.codec]` keys, which no agent or command is ever given.
    pub(super) codec_key_envs: Vec<String>,
}

impl Validator {
    pub(super) fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub(super) fn duration(&self, key: &str, value: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
        let Some(text) = value else { return Ok(default) };
        let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
            self.invalid(
                key,
                format!("{text:?} is not a duration ({e}); write e.g. \"90s\", \"30m\" or \"24h\""),
            )
        })?;
        if parsed.is_zero() {
            return Err(self.invalid(key, "must be longer than zero"));
        }
        Ok(parsed)
    }

    pub(super) fn path(&self, value: &str) -> PathBuf {
        let p = PathBuf::from(value);
        lexically_normal(&if p.is_absolute() { p } else { self.config_dir.join(p) })
    }

    pub(super) fn non_empty(&self, key: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
        match value {
            None => Ok(default.to_string()),
            Some(v) if v.trim().is_empty() => Err(self.invalid(key, "must not be empty")),
            Some(v) => Ok(v),
        }
    }

    /// The whole configuration, section by section; the first problem found is the error.
    pub(super) fn validate(mut self, raw: RawConfig, source: &Path) -> Result<ChumConfig, ConfigError> {
        let temporal = self.temporal(raw.temporal, &self.overrides)?;
        self.api_key_env = temporal.connection.api_key_env.clone();
        self.codec_key_envs = temporal
            .codec
            .iter()
            .flat_map(|c| c.key_envs.values().cloned())
            .collect();
        let limits = self.limits(raw.limits)?;
        let tokens_env = self.tokens_env(raw.api.tokens_env.clone())?;
        let providers = self.providers(raw.providers, &tokens_env)?;
        self.tiers(&raw.tiers, &providers)?;
        let roles = self.roles(raw.roles, &raw.tiers)?;
        let projects = self.projects(raw.projects, &tokens_env)?;
        let allow_same_model_review = raw.allow_same_model_review.unwrap_or(false);
        if let Some(project) = projects.values().find(|p| p.gates.contains(&GateName::Review)) {
            self.check_reviewer(&roles, &raw.tiers, &providers, &project.name, allow_same_model_review)?;
        }
        let semgrep = self.semgrep(raw.semgrep)?;
        let dispatcher = self.dispatcher(raw.dispatcher)?;
        let groom = self.groom(raw.groom)?;
        let learner = self.learner(raw.learner)?;
        let state_dir = self.path(raw.state_dir.as_deref().unwrap_or(".chum"));
        let budget = self.budget(raw.budget)?;
        let sandbox = self.sandbox(raw.sandbox)?;
        let notify = self.notify(raw.notify, &tokens_env)?;
        let repo_map_tokens = self.repo_map_tokens(raw.repo_map_tokens)?;
        let api = self.api(raw.api, tokens_env, &state_dir)?;
        let store = self.store(raw.store)?;
        let worker = self.worker(raw.worker, projects.values())?;
        Ok(ChumConfig {
            source: source.to_path_buf(),
            config_dir: self.config_dir,
            temporal,
            state_dir,
            store,
            worker,
            limits,
            projects,
            providers,
            tiers: raw.tiers,
            roles,
            semgrep,
            learner,
            dispatcher,
            groom,
            api,
            budget,
            sandbox,
            notify,
            repo_map_tokens,
            allow_same_model_review,
        })
    }

    /// `[limits]`: the run's attempts, rounds and timeouts.
    fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let count = |key: &str, v: Option<u32>, dv: u32| -> Result<u32, ConfigError> {
            match v {
                None => Ok(dv),
                Some(0) => Err(self.invalid(key, "must be at least 1")),
                Some(n) if n > 100 => Err(self.invalid(key, format!("{n} is more than the maximum of 100"))),
                Some(n) => Ok(n),
            }
        };
        let limits = Limits {
            max_attempts: count("limits.max_attempts", raw.max_attempts, d.max_attempts)?,
            max_handoffs: count("limits.max_handoffs", raw.max_handoffs, d.max_handoffs)?,
            max_plan_rounds: count("limits.max_plan_rounds", raw.max_plan_rounds, d.max_plan_rounds)?,
            max_gate_rejections: count(
                "limits.max_gate_rejections",
                raw.max_gate_rejections,
                d.max_gate_rejections,
            )?,
            gate_timeout: self.duration("limits.gate_timeout", raw.gate_timeout.as_deref(), d.gate_timeout)?,
            agent_timeout: self.duration("limits.agent_timeout", raw.agent_timeout.as_deref(), d.agent_timeout)?,
            dod_timeout: self.duration("limits.dod_timeout", raw.dod_timeout.as_deref(), d.dod_timeout)?,
        };
        Ok(limits)
    }

    /// `api.tokens_env`, checked first: the providers' and projects' env lists may not name it.
    fn tokens_env(&self, raw: Option<String>) -> Result<String, ConfigError> {
        let tokens_env = raw.unwrap_or_else(|| "CHUM_API_TOKENS".to_string());
        if tokens_env.is_empty() || !tokens_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.invalid(
                "api.tokens_env",
                "must be the name of an environment variable, e.g. CHUM_API_TOKENS",
            ));
        }
        Ok(tokens_env)
    }

    /// `[semgrep]`: where the engine and CLI are, and their timeout.
    fn semgrep(&self, raw: RawSemgrep) -> Result<SemgrepSettings, ConfigError> {
        let semgrep = SemgrepSettings {
            core: raw.core.as_deref().map(|p| self.path(p)),
            cli: raw.cli.as_deref().map(|p| self.path(p)),
            timeout: self.duration("semgrep.timeout", raw.timeout.as_deref(), Duration::from_secs(30))?,
        };
        Ok(semgrep)
    }

    /// `[dispatcher]`: whether ready beads start Sharks by themselves, and how often.
    fn dispatcher(&self, raw: RawDispatcher) -> Result<DispatcherSettings, ConfigError> {
        let dispatcher = DispatcherSettings {
            enabled: raw.enabled.unwrap_or(true),
            interval: self.duration("dispatcher.interval", raw.interval.as_deref(), Duration::from_secs(10))?,
            rounds_per_run: match raw.rounds_per_run {
                Some(0) => return Err(self.invalid("dispatcher.rounds_per_run", "must be at least 1")),
                Some(n) => n,
                None => 100,
            },
        };
        Ok(dispatcher)
    }

    /// `[groom]`: tactical and strategic grooming, the schedule and its time zone.
    fn groom(&self, raw: RawGroom) -> Result<GroomSettings, ConfigError> {
        let bounded = |key: &str, value: Option<u32>, default: u32| -> Result<u32, ConfigError> {
            match value {
                Some(0) => Err(self.invalid(key, "must be at least 1")),
                Some(n) if n > 50 => Err(self.invalid(key, format!("{n} is more than the maximum of 50"))),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        let schedule = raw.schedule.unwrap_or_else(|| "0 6 * * *".to_string());
        if let Err(why) = check_cron(&schedule) {
            return Err(self.invalid("groom.schedule", why));
        }
        let timezone = raw.timezone.unwrap_or_else(|| "UTC".to_string());
        if timezone.is_empty()
            || !timezone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
        {
            return Err(self.invalid(
                "groom.timezone",
                format!("{timezone:?} is not an IANA time zone name such as \"UTC\" or \"Europe/Berlin\""),
            ));
        }
        let groom = GroomSettings {
            enabled: raw.enabled.unwrap_or(true),
            max_mutations: bounded("groom.max_mutations", raw.max_mutations, 5)?,
            strategic: raw.strategic.unwrap_or(true),
            schedule,
            timezone,
            strategic_max_mutations: bounded("groom.strategic_max_mutations", raw.strategic_max_mutations, 10)?,
        };
        Ok(groom)
    }

    /// `[learner]`: lessons in prompts and how long they stay.
    fn learner(&self, raw: RawLearner) -> Result<LearnerSettings, ConfigError> {
        let learner = LearnerSettings {
            enabled: raw.enabled.unwrap_or(true),
            top_k: match raw.top_k {
                Some(n) if n > 50 => {
                    return Err(self.invalid("learner.top_k", format!("{n} is more than the maximum of 50")));
                }
                Some(n) => n,
                None => 5,
            },
            expiry: self.duration(
                "learner.expiry",
                raw.expiry.as_deref(),
                Duration::from_secs(90 * 24 * 3600),
            )?,
            max_lessons_per_run: match raw.max_lessons_per_run {
                Some(0) => return Err(self.invalid("learner.max_lessons_per_run", "must be at least 1")),
                Some(n) => n.min(20),
                None => 5,
            },
        };
        Ok(learner)
    }

    /// `[repo_map_tokens]`: the repo map's budget per role (0 = no map).
    fn repo_map_tokens(&self, raw: RawRepoMapTokens) -> Result<RepoMapTokens, ConfigError> {
        let defaults = RepoMapTokens::default();
        let tokens = |role: &str, value: Option<u32>, default: u32| {
            match value {
            Some(n) if n > RepoMapTokens::MAX => Err(self.invalid(
                format!("repo_map_tokens.{role}"),
                format!(
                    "{n} is more than the maximum of {}: a map that large crowds the work out of the prompt (0 leaves the map out)",
                    RepoMapTokens::MAX
                ),
            )),
            Some(n) => Ok(n),
            None => Ok(default),
        }
        };
        Ok(RepoMapTokens {
            planner: tokens("planner", raw.planner, defaults.planner)?,
            executor: tokens("executor", raw.executor, defaults.executor)?,
            reviewer: tokens("reviewer", raw.reviewer, defaults.reviewer)?,
            groomer: tokens("groomer", raw.groomer, defaults.groomer)?,
        })
    }

    /// `[budget]`: spending caps (0 = no cap).
    fn budget(&self, raw: RawBudget) -> Result<Budget, ConfigError> {
        let usd = |key: &str, v: Option<f64>| -> Result<f64, ConfigError> {
            match v {
                Some(x) if !x.is_finite() || x < 0.0 => {
                    Err(self.invalid(key, format!("{x} is not an amount of USD (0 = no cap)")))
                }
                Some(x) => Ok(x),
                None => Ok(0.0),
            }
        };
        let budget = Budget {
            per_bead_usd: usd("budget.per_bead_usd", raw.per_bead_usd)?,
            per_bead_tokens: raw.per_bead_tokens.unwrap_or(0),
            project_daily_usd: usd("budget.project_daily_usd", raw.project_daily_usd)?,
            project_daily_tokens: raw.project_daily_tokens.unwrap_or(0),
            global_daily_usd: usd("budget.global_daily_usd", raw.global_daily_usd)?,
            global_daily_tokens: raw.global_daily_tokens.unwrap_or(0),
        };
        Ok(budget)
    }

    /// `[sandbox]`: bubblewrap, the bridge, what is hidden and the resource limits.
    fn sandbox(&self, raw: RawSandbox) -> Result<SandboxSettings, ConfigError> {
        let sandbox = SandboxSettings {
            bwrap: match raw.bwrap.as_deref() {
                Some(p) if p.trim().is_empty() => return Err(self.invalid("sandbox.bwrap", "is empty")),
                Some(p) => Some(self.path(p)),
                None => None,
            },
            max_processes: match raw.max_processes {
                Some(n) if n < 8 => {
                    return Err(self.invalid(
                        "sandbox.max_processes",
                        format!("{n} is too few to run an agent (at least 8)"),
                    ));
                }
                Some(n) => n,
                None => 512,
            },
            hide: {
                let mut hide = Vec::new();
                for p in &raw.hide {
                    if p.trim().is_empty() {
                        return Err(self.invalid("sandbox.hide", "an empty path"));
                    }
                    hide.push(self.path(p));
                }
                hide
            },
            limits: self.resource_limits(raw.max_memory.as_deref(), raw.cpu_quota)?,
            netbridge: match raw.netbridge.as_deref() {
                Some(p) if p.trim().is_empty() => return Err(self.invalid("sandbox.netbridge", "is empty")),
                Some(p) => Some(self.path(p)),
                None => None,
            },
        };
        Ok(sandbox)
    }

    /// `[api]`: the HTTP API's address, token variable and audit log.
    fn api(&self, raw: RawApi, tokens_env: String, state_dir: &Path) -> Result<ApiSettings, ConfigError> {
        let bind_text = raw.bind.unwrap_or_else(|| "127.0.0.1:8900".to_string());
        let bind: std::net::SocketAddr = bind_text.parse().map_err(|_| {
            self.invalid(
                "api.bind",
                format!("{bind_text:?} is not an address with a port, e.g. \"127.0.0.1:8900\" or \"0.0.0.0:8900\""),
            )
        })?;
        let public_url = match raw.public_url {
            None => format!("http://{bind}"),
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_string()
            }
            Some(url) => {
                return Err(self.invalid(
                    "api.public_url",
                    format!("{url:?} is not an http(s) URL, e.g. \"https://chum.example.org\""),
                ));
            }
        };
        let api = ApiSettings {
            enabled: raw.enabled.unwrap_or(true),
            public_url,
            bind,
            tokens_env,
            audit_log: match raw.audit_log.as_deref() {
                Some(p) if p.trim().is_empty() => return Err(self.invalid("api.audit_log", "is empty")),
                Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
                Some(p) => state_dir.join(p),
                None => state_dir.join("audit.log"),
            },
        };
        Ok(api)
    }
}
