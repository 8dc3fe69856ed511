//! The worker binary as an operator runs it: `--log-format json` lines that name the bead and run
//! of every activity, and SIGHUP reloading the configuration file (what changed is logged, what
//! needs a restart is named and kept, a broken file changes nothing), with the reloaded budget
//! in force for the next run.

mod support;

use chum_core::proto::{Outcome, Phase};
use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_run_and_sighup_reloads_what_can_change() {
    let scenario = good_work_scenario("");
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
