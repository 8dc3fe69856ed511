//! Contract tests with the real Claude Code CLI (npm `@anthropic-ai/claude-code`, installed into
//! `.tools/npm` by scripts/setup.sh), run by CHUM's own activities against the scripted model
//! server (`chum-scripted-agent --serve`): the CLI really edits files in a worktree and really
//! reports its usage; CHUM parses it, kills it with its process group on timeout, and names a
//! missing binary.
//!
//! Without the CLI installed the tests say so and pass, unless CHUM_REQUIRE_AGENT_CLIS=1 (CI sets
//! it), when a missing CLI is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use chum_activities::SharkActivitiesImpl;
use chum_activities::agent::Unsupervised;
use chum_core::config::ChumConfig;
use chum_core::proto::{Bead, ExecuteRequest, Plan, ReviewRequest, RunRef};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn claude() -> Option<PathBuf> {
    let path = std::env::var_os("CHUM_CLAUDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/npm/node_modules/.bin/claude"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CHUM_REQUIRE_AGENT_CLIS").as_deref() != Ok("1"),
        "{} is missing and CHUM_REQUIRE_AGENT_CLIS=1: run scripts/setup.sh (it installs Claude Code with npm)",
        path.display()
    );
    eprintln!(
        "SKIPPED: Claude Code is not installed at {} (scripts/setup.sh installs it when npm is present)",
        path.display()
    );
    None
}

fn scripted_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let agent = exe.parent().and_then(Path::parent).unwrap().join("chum-scripted-agent");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "chum-scripted-agent"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    agent
}

/// The scripted model server, stopped when dropped.
struct ModelServer {
    child: Child,
    port: u16,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn model_server(dir: &Path, scenario: &str) -> ModelServer {
    let scenario_path = dir.join("model-scenario.toml");
    std::fs::write(&scenario_path, scenario).unwrap();
    let port_file = dir.join("model.port");
    let mut child = Command::new(scripted_agent())
        .arg("--scenario")
        .arg(&scenario_path)
        .args(["--serve", "127.0.0.1:0", "--provider", "claude", "--port-file"])
        .arg(&port_file)
        .arg("--record-dir")
        .arg(dir.join("prompts"))
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            return ModelServer {
                child,
                port: text.trim().parse().unwrap(),
            };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the model server did not start");
}

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

/// A project repository and a config whose executor is the real `claude` talking to `server`.
fn setup(dir: &Path, claude: &Path, server_port: u16, marker: &str) -> Arc<ChumConfig> {
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
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let text = format!(
        r#"
        state_dir = "state"
        [projects.demo]
        repo = "project"
        gates = ["dod"]
        [providers.claude]
        command = ["{claude}", "-p", "--output-format", "json", "--permission-mode", "acceptEdits"]
        output = "claude-json"
        env = {{ ANTHROPIC_BASE_URL = "http://127.0.0.1:{server_port}", ANTHROPIC_API_KEY = "dummy", CLAUDE_CODE_MAX_RETRIES = "0", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", DISABLE_AUTOUPDATER = "1", HOME = "{home}", CLAUDE_CONFIG_DIR = "{home}/.claude", {MARKER} = "{marker}" }}
        [providers.other]
        command = ["{claude}", "-p", "--output-format", "json"]
        output = "claude-json"
        env = {{ ANTHROPIC_BASE_URL = "http://127.0.0.1:{server_port}", ANTHROPIC_API_KEY = "dummy", CLAUDE_CODE_MAX_RETRIES = "0", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", DISABLE_AUTOUPDATER = "1", HOME = "{home}", CLAUDE_CONFIG_DIR = "{home}/.claude", {MARKER} = "{marker}" }}
        [tiers]
        main = ["claude"]
        second = ["other"]
        [roles]
        planner = "main"
        executor = "main"
        reviewer = "second"
        "#,
        claude = claude.display(),
        home = home.display(),
    );
    Arc::new(ChumConfig::from_toml(&text, &dir.join("chum.toml"), Vec::new()).expect("config"))
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
answer = '{"approved": true, "findings": [], "criteria": [{"criterion": "multiply(3, 4) == 12", "met": true, "evidence": "test_multiply.py asserts it"}]}'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_executes_and_reviews_through_chum() {
    let Some(claude) = claude() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), SCENARIO);
    let config = setup(dir.path(), &claude, server.port, "execute");
    let activities = SharkActivitiesImpl::new(config);
    let bead = Bead {
        id: "tk-1".into(),
        title: "Add multiply".into(),
        ..Bead::default()
    };

    let report = activities
        .execute_impl(
            ExecuteRequest {
                run: Some(run_ref()),
                bead: Some(bead.clone()),
                plan: Some(plan()),
                attempt: 1,
                timeout_secs: 120,
                ..ExecuteRequest::default()
            },
            &Unsupervised,
        )
        .await
        .expect("execute runs");
    assert!(report.problem.is_empty(), "{report:?}");
    let agent = report.agent.clone().unwrap();
    assert_eq!(agent.provider, "claude");
    assert!(
        !agent.is_error && agent.result_excerpt.contains("Added multiply()"),
        "{agent:?}"
    );
    // Tokens and cost as the CLI computed them from the model server's usage.
    let usage = agent.usage.unwrap();
    assert!(usage.input_tokens >= 1200 && usage.output_tokens >= 150, "{usage:?}");
    assert!(usage.cost_usd > 0.0, "{usage:?}");
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
                bead: Some(bead),
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
}

/// Processes started for this test (they carry its marker in their environment).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_claude_is_killed_with_its_process_group() {
    let Some(claude) = claude() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), "[[step]]\nrole = \"executor\"\nhang = true\n");
    let config = setup(dir.path(), &claude, server.port, "hang");
    let activities = SharkActivitiesImpl::new(config);
    let report = activities
        .execute_impl(
            ExecuteRequest {
                run: Some(run_ref()),
                bead: Some(Bead {
                    id: "tk-1".into(),
                    ..Bead::default()
                }),
                plan: Some(plan()),
                attempt: 1,
                timeout_secs: 4,
                ..ExecuteRequest::default()
            },
            &Unsupervised,
        )
        .await
        .expect("execute returns");
    let agent = report.agent.unwrap();
    assert!(agent.timed_out, "{agent:?}");
    assert!(
        report.problem.contains("killed with its process group"),
        "{}",
        report.problem
    );
    let mut left = processes_with("hang");
    for _ in 0..40 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with("hang");
    }
    assert!(left.is_empty(), "claude processes outlived the timeout: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_claude_binary_is_a_clear_non_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), Path::new("/nonexistent/bin/claude"), 9, "missing");
    let activities = SharkActivitiesImpl::new(config);
    let err = activities
        .execute_impl(
            ExecuteRequest {
                run: Some(run_ref()),
                bead: Some(Bead {
                    id: "tk-1".into(),
                    ..Bead::default()
                }),
                plan: Some(plan()),
                attempt: 1,
                timeout_secs: 10,
                ..ExecuteRequest::default()
            },
            &Unsupervised,
        )
        .await
        .expect_err("a missing program cannot run");
    let text = format!("{err:?}");
    assert!(
        text.contains("MissingBinary") && text.contains("non_retryable: true"),
        "{text}"
    );
    assert!(text.contains("/nonexistent/bin/claude"), "{text}");
}
