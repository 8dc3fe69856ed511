//! The configuration a running worker uses, replaceable while it runs (SIGHUP).
//!
//! Activities take a snapshot (`LiveConfig::current`) when they start, so one activity sees one
//! configuration from start to end; the next activity sees the reloaded one. The parts a running
//! worker cannot change (its Temporal connection, its state directory, the HTTP API's socket and
//! tokens) are kept from the running configuration and reported as needing a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::config::ChumConfig;

/// A shared, replaceable configuration.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    inner: Arc<RwLock<Arc<ChumConfig>>>,
}

impl LiveConfig {
    pub fn new(config: Arc<ChumConfig>) -> LiveConfig {
        LiveConfig {
            inner: Arc::new(RwLock::new(config)),
        }
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<ChumConfig> {
        // A poisoned lock only means a writer panicked after a complete swap of one Arc; the value
        // is whole either way.
        match self.inner.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `loaded` in force as far as it can change while running; returns what changed.
    pub fn reload(&self, loaded: ChumConfig) -> ConfigChange {
        let mut guard = match self.inner.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (merged, change) = reconcile(&guard, loaded);
        if !change.applied.is_empty() {
            *guard = Arc::new(merged);
        }
        change
    }
}

impl From<Arc<ChumConfig>> for LiveConfig {
    fn from(config: Arc<ChumConfig>) -> LiveConfig {
        LiveConfig::new(config)
    }
}

impl From<ChumConfig> for LiveConfig {
    fn from(config: ChumConfig) -> LiveConfig {
        LiveConfig::new(Arc::new(config))
    }
}

/// What a reload did: the parts now in force, and the parts that wait for a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigChange {
    pub applied: Vec<String>,
    pub needs_restart: Vec<String>,
}

impl ConfigChange {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let applied = if self.applied.is_empty() {
            "nothing changed that applies while running".to_string()
        } else {
            format!("applied: {}", self.applied.join(", "))
        };
        if self.needs_restart.is_empty() {
            applied
        } else {
            format!(
                "{applied}; needs a restart (kept as running): {}",
                self.needs_restart.join(", ")
            )
        }
    }
}

/// The configuration a running worker moves to when `loaded` is read: `loaded`, except for the
/// parts bound at start, which stay as `running` has them.
pub fn reconcile(running: &ChumConfig, loaded: ChumConfig) -> (ChumConfig, ConfigChange) {
    let mut change = ConfigChange::default();
    let mut merged = loaded;

    // Bound at start: the connection, the task queue the worker polls, where state and the store
    // live, and the API's socket, tokens and audit log.
    if merged.temporal != running.temporal {
        change.needs_restart.push("[temporal]".into());
        merged.temporal = running.temporal.clone();
    }
    if merged.state_dir != running.state_dir {
        change.needs_restart.push("state_dir".into());
        merged.state_dir = running.state_dir.clone();
    }
    if merged.store != running.store {
        change.needs_restart.push("[store]".into());
        merged.store = running.store.clone();
    }
    if merged.api != running.api {
        change.needs_restart.push("[api]".into());
        merged.api = running.api.clone();
    }

    let sections: [(&str, bool); 10] = [
        ("[limits]", merged.limits != running.limits),
        ("[budget]", merged.budget != running.budget),
        ("[tiers]", merged.tiers != running.tiers),
        ("[roles]", merged.roles != running.roles),
        ("[semgrep]", merged.semgrep != running.semgrep),
        ("[learner]", merged.learner != running.learner),
        ("[dispatcher]", merged.dispatcher != running.dispatcher),
        ("[groom]", merged.groom != running.groom),
        ("[sandbox]", merged.sandbox != running.sandbox),
        ("[repo_map_tokens]", merged.repo_map_tokens != running.repo_map_tokens),
    ];
    for (name, changed) in sections {
        if changed {
            change.applied.push(name.to_string());
        }
    }
    keyed_changes("projects", &running.projects, &merged.projects, &mut change.applied);
    keyed_changes("providers", &running.providers, &merged.providers, &mut change.applied);
    (merged, change)
}

fn keyed_changes<V: PartialEq>(
    table: &str,
    running: &BTreeMap<String, V>,
    loaded: &BTreeMap<String, V>,
    out: &mut Vec<String>,
) {
    for (name, value) in loaded {
        match running.get(name) {
            None => out.push(format!("[{table}.{name}] added")),
            Some(old) if old != value => out.push(format!("[{table}.{name}]")),
            Some(_) => {}
        }
    }
    for name in running.keys().filter(|n| !loaded.contains_key(*n)) {
        out.push(format!("[{table}.{name}] removed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
        [projects.demo]
        repo = "demo"
        dod = ["true"]
        [providers.a]
        command = ["a", "{prompt_file}"]
        [providers.b]
        command = ["b", "{prompt_file}"]
        [tiers]
        fast = ["a"]
        other = ["b"]
        [roles]
        planner = "fast"
        executor = "fast"
        reviewer = "other"
    "#;

    fn config(extra: &str) -> ChumConfig {
        let text = format!("{BASE}\n{extra}");
        ChumConfig::from_toml(&text, Path::new("/etc/chum/chum.toml"), Vec::new()).expect("valid")
    }

    #[test]
    fn safe_parts_apply_and_bound_parts_wait_for_a_restart() {
        let live = LiveConfig::from(config(""));
        let change = live.reload(config(
            "[temporal]\naddress = \"http://10.0.0.9:7233\"\n[budget]\nper_bead_usd = 2.5\n[limits]\nmax_attempts = 7\n[projects.second]\nrepo = \"second\"\ndod = [\"true\"]\n[repo_map_tokens]\nplanner = 512",
        ));
        assert_eq!(
            change.applied,
            vec!["[limits]", "[budget]", "[repo_map_tokens]", "[projects.second] added"]
        );
        assert_eq!(change.needs_restart, vec!["[temporal]"]);
        let now = live.current();
        assert_eq!(now.budget.per_bead_usd, 2.5);
        assert_eq!(now.limits.max_attempts, 7);
        assert_eq!(now.repo_map_tokens.planner, 512);
        assert_eq!(now.temporal, config("").temporal, "the connection stays as it is");
        assert!(
            change
                .summary()
                .contains("needs a restart (kept as running): [temporal]")
        );
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let live = LiveConfig::from(config(""));
        let before = live.current();
        let change = live.reload(config(""));
        assert_eq!(change, ConfigChange::default());
        assert!(Arc::ptr_eq(&before, &live.current()));
        assert_eq!(change.summary(), "nothing changed that applies while running");
    }

    #[test]
    fn a_snapshot_taken_before_a_reload_stays_whole() {
        let live = LiveConfig::from(config(""));
        let snapshot = live.current();
        live.reload(config("[limits]\nmax_attempts = 9"));
        assert_eq!(snapshot.limits.max_attempts, config("").limits.max_attempts);
        assert_eq!(live.current().limits.max_attempts, 9);
    }

    #[test]
    fn removed_providers_and_projects_are_named() {
        let live = LiveConfig::from(config("[providers.c]\ncommand = [\"c\"]"));
        let change = live.reload(config(""));
        assert_eq!(change.applied, vec!["[providers.c] removed"]);
    }
}
