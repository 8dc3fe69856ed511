//! `chum doctor`: what this machine and configuration can do, checked for real, with what to do
//! about each problem. Exit code 1 when something CHUM needs is broken.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use chum_activities::sandbox::{PidsLimit, Sandboxing};
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

    fn check(&mut self, what: &str, result: Result<String, String>, level_if_bad: Level) {
        match result {
            Ok(detail) => self.line(Level::Ok, what, detail),
            Err(detail) => self.line(level_if_bad, what, detail),
        }
    }
}

pub async fn doctor(config: &ChumConfig) -> Result<ExitCode> {
    let mut r = Report { failed: false };
    r.line(Level::Ok, "config", config.source.display().to_string());

    let t = &config.temporal;
    let temporal = chum_activities::temporal_client::connect(t, "chum-doctor", Duration::from_secs(3), |_, _, _| {})
        .await
        .map(|_| format!("reachable at {}", t.address))
        .map_err(|e| e.to_string());
    r.check("temporal", temporal, Level::Fail);

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
    let db = config.state_dir.join("chum.db");
    r.check(
        "store",
        chum_activities::store::LessonStore::open(&db)
            .and_then(|s| s.schema_version())
            .map(|v| format!("{} writable (schema {v})", db.display()))
            .map_err(|e| format!("{e}; check [state_dir] and its permissions")),
        Level::Fail,
    );

    for provider in config.providers.values() {
        let used = config.tiers.values().any(|names| names.contains(&provider.name));
        let network = if provider.network {
            "network allowed"
        } else {
            "no network"
        };
        r.check(
            &format!("provider {}", provider.name),
            chum_activities::agent::provider_program(config, provider)
                .map(|p| format!("{} ({network})", p.display()))
                .map_err(|e| format!("{e}; install it or fix [providers.{}] command", provider.name)),
            if used { Level::Fail } else { Level::Warn },
        );
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
        let what = format!("sandbox {}", project.name);
        match chum_activities::sandbox::resolve(project.sandbox, &config.sandbox) {
            Ok(Sandboxing::Bwrap(path)) => r.line(
                Level::Ok,
                &what,
                format!(
                    "bwrap {} (sandbox = \"{}\"): agents and DoD commands see the system read-only, write only their worktree, no network unless their provider allows it",
                    path.display(),
                    project.sandbox.as_str()
                ),
            ),
            Ok(Sandboxing::Unsandboxed(why)) => r.line(Level::Warn, &what, format!("UNSANDBOXED: {why}")),
            Err(why) => r.line(Level::Fail, &what, why),
        }
    }
    if config
        .projects
        .values()
        .any(|p| p.sandbox != chum_core::config::SandboxMode::None)
    {
        match PidsLimit::create(config.sandbox.max_processes) {
            Some(_) => r.line(
                Level::Ok,
                "process limit",
                format!(
                    "pids cgroup: at most {} tasks per sandboxed run",
                    config.sandbox.max_processes
                ),
            ),
            None => r.line(
                Level::Warn,
                "process limit",
                "no writable pids cgroup: a fork bomb is stopped only by its PID namespace and the time limit",
            ),
        }
    }
    Ok(if r.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
