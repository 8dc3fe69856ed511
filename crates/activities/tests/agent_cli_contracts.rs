//! Contract tests with the real agent CLIs, Claude Code (npm `@anthropic-ai/claude-code`) and
//! Codex (npm `@openai/codex`), installed into `.tools/npm` by scripts/setup.sh, run by CHUM's own
//! activities against the scripted model server (`chum-scripted-agent --serve`: the Anthropic
//! Messages and OpenAI Responses APIs). Each CLI really edits files in a worktree with its own
//! tools and really reports its usage; CHUM parses it, kills it with its process group on
//! timeout, and names a missing binary.
//!
//! What they share with the Aider and OpenCode contracts is in `agent_clis/mod.rs`. Without a CLI
//! installed its tests say so and pass, unless CHUM_REQUIRE_AGENT_CLIS=1 (CI sets
//! it), when a missing CLI is a failure.

mod agent_clis;

use std::collections::BTreeMap;
use std::path::Path;

use agent_clis::*;
use chum_activities::SharkActivitiesImpl;
use chum_activities::agent::Unsupervised;
use chum_core::config::{RawMcpServer, RawProvider};
use chum_testkit::{Scenario, Step, bwrap, workspace_root};

/// Claude Code against the model server on `port`, in a scratch HOME, tagged with `marker`.
fn claude_providers(dir: &Path, claude: &Path, addr: &str, marker: &str) -> BTreeMap<String, RawProvider> {
    let home = dir.join("claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let env = env_of(&[
        ("ANTHROPIC_BASE_URL", format!("http://{addr}")),
        ("ANTHROPIC_API_KEY", "dummy".into()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
        ("HOME", home.display().to_string()),
        ("CLAUDE_CONFIG_DIR", format!("{}/.claude", home.display())),
        (MARKER, marker.into()),
    ]);
    let command = [
        &claude.display().to_string(),
        "-p",
        "--output-format",
        "json",
        "--permission-mode",
        "acceptEdits",
    ]
    .map(String::from)
    .to_vec();
    two_providers(command, "claude-json", env, &home, addr)
}

