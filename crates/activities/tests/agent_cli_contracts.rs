//! Contract tests with the real agent CLIs, Claude Code (npm `@anthropic-ai/claude-code`) and
//! Codex (npm `@openai/codex`), installed into `.tools/npm` by scripts/setup.sh, run by CHUM's own
//! activities against the scripted model server (`chum-scripted-agent --serve`: the Anthropic
//! Messages and OpenAI Responses APIs). Each CLI really edits files in a worktree with its own
//! tools and really reports its usage; CHUM parses it, kills it with its process group on
//! timeout, and names a missing binary.
//!
//! Without a CLI installed its tests say so and pass, unless CHUM_REQUIRE_AGENT_CLIS=1 (CI sets
//! it), when a missing CLI is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use chum_activities::SharkActivitiesImpl;
use chum_activities::agent::Unsupervised;
use chum_core::config::ChumConfig;
use chum_core::proto::{AgentUsage, Bead, ExecuteRequest, Plan, ReviewRequest, RunRef};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// An agent CLI from `.tools/npm`, or `None` (with the reason printed) when it is not installed.
fn agent_cli(name: &str) -> Option<PathBuf> {
    let path = root().join(".tools/npm/node_modules/.bin").join(name);
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

/// The bubblewrap setup installs: with it, the real CLIs run inside CHUM's sandbox (network
/// allowed, as a real agent needs for its API; here the API is the local model server).
fn bwrap() -> Option<PathBuf> {
    let local = root().join(".tools/bin/bwrap");
    if local.is_file() {
        Some(local)
    } else {
        which::which("bwrap").ok()
    }
}

/// A binary of this workspace, built next to the test executables.
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).unwrap().join(name);
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", name])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success(), "building {name}");
    binary
}

fn scripted_agent() -> PathBuf {
    workspace_binary("chum-scripted-agent")
}

/// This machine's own non-loopback address: the model server listens there, because the egress
/// proxy refuses loopback whatever a provider's allow_hosts says.
fn host_address() -> std::net::IpAddr {
    chum_activities::exec::own_addresses()
        .into_iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("these tests need a non-loopback IPv4 address on this machine for the model server")
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

fn model_server(dir: &Path, scenario: &str, provider: &str) -> ModelServer {
    let scenario_path = dir.join("model-scenario.toml");
    std::fs::write(&scenario_path, scenario).unwrap();
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

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@localhost")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// A project repository and a config whose executor is provider `main` and reviewer `other`.
fn setup(dir: &Path, providers: &str) -> Arc<ChumConfig> {
    let repo = dir.join("project");
    std::fs::create_dir_all(repo.join(".beads")).unwrap();
    std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
    std::fs::write(
        repo.join(".beads/issues.jsonl"),
        "{\"id\":\"tk-1\",\"title\":\"Add multiply\",\"status\":\"open\"}\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    let text = format!(
        r#"
        state_dir = "state"
        [projects.demo]
        repo = "project"
        gates = ["dod"]
        sandbox = "{sandbox}"
        {providers}
        [tiers]
        main = ["main"]
        second = ["other"]
        [roles]
        planner = "main"
        executor = "main"
        reviewer = "second"
        [sandbox]
        {bwrap}
        netbridge = "{netbridge}"
        "#,
        sandbox = if bwrap().is_some() { "bwrap" } else { "auto" },
        bwrap = bwrap()
            .map(|p| format!("bwrap = {:?}", p.display().to_string()))
            .unwrap_or_default(),
        netbridge = workspace_binary("chum-netbridge").display(),
    );
    Arc::new(ChumConfig::from_toml(&text, &dir.join("chum.toml"), Vec::new()).expect("config"))
}

/// The same command twice, as executor `main` and reviewer `other`. Both reach the model server
/// at `addr` and nothing else (through the egress proxy), with their scratch home writable.
fn two_providers(command: &str, output: &str, env: &str, home: &Path, addr: &str) -> String {
    let sandbox = format!(
        "allow_hosts = [\"{addr}\"]\nwritable = [{:?}]\n",
        home.display().to_string()
    );
    format!(
        "[providers.main]\ncommand = {command}\noutput = \"{output}\"\nmodel = \"scripted-main\"\nenv = {env}\n{sandbox}\
         [providers.other]\ncommand = {command}\noutput = \"{output}\"\nmodel = \"scripted-other\"\nenv = {env}\n{sandbox}"
    )
}

/// Claude Code against the model server on `port`, in a scratch HOME, tagged with `marker`.
fn claude_providers(dir: &Path, claude: &Path, addr: &str, marker: &str) -> String {
    let home = dir.join("claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let env = format!(
        "{{ ANTHROPIC_BASE_URL = \"http://{addr}\", ANTHROPIC_API_KEY = \"dummy\", \
         CLAUDE_CODE_MAX_RETRIES = \"0\", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\", \
         DISABLE_AUTOUPDATER = \"1\", HOME = \"{home}\", CLAUDE_CONFIG_DIR = \"{home}/.claude\", {MARKER} = \"{marker}\" }}",
        home = home.display()
    );
    let command = format!(
        r#"["{}", "-p", "--output-format", "json", "--permission-mode", "acceptEdits"]"#,
        claude.display()
    );
    two_providers(&command, "claude-json", &env, &home, addr)
}

/// Codex with a local Responses API provider (the model server on `port`), in its workspace-write
/// sandbox, with a scratch CODEX_HOME.
fn codex_providers(dir: &Path, codex: &Path, addr: &str, marker: &str) -> String {
    let home = dir.join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    let env = format!(
        "{{ LOCAL_KEY = \"dummy\", HOME = \"{home}\", CODEX_HOME = \"{home}\", {MARKER} = \"{marker}\" }}",
        home = home.display()
    );
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
    let command = format!(
        r#"["{}", "exec", "--json", "--skip-git-repo-check", "-s", "{codex_sandbox}", "-c", "model_provider=local", "-c", "{provider}", "-m", "scripted", "-"]"#,
        codex.display()
    );
    two_providers(&command, "codex-jsonl", &env, &home, addr)
}

fn run_ref() -> RunRef {
    RunRef {
        project: "demo".into(),
        bead_id: "tk-1".into(),
        workflow_id: "contract".into(),
        run_id: "r1".into(),
    }
}

fn plan() -> Plan {
    Plan {
        summary: "Add multiply(a, b)".into(),
        steps: vec!["add it".into()],
        acceptance_criteria: vec!["multiply(3, 4) == 12".into()],
        files: vec!["calc.py".into()],
    }
}

fn bead() -> Bead {
    Bead {
        id: "tk-1".into(),
        title: "Add multiply".into(),
        ..Bead::default()
    }
}

fn execute_request(timeout_secs: u64) -> ExecuteRequest {
    ExecuteRequest {
        run: Some(run_ref()),
        bead: Some(bead()),
        plan: Some(plan()),
        attempt: 1,
        timeout_secs,
        ..ExecuteRequest::default()
    }
}

const SCENARIO: &str = r#"
[usage]
input_tokens = 1200
output_tokens = 150

[[step]]
role = "executor"
answer = "Added multiply() and its test."
edits = [
  { path = "calc.py", find = "    return a + b\n", replace = "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n" },
  { path = "test_multiply.py", write = "from calc import multiply\n\nassert multiply(3, 4) == 12\n" },
]

[[step]]
role = "reviewer"
expect_prompt_contains = ["+def multiply(a, b):"]
answer = '{"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": "multiply(3, 4) == 12", "met": true, "evidence": "test_multiply.py:3"}]}'
"#;

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
                bead: Some(bead()),
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
    let server = model_server(dir.path(), SCENARIO, "claude");
    let config = setup(
        dir.path(),
        &claude_providers(dir.path(), &claude, &server.addr, "claude-execute"),
    );
    let usage = execute_and_review(config).await;
    // Claude Code computes the cost from the tokens the model server reported.
    assert!(usage.cost_usd > 0.0, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_executes_and_reviews_through_chum() {
    let Some(codex) = agent_cli("codex") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), SCENARIO, "codex");
    let config = setup(
        dir.path(),
        &codex_providers(dir.path(), &codex, &server.addr, "codex-execute"),
    );
    execute_and_review(config).await;
}

/// Live processes carrying `marker` in their environment.
fn processes_with(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER}={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z');
            !zombie && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        })
        .collect()
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

