//! `chum doctor`: what this machine and configuration can do, checked for real, with what to do
//! about each problem. Exit code 1 when something CHUM needs is broken.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use chum_activities::exec::{RunCgroups, RunLimits, Sandboxing};
use chum_core::config::ChumConfig;

#[derive(PartialEq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl AsRef<str>) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        self.failed |= level == Level::Fail;
        println!("{tag}  {what:<22} {}", detail.as_ref());
    }

    fn check<E: std::fmt::Display>(&mut self, what: &str, result: Result<String, E>, level_if_bad: Level) {
        match result {
            Ok(detail) => self.line(Level::Ok, what, detail),
            Err(detail) => self.line(level_if_bad, what, detail.to_string()),
        }
    }
}

pub async fn doctor(config: &ChumConfig) -> Result<ExitCode> {
    let mut r = Report { failed: false };
    r.line(Level::Ok, "config", config.source.display().to_string());

    let t = &config.temporal;
    let temporal = chum_client::connect::connect(t, "chum-doctor", Duration::from_secs(3), |_, _, _| {})
        .await
        .map(|_| format!("reachable at {}", t.address))
        .map_err(|e| e.to_string());
    r.check("temporal", temporal, Level::Fail);
    // What the connection was loaded from, and from where; never a secret.
    for line in chum_client::envconfig::describe(t) {
        let level = if line.starts_with("ignored:") {
            Level::Warn
        } else {
            Level::Ok
        };
        r.line(level, "  connection", line);
    }

    r.check(
        "git",
        which::which("git")
            .map(|p| p.display().to_string())
            .map_err(|_| "`git` is not on PATH; install git".to_string()),
        Level::Fail,
    );
    r.check(
        "semgrep-core",
        chum_activities::semgrep::locate_core(&config.semgrep).map(|p| p.display().to_string()),
        Level::Fail,
    );
    r.check(
        "semgrep CLI",
        chum_activities::learner::locate_cli(&config.semgrep).map(|p| p.display().to_string()),
        if config.learning() { Level::Fail } else { Level::Warn },
    );
    // Shown as a path, or a URL without its password.
    let store = chum_activities::store::StoreTarget::of(config);
    let fix = match &config.store {
        chum_core::config::StoreLocation::Embedded => "check [state_dir] and its permissions".to_string(),
        chum_core::config::StoreLocation::Postgres(url) => format!(
            "check [store] url in {}, that the server answers there, and the password (from ${})",
            config.source.display(),
            url.password_env()
        ),
    };
    r.check(
        "store",
        chum_activities::store::Store::at(&store)
            .and_then(|s| s.schema_version())
            .map(|v| format!("{store} writable (schema {v})"))
            .map_err(|e| format!("{e}; {fix}")),
        Level::Fail,
    );

    for provider in config.providers.values() {
        let used = config.tiers.values().any(|names| names.contains(&provider.name));
        r.check(
            &format!("provider {}", provider.name),
            chum_activities::agent::provider_program(config, provider)
                .map(|p| p.display().to_string())
                .map_err(|e| format!("{e}; install it or fix [providers.{}] command", provider.name)),
            if used { Level::Fail } else { Level::Warn },
        );
        let hosts: Vec<String> = provider.allow_hosts.rules().iter().map(ToString::to_string).collect();
        let network = match hosts.as_slice() {
            [] => "none (no allow_hosts)".to_string(),
            [any] if any == "*" => "ANY host through the egress proxy (allow_hosts = [\"*\"])".to_string(),
            listed => format!("egress proxy to {}", listed.join(", ")),
        };
        r.line(
            if provider.allow_hosts.allows_any() {
                Level::Warn
            } else {
                Level::Ok
            },
            "  network",
            network,
        );
        // Names only, never values; whether this shell has them (the worker's may differ).
        let mut names: Vec<String> = provider.pass_env.clone();
        names.extend(chum_activities::agent::env_names(&provider.mcp_servers));
        if !names.is_empty() {
            let shown: Vec<String> = names
                .iter()
                .map(|n| match std::env::var_os(n) {
                    Some(_) => format!("{n} (set here)"),
                    None => format!("{n} (NOT set here)"),
                })
                .collect();
            let level = if names.iter().all(|n| std::env::var_os(n).is_some()) {
                Level::Ok
            } else {
                Level::Warn
            };
            r.line(level, "  passed variables", shown.join(", "));
        }
        if !provider.mcp_servers.is_empty() {
            let servers: Vec<&str> = provider.mcp_servers.iter().map(|s| s.name.as_str()).collect();
            r.line(Level::Ok, "  MCP servers", servers.join(", "));
        }
    }

    for project in config.projects.values() {
        let repo_ok = project.repo.join(".git").exists();
        r.check(
            &format!("project {}", project.name),
            if repo_ok {
                Ok(format!("{} (base {})", project.repo.display(), project.base_branch))
            } else {
                Err(format!(
                    "{} is not a git repository; fix [projects.{}] repo",
                    project.repo.display(),
                    project.name
                ))
            },
            Level::Fail,
        );
        if repo_ok {
            // Read as the worker reads it: a Dolt store under the native backend is refused here.
            r.check(
                "  backlog",
                chum_activities::backlog::Backlog::of(project)
                    .items()
                    .await
                    .map(|items| format!("{} bead(s)", items.len()))
                    .map_err(|e| e.to_string()),
                Level::Fail,
            );
        }
        if let Some(forge) = &project.forge {
            // Names only: the values stay in the worker's environment.
            let set = |name: &str| {
                if std::env::var_os(name).is_some() {
                    "set here"
                } else {
                    "NOT set here"
                }
            };
            let webhook = match &forge.webhook_secret_env {
                Some(name) => format!(
                    "webhook secret from {name} ({}); POST /forge/{}",
                    set(name),
                    forge.kind.as_str()
                ),
                None => "no webhook: polling only".to_string(),
            };
            let token_set = std::env::var_os(&forge.token_env).is_some();
            r.check(
                "  forge",
                if token_set {
                    Ok(format!(
                        "{} {} at {}; token from {} (set here); {webhook}",
                        forge.kind.as_str(),
                        forge.repo,
                        forge.api_url,
                        forge.token_env
                    ))
                } else {
                    Err(format!(
                        "{} {}: the token variable {} is not set here; export it where the worker starts",
                        forge.kind.as_str(),
                        forge.repo,
                        forge.token_env
                    ))
                },
                Level::Warn,
            );
        }
        if repo_ok
            && matches!(
                project.integration,
                chum_core::config::IntegrationPolicy::Push | chum_core::config::IntegrationPolicy::PullRequest
            )
        {
            // The push policy's remote, asked as the worker will ask it (its credentials too).
            let token = match &project.remote_token_env {
                Some(name) if std::env::var_os(name).is_some() => format!("; token from {name} (set here)"),
                Some(name) => format!("; token from {name} (NOT set here)"),
                None => String::new(),
            };
            r.check(
                "  remote",
                chum_activities::repo::fetch_base(project)
                    .await
                    .map(|tip| format!("{} at {}{token}", project.landing_branch(), &tip[..tip.len().min(12)]))
                    .map_err(|e| e.to_string()),
                Level::Fail,
            );
        }
        let what = format!("sandbox {}", project.name);
        match chum_activities::exec::resolve(project.sandbox, &config.sandbox) {
            Ok(Sandboxing::Bwrap(path)) => r.line(
                Level::Ok,
                &what,
                format!(
                    "bwrap {} (sandbox = \"{}\"): agents, setup and DoD commands see the system read-only, write only their worktree, reach only their allow_hosts",
                    path.display(),
                    project.sandbox.as_str()
                ),
            ),
            Ok(Sandboxing::Unsandboxed(why)) => r.line(Level::Warn, &what, format!("UNSANDBOXED: {why}")),
            Err(why) => r.line(Level::Fail, &what, why.to_string()),
        }
        let env = &project.environment;
        for path in env.toolchains.iter().chain(&env.caches) {
            let real = chum_activities::exec::machine_path(path);
            r.check(
                "  mount",
                if real.exists() {
                    Ok(format!("{path} ({})", real.display()))
                } else {
                    Err(format!(
                        "{path}: {} does not exist; install the toolchain or fix [projects.{}]",
                        real.display(),
                        project.name
                    ))
                },
                Level::Warn,
            );
        }
        for file in &env.copy_files {
            r.check(
                "  copy_files",
                if project.repo.join(file).is_file() {
                    Ok(file.clone())
                } else {
                    Err(format!(
                        "{file} is not in {}; every attempt would fail",
                        project.repo.display()
                    ))
                },
                Level::Fail,
            );
        }
        let commands = env
            .setup
            .iter()
            .map(|c| ("setup", c))
            .chain(project.dod.iter().map(|c| ("dod", c)));
        for (i, (kind, command)) in commands.enumerate() {
            let started = chum_activities::exec::can_start(config, project, command).await;
            r.check(
                &format!("  {kind} command {}", i + 1),
                started
                    .map(|found| format!("`{command}` can start: {found}"))
                    .map_err(|why| format!("`{command}` cannot start in its sandbox: {why}")),
                Level::Fail,
            );
        }
        if !env.setup_allow_hosts.is_empty() {
            let hosts: Vec<String> = env.setup_allow_hosts.rules().iter().map(ToString::to_string).collect();
            r.line(
                Level::Ok,
                "  setup network",
                format!("egress proxy to {}", hosts.join(", ")),
            );
        }
    }
    let needs_bridge = config.providers.values().any(|p| !p.allow_hosts.is_empty())
        || config
            .projects
            .values()
            .any(|p| !p.environment.setup_allow_hosts.is_empty());
    if needs_bridge {
        r.check(
            "netbridge",
            chum_activities::exec::locate_netbridge(&config.sandbox).map(|p| p.display().to_string()),
            Level::Fail,
        );
    }
    if config
        .projects
        .values()
        .any(|p| p.sandbox != chum_core::config::SandboxMode::None)
    {
        let cgroups = RunCgroups::create(RunLimits {
            max_processes: config.sandbox.max_processes,
            resources: config.sandbox.limits,
        });
        let enforced = cgroups.enforced();
        drop(cgroups);
        let limits = config.sandbox.limits;
        match enforced.processes {
            true => r.line(
                Level::Ok,
                "process limit",
                format!(
                    "pids cgroup: at most {} tasks per sandboxed run",
                    config.sandbox.max_processes
                ),
            ),
            false => r.line(
                Level::Warn,
                "process limit",
                "no writable pids cgroup: a fork bomb is stopped only by its PID namespace and the time limit",
            ),
        }
        if let Some(max) = limits.max_memory {
            let shown = chum_core::config::show_size(max);
            match enforced.memory {
                true => r.line(
                    Level::Ok,
                    "memory limit",
                    format!("{shown} per sandboxed run (memory cgroup)"),
                ),
                false => r.line(
                    Level::Warn,
                    "memory limit",
                    format!("max_memory = {shown} is NOT enforced: no writable memory cgroup here"),
                ),
            }
        }
        if let Some(quota) = limits.cpu_quota {
            match enforced.cpu {
                true => r.line(
                    Level::Ok,
                    "cpu limit",
                    format!("{quota} CPU per sandboxed run (cpu cgroup)"),
                ),
                false => r.line(
                    Level::Warn,
                    "cpu limit",
                    format!("cpu_quota = {quota} is NOT enforced: no writable cpu cgroup here"),
                ),
            }
        }
    }
    Ok(if r.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
