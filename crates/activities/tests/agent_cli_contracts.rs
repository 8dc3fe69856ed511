//! Contract tests with the real agent CLIs, Claude Code (npm `@anthropic-ai/claude-code`) and
//! Codex (npm `@openai/codex`), installed into `.tools/npm` by scripts/setup.sh, run by CHUM's own
//! activities against the scripted model server (`chum-scripted-agent --serve`: the Anthropic
//! Messages and OpenAI Responses APIs). Each CLI really edits files in a worktree with its own
//! tools and really reports its usage; CHUM parses it, kills it with its process group on
//! timeout, and names a missing binary.
//!
//! Without a CLI installed its tests say so and pass, unless CHUM_REQUIRE_AGENT_CLIS=1 (CI sets
//! it), when a missing CLI is a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use chum_activities::SharkActivitiesImpl;
use chum_activities::agent::Unsupervised;
use chum_core::config::{ChumConfig, RawConfig, RawMcpServer, RawProject, RawProvider, RawSandbox};
use chum_core::proto::{AgentUsage, ExecuteRequest, Plan, ReviewRequest};
use chum_testkit::{
    Scenario, Step, Usage, bead, bwrap, host_address, netbridge, run_ref, scripted_agent, workspace_root,
};

/// An agent CLI from `.tools/npm`, or `None` (with the reason printed) when it is not installed.
fn agent_cli(name: &str) -> Option<PathBuf> {
    let path = workspace_root().join(".tools/npm/node_modules/.bin").join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CHUM_REQUIRE_AGENT_CLIS").as_deref() != Ok("1"),
        "{} is missing and CHUM_REQUIRE_AGENT_CLIS=1: run scripts/setup.sh (it installs the agent CLIs with npm)",
        path.display()
    );
    eprintln!(
        "SKIPPED: {name} is not installed at {} (scripts/setup.sh installs it when npm is present)",
        path.display()
    );
    None
}

