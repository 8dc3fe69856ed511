//! One test's world: a real Temporal dev server on a free port, the calc project in a real git
//! repository, a configuration for both (written as the config file's own type, `RawConfig`),
//! the scripted agent playing the test's steps, and the real worker registration.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chum_core::config::{
    ChumConfig, RawConfig, RawProject, RawProvider, RawSandbox, RawSemgrep, RawTemporal, SandboxMode,
};
use chum_core::proto::{Phase, SharkInput, SharkLimits, SharkResult};
use chum_scripted_agent::scenario::{Scenario, Step, Usage};
use temporalio_client::Client;
use temporalio_sdk::Runtime;
use temporalio_sdk::testing::{
    DevServerLogLevel, EphemeralExe, LocalServer, LocalWorkflowEnvironmentOptions, WorkflowEnvironment,
};

use crate::paths::{bwrap, netbridge, scripted_agent, semgrep_core, temporal_binary};
use crate::processes::{agent_processes, free_port};
use crate::project::{REVIEW_APPROVE, git, make_project};
use crate::shark::{finish, send_approve, start_shark, wait_for_phase};
use crate::steps::reviewer;

/// A change to the harness's configuration, made on the file's own type.
pub type Configure = Box<dyn FnOnce(&mut RawConfig) + Send>;

pub struct HarnessOptions {
    /// What the scripted agent does, first match wins. A reviewer that approves answers whatever
    /// review the steps do not script.
    pub steps: Vec<Step>,
    pub dod: Vec<String>,
    pub integration: &'static str,
    /// Overrides the agent program (e.g. a missing one).
    pub agent_program: Option<String>,
    /// Files committed into the project before the run, e.g. `.semgrep/` rules.
    pub extra_files: Vec<(String, String)>,
    /// Configure a learner role (scripted-a), so runs end with the ContinuousLearner.
    pub learner: bool,
    /// Configure a groomer role (scripted-a), so runs end with a TacticalGroom.
    pub groomer: bool,
    /// Replaces the project's `.beads/issues.jsonl`.
    pub beads: Option<String>,
    /// Keep the dev server's state in a SQLite file, so `restart_server` keeps the runs.
    pub persistent_server: bool,
    /// Changes to the configuration, e.g. `|c| c.project().fanout = Some(3)`; see [`with_config`].
    ///
    /// [`with_config`]: HarnessOptions::with_config
    pub configure: Vec<Configure>,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            steps: Vec::new(),
            dod: vec!["python3 -m unittest -q".to_string()],
            integration: "merge",
            agent_program: None,
            extra_files: Vec::new(),
            learner: false,
            groomer: false,
            beads: None,
            persistent_server: false,
            configure: Vec::new(),
        }
    }
}

impl HarnessOptions {
    pub fn with_steps(steps: Vec<Step>) -> HarnessOptions {
        HarnessOptions {
            steps,
            ..HarnessOptions::default()
        }
    }

    /// Adds a change to the configuration.
    pub fn with_config(mut self, change: impl FnOnce(&mut RawConfig) + Send + 'static) -> HarnessOptions {
        self.configure.push(Box::new(change));
        self
    }
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
    /// The configuration `config` was read from, as the file's own type: change a clone and
    /// `write_config` it for a worker binary.
    pub config_file: RawConfig,
}

impl Harness {
    /// The default world (Python DoD, merge policy, the scripted agent) playing `steps`.
    pub async fn with_steps(name: &str, steps: Vec<Step>) -> Harness {
        Harness::start(name, HarnessOptions::with_steps(steps)).await
    }

