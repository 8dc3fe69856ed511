//! Grooming end to end on a real dev server: the TacticalGroom a Shark leaves behind, and the
//! StrategicGroom started by its Temporal Schedule. The groomer is the scripted agent; everything
//! it proposes goes through validation, and only valid changes reach the backlog.

use chum_activities::store::Store;
use chum_core::proto::{GroomResult, Outcome, Phase};
use chum_testkit::*;
use chum_workflows::{StrategicGroomRun, TacticalGroomRun};
use serde_json::json;
use temporalio_client::WorkflowGetResultOptions;
use temporalio_client::schedules::{ScheduleDescriptionAction, ScheduleOverlapPolicy};

/// Seven proposals after tk-1 (multiply) lands: four valid, three that validation must refuse.
const TACTICAL_ANSWER: &str = r#"[
  {"op": "create", "title": "Add divide to calc", "description": "Found while adding multiply: calc has no divide.", "priority": 2, "issue_type": "task", "dependencies": [{"depends_on": "tk-1", "type": "discovered-from"}]},
  {"op": "update_priority", "id": "tk-3", "priority": 1},
  {"op": "append_notes", "id": "tk-3", "notes": "multiply landed in calc.py; parse_pairs can follow its test layout"},
  {"op": "add_dependency", "id": "tk-3", "depends_on": "tk-1", "type": "related"},
  {"op": "add_dependency", "id": "tk-1", "depends_on": "tk-3", "type": "related"},
  {"op": "close", "id": "tk-99", "reason": "duplicate of tk-1, fixed in commit abcdef1"},
  {"op": "update_priority", "id": "tk-3", "priority": 9}
]"#;

fn tactical_steps() -> Vec<Step> {
    let mut steps = good_work();
    steps.push(
        Step::groomer()
            .prompt_contains("A bead just finished")
            .expect_prompt_contains("tk-1: Add multiply to calc")
            .expect_prompt_contains("calc.py (+")
            .expect_prompt_contains("- tk-3 [P2 feature] Add parse_pairs to calc (ready)")
            // The repo map of the base as the bead left it, toward the files it changed.
            .expect_prompt_contains("## Repository map\n")
            .expect_prompt_contains("calc.py:\n  1: def add(a, b)\n  5: def multiply(a, b)\n")
            .answer(TACTICAL_ANSWER),
    );
    steps
}

fn bead_ids(h: &Harness) -> Vec<String> {
    std::fs::read_to_string(h.repo.join(".beads/issues.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_bead_is_groomed_and_only_valid_changes_reach_the_backlog() {
    let options = HarnessOptions {
        steps: tactical_steps(),
        groomer: true,
        ..Default::default()
    };
    let h = &Harness::start("groom-tactical", options).await;
    let (shark, groom) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "una"})).await;
            let shark = finish(&handle, "shark_then_groom").await;
            assert_eq!(shark.outcome(), Outcome::Integrated, "{shark:?}");
            assert!(shark.groom_workflow_id.starts_with("groom-demo-tk-1-"), "{shark:?}");
            let groom = client.get_workflow_handle::<TacticalGroomRun>(shark.groom_workflow_id.clone());
            let result: GroomResult = groom
                .get_result(WorkflowGetResultOptions::default())
                .await
                .expect("groom result");
            record_history(&groom, "tactical_groom").await;
            (shark, result)
        })
        .await;

    assert!(groom.error.is_empty(), "{groom:?}");
    assert_eq!((groom.applied, groom.rejected), (4, 3), "{groom:#?}");
    let reasons: Vec<&str> = groom.outcomes.iter().map(|o| o.reason.as_str()).collect();
    assert!(reasons[4].contains("cycle"), "{reasons:?}");
    assert!(reasons[5].contains("tk-99 does not exist"), "{reasons:?}");
    assert!(reasons[6].contains("priority 9 is not 0-4"), "{reasons:?}");

    // The backlog shows the valid changes, and only those.
    let created = &groom.outcomes[0].created_id;
    assert!(created.starts_with("tk-"), "{groom:?}");
    let new = h.read_bead(created);
    assert_eq!(new["title"], "Add divide to calc");
    assert_eq!(new["status"], "open");
    assert_eq!(new["dependencies"][0]["depends_on_id"], "tk-1");
    assert_eq!(new["dependencies"][0]["type"], "discovered-from");
    let tk3 = h.read_bead("tk-3");
    assert_eq!(tk3["priority"], 1);
    assert!(
        tk3["notes"]
            .as_str()
            .unwrap()
            .contains("parse_pairs can follow its test layout"),
        "{tk3}"
    );
    assert_eq!(tk3["dependencies"].as_array().unwrap().len(), 1, "{tk3}");
    let tk1 = h.read_bead("tk-1");
    assert_eq!(tk1["status"], "closed");
    assert!(
        tk1.get("dependencies").is_none_or(|d| d.as_array().unwrap().is_empty()),
        "no cycle: {tk1}"
    );
    assert_eq!(bead_ids(h).len(), 4, "one bead created, none lost");

    // Every outcome is in the store, the refused ones with their reason.
    let store = Store::open(&h.config.state_dir.join("chum.db")).unwrap();
    let log = store.recent_groom_outcomes(Some("demo"), 50).unwrap();
    assert_eq!(log.len(), 7);
    assert!(
        log.iter()
            .all(|r| r.kind == chum_core::proto::GroomKind::Tactical && r.bead_id == "tk-1")
    );
    assert_eq!(
        log.iter()
            .filter(|r| !r.outcome.applied && !r.outcome.reason.is_empty())
            .count(),
        3
    );
    assert!(shark.learner_workflow_id.is_empty(), "no learner role in this test");
}

