//! Test support for end-to-end Shark runs: a real Temporal dev server (started from the installed
//! `temporal` binary on a free port), the real worker registration, a real git repository with a
//! real Python test suite, and the scripted agent binary playing a scenario.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use chum_core::config::ChumConfig;
use chum_core::proto::{Phase, SharkInput, SharkLimits, SharkResult, SharkStatus};
use chum_workflows::SharkWorkflow;
use temporalio_client::{
    Client, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHandle, WorkflowQueryOptions,
    WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_sdk::Runtime;
use temporalio_sdk::testing::{
    DevServerLogLevel, EphemeralExe, LocalServer, LocalWorkflowEnvironmentOptions, WorkflowEnvironment,
};

pub type SharkHandle = WorkflowHandle<Client, chum_workflows::SharkRun>;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The `temporal` CLI installed by scripts/setup.sh (or given by CHUM_TEMPORAL_BIN).
pub fn temporal_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CHUM_TEMPORAL_BIN") {
        return PathBuf::from(path);
    }
    let local = workspace_root().join(".tools/venv/bin/temporal");
    if local.exists() {
        return local;
    }
    which::which("temporal")
        .unwrap_or_else(|_| panic!("no `temporal` binary: run scripts/setup.sh (it installs one into .tools/)"))
}

/// The scripted agent binary, built on demand when `cargo test` did not build it.
pub fn scripted_agent() -> PathBuf {
    // The benchmark (a release build) names its own.
    if let Some(agent) = std::env::var_os("CHUM_SCRIPTED_AGENT") {
        return PathBuf::from(agent);
    }
    workspace_binary("chum-scripted-agent")
}

/// The bridge that carries a sandbox's traffic to its egress proxy, built on demand.
pub fn netbridge() -> PathBuf {
    if let Some(bridge) = std::env::var_os("CHUM_NETBRIDGE") {
        return PathBuf::from(bridge);
    }
    workspace_binary("chum-netbridge")
}

/// The `chum` CLI (package chum-cli), built on demand.
pub fn chum_cli() -> PathBuf {
    workspace_binary("chum")
}

