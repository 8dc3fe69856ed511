//! MCP servers for agents: written into the agent CLI's own configuration for each run, in the
//! run's scratch space, so the CLI starts them inside the agent's sandbox, with its view of the
//! files, its limits and its allow-list.
//!
//! Two formats, both written for every run that has servers:
//! - Claude Code's `--mcp-config` JSON, `<scratch>/mcp.json` (the provider's command names it
//!   with the `{mcp_config}` placeholder; `CHUM_MCP_CONFIG` holds the path too);
//! - Codex's `config.toml` under the sandbox's HOME (`~/.codex`, where Codex looks).
//!
//! Secrets are never written: a server's `env` names go into the agent's environment (values from
//! the worker's), and the files refer to them by name (`${NAME}` for Claude Code, `env_vars` for
//! Codex).

use std::path::{Path, PathBuf};

use chum_core::config::{McpServer, ProjectConfig, ProviderConfig};
use serde_json::{Map, Value, json};

/// The servers of a run: the provider's, then the project's (a project's server replaces a
/// provider's of the same name).
pub fn servers_for(provider: &ProviderConfig, project: Option<&ProjectConfig>) -> Vec<McpServer> {
    let mut servers: Vec<McpServer> = provider.mcp_servers.clone();
    for server in project
        .map(|p| p.environment.mcp_servers.as_slice())
        .unwrap_or_default()
    {
        servers.retain(|s| s.name != server.name);
        servers.push(server.clone());
    }
    servers
}

/// Every variable the servers need, by name (passed into the agent's environment).
pub fn env_names(servers: &[McpServer]) -> Vec<String> {
    let mut names: Vec<String> = servers.iter().flat_map(|s| s.env.iter().cloned()).collect();
    names.sort();
    names.dedup();
    names
}

/// The servers' programs, resolved on PATH, with their files (an npm package's tree): mounted
/// read-only into the sandbox.
pub fn server_paths(server: &McpServer) -> Vec<PathBuf> {
    let program = if server.command.contains('/') {
        Some(PathBuf::from(&server.command))
    } else {
        which::which(&server.command).ok()
    };
    let mut paths: Vec<PathBuf> = program.map(|p| crate::exec::program_paths(&p)).unwrap_or_default();
    paths.extend(crate::exec::argument_paths(&server.args));
    paths
}

/// Claude Code's `--mcp-config` document.
pub fn claude_config(servers: &[McpServer]) -> Value {
    let mut map = Map::new();
    for server in servers {
        let env: Map<String, Value> = server
            .env
            .iter()
            .map(|name| (name.clone(), Value::String(format!("${{{name}}}"))))
            .collect();
        map.insert(
            server.name.clone(),
            json!({"type": "stdio", "command": server.command, "args": server.args, "env": env}),
        );
    }
    json!({ "mcpServers": map })
}

/// Codex's `config.toml` section for the servers.
pub fn codex_config(servers: &[McpServer]) -> String {
    let quote = |s: &str| Value::String(s.to_string()).to_string();
    let list = |items: &[String]| format!("[{}]", items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", "));
    let mut text = String::new();
    for server in servers {
        text.push_str(&format!(
            "[mcp_servers.{}]\ncommand = {}\nargs = {}\nenv_vars = {}\n\n",
            server.name,
            quote(&server.command),
            list(&server.args),
            list(&server.env)
        ));
    }
    text
}

/// Writes both configurations for a run; returns the path of Claude Code's.
pub fn write_configs(servers: &[McpServer], home: &Path, scratch: &Path) -> std::io::Result<PathBuf> {
    let claude = scratch.join("mcp.json");
    std::fs::write(&claude, serde_json::to_vec_pretty(&claude_config(servers))?)?;
    let codex_home = home.join(".codex");
    std::fs::create_dir_all(&codex_home)?;
    std::fs::write(codex_home.join("config.toml"), codex_config(servers))?;
    Ok(claude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, env: &[&str]) -> McpServer {
        McpServer {
            name: name.into(),
            command: "npx".into(),
            args: vec!["-y".into(), "@modelcontextprotocol/server-everything".into()],
            env: env.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn configurations_name_variables_and_never_hold_their_values() {
        // SAFETY: only this test sets it.
        unsafe { std::env::set_var("CHUM_MCP_TEST_SECRET", "hunter2") };
        let servers = [server("everything", &["CHUM_MCP_TEST_SECRET"])];
        let claude = claude_config(&servers).to_string();
        assert!(
            claude.contains(r#""CHUM_MCP_TEST_SECRET":"${CHUM_MCP_TEST_SECRET}""#),
            "{claude}"
        );
        let codex = codex_config(&servers);
        assert!(
            codex.contains("[mcp_servers.everything]") && codex.contains(r#"env_vars = ["CHUM_MCP_TEST_SECRET"]"#),
            "{codex}"
        );
        assert!(!claude.contains("hunter2") && !codex.contains("hunter2"));
        let dir = tempfile::tempdir().unwrap();
        let path = write_configs(&servers, &dir.path().join("home"), dir.path()).unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(written["mcpServers"]["everything"]["command"], "npx");
        assert!(dir.path().join("home/.codex/config.toml").is_file());
    }
}