const STRATEGIC_ANSWER: &str = r###"{"briefing": "## Top priorities\n1. tk-1 (multiply) unblocks the calculator work.\n\n## Risks\n- calc.py has no input validation.\n\n## Lessons\nNone yet.\n\n## Observations\nThe repo map shows add() only.", "mutations": [
  {"op": "create", "title": "Validate inputs in calc", "description": "add() accepts anything", "priority": 1, "issue_type": "task"},
  {"op": "update_priority", "id": "tk-3", "priority": 0},
  {"op": "close", "id": "tk-3", "reason": "not needed"}
]}"###;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strategic_groom_runs_from_its_schedule_applies_changes_and_commits_a_briefing() {
    let groomer = Step::groomer()
        .prompt_contains("strategic groomer")
        .expect_prompt_contains("calc.py:\n  1: def add(a, b)")
        .expect_prompt_contains("3 beads: 2 ready, 0 in progress, 1 closed.")
        .answer(STRATEGIC_ANSWER);
    let options = HarnessOptions {
        steps: vec![groomer],
        groomer: true,
        ..Default::default()
    }
    .with_config(|c| {
        c.groom.schedule = Some("30 5 * * 1-5".into());
        c.groom.timezone = Some("Europe/Berlin".into());
    });
    let h = &Harness::start("groom-strategic", options).await;
    let before = h.commits_on("main");
    let result = h
        .with_worker(|client| async move {
            let lines = worker::ensure_strategic_schedules(&client, &h.config).await;
            assert_eq!(
                lines,
                ["created schedule strategic-groom-demo: \"30 5 * * 1-5\" (Europe/Berlin)"]
            );
            // A restarted worker finds the schedule and brings it up to date instead of failing.
            let again = worker::ensure_strategic_schedules(&client, &h.config).await;
            assert_eq!(
                again,
                ["schedule strategic-groom-demo: \"30 5 * * 1-5\" (Europe/Berlin)"]
            );

            let schedule = client.get_schedule_handle("strategic-groom-demo");
            let described = schedule.describe(Default::default()).await.expect("described");
            match described.action() {
                ScheduleDescriptionAction::StartWorkflow(start) => {
                    assert_eq!(start.workflow_type(), "StrategicGroom");
                    assert_eq!(start.task_queue(), h.task_queue);
                }
                other => panic!("unexpected action {other:?}"),
            }
            let spec = described
                .raw()
                .schedule
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .cloned()
                .unwrap_or_default();
            assert_eq!(spec.timezone_name, "Europe/Berlin");
            assert!(!described.future_action_times().is_empty());

            // Run it now, as the schedule would on its day.
            schedule
                .trigger(ScheduleOverlapPolicy::Skip, Default::default())
                .await
                .expect("triggered");
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            let started = loop {
                let d = schedule.describe(Default::default()).await.expect("described");
                if let Some(action) = d.recent_actions().first() {
                    break action.workflow_id.clone();
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the schedule never started a groom"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            };
            assert!(started.starts_with("strategic-groom-demo"), "{started}");
            let groom = client.get_workflow_handle::<StrategicGroomRun>(started);
            let result: GroomResult = groom
                .get_result(WorkflowGetResultOptions::default())
                .await
                .expect("groom result");
            record_history(&groom, "strategic_groom").await;
            schedule.delete(Default::default()).await.expect("deleted");
            result
        })
        .await;

    assert!(result.error.is_empty(), "{result:?}");
    assert_eq!((result.applied, result.rejected), (2, 1), "{result:#?}");
    assert!(result.outcomes[2].reason.contains("cite evidence"), "{result:?}");
    let created = &result.outcomes[0].created_id;
    assert_eq!(h.read_bead(created)["title"], "Validate inputs in calc");
    assert_eq!(h.read_bead("tk-3")["priority"], 0);
    assert_eq!(h.read_bead("tk-3")["status"], "open");

    // The briefing is committed once, on the base branch (merge policy).
    let briefing = result.briefing.clone().expect("a briefing report");
    assert_eq!(briefing.path, ".beads/briefing.md");
    assert!(briefing.merged, "{briefing:?}");
    assert_eq!(h.commits_on("main"), before + 1);
    let text = git(&h.repo, &["show", "main:.beads/briefing.md"]);
    assert!(text.contains("# Backlog briefing: demo"), "{text}");
    assert!(text.contains("## Top priorities\n1. tk-1 (multiply)"), "{text}");
    assert!(
        text.contains(&format!("- create \"Validate inputs in calc\" → {created}")),
        "{text}"
    );
    assert!(
        text.contains("## Proposed and refused\n- close tk-3 (\"not needed\"): a close must cite evidence"),
        "{text}"
    );
    let message = git(&h.repo, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("Chum-Briefing: strategic-groom-demo"), "{message}");
}
