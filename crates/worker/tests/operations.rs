//! The worker binary as an operator runs it: `--log-format json` lines that name the bead and run
//! of every activity, and SIGHUP reloading the configuration file (what changed is logged, what
//! needs a restart is named and kept, a broken file changes nothing), with the reloaded budget
//! in force for the next run.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chum_core::proto::{Outcome, Phase};
use serde_json::{Value, json};
use support::*;

/// The worker binary with its stderr (the log) collected line by line.
struct WorkerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    fn start(config: &Path) -> WorkerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .env("CHUM__API__BIND", format!("127.0.0.1:{}", free_port()))
            .env("CHUM__DISPATCHER__ENABLED", "false")
            .env_remove("RUST_LOG")
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

    fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for a log line containing `needle` that was not there before (`seen` lines).
    async fn wait_for_line(&self, needle: &str, seen: usize) -> Value {
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

    fn stop(mut self) -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_run_and_sighup_reloads_what_can_change() {
    let scenario = format!(
        "{}{}",
        planner_step(None, GOOD_PLAN, ""),
        executor_step(None, GOOD_CALC, "")
    );
    let h = &Harness::with_scenario("operations", scenario).await;
    let path = h.write_config(&h.config_text);
    let worker = WorkerProcess::start(&path);
    worker.wait_for_line("worker polling", 0).await;
    let client = h.client();

    // One bead, approved and integrated by the worker binary.
    let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
    wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    send_approve(&handle, json!({"approved": true, "by": "ops"})).await;
    let result = handle.get_result(Default::default()).await.expect("the run ends");
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");

    // A broken file: the error names it, the running configuration stays.
    let seen = worker.log().len();
    std::fs::write(
        &path,
        format!("{}\n[budget]\nper_bead_usd = \"cheap\"\n", h.config_text),
    )
    .unwrap();
    worker.signal("HUP");
    let refused = worker.wait_for_line("was not reloaded", seen).await;
    assert_eq!(refused["level"], "ERROR", "{refused}");
    let message = refused["fields"]["message"].as_str().unwrap();
    assert!(message.contains("budget.per_bead_usd"), "{message}");

    // A good file: the budget applies at once; the Temporal section waits for a restart.
    let seen = worker.log().len();
    let edited = h.config_text.replace(
        "[temporal]\n",
        "[temporal]\n            ui_url = \"http://temporal-ui.example:8233\"\n",
    );
    assert_ne!(edited, h.config_text);
    // Every agent answer costs $0.01 here: the planner's answer is affordable, the executor's is not.
    std::fs::write(&path, format!("{edited}\n[budget]\nper_bead_usd = 0.005\n")).unwrap();
    worker.signal("HUP");
    let reloaded = worker.wait_for_line("configuration reloaded", seen).await;
    assert_eq!(reloaded["fields"]["applied"], "[\"[budget]\"]", "{reloaded}");
    assert_eq!(reloaded["fields"]["needs_restart"], "[\"[temporal]\"]", "{reloaded}");

    let mut input = h.input(limits());
    input.bead_id = "tk-3".into();
    let handle = start_shark(&client, &h.task_queue, input).await;
    wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    send_approve(&handle, json!({"approved": true, "by": "ops"})).await;
    let result = handle.get_result(Default::default()).await.expect("the run ends");
    assert_eq!(
        result.outcome(),
        Outcome::BudgetExhausted,
        "the reloaded cap stops the second bead: {result:?}"
    );

    // Every line is JSON; every line an activity wrote names its activity, project, bead and run.
    let log = worker.stop();
    let mut activity_lines = 0;
    let mut beads = std::collections::BTreeSet::new();
    for line in &log {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let target = entry["target"].as_str().unwrap_or_default();
        if !target.starts_with("chum_activities") {
            continue;
        }
        activity_lines += 1;
        let span = &entry["span"];
        assert_eq!(span["name"], "activity", "{line}");
        for field in ["activity", "project", "bead", "workflow", "run"] {
            assert!(
                span[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field} missing: {line}"
            );
        }
        assert!(
            span["workflow"]
                .as_str()
                .unwrap()
                .contains(span["bead"].as_str().unwrap()),
            "{line}"
        );
        beads.insert(span["bead"].as_str().unwrap().to_string());
    }
    assert!(activity_lines >= 4, "too few activity lines to mean anything: {log:#?}");
    assert_eq!(beads, ["tk-1", "tk-3"].map(String::from).into(), "{log:#?}");
}