/// `chum --config <config> <args>`: (exit code, stdout, stderr).
pub fn run_chum(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(chum_cli())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("chum runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary `bin` of this workspace next to the test executables; the workspace's binaries are
/// built (or found up to date) once per test process, when `cargo test` did not build them.
fn workspace_binary(bin: &'static str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let exe = std::env::current_exe().expect("test exe");
    let target_dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    let binary = target_dir.join(bin);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !*built {
        // The profile of this executable (the benchmark is a release build).
        let release = target_dir.file_name().is_some_and(|d| d == "release");
        // The whole workspace's binaries, as `make test` builds them: a `-p` build would unify
        // features differently and compile the Temporal crates a second time.
        let mut cargo = Command::new(env!("CARGO"));
        // Without the variables cargo set for this test (CARGO_PKG_*, CARGO_MANIFEST_DIR, ...):
        // build scripts that watch them would see a change and rebuild, twice per run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR" {
                cargo.env_remove(&key);
            }
        }
        let status = cargo
            .args(["build", "-q", "--workspace", "--bins"])
            .args(release.then_some("--release"))
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("running cargo build for {bin}: {e}"));
        assert!(status.success(), "building the workspace's binaries failed");
        *built = true;
    }
    assert!(binary.exists(), "{} missing after build", binary.display());
    binary
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tiny real project: `calc.py` with `add`, a unittest suite, and one open bead.
pub fn make_project(dir: &Path) -> PathBuf {
    let repo = dir.join("project");
    std::fs::create_dir_all(repo.join(".beads")).unwrap();
    std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
    std::fs::write(
        repo.join("test_calc.py"),
        "import unittest\nfrom calc import add\n\n\nclass AddTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\nif __name__ == '__main__':\n    unittest.main()\n",
    )
    .unwrap();
    std::fs::write(
        repo.join(".beads/issues.jsonl"),
        concat!(
            r#"{"id":"tk-1","title":"Add multiply to calc","description":"calc needs multiply(a, b) with tests","status":"open","priority":1,"issue_type":"feature","created_at":"2026-11-22T00:00:00Z","updated_at":"2026-11-22T00:00:00Z","source_repo":"project","compaction_level":0}"#,
            "\n",
            r#"{"id":"tk-2","title":"Old work","status":"closed","priority":2,"issue_type":"task","created_at":"2026-11-22T00:00:00Z","updated_at":"2026-11-22T00:00:00Z","closed_at":"2026-11-22T00:00:00Z","close_reason":"done"}"#,
            "\n",
            r#"{"id":"tk-3","title":"Add parse_pairs to calc","description":"parse 'a=1 b=2' into pairs","status":"open","priority":2,"issue_type":"feature","created_at":"2026-11-22T00:00:01Z","updated_at":"2026-11-22T00:00:01Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    repo
}

pub const GOOD_PLAN: &str = r#"{"summary": "Add multiply(a, b) to calc with a unit test", "steps": ["add multiply to calc.py", "add test_multiply.py"], "acceptance_criteria": ["multiply(3, 4) == 12", "python3 -m unittest passes"], "files": ["calc.py", "test_multiply.py"]}"#;

pub const GOOD_CALC: &str = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n";
pub const BAD_CALC: &str = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return a + b\n";
pub const MULTIPLY_TEST: &str = "import unittest\nfrom calc import multiply\n\n\nclass MultiplyTest(unittest.TestCase):\n    def test_multiply(self):\n        self.assertEqual(multiply(3, 4), 12)\n\n\nif __name__ == '__main__':\n    unittest.main()\n";

/// A reviewer verdict that approves GOOD_PLAN's two criteria, each with evidence of its own: a
/// line the diff it is shown adds, quoted (the scripted agent fills in `{added_line:N}`).
pub const REVIEW_APPROVE: &str = r#"{"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": "multiply(3, 4) == 12", "met": true, "evidence": "`{added_line:1}`"}, {"index": 2, "criterion": "python3 -m unittest passes", "met": true, "evidence": "`{added_line:2}`"}]}"#;

/// A reviewer verdict that rejects with one error finding.
pub const REVIEW_REJECT: &str = r#"{"approved": false, "findings": [{"severity": "error", "file": "calc.py", "line": 6, "message": "multiply adds instead of multiplying"}], "criteria": [{"criterion": "multiply(3, 4) == 12", "met": false, "evidence": "multiply returns a + b"}]}"#;

/// A reviewer step: `provider` and `handoff` narrow it down.
pub fn review_step(provider: Option<&str>, handoff: Option<u32>, answer: &str, extra: &str) -> String {
    let provider = provider.map(|p| format!("provider = \"{p}\"\n")).unwrap_or_default();
    let handoff = handoff.map(|h| format!("handoff = {h}\n")).unwrap_or_default();
    format!("[[step]]\nrole = \"reviewer\"\n{provider}{handoff}{extra}answer = '''{answer}'''\n\n")
}

/// The semgrep-core engine inside the semgrep that scripts/setup.sh installed.
/// The bubblewrap setup installs (or the one on PATH); `None` where there is none, and then
/// `CHUM_REQUIRE_SANDBOX=1` (set by CI) makes that a failure instead of unsandboxed tests.
pub fn bwrap() -> Option<PathBuf> {
    let local = workspace_root().join(".tools/bin/bwrap");
    let found = if local.is_file() {
        Some(local)
    } else {
        which::which("bwrap").ok()
    };
    if found.is_none() && std::env::var("CHUM_REQUIRE_SANDBOX").is_ok_and(|v| v == "1") {
        panic!("CHUM_REQUIRE_SANDBOX=1 but there is no bwrap: run scripts/setup.sh");
    }
    found
}

pub fn semgrep_core() -> PathBuf {
    let lib = workspace_root().join(".tools/venv/lib");
    std::fs::read_dir(&lib)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/setup.sh", lib.display()))
        .flatten()
        .map(|e| e.path().join("site-packages/semgrep/bin/semgrep-core"))
        .find(|p| p.is_file())
        .expect("semgrep-core in .tools/venv: run scripts/setup.sh")
}

/// A scenario step in TOML, built by tests.
pub fn executor_step(attempt: Option<u32>, calc: &str, extra: &str) -> String {
    let attempt = attempt.map(|a| format!("attempt = {a}\n")).unwrap_or_default();
    format!(
        "[[step]]\nrole = \"executor\"\n{attempt}{extra}answer = \"Implemented multiply.\"\nedits = [{{ path = \"calc.py\", write = '''{calc}''' }}, {{ path = \"test_multiply.py\", write = '''{MULTIPLY_TEST}''' }}]\n\n"
    )
}

/// The common scenario: the planner answers GOOD_PLAN, the executor writes GOOD_CALC with its
/// test (`executor_extra`: more keys for its step, e.g. `sleep_ms = 3000\n`).
pub fn good_work_scenario(executor_extra: &str) -> String {
    format!(
        "{}{}",
        planner_step(None, GOOD_PLAN, ""),
        executor_step(None, GOOD_CALC, executor_extra)
    )
}

pub fn planner_step(round: Option<u32>, answer: &str, extra: &str) -> String {
    let round = round.map(|a| format!("attempt = {a}\n")).unwrap_or_default();
    format!("[[step]]\nrole = \"planner\"\n{round}{extra}answer = '''{answer}'''\n\n")
}

/// One test's world: a dev server, a project repository, a config pointing at both.
pub struct Harness {
    /// `None` only while `restart_server` swaps it.
    env: Option<WorkflowEnvironment<LocalServer>>,
    server_options: LocalWorkflowEnvironmentOptions,
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub prompts: PathBuf,
    pub config: Arc<ChumConfig>,
    pub task_queue: String,
    /// The dev server's frontend, for a worker binary started by a test.
    pub address: String,
    /// The configuration `config` was parsed from (written to a file by `write_config`).
    pub config_text: String,
}

/// Live (not zombie) processes whose environment holds every marker (`NAME=value`).
pub fn agent_processes(markers: &[String]) -> Vec<u32> {
    live_processes(|pid| {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return false;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        markers.iter().all(|m| vars.contains(&m.as_bytes()))
    })
}

/// Live (not zombie) processes other than this one for which `wanted(pid)` holds.
pub fn live_processes(wanted: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != me && wanted(*pid) && alive(*pid))
        .collect()
}

/// Whether the process exists and is not a zombie awaiting its reaper.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit(')').next().unwrap_or("").trim_start().chars().next(),
            Some('Z' | 'X')
        )
    })
}