/// Codex with a local Responses API provider (the model server on `port`), in its workspace-write
/// sandbox, with a scratch CODEX_HOME.
fn codex_providers(dir: &Path, codex: &Path, addr: &str, marker: &str) -> BTreeMap<String, RawProvider> {
    let home = dir.join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    let env = env_of(&[
        ("LOCAL_KEY", "dummy".into()),
        ("HOME", home.display().to_string()),
        ("CODEX_HOME", home.display().to_string()),
        (MARKER, marker.into()),
    ]);
    let provider = format!(
        "model_providers.local={{name='local',base_url='http://{addr}/v1',wire_api='responses',\
         env_key='LOCAL_KEY',request_max_retries=0,stream_max_retries=0}}"
    );
    // Codex's own workspace-write sandbox did not work nested inside bubblewrap here (its tool
    // calls changed no file); inside CHUM's sandbox it runs without its own, as the README says.
    let codex_sandbox = if bwrap().is_some() {
        "danger-full-access"
    } else {
        "workspace-write"
    };
    let command = [
        &codex.display().to_string(),
        "exec",
        "--json",
        "--skip-git-repo-check",
        "-s",
        codex_sandbox,
        "-c",
        "model_provider=local",
        "-c",
        &provider,
        "-m",
        "scripted",
        "-",
    ]
    .map(String::from)
    .to_vec();
    two_providers(command, "codex-jsonl", env, &home, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_executes_and_reviews_through_chum() {
    let Some(claude) = agent_cli("claude") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &scenario(), "claude");
    let config = setup(
        dir.path(),
        claude_providers(dir.path(), &claude, &server.addr, "claude-execute"),
    );
    let usage = execute_and_review(config).await;
    // Claude Code computes the cost from the tokens the model server reported.
    assert!(usage.cost_usd > 0.0, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_executes_and_reviews_through_chum() {
    let Some(codex) = agent_cli("codex") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &scenario(), "codex");
    // Codex reports tokens, no dollars: its price (here written in the config, as for a model
    // the table does not know) makes them count against USD budgets, marked computed.
    let providers = priced(
        codex_providers(dir.path(), &codex, &server.addr, "codex-execute"),
        1.25,
        10.0,
    );
    let config = setup(dir.path(), providers);
    let usage = execute_and_review(config.clone()).await;
    let computed = (usage.input_tokens as f64 * 1.25 + usage.output_tokens as f64 * 10.0) / 1e6;
    assert!((usage.cost_usd - computed).abs() < 1e-12, "{usage:?}");
    let store = chum_activities::store::Store::open(&config.state_dir.join("chum.db")).unwrap();
    let spent = store.spent(chum_activities::store::UsageFilter::default()).unwrap();
    assert!(
        spent.cost_usd > 0.0 && spent.computed >= 2,
        "executor and reviewer computed: {spent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_claude_is_killed_with_its_process_group() {
    let Some(claude) = agent_cli("claude") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &hang(), "claude");
    assert_killed(
        setup(
            dir.path(),
            claude_providers(dir.path(), &claude, &server.addr, "claude-hang"),
        ),
        "claude-hang",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_codex_is_killed_with_its_process_group() {
    let Some(codex) = agent_cli("codex") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &hang(), "codex");
    assert_killed(
        setup(
            dir.path(),
            codex_providers(dir.path(), &codex, &server.addr, "codex-hang"),
        ),
        "codex-hang",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_agent_binary_is_a_clear_non_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(
        dir.path(),
        claude_providers(
            dir.path(),
            Path::new("/nonexistent/bin/claude"),
            "192.0.2.1:9",
            "missing",
        ),
    );
    let err = SharkActivitiesImpl::new(config)
        .steps()
        .execute_impl(execute_request(10), &Unsupervised)
        .await
        .expect_err("a missing program cannot run");
    let text = format!("{err:?}");
    assert!(
        text.contains("MissingBinary") && text.contains("non_retryable: true"),
        "{text}"
    );
    assert!(text.contains("/nonexistent/bin/claude"), "{text}");
}

/// The executor asks the MCP server for two of its tools, then adds multiply.
fn mcp_scenario() -> Scenario {
    Scenario::new(vec![
        Step::executor()
            .tool_call(
                "mcp__everything__echo",
                serde_json::json!({"message": "hello from chum"}),
            )
            .tool_call("mcp__everything__get-env", serde_json::json!({}))
            .answer("The MCP server said: {tool_results}")
            .replace(
                "calc.py",
                "    return a + b\n",
                "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
            ),
    ])
}

/// Claude Code uses a real MCP server (npm `@modelcontextprotocol/server-everything`) that CHUM
/// configured for the run: the model asks for two of its tools, the CLI starts the server inside
/// the agent's sandbox and calls them, and their real answers come back in the transcript and the
/// run's artifacts. The server gets the variable it names (by name, from the worker's
/// environment) and none of the worker's other secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_calls_a_real_mcp_server_inside_the_sandbox() {
    let Some(claude) = agent_cli("claude") else { return };
    // Its real path, as for the CLIs (installed_cli).
    let server_bin = workspace_root().join(".tools/npm/node_modules/.bin/mcp-server-everything");
    let server_bin = std::fs::canonicalize(&server_bin)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/setup.sh", server_bin.display()));
    // SAFETY: set before any agent runs; read by this process's children only.
    unsafe {
        std::env::set_var("MCP_CONTRACT_VALUE", "mcp-value-7731");
        std::env::set_var("MCP_CONTRACT_SECRET", "never-7731");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &mcp_scenario(), "claude");
    let mut providers = claude_providers(dir.path(), &claude, &server.addr, "claude-mcp");
    for provider in providers.values_mut() {
        provider.command.extend(
            [
                "--mcp-config",
                "{mcp_config}",
                "--allowedTools",
                "mcp__everything__echo mcp__everything__get-env Read Edit Write",
            ]
            .map(String::from),
        );
    }
    let main = providers.get_mut("main").expect("the executor's provider");
    main.mcp_servers.insert(
        "everything".into(),
        RawMcpServer {
            command: Some(server_bin.display().to_string()),
            env: vec!["MCP_CONTRACT_VALUE".into()],
            ..RawMcpServer::default()
        },
    );
    let config = setup(dir.path(), providers);
    let report = SharkActivitiesImpl::new(config)
        .steps()
        .execute_impl(execute_request(120), &Unsupervised)
        .await
        .expect("execute runs");
    assert!(report.problem.is_empty(), "{report:?}");
    let agent = report.agent.unwrap();
    if bwrap().is_some() {
        assert!(agent.sandbox.starts_with("bwrap ("), "{agent:?}");
    }
    // The tools' real answers: in the CLI's final answer (the run's stdout artifact) ...
    let stdout = std::fs::read_to_string(&agent.stdout_artifact).unwrap();
    assert!(stdout.contains("Echo: hello from chum"), "{stdout}");
    assert!(
        stdout.contains("mcp-value-7731"),
        "the server got its variable: {stdout}"
    );
    assert!(
        !stdout.contains("never-7731"),
        "a secret reached the MCP server: {stdout}"
    );
    // ... and in the transcript the model server recorded.
    let transcript = std::fs::read_to_string(dir.path().join("prompts/executor-tk-1-1-0.tool-results.txt")).unwrap();
    assert!(transcript.contains("Echo: hello from chum"), "{transcript}");
    // CHUM wrote the CLI's MCP configuration for this run, naming the variable, not its value.
    let mcp = std::fs::read_to_string(Path::new(&agent.prompt_artifact).with_file_name("execute-1-0.sandbox/mcp.json"))
        .unwrap();
    assert!(
        mcp.contains("${MCP_CONTRACT_VALUE}") && !mcp.contains("mcp-value-7731"),
        "{mcp}"
    );
}
