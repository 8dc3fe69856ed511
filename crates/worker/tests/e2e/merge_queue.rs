//! The merge queue end to end: main only ever moves to a tree whose gates passed on exactly it.
//! Two beads, each green on its own, red together (one renames a function the other starts
//! calling): the second one's work is checked again on top of the first, fails there, goes back
//! for another attempt with the real output, and lands green. Every commit on main's first-parent
//! history passes the definition of done when checked out afresh.

use std::time::Duration;

use chum_core::proto::{GateName, Outcome, Phase, SharkInput};
use chum_testkit::*;
use serde_json::json;

/// tk-1 renames add to plus (and its test); tk-3 adds pairs.py, which calls add.
const PLUS_CALC: &str = "def plus(a, b):\n    return a + b\n";
const PLUS_TEST: &str = "import unittest\nfrom calc import plus\n\n\nclass PlusTest(unittest.TestCase):\n    def test_plus(self):\n        self.assertEqual(plus(2, 3), 5)\n\n\nif __name__ == '__main__':\n    unittest.main()\n";
const PAIRS_WITH_ADD: &str =
    "from calc import add\n\n\ndef total_of_pairs(pairs):\n    return sum(add(a, b) for a, b in pairs)\n";
const PAIRS_WITH_PLUS: &str =
    "from calc import plus\n\n\ndef total_of_pairs(pairs):\n    return sum(plus(a, b) for a, b in pairs)\n";
const PAIRS_TEST: &str = "import unittest\nfrom pairs import total_of_pairs\n\n\nclass PairsTest(unittest.TestCase):\n    def test_total(self):\n        self.assertEqual(total_of_pairs([(1, 2), (3, 4)]), 10)\n\n\nif __name__ == '__main__':\n    unittest.main()\n";

/// Each plan names the files it will touch (no overlap: both may execute at once).
const RENAME_PLAN: &str = r#"{"summary": "Rename add to plus", "steps": ["rename add in calc.py", "its test"], "acceptance_criteria": ["plus(2, 3) == 5", "python3 -m unittest passes"], "files": ["calc.py", "test_calc.py"]}"#;
const PAIRS_PLAN: &str = r#"{"summary": "Add total_of_pairs", "steps": ["add pairs.py", "its test"], "acceptance_criteria": ["total_of_pairs([(1, 2), (3, 4)]) == 10", "python3 -m unittest passes"], "files": ["pairs.py", "test_pairs.py"]}"#;