/// This machine's own non-loopback IPv4 address. Tests put what a sandboxed agent may reach
/// there, because the egress proxy refuses loopback whatever an allow-list says.
pub fn host_address() -> std::net::IpAddr {
    chum_activities::exec::own_addresses()
        .into_iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("the egress tests need a non-loopback IPv4 address on this machine")
}

/// A tiny HTTP server on `ip` answering every request with `body`; counts the requests.
pub struct HttpStub {
    pub addr: std::net::SocketAddr,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpStub {
    pub fn start(ip: std::net::IpAddr, body: &'static str) -> HttpStub {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind((ip, 0)).expect("stub listens");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        HttpStub { addr, requests }
    }

    pub fn hits(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct HarnessOptions {
    pub scenario: String,
    pub dod: Vec<String>,
    pub integration: &'static str,
    /// Overrides the agent program (e.g. a missing one).
    pub agent_program: Option<String>,
    /// More keys for `[projects.demo]`, e.g. `gates = ["dod"]`.
    pub extra_project_toml: String,
    /// Files committed into the project before the run, e.g. `.semgrep/` rules.
    pub extra_files: Vec<(String, String)>,
    /// Configure a learner role (scripted-a), so runs end with the ContinuousLearner.
    pub learner: bool,
    /// Configure a groomer role (scripted-a), so runs end with a TacticalGroom.
    pub groomer: bool,
    /// Replaces the project's `.beads/issues.jsonl`.
    pub beads: Option<String>,
    /// More top-level TOML, e.g. a `[dispatcher]` section.
    pub extra_toml: String,
    /// More keys for `[sandbox]`, e.g. `max_processes = 64`.
    pub sandbox_toml: String,
    /// More keys for both scripted providers, e.g. `allow_hosts = ["192.0.2.2:8080"]`.
    pub provider_toml: String,
    /// Keep the dev server's state in a SQLite file, so `restart_server` keeps the runs.
    pub persistent_server: bool,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            scenario: String::new(),
            dod: vec!["python3 -m unittest -q".to_string()],
            integration: "merge",
            agent_program: None,
            extra_project_toml: String::new(),
            extra_files: Vec::new(),
            learner: false,
            groomer: false,
            beads: None,
            extra_toml: String::new(),
            sandbox_toml: String::new(),
            provider_toml: String::new(),
            persistent_server: false,
        }
    }
}

impl Harness {
    /// The default world (Python DoD, merge policy, the scripted agent) playing `scenario`.
    pub async fn with_scenario(name: &str, scenario: String) -> Harness {
        Harness::start(
            name,
            HarnessOptions {
                scenario,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn start(name: &str, options: HarnessOptions) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        // The SDK gives the dev server 5 s to answer; on a loaded 2-core machine running several
        // tests at once (or while something else compiles) it sometimes needs longer, so a start
        // that times out is tried again (on a fresh port) before the test fails.
        let mut tries = 0;
        let (env, server, port) = loop {
            tries += 1;
            let port = free_port();
            let server = LocalWorkflowEnvironmentOptions::builder()
                .server_executable(EphemeralExe::ExistingPath(temporal_binary().display().to_string()))
                .log_level(DevServerLogLevel::Error)
                .port(port)
                .maybe_database_filename(options.persistent_server.then(|| dir.path().join("temporal.db")))
                .build();
            match WorkflowEnvironment::start_local(server.clone()).await {
                Ok(env) => break (env, server, port),
                Err(e) if tries < 6 => eprintln!("dev server did not start (try {tries} of 6): {e:?}"),
                Err(e) => panic!("dev server starts: {e:?}"),
            }
        };
        let repo = make_project(dir.path());
        if let Some(beads) = &options.beads {
            std::fs::write(repo.join(".beads/issues.jsonl"), beads).unwrap();
            git(&repo, &["commit", "-q", "-am", "the test's backlog"]);
        }
        if !options.extra_files.is_empty() {
            for (path, content) in &options.extra_files {
                let target = repo.join(path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(target, content).unwrap();
            }
            git(&repo, &["add", "-A"]);
            git(&repo, &["commit", "-q", "-m", "project files for the test"]);
        }
        let prompts = dir.path().join("prompts");
        // Made up front: the sandbox mounts it writable for the scripted agent's records.
        std::fs::create_dir_all(&prompts).unwrap();
        // Every answer reports some usage, so the tests can check it is summed; a reviewer that
        // approves answers whatever review the test does not script itself.
        let scenario = format!(
            "[usage]\ninput_tokens = 1000\noutput_tokens = 200\ncost_usd = 0.01\n\n{}{}",
            options.scenario,
            review_step(None, None, REVIEW_APPROVE, "")
        );
        std::fs::write(dir.path().join("scenario.toml"), scenario).unwrap();
        let agent = options
            .agent_program
            .unwrap_or_else(|| scripted_agent().display().to_string());
        // `{repo}` in a DoD command stands for the project's main checkout.
        let dod: Vec<String> = options
            .dod
            .iter()
            .map(|c| format!("{:?}", c.replace("{repo}", &repo.display().to_string())))
            .collect();
        let task_queue = format!("test-{name}");
        let text = format!(
            r#"
            state_dir = "state"
            [temporal]
            address = "http://127.0.0.1:{port}"
            task_queue = "{task_queue}"
            [projects.demo]
            repo = "project"
            dod = [{dod}]
            integration = "{integration}"
            {extra_project}
            [providers.scripted-a]
            command = ["{agent}", "-p", "--output-format", "json", "--scenario", "{{config_dir}}/scenario.toml", "--record-dir", "{prompts}"]
            output = "claude-json"
            model = "scripted-model-a"
            writable = ["{prompts}"]
            env = {{ CHUM_TEST_HARNESS = "{prompts}" }}
            {provider_toml}
            [providers.scripted-b]
            command = ["{agent}", "-p", "--output-format", "json", "--scenario", "{{config_dir}}/scenario.toml", "--record-dir", "{prompts}"]
            output = "claude-json"
            model = "scripted-model-b"
            writable = ["{prompts}"]
            env = {{ CHUM_TEST_HARNESS = "{prompts}" }}
            {provider_toml}
            [sandbox]
            {bwrap}
            netbridge = "{netbridge}"
            {sandbox_toml}
            [tiers]
            fast = ["scripted-a"]
            other = ["scripted-b"]
            [roles]
            planner = "fast"
            executor = "fast"
            reviewer = "other"
            {learner}
            {groomer}
            [semgrep]
            core = "{core}"
            {extra_toml}
            "#,
            extra_toml = options.extra_toml,
            sandbox_toml = options.sandbox_toml,
            provider_toml = options.provider_toml,
            extra_project = options.extra_project_toml,
            learner = if options.learner { "learner = \"fast\"" } else { "" },
            groomer = if options.groomer { "groomer = \"fast\"" } else { "" },
            core = semgrep_core().display(),
            netbridge = netbridge().display(),
            bwrap = bwrap()
                .map(|p| format!("bwrap = {:?}", p.display().to_string()))
                .unwrap_or_default(),
            dod = dod.join(", "),
            integration = options.integration,
            prompts = prompts.display(),
        );
        let config =
            ChumConfig::from_toml(&text, &dir.path().join("chum.toml"), Vec::new()).expect("test config is valid");
        Harness {
            env: Some(env),
            server_options: server,
            dir,
            repo,
            prompts,
            config: Arc::new(config),
            task_queue,
            address: format!("http://127.0.0.1:{port}"),
            config_text: text,
        }
    }

    /// Writes `text` (usually `config_text`, edited) as the configuration file a worker binary
    /// reads; relative paths in it start from the harness directory, as they do for `config`.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("chum.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn client(&self) -> Client {
        self.env.as_ref().expect("the dev server is running").client().clone()
    }

    /// Stops the dev server and starts it again on the same port (with `persistent_server`, on
    /// the same database); `down` runs while it is stopped. Clients made before keep working once
    /// it is back (their connections reconnect).
    pub async fn restart_server<F: Future<Output = ()>>(&mut self, down: F) {
        if let Some(env) = self.env.take() {
            env.shutdown().await.expect("dev server stops");
        }
        down.await;
        let env = WorkflowEnvironment::start_local(self.server_options.clone())
            .await
            .expect("dev server starts again");
        self.env = Some(env);
    }

    /// Runs `body` while a real worker polls, then stops the worker (gracefully; workflows stay
    /// on the server for the next worker).
    pub async fn with_worker<F, Fut, T>(&self, body: F) -> T
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = T>,
    {
        let runtime = Runtime::from_current_tokio(Default::default()).expect("runtime");
        let mut worker = worker::build_worker(&runtime, self.client(), self.config.clone()).expect("worker builds");
        let shutdown = worker.shutdown_handle();
        let client = self.client();
        let body = async move {
            let out = body(client).await;
            shutdown();
            out
        };
        let (run, out) = tokio::join!(worker.run(), body);
        run.expect("worker ran cleanly");
        out
    }

    /// Like `with_worker`, with the SDK's metrics exported the way the worker binary does it; the
    /// body gets the exporter's address.
    pub async fn with_metrics_worker<F, Fut, T>(&self, body: F) -> T
    where
        F: FnOnce(Client, std::net::SocketAddr) -> Fut,
        Fut: Future<Output = T>,
    {
        let (runtime, metrics) = worker::metrics::runtime_with_metrics().expect("runtime with metrics");
        let mut worker = worker::build_worker(&runtime, self.client(), self.config.clone()).expect("worker builds");
        let shutdown = worker.shutdown_handle();
        let client = self.client();
        let body = async move {
            let out = body(client, metrics).await;
            shutdown();
            out
        };
        let (run, out) = tokio::join!(worker.run(), body);
        run.expect("worker ran cleanly");
        out
    }

    /// Starts a Shark, approves the plan of round `round` as `by`, waits for the result and records
    /// the history as `name`.
    pub async fn approve_plan(&self, name: &str, input: SharkInput, round: u32, by: &str) -> SharkResult {
        self.with_worker(|client| async move {
            let handle = start_shark(&client, &self.task_queue, input).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, round).await;
            send_approve(&handle, serde_json::json!({"approved": true, "by": by})).await;
            finish(&handle, name).await
        })
        .await
    }

    /// Starts a Shark nobody decides on and waits for the result, recording the history as `name`.
    pub async fn run_unattended(&self, name: &str, input: SharkInput) -> SharkResult {
        self.with_worker(|client| async move {
            let handle = start_shark(&client, &self.task_queue, input).await;
            finish(&handle, name).await
        })
        .await
    }

    pub fn input(&self, limits: SharkLimits) -> SharkInput {
        SharkInput {
            project: "demo".into(),
            bead_id: "tk-1".into(),
            limits: Some(limits),
            candidate: None,
        }
    }

    pub fn read_bead(&self, id: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.repo.join(".beads/issues.jsonl")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("bead {id} not found"))
    }

