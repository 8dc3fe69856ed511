//! Provider commands and paths: the placeholders a command may use, their expansion, and
//! paths normalized without touching the disk.

use std::path::{Path, PathBuf};

/// The placeholders a provider command may use. `{mcp_config}` is filled in per run by the
/// activities (the MCP configuration file CHUM writes).
pub(super) const PLACEHOLDERS: [&str; 5] = ["model", "prompt_file", "workdir", "config_dir", "mcp_config"];

/// `a/b/../c` as `a/c`, without touching the file system (paths in messages stay readable).
pub(super) fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Names that end up in paths, branch names and workflow ids.
pub fn is_simple_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}')?;
        let name = &after[..end];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !PLACEHOLDERS.contains(&name)
        {
            return Some(name.to_string());
        }
        rest = &after[end + 1..];
    }
    None
}

/// Expands the placeholders of a provider's argv template.
pub fn expand_command(
    template: &[String],
    model: &str,
    prompt_file: &Path,
    workdir: &Path,
    config_dir: &Path,
) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            arg.replace("{model}", model)
                .replace("{prompt_file}", &prompt_file.display().to_string())
                .replace("{workdir}", &workdir.display().to_string())
                .replace("{config_dir}", &config_dir.display().to_string())
        })
        .collect()
}