/// The scripted model server, stopped when dropped.
struct ModelServer {
    child: Child,
    /// `host:port`, the only entry of the providers' allow_hosts.
    addr: String,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn model_server(dir: &Path, scenario: &Scenario, provider: &str) -> ModelServer {
    let scenario_path = dir.join("model-scenario.toml");
    std::fs::write(&scenario_path, scenario.to_toml()).unwrap();
    let port_file = dir.join("model.port");
    let mut child = Command::new(scripted_agent())
        .arg("--scenario")
        .arg(&scenario_path)
        .arg("--serve")
        .arg(format!("{}:0", host_address()))
        .args(["--provider", provider, "--port-file"])
        .arg(&port_file)
        .arg("--record-dir")
        .arg(dir.join("prompts"))
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            return ModelServer {
                child,
                addr: format!("{}:{}", host_address(), text.trim()),
            };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the model server did not start");
}

/// Every agent process of a test carries this variable, so the test can find its survivors.
const MARKER: &str = "CHUM_CONTRACT_TEST_MARKER";

/// A project repository and a config whose executor is provider `main` and reviewer `other`.
fn setup(dir: &Path, providers: BTreeMap<String, RawProvider>) -> Arc<ChumConfig> {
    let repo = dir.join("project");
    std::fs::create_dir_all(repo.join(".beads")).unwrap();
    std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
    std::fs::write(
        repo.join(".beads/issues.jsonl"),
        "{\"id\":\"tk-1\",\"title\":\"Add multiply\",\"status\":\"open\"}\n",
    )
    .unwrap();
    chum_testkit::git(&repo, &["init", "-q", "-b", "main"]);
    chum_testkit::git(&repo, &["add", "-A"]);
    chum_testkit::git(&repo, &["commit", "-q", "-m", "initial"]);
    let strings = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let file = RawConfig {
        state_dir: Some("state".into()),
        projects: BTreeMap::from([(
            "demo".to_string(),
            RawProject {
                repo: Some("project".into()),
                gates: Some(vec!["dod".into()]),
                sandbox: Some(if bwrap().is_some() { "bwrap" } else { "auto" }.into()),
                ..RawProject::default()
            },
        )]),
        providers,
        tiers: BTreeMap::from([
            ("main".to_string(), vec!["main".to_string()]),
            ("second".to_string(), vec!["other".to_string()]),
        ]),
        roles: strings(&[("planner", "main"), ("executor", "main"), ("reviewer", "second")]),
        sandbox: RawSandbox {
            bwrap: bwrap().map(|p| p.display().to_string()),
            netbridge: Some(netbridge().display().to_string()),
            ..RawSandbox::default()
        },
        ..RawConfig::default()
    };
    let text = toml::to_string(&file).expect("the config serializes");
    Arc::new(ChumConfig::from_toml(&text, &dir.join("chum.toml"), Vec::new()).expect("config"))
}

/// The same command twice, as executor `main` and reviewer `other`. Both reach the model server
/// at `addr` and nothing else (through the egress proxy), with their scratch home writable.
fn two_providers(
    command: Vec<String>,
    output: &str,
    env: BTreeMap<String, String>,
    home: &Path,
    addr: &str,
) -> BTreeMap<String, RawProvider> {
    let provider = |model: &str| RawProvider {
        command: command.clone(),
        output: Some(output.into()),
        model: Some(model.into()),
        env: env.clone(),
        allow_hosts: vec![addr.to_string()],
        writable: vec![home.display().to_string()],
        ..RawProvider::default()
    };
    BTreeMap::from([
        ("main".to_string(), provider("scripted-main")),
        ("other".to_string(), provider("scripted-other")),
    ])
}

fn env_of(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

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

fn plan() -> Plan {
    Plan {
        steps: vec!["add it".into()],
        files: vec!["calc.py".into()],
        ..chum_testkit::plan("Add multiply(a, b)", &["multiply(3, 4) == 12"])
    }
}

fn execute_request(timeout_secs: u64) -> ExecuteRequest {
    ExecuteRequest {
        run: Some(run_ref()),
        bead: Some(bead("Add multiply")),
        plan: Some(plan()),
        attempt: 1,
        timeout_secs,
        ..ExecuteRequest::default()
    }
}

/// The executor adds multiply with the CLI's own edit tools; the reviewer approves with evidence.
fn scenario() -> Scenario {
    Scenario {
        usage: Usage {
            input_tokens: 1200,
            output_tokens: 150,
            cost_usd: 0.0,
        },
        steps: vec![
            Step::executor()
                .answer("Added multiply() and its test.")
                .replace(
                    "calc.py",
                    "    return a + b\n",
                    "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
                )
                .write("test_multiply.py", "from calc import multiply\n\nassert multiply(3, 4) == 12\n"),
            Step::reviewer()
                .expect_prompt_contains("+def multiply(a, b):")
                .answer(r#"{"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": "multiply(3, 4) == 12", "met": true, "evidence": "test_multiply.py:3"}]}"#),
        ],
    }
}

/// Runs an execute and a review phase through CHUM's activities; returns the executor's usage.
async fn execute_and_review(config: Arc<ChumConfig>) -> AgentUsage {
    let activities = SharkActivitiesImpl::new(config).steps();
    let report = activities
        .execute_impl(execute_request(120), &Unsupervised)
        .await
        .expect("execute runs");
    assert!(report.problem.is_empty(), "{report:?}");
    let agent = report.agent.clone().unwrap();
    assert_eq!(agent.provider, "main");
    if bwrap().is_some() {
        assert!(agent.sandbox.starts_with("bwrap ("), "the CLI ran sandboxed: {agent:?}");
        // Its only way out was the egress proxy, and it reached the model server through it.
        assert!(agent.network.starts_with("egress proxy: "), "{agent:?}");
        let egress_log = agent.stdout_artifact.replace(".stdout.log", ".egress.log");
        let log = std::fs::read_to_string(&egress_log).unwrap_or_default();
        assert!(
            log.contains("allowed "),
            "no connection went through the proxy: {log:?}"
        );
        // Anything else it tried was refused (Codex asks github.com and chatgpt.com on its own).
        let allowed = agent.network.trim_start_matches("egress proxy: ");
        assert!(
            agent.egress_refused.iter().all(|r| !r.starts_with(allowed)),
            "{agent:?}"
        );
    }
    assert!(
        !agent.is_error && agent.result_excerpt.contains("Added multiply()"),
        "{agent:?}"
    );
    let usage = agent.usage.unwrap();
    assert!(usage.input_tokens >= 1200 && usage.output_tokens >= 150, "{usage:?}");
    let mut files = report.changed_files.clone();
    files.sort();
    assert_eq!(
        files,
        ["calc.py", "test_multiply.py"],
        "the CLI's own tools edited the worktree"
    );
    let calc = std::fs::read_to_string(Path::new(&report.worktree).join("calc.py")).unwrap();
    assert!(calc.contains("return a * b"), "{calc}");

    let review = activities
        .review_impl(
            ReviewRequest {
                run: Some(run_ref()),
                bead: Some(bead("Add multiply")),
                plan: Some(plan()),
                worktree: report.worktree.clone(),
                base_commit: report.base_commit.clone(),
                attempt: 1,
                timeout_secs: 120,
                ..ReviewRequest::default()
            },
            &Unsupervised,
        )
        .await
        .expect("review runs");
    let verdict = review.verdict.unwrap_or_else(|| panic!("no verdict: {}", review.error));
    assert!(verdict.approved && verdict.criteria[0].met);
    assert_eq!(
        review.agent.unwrap().provider,
        "other",
        "the reviewer is not the executor"
    );
    usage
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
    let mut providers = codex_providers(dir.path(), &codex, &server.addr, "codex-execute");
    for provider in providers.values_mut() {
        provider.price = Some(chum_core::config::RawPrice {
            input_usd_per_mtok: Some(1.25),
            output_usd_per_mtok: Some(10.0),
        });
    }
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

/// Live processes carrying `marker` in their environment.
fn processes_with(marker: &str) -> Vec<u32> {
    chum_testkit::agent_processes(&[format!("{MARKER}={marker}")])
}

/// The agent's run timed out and none of its processes is left.
async fn assert_killed(config: Arc<ChumConfig>, marker: &str) {
    let report = SharkActivitiesImpl::new(config)
        .steps()
        .execute_impl(execute_request(4), &Unsupervised)
        .await
        .expect("execute returns");
    let agent = report.agent.unwrap();
    assert!(agent.timed_out, "{agent:?}");
    assert!(
        report.problem.contains("killed with its process group"),
        "{}",
        report.problem
    );
    let mut left = processes_with(marker);
    for _ in 0..40 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with(marker);
    }
    assert!(left.is_empty(), "agent processes outlived the timeout: {left:?}");
}

fn hang() -> Scenario {
    Scenario::new(vec![Step::executor().hang()])
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
    let server_bin = workspace_root().join(".tools/npm/node_modules/.bin/mcp-server-everything");
    assert!(
        server_bin.exists(),
        "{} missing: run scripts/setup.sh",
        server_bin.display()
    );
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
