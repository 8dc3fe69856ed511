//! Reading `chum.toml` from disk (the schema and validation live in `chum_core::config`).

use std::path::Path;

use chum_core::config::{ChumConfig, ConfigError};

/// Loads and validates a config file, with `CHUM__...` environment overrides applied.
pub fn load_config(path: &Path) -> Result<ChumConfig, ConfigError> {
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
    ChumConfig::from_toml(&text, &absolute, std::env::vars())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_says_how_to_make_one() {
        let err = load_config(Path::new("/nonexistent/chum.toml")).unwrap_err();
        assert!(err.to_string().contains("configs/chum.example.toml"), "{err}");
    }
}
