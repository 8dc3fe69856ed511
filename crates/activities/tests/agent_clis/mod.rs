//! What the agent CLI contract tests share (`agent_cli_contracts.rs`, `aider_opencode_contracts.rs`):
//! finding an installed CLI, the scripted model server, a project with a config whose executor is
//! provider `main` and reviewer `other`, and an execute and a review phase run through CHUM's own
//! activities. Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use chum_activities::SharkActivitiesImpl;
use chum_activities::agent::Unsupervised;
use chum_core::config::{ChumConfig, RawConfig, RawProject, RawProvider, RawSandbox};
use chum_core::proto::{AgentUsage, ExecuteRequest, Plan, ReviewRequest};
use chum_testkit::{
    Scenario, Step, Usage, bead, bwrap, host_address, netbridge, run_ref, scripted_agent, workspace_root,
};

/// An agent CLI installed by scripts/setup.sh at `relative` (under the workspace), or `None`
/// (with the reason printed) when it is not installed. Its real path: a worktree's `.tools` may
/// be a link to another checkout's, and bubblewrap cannot mount a path through a link.
pub fn installed_cli(relative: &str) -> Option<PathBuf> {
    let path = workspace_root().join(relative);
    if let Ok(real) = std::fs::canonicalize(&path) {
        return Some(real);
    }
    assert!(
        std::env::var("CHUM_REQUIRE_AGENT_CLIS").as_deref() != Ok("1"),
        "{} is missing and CHUM_REQUIRE_AGENT_CLIS=1: run scripts/setup.sh (it installs the agent CLIs with npm and Python)",
        path.display()
    );
    eprintln!(
        "SKIPPED: {} is not installed (scripts/setup.sh installs it when npm and Python are present)",
        path.display()
    );
    None
}

/// An agent CLI from `.tools/npm`, or `None` (with the reason printed) when it is not installed.
pub fn agent_cli(name: &str) -> Option<PathBuf> {
    installed_cli(&format!(".tools/npm/node_modules/.bin/{name}"))
}

/// The scripted model server, stopped when dropped.
pub struct ModelServer {
    child: Child,
    /// `host:port`, the only entry of the providers' allow_hosts.
    pub addr: String,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn model_server(dir: &Path, scenario: &Scenario, provider: &str) -> ModelServer {
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
pub const MARKER: &str = "CHUM_CONTRACT_TEST_MARKER";

/// A project repository and a config whose executor is provider `main` and reviewer `other`.
pub fn setup(dir: &Path, providers: BTreeMap<String, RawProvider>) -> Arc<ChumConfig> {
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
pub fn two_providers(
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

/// `providers`, each priced at `input` and `output` dollars per million tokens (as for a model the
/// pinned table does not know), so the tokens a CLI reports without dollars count, computed.
pub fn priced(mut providers: BTreeMap<String, RawProvider>, input: f64, output: f64) -> BTreeMap<String, RawProvider> {
    for provider in providers.values_mut() {
        provider.price = Some(chum_core::config::RawPrice {
            input_usd_per_mtok: Some(input),
            output_usd_per_mtok: Some(output),
        });
    }
    providers
}

pub fn env_of(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

pub fn plan() -> Plan {
    Plan {
        steps: vec!["add it".into()],
        files: vec!["calc.py".into()],
        ..chum_testkit::plan("Add multiply(a, b)", &["multiply(3, 4) == 12"])
    }
}

pub fn execute_request(timeout_secs: u64) -> ExecuteRequest {
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
pub fn scenario() -> Scenario {
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
pub async fn execute_and_review(config: Arc<ChumConfig>) -> AgentUsage {
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

/// Live processes carrying `marker` in their environment.
pub fn processes_with(marker: &str) -> Vec<u32> {
    chum_testkit::agent_processes(&[format!("{MARKER}={marker}")])
}

/// The agent's run timed out and none of its processes is left.
pub async fn assert_killed(config: Arc<ChumConfig>, marker: &str) {
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

pub fn hang() -> Scenario {
    Scenario::new(vec![Step::executor().hang()])
}
