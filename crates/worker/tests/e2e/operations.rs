//! The worker binary as an operator runs it: `--log-format json` lines that name the bead and run
//! of every activity, and SIGHUP reloading the configuration file (what changed is logged, what
//! needs a restart is named and kept, a broken file changes nothing), with the reloaded budget
//! in force for the next run.

use chum_core::proto::{Outcome, Phase};
use chum_testkit::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_run_and_sighup_reloads_what_can_change() {
    let h = &Harness::with_steps("operations", good_work()).await;
    let path = h.write_config(&h.config_file);
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
    let mut broken = h.config_table();
    let mut budget = toml::Table::new();
    budget.insert("per_bead_usd".into(), "cheap".into());
    broken.insert("budget".into(), budget.into());
    h.write_config_text(&broken.to_string());
    worker.signal("HUP");
    let refused = worker.wait_for_line("was not reloaded", seen).await;
    assert_eq!(refused["level"], "ERROR", "{refused}");
    let message = refused["fields"]["message"].as_str().unwrap();
    assert!(message.contains("budget.per_bead_usd"), "{message}");

    // A good file: the budget applies at once; the Temporal section waits for a restart.
    let seen = worker.log().len();
    let mut edited = h.config_file.clone();
    edited.temporal.ui_url = Some("http://temporal-ui.example:8233".into());
    // Every agent answer costs $0.01 here: the planner's answer is affordable, the executor's is not.
    edited.budget.per_bead_usd = Some(0.005);
    h.write_config(&edited);
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