    /// The prompt an agent received, by role, attempt and redo.
    pub fn prompt(&self, role: &str, attempt: u32, handoff: u32) -> String {
        let path = self.prompts.join(format!("{role}-tk-1-{attempt}-{handoff}.prompt.md"));
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no recorded prompt {}", path.display()))
    }

    /// Before approval (or without it) the project is as it was: no bead branch, no worktree, and
    /// the checkout unchanged except for the backlog CHUM updates.
    pub fn assert_code_untouched(&self) {
        let status = git(&self.repo, &["status", "--porcelain", "--untracked-files=all"]);
        assert_eq!(status, "M .beads/issues.jsonl", "the checkout changed: {status}");
        assert_eq!(
            std::fs::read_to_string(self.repo.join("calc.py")).unwrap(),
            "def add(a, b):\n    return a + b\n"
        );
        let branches = git(&self.repo, &["branch", "--list", "chum/*"]);
        assert!(branches.is_empty(), "a bead branch exists: {branches}");
        assert!(
            !self.repo.join(".chum/worktrees").exists(),
            "an attempt worktree exists"
        );
    }

    pub async fn wait_for_file(&self, path: &Path) {
        for _ in 0..200 {
            if path.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never appeared", path.display());
    }

    /// Every process of an agent run (the agent and anything it started) carries its provider's
    /// environment, `CHUM_TEST_HARNESS` unique to this harness, and `CHUM_ROLE`/`CHUM_ATTEMPT`; all
    /// must be gone (a zombie awaiting its reaper counts as gone). Looked up in /proc by
    /// environment, since pids recorded inside a sandbox's PID namespace mean nothing outside it.
    pub async fn assert_agent_processes_gone(&self, role: &str, attempt: u32) {
        let markers = [
            format!("CHUM_TEST_HARNESS={}", self.prompts.display()),
            format!("CHUM_ROLE={role}"),
            format!("CHUM_ATTEMPT={attempt}"),
        ];
        let path = self.prompts.join(format!("{role}-tk-1-{attempt}-0.prompt.md"));
        assert!(path.exists(), "{} missing: the agent never ran", path.display());
        let live = || agent_processes(&markers);
        for _ in 0..100 {
            if live().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("agent processes outlived their run: {:?}", live());
    }

    pub fn commits_on(&self, rev: &str) -> usize {
        git(&self.repo, &["rev-list", "--count", rev]).parse().unwrap()
    }
}

pub fn limits() -> SharkLimits {
    SharkLimits {
        max_attempts: 3,
        max_handoffs: 3,
        max_plan_rounds: 3,
        max_gate_rejections: 3,
        gate_timeout_secs: 60,
        agent_timeout_secs: 30,
        dod_timeout_secs: 60,
    }
}

pub async fn start_shark(client: &Client, task_queue: &str, input: SharkInput) -> SharkHandle {
    let id = chum_core::ids::shark_workflow_id(&input.project, &input.bead_id);
    client
        .start_workflow(
            SharkWorkflow::run,
            input,
            WorkflowStartOptions::new(task_queue, id).build(),
        )
        .await
        .expect("workflow starts")
}

pub async fn status(handle: &SharkHandle) -> SharkStatus {
    handle
        .query(SharkWorkflow::status, (), WorkflowQueryOptions::default())
        .await
        .expect("status query")
}

/// Polls the status query until the run reaches `phase` (and, for the gate, `round`).
pub async fn wait_for_phase(handle: &SharkHandle, phase: Phase, round: u32) -> SharkStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(handle).await;
        if s.phase() == phase && (round == 0 || s.plan_round == round) {
            return s;
        }
        assert!(
            s.phase() != Phase::Done,
            "run ended before reaching {phase} (round {round}); status: {s:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "run never reached {phase} (round {round}); status: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the status query until at least `count` signals were refused (or 20 s passed) and
/// returns the status then.
pub async fn wait_for_refusals(handle: &SharkHandle, count: usize) -> SharkStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(handle).await;
        if s.rejected_signals.len() >= count || tokio::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn send_approve(handle: &SharkHandle, payload: serde_json::Value) {
    send_raw_approve(handle, chum_workflows::approve_payload(&payload)).await;
}

/// Sends payloads exactly as given, e.g. none at all (`temporal workflow signal` without --input).
pub async fn send_raw_approve(handle: &SharkHandle, payload: temporalio_common::data_converters::RawValue) {
    handle
        .signal(SharkWorkflow::approve, payload, WorkflowSignalOptions::default())
        .await
        .expect("signal delivered");
}

/// Waits for the run's result and records its history as `name`.
pub async fn finish(handle: &SharkHandle, name: &str) -> SharkResult {
    let result = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the run completes");
    record_history(handle, name).await;
    result
}

/// Saves the run's history for the replay tests when `CHUM_RECORD_HISTORIES=1`
/// (scripts/record-histories.sh).
/// The results of every completed `activity` of a run, decoded from its history (what the
/// activity really reported, as Temporal stored it).
pub async fn activity_results<W: temporalio_common::HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
    activity: &str,
) -> Vec<serde_json::Value> {
    use base64::Engine as _;
    let json = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history fetched");
    let history: serde_json::Value = serde_json::from_slice(&json).expect("history JSON");
    let events = history["events"].as_array().cloned().unwrap_or_default();
    let scheduled_as = |id: &serde_json::Value| {
        events
            .iter()
            .find(|e| &e["event_id"] == id)
            .and_then(|e| e["attributes"]["ActivityTaskScheduledEventAttributes"]["activity_type"]["name"].as_str())
            .map(str::to_string)
    };
    events
        .iter()
        .filter_map(|e| e["attributes"].get("ActivityTaskCompletedEventAttributes"))
        .filter(|done| scheduled_as(&done["scheduled_event_id"]).as_deref() == Some(activity))
        .filter_map(|done| done["result"]["payloads"][0]["data"].as_str())
        .map(|data| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64 payload");
            serde_json::from_slice(&bytes).expect("JSON payload")
        })
        .collect()
}

pub async fn record_history<W: temporalio_common::HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
    name: &str,
) {
    if std::env::var("CHUM_RECORD_HISTORIES").as_deref() != Ok("1") {
        return;
    }
    let json = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history fetched");
    let dir = workspace_root().join("crates/workflows/tests/histories/current");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), json).unwrap();
    eprintln!("recorded history {name}");
}

/// The worker binary with its stderr (the log) collected line by line.
pub struct WorkerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    pub fn start(config: &Path) -> WorkerProcess {
        WorkerProcess::start_with(config, &[])
    }

    /// [`WorkerProcess::start`] with more environment variables for the worker.
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> WorkerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .env("CHUM__API__BIND", format!("127.0.0.1:{}", free_port()))
            .env("CHUM__DISPATCHER__ENABLED", "false")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        WorkerProcess { child, lines }
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for a log line containing `needle` that was not there before (`seen` lines).
    pub async fn wait_for_line(&self, needle: &str, seen: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.log().iter().skip(seen).find(|l| l.contains(needle)) {
                return serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().map(|s| s.is_none()).unwrap_or(false)
    }

    /// SIGKILL, as an OOM killer or a lost machine would: no drain, no cleanup.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        self.log()
    }

    pub fn stop(mut self) -> Vec<String> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the worker did not drain after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        self.log()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