fn steps() -> Vec<Step> {
    vec![
        Step::planner().bead("tk-1").answer(RENAME_PLAN),
        Step::planner().bead("tk-3").answer(PAIRS_PLAN),
        Step::executor()
            .bead("tk-1")
            .answer("Renamed add to plus.")
            .write("calc.py", PLUS_CALC)
            .write("test_calc.py", PLUS_TEST),
        // tk-3 works on the old main (add still exists), green there, and finishes only once the
        // test says so: after tk-1 has landed.
        Step::executor()
            .bead("tk-3")
            .attempt(1)
            .shell(r#"while [ ! -e "$CHUM_TEST_HARNESS/go-tk-3" ]; do sleep 0.1; done"#)
            .answer("Added total_of_pairs.")
            .write("pairs.py", PAIRS_WITH_ADD)
            .write("test_pairs.py", PAIRS_TEST),
        // Its redo is told what failed on the new main, and uses plus.
        Step::executor()
            .bead("tk-3")
            .attempt(2)
            .expect_prompt_contains("moved on")
            .expect_prompt_contains("ImportError")
            .answer("Use plus.")
            .write("pairs.py", PAIRS_WITH_PLUS)
            .write("test_pairs.py", PAIRS_TEST),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_is_red_on_a_moved_base_is_redone_and_main_stays_green() {
    // Two execution slots: tk-1 executes while tk-3 still does. The review runs again on a moved
    // base too.
    let h = &Harness::start(
        "queue-semantic",
        HarnessOptions::with_steps(steps()).with_config(|c| {
            c.project().concurrency = Some(2);
            c.project().rereview_on_update = Some(true);
        }),
    )
    .await;
    let (first, second, status, cli) = h
        .with_worker(|client| async move {
            let bead = |id: &str| SharkInput {
                bead_id: id.into(),
                ..h.input(limits())
            };
            let slow = start_shark(&client, &h.task_queue, bead("tk-3")).await;
            let quick = start_shark(&client, &h.task_queue, bead("tk-1")).await;
            wait_for_phase(&slow, Phase::AwaitingApproval, 1).await;
            wait_for_phase(&quick, Phase::AwaitingApproval, 1).await;
            // tk-3 starts first, on main as it is; tk-1 overtakes it and lands meanwhile.
            send_approve(&slow, json!({"approved": true, "by": "ana"})).await;
            wait_for_phase(&slow, Phase::Executing, 1).await;
            send_approve(&quick, json!({"approved": true, "by": "ana"})).await;
            let first = finish(&quick, "queue_landed").await;
            std::fs::write(h.prompts.join("go-tk-3"), "").unwrap();
            let second = tokio::time::timeout(Duration::from_secs(120), finish(&slow, "queue_reverified_redo"))
                .await
                .expect("tk-3 finishes");
            // `chum queue` says the same, for people and scripts (run off the worker's thread: the
            // query needs it to answer).
            let config = h.write_config(&h.config_file);
            let cli = tokio::task::spawn_blocking(move || {
                (
                    run_chum(&config, &["queue"]),
                    run_chum(&config, &["-o", "json", "queue"]),
                )
            })
            .await
            .unwrap();
            let coordinator = client.get_workflow_handle::<chum_workflows::CoordinatorRun>("merge-queue-demo");
            record_history(&coordinator, "coordinator_turns").await;
            (first, second, coordinator_status(&client, "demo").await, cli)
        })
        .await;
    let ((code, text, err), (json_code, json, _)) = cli;
    assert_eq!((code, json_code), (0, 0), "{err}");
    assert!(
        text.contains("merge-queue-demo") && text.contains("2 landed, 1 not landed") && text.contains("nobody waits"),
        "{text}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("chum queue -o json is JSON");
    assert_eq!(parsed["landed"], 2, "{json}");
    assert_eq!(first.outcome(), Outcome::Integrated, "{first:?}");
    assert_eq!(second.outcome(), Outcome::Integrated, "{second:?}");
    // tk-3's first attempt passed its own gates, then failed the DoD again on top of tk-1.
    assert_eq!(second.attempts, 2, "{second:?}");
    let dods = gates_of(&second, GateName::Dod);
    assert!(dods[0].passed && dods[0].verification == 0, "{dods:?}");
    let reverified = dods
        .iter()
        .find(|d| d.verification > 0)
        .expect("checked again on the moved main");
    assert!(!reverified.passed && reverified.round == 1, "{reverified:?}");
    assert!(reverified.excerpt.contains("ImportError"), "{reverified:?}");
    // `rereview_on_update`: the reviewer saw the updated diff first, in its own artifact.
    let rereviewed = gates_of(&second, GateName::Review)
        .into_iter()
        .find(|r| r.verification > 0)
        .expect("reviewed again on the moved main");
    assert!(
        rereviewed.passed && rereviewed.artifact.contains("review-1-v1"),
        "{rereviewed:?}"
    );
    // Both landed, tk-1 first; tk-3's redo stands on it.
    let log = git(&h.repo, &["log", "--first-parent", "--format=%s", "main"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 3, "{log}");
    assert!(
        subjects[0].starts_with("tk-3: ") && subjects[1].starts_with("tk-1: "),
        "{log}"
    );
    assert_eq!(git(&h.repo, &["show", "main:pairs.py"]), PAIRS_WITH_PLUS.trim_end());
    assert_every_commit_is_green(&h.repo, "main");
    // The queue says what it did.
    assert_eq!(status.landed, 2, "{status:?}");
    assert_eq!(status.not_landed, 1, "{status:?}");
    assert!(status.reverifications >= 1, "{status:?}");
    assert!(status.holder.is_none() && status.waiting.is_empty(), "{status:?}");
}
