//! Configurations written as the config file's own type (`chum_core::config::RawConfig`), never
//! as text: what a test writes is what the validator reads, and a key that does not exist does
//! not compile.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chum_core::config::{ChumConfig, RawConfig, RawProject, RawProvider};

/// The test configurations' one project, `demo`, and their providers.
pub trait HarnessConfig {
    /// Project `demo` (made if missing).
    fn project(&mut self) -> &mut RawProject;
    /// Every provider, for a change that applies to every agent.
    fn providers(&mut self) -> std::collections::btree_map::ValuesMut<'_, String, RawProvider>;
}

impl HarnessConfig for RawConfig {
    fn project(&mut self) -> &mut RawProject {
        self.projects.entry("demo".to_string()).or_default()
    }

    fn providers(&mut self) -> std::collections::btree_map::ValuesMut<'_, String, RawProvider> {
        self.providers.values_mut()
    }
}

/// A small valid configuration: state in `./state`, project `demo` on `./project`, and one
/// provider `a` running `command` (tier `fast`) in every one of `roles`.
pub fn small_config(command: &[&str], roles: &[&str]) -> RawConfig {
    RawConfig {
        state_dir: Some("state".into()),
        projects: BTreeMap::from([(
            "demo".to_string(),
            RawProject {
                repo: Some("project".into()),
                ..RawProject::default()
            },
        )]),
        providers: BTreeMap::from([(
            "a".to_string(),
            RawProvider {
                command: command.iter().map(|c| c.to_string()).collect(),
                ..RawProvider::default()
            },
        )]),
        tiers: BTreeMap::from([("fast".to_string(), vec!["a".to_string()])]),
        roles: roles.iter().map(|r| (r.to_string(), "fast".to_string())).collect(),
        ..RawConfig::default()
    }
}

/// `file` validated as if it were `dir/chum.toml` (relative paths start from `dir`).
pub fn load_config(file: &RawConfig, dir: &Path) -> Arc<ChumConfig> {
    let text = toml::to_string(file).expect("a config serializes");
    Arc::new(ChumConfig::from_toml(&text, &dir.join("chum.toml"), Vec::new()).expect("the test config is valid"))
}