const HANG: &str = "[[step]]\nrole = \"executor\"\nhang = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_claude_is_killed_with_its_process_group() {
    let Some(claude) = agent_cli("claude") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), HANG, "claude");
    assert_killed(
        setup(
            dir.path(),
            &claude_providers(dir.path(), &claude, &server.addr, "claude-hang"),
        ),
        "claude-hang",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_codex_is_killed_with_its_process_group() {
    let Some(codex) = agent_cli("codex") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), HANG, "codex");
    assert_killed(
        setup(
            dir.path(),
            &codex_providers(dir.path(), &codex, &server.addr, "codex-hang"),
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
        &claude_providers(
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

const MCP_SCENARIO: &str = r#"
[[step]]
role = "executor"
tool_calls = [
  { name = "mcp__everything__echo", input = { message = "hello from chum" } },
  { name = "mcp__everything__get-env", input = {} },
]
answer = "The MCP server said: {tool_results}"
edits = [{ path = "calc.py", find = "    return a + b\n", replace = "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n" }]
"#;

/// Claude Code uses a real MCP server (npm `@modelcontextprotocol/server-everything`) that CHUM
/// configured for the run: the model asks for two of its tools, the CLI starts the server inside
/// the agent's sandbox and calls them, and their real answers come back in the transcript and the
/// run's artifacts. The server gets the variable it names (by name, from the worker's
/// environment) and none of the worker's other secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_calls_a_real_mcp_server_inside_the_sandbox() {
    let Some(claude) = agent_cli("claude") else { return };
    let server_bin = root().join(".tools/npm/node_modules/.bin/mcp-server-everything");
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
    let server = model_server(dir.path(), MCP_SCENARIO, "claude");
    let providers = claude_providers(dir.path(), &claude, &server.addr, "claude-mcp").replace(
        "\"--permission-mode\", \"acceptEdits\"]",
        "\"--permission-mode\", \"acceptEdits\", \"--mcp-config\", \"{mcp_config}\", \"--allowedTools\", \"mcp__everything__echo mcp__everything__get-env Read Edit Write\"]",
    );
    let providers = providers.replace(
        "[providers.other]",
        &format!(
            "[providers.main.mcp_servers.everything]\ncommand = {:?}\nenv = [\"MCP_CONTRACT_VALUE\"]\n[providers.other]",
            server_bin.display().to_string()
        ),
    );
    let config = setup(dir.path(), &providers);
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
