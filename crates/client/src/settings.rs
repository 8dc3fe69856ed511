//! Reading `chum.toml` from disk (the schema and validation live in `chum_core::config`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chum_core::config::{ChumConfig, ConfigError};

/// Loads and validates a config file, with `CHUM__...` environment overrides applied, and the
/// `TEMPORAL_*` variables and the Temporal profile file beneath `[temporal]` (see `envconfig`).
pub fn load_config(path: &Path) -> Result<ChumConfig, ConfigError> {
    load_config_with_env(path, &std::env::vars().collect())
}

/// [`load_config`] with the environment given rather than the process's.
pub fn load_config_with_env(path: &Path, env: &HashMap<String, String>) -> Result<ChumConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ConfigError::Missing {
                file: path.display().to_string(),
            }
        } else {
            ConfigError::Syntax {
                file: path.display().to_string(),
                detail: e.to_string(),
            }
        }
    })?;
    // Relative paths in the config start from the config file's directory, so make it absolute.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut config = ChumConfig::from_toml(&text, &absolute, env.clone())?;
    if config.worker.host.is_empty() {
        config.worker.host = machine_host_name();
    }
    crate::envconfig::layer(&mut config.temporal, env)?;
    if let Some(codec) = config.temporal.codec.as_mut() {
        crate::codec::load_keys(&path.display().to_string(), codec, env)?;
    }
    Ok(config)
}

/// The machine's hostname as a worker's name (`[worker] host` unset): what `gethostname` says,
/// cut to the characters a host name may have; `localhost` when it says nothing usable.
fn machine_host_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if chum_core::config::is_host_name(&name) {
        name
    } else {
        "localhost".to_string()
    }
}

/// The configuration file to use: `explicit` (`--config`, or `CHUM_CONFIG` through clap), else
/// the first that exists of `./configs/chum.toml` and `$XDG_CONFIG_HOME/chum/chum.toml`
/// (`~/.config/chum/chum.toml` when XDG_CONFIG_HOME is unset).
pub fn discover_config(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let candidates = config_candidates(
        std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    );
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ConfigError::NotFound {
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn config_candidates(xdg_config_home: Option<PathBuf>, home: Option<PathBuf>) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("configs/chum.toml")];
    // An empty or relative XDG_CONFIG_HOME is invalid by the spec and is ignored.
    match xdg_config_home.filter(|p| p.is_absolute()) {
        Some(dir) => out.push(dir.join("chum/chum.toml")),
        None => {
            if let Some(home) = home {
                out.push(home.join(".config/chum/chum.toml"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_looked_for_here_then_in_the_users_config_dir() {
        assert_eq!(
            config_candidates(Some("/x".into()), Some("/home/u".into())),
            [PathBuf::from("configs/chum.toml"), PathBuf::from("/x/chum/chum.toml")]
        );
        assert_eq!(
            config_candidates(Some("relative".into()), Some("/home/u".into())),
            [
                PathBuf::from("configs/chum.toml"),
                PathBuf::from("/home/u/.config/chum/chum.toml")
            ]
        );
        let given = discover_config(Some(Path::new("/etc/chum.toml"))).unwrap();
        assert_eq!(given, PathBuf::from("/etc/chum.toml"));
    }

    #[test]
    fn a_missing_file_says_how_to_make_one() {
        let err = load_config(Path::new("/nonexistent/chum.toml")).unwrap_err();
        assert!(err.to_string().contains("configs/chum.example.toml"), "{err}");
    }
}