    pub async fn start(name: &str, mut options: HarnessOptions) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (env, server_options, port) = start_dev_server(dir.path(), options.persistent_server).await;
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
        let mut steps = std::mem::take(&mut options.steps);
        steps.push(reviewer(REVIEW_APPROVE));
        let scenario = Scenario {
            usage: Usage {
                input_tokens: 1000,
                output_tokens: 200,
                cost_usd: 0.01,
            },
            steps,
        };
        std::fs::write(dir.path().join("scenario.toml"), scenario.to_toml()).unwrap();
        let task_queue = format!("test-{name}");
        let mut config_file = base_config(
            &format!("http://127.0.0.1:{port}"),
            &task_queue,
            &repo,
            &prompts,
            &options,
        );
        for change in std::mem::take(&mut options.configure) {
            change(&mut config_file);
        }
        let text = toml::to_string(&config_file).expect("the test config serializes");
        let config =
            ChumConfig::from_toml(&text, &dir.path().join("chum.toml"), Vec::new()).expect("test config is valid");
        Harness {
            env: Some(env),
            server_options,
            dir,
            repo,
            prompts,
            config: Arc::new(config),
            task_queue,
            address: format!("http://127.0.0.1:{port}"),
            config_file,
        }
    }

    /// The worker's HTTP API on a free loopback port, with `tokens` (and the SDK's metrics at
    /// `sdk_metrics`); returns its base URL and what stops it.
    pub async fn start_api(
        &self,
        client: Client,
        tokens: worker::api::Tokens,
        sdk_metrics: Option<std::net::SocketAddr>,
    ) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the API listens");
        let addr = listener.local_addr().expect("its address");
        let mut state = worker::api::ApiState::new(client, self.config.clone(), tokens, addr).expect("api state");
        if let Some(sdk) = sdk_metrics {
            state = state.with_sdk_metrics(sdk);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(worker::api::serve(listener, Arc::new(state), async {
            let _ = stopped.await;
        }));
        (format!("http://{addr}"), stop)
    }

    /// Writes `config` as the configuration file a worker binary reads; relative paths in it
    /// start from the harness directory, as they do for `config`.
    pub fn write_config(&self, config: &RawConfig) -> PathBuf {
        self.write_config_text(&toml::to_string(config).expect("the config serializes"))
    }

    /// The configuration as a TOML table, for a file the type cannot describe (a key with a value
    /// of the wrong type, an unknown key): change it and `write_config_text(&table.to_string())`.
    pub fn config_table(&self) -> toml::Table {
        toml::Table::try_from(&self.config_file).expect("the config is a table")
    }

    /// Writes a configuration file as text, for tests of what a broken file does.
    pub fn write_config_text(&self, text: &str) -> PathBuf {
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

    /// The API's audit log, one JSON value per line (empty before anything was audited).
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.config.api.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    /// A bare copy of the project's repository at `bare` (a stand-in for its forge or a shared
    /// remote); its `file://` URL.
    pub fn bare_copy(&self, bare: &Path) -> String {
        let (repo, bare_path) = (self.repo.display().to_string(), bare.display().to_string());
        git(self.dir.path(), &["clone", "-q", "--bare", &repo, &bare_path]);
        format!("file://{bare_path}")
    }

    /// The project's checkout gets a bare copy at `bare` as `origin`; its URL.
    pub fn publish(&self, bare: &Path) -> String {
        let url = self.bare_copy(bare);
        git(&self.repo, &["remote", "add", "origin", &url]);
        url
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

    /// Whether bwrap works here; otherwise the reason is printed and the test should return
    /// early. CI sets CHUM_REQUIRE_SANDBOX=1, which makes a sandbox that cannot run a failure.
    pub fn sandbox_works(&self) -> bool {
        match chum_activities::exec::resolve(SandboxMode::Bwrap, &self.config.sandbox) {
            Ok(_) => true,
            Err(why) => {
                assert!(
                    std::env::var("CHUM_REQUIRE_SANDBOX").as_deref() != Ok("1"),
                    "CHUM_REQUIRE_SANDBOX=1 but the sandbox cannot run: {why}"
                );
                eprintln!("SKIPPED: bwrap cannot run here: {why}");
                false
            }
        }
    }

    pub fn commits_on(&self, rev: &str) -> usize {
        git(&self.repo, &["rev-list", "--count", rev]).parse().unwrap()
    }
}

/// The dev server on a free port. The SDK gives it 5 s to answer; on a loaded 2-core machine
/// running several tests at once (or while something else compiles) it sometimes needs longer,
/// so a start that times out is tried again (on a fresh port) before the test fails.
async fn start_dev_server(
    dir: &Path,
    persistent: bool,
) -> (WorkflowEnvironment<LocalServer>, LocalWorkflowEnvironmentOptions, u16) {
    let mut tries = 0;
    loop {
        tries += 1;
        let port = free_port();
        let server = LocalWorkflowEnvironmentOptions::builder()
            .server_executable(EphemeralExe::ExistingPath(temporal_binary().display().to_string()))
            .log_level(DevServerLogLevel::Error)
            .port(port)
            .maybe_database_filename(persistent.then(|| dir.join("temporal.db")))
            .extra_args(dev_server_tuning())
            .build();
        match WorkflowEnvironment::start_local(server.clone()).await {
            Ok(env) => return (env, server, port),
            Err(e) if tries < 6 => eprintln!("dev server did not start (try {tries} of 6): {e:?}"),
            Err(e) => panic!("dev server starts: {e:?}"),
        }
    }
}

/// The dynamic-config values every dev server CHUM starts gets (`scripts/lib.sh` passes the same,
/// held to this list by the tidy test). The history service reads its transfer queue (where a
/// new workflow or activity task waits before it reaches matching) at most
/// `history.transferProcessorMaxPollRPS` times a second, 20 by default, per shard; the dev server
/// has one shard, so under sustained load every task waited ~37 ms for the next read (measured
/// with ../shared/tools/temporal-floor-probe.py: 52 ms per sequential activity, 17 ms with this).
pub const DEV_SERVER_DYNAMIC_CONFIG: &[&str] = &["history.transferProcessorMaxPollRPS=10000"];

fn dev_server_tuning() -> Vec<String> {
    DEV_SERVER_DYNAMIC_CONFIG
        .iter()
        .flat_map(|value| ["--dynamic-config-value".to_string(), value.to_string()])
        .collect()
}

/// The harness's configuration before the test's changes: the dev server, the project `demo` on
/// `repo` with the options' DoD and integration, two scripted providers (different models, so
/// review is cross-model) in tiers `fast` and `other`, the sandbox and Semgrep from `.tools/`.
fn base_config(address: &str, task_queue: &str, repo: &Path, prompts: &Path, options: &HarnessOptions) -> RawConfig {
    let agent = options
        .agent_program
        .clone()
        .unwrap_or_else(|| scripted_agent().display().to_string());
    let prompts_dir = prompts.display().to_string();
    let provider = |model: &str| RawProvider {
        command: vec![
            agent.clone(),
            "-p".into(),
            "--output-format".into(),
            "json".into(),
            "--scenario".into(),
            "{config_dir}/scenario.toml".into(),
            "--record-dir".into(),
            prompts_dir.clone(),
        ],
        output: Some("claude-json".into()),
        model: Some(model.into()),
        writable: vec![prompts_dir.clone()],
        env: BTreeMap::from([("CHUM_TEST_HARNESS".to_string(), prompts_dir.clone())]),
        ..RawProvider::default()
    };
    let mut roles = BTreeMap::from([
        ("planner".to_string(), "fast".to_string()),
        ("executor".to_string(), "fast".to_string()),
        ("reviewer".to_string(), "other".to_string()),
    ]);
    if options.learner {
        roles.insert("learner".into(), "fast".into());
    }
    if options.groomer {
        roles.insert("groomer".into(), "fast".into());
    }
    RawConfig {
        state_dir: Some("state".into()),
        temporal: RawTemporal {
            address: Some(address.into()),
            task_queue: Some(task_queue.into()),
            ..RawTemporal::default()
        },
        projects: BTreeMap::from([(
            "demo".to_string(),
            RawProject {
                repo: Some(repo.file_name().expect("project dir").to_string_lossy().into_owned()),
                // `{repo}` in a DoD command stands for the project's main checkout.
                dod: options
                    .dod
                    .iter()
                    .map(|c| c.replace("{repo}", &repo.display().to_string()))
                    .collect(),
                integration: Some(options.integration.into()),
                ..RawProject::default()
            },
        )]),
        providers: BTreeMap::from([
            ("scripted-a".to_string(), provider("scripted-model-a")),
            ("scripted-b".to_string(), provider("scripted-model-b")),
        ]),
        tiers: BTreeMap::from([
            ("fast".to_string(), vec!["scripted-a".to_string()]),
            ("other".to_string(), vec!["scripted-b".to_string()]),
        ]),
        roles,
        sandbox: RawSandbox {
            bwrap: bwrap().map(|p| p.display().to_string()),
            netbridge: Some(netbridge().display().to_string()),
            ..RawSandbox::default()
        },
        semgrep: RawSemgrep {
            core: Some(semgrep_core().display().to_string()),
            ..RawSemgrep::default()
        },
        ..RawConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::DEV_SERVER_DYNAMIC_CONFIG;
    use crate::paths::workspace_root;

    /// `make demo` and `make up` start their dev server from scripts/lib.sh: it gets the same
    /// tuning as the tests' and the benchmark's, or their timings would not be the user's.
    #[test]
    fn the_scripts_dev_server_gets_the_same_dynamic_config() {
        let lib = std::fs::read_to_string(workspace_root().join("scripts/lib.sh")).expect("scripts/lib.sh");
        for value in DEV_SERVER_DYNAMIC_CONFIG {
            assert!(
                lib.contains(&format!("--dynamic-config-value {value}")),
                "scripts/lib.sh's start_dev_server should pass --dynamic-config-value {value}"
            );
        }
    }
}
