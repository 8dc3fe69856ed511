//! The shared store (`[store] url = "postgres://..."`), end to end: two worker binaries, each
//! with its own dev server, project clone and state directory, share one real Postgres database.
//! A lesson learned from a bead on worker A shows up in the planner's prompt of a bead on worker
//! B. The password reaches each worker only through the variable `store.password_env` names, and
//! no log line of either worker holds it.

use chum_core::proto::{LearnerResult, Outcome, Phase};
use chum_testkit::postgres::{TestDatabase, postgres};
use chum_testkit::*;
use chum_workflows::LearnerRun;
use serde_json::json;
use temporalio_client::WorkflowGetResultOptions;

const PASSWORD_ENV: &str = "CHUM_TEST_STORE_PASSWORD";

const PARSE_PLAN: &str = r#"{"summary": "Add parse_numbers(line) to calc", "steps": ["write it", "test it"], "acceptance_criteria": ["parse_numbers('1  2') == [1, 2]"], "files": ["calc.py", "test_parse.py"]}"#;
const MULTIPLY_PLAN: &str = r#"{"summary": "Add multiply(a, b) to calc", "steps": ["write it", "test it"], "acceptance_criteria": ["multiply(2, 3) == 6"], "files": ["calc.py"]}"#;
const PARSE_TEST: &str = "import unittest\nfrom calc import parse_numbers\n\n\nclass ParseTest(unittest.TestCase):\n    def test_repeated_spaces(self):\n        self.assertEqual(parse_numbers('1  2'), [1, 2])\n";
const LESSON_SUMMARY: &str = "str.split(\" \") keeps empty strings when words are separated by several spaces";

fn calc_with(body: &str) -> String {
    format!(
        "def add(a, b):\n    return a + b\n\n\ndef parse_numbers(line):\n    return [int(x) for x in line.{body}]\n"
    )
}

/// Worker A's beads: tk-1 makes a mistake the definition of done catches, and the learner turns
/// it into a lesson (and a rule).
fn learning_steps() -> Vec<Step> {
    let lesson = json!([{
        "category": "antipattern",
        "summary": LESSON_SUMMARY,
        "detail": "parse_numbers failed with ValueError: invalid literal for int() with base 10: ''. Split on any whitespace with str.split().",
        "file_paths": ["calc.py"], "labels": ["python", "parsing"],
        "bad_example": "parts = line.split(\" \")",
        "good_example": "parts = line.split()",
        "language": "python"
    }]);
    let rule = "```yaml\nrules:\n  - id: chum-1\n    languages: [python]\n    severity: ERROR\n    message: split(\" \") keeps empty strings for repeated spaces; use split() with no argument\n    pattern: $S.split(\" \")\n```\n";
    let verdict = json!({"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": "parse_numbers('1  2') == [1, 2]", "met": true, "evidence": "`{added_line:1}`"}]});
    vec![
        Step::planner().bead("tk-1").answer(PARSE_PLAN),
        Step::executor()
            .bead("tk-1")
            .attempt(1)
            .answer("Added parse_numbers.")
            .write("calc.py", &calc_with("split(\" \")"))
            .write("test_parse.py", PARSE_TEST),
        Step::executor()
            .bead("tk-1")
            .attempt(2)
            .answer("Split on any whitespace.")
            .write("calc.py", &calc_with("split()"))
            .write("test_parse.py", PARSE_TEST),
        Step::reviewer().bead("tk-1").answer(verdict.to_string()),
        Step::learner()
            .prompt_contains("Extract lessons")
            .answer(lesson.to_string()),
        Step::learner().prompt_contains("Write one Semgrep rule").answer(rule),
    ]
}

/// The configuration of a worker on the shared store: the URL without the password, which comes
/// from `PASSWORD_ENV`.
fn on_shared_store(h: &Harness, db: &TestDatabase) -> std::path::PathBuf {
    let mut file = h.config_file.clone();
    file.store.url = Some(db.url.clone());
    file.store.password_env = Some(PASSWORD_ENV.to_string());
    h.write_config(&file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lesson_learned_on_one_worker_reaches_the_planner_on_another() {
    let Some(server) = postgres() else {
        eprintln!("skipped: no Postgres in .tools/postgres (run scripts/setup.sh)");
        return;
    };
    let db = server.fresh_database();

    // Worker A: its own dev server, clone and state directory; the bead is learned from.
    let a = Harness::start(
        "shared-store-a",
        HarnessOptions {
            steps: learning_steps(),
            learner: true,
            ..Default::default()
        },
    )
    .await;
    let worker_a = WorkerProcess::start_with(&on_shared_store(&a, &db), &[(PASSWORD_ENV, db.password)]);
    worker_a.wait_for_line("worker polling", 0).await;
    let client = a.client();
    let handle = start_shark(&client, &a.task_queue, a.input(limits())).await;
    wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    send_approve(&handle, json!({"approved": true, "by": "una"})).await;
    let first = finish(&handle, "shared_store_learned_on_a").await;
    assert_eq!(first.outcome(), Outcome::Integrated, "{first:?}");
    let learned: LearnerResult = client
        .get_workflow_handle::<LearnerRun>(first.learner_workflow_id.clone())
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the learner's result");
    assert!(learned.error.is_empty(), "{learned:?}");
    assert_eq!(learned.lessons.len(), 1, "{learned:?}");
    let log_a = worker_a.stop();

    // Worker A's own state directory has no store: the lesson is in Postgres.
    assert!(
        !a.config.state_dir.join("chum.db").exists(),
        "worker A wrote a SQLite store"
    );

    // Worker B: another dev server, clone and state directory, the same store.
    let b = Harness::start(
        "shared-store-b",
        HarnessOptions::with_steps(vec![Step::planner().bead("tk-1").answer(MULTIPLY_PLAN)]),
    )
    .await;
    let worker_b = WorkerProcess::start_with(&on_shared_store(&b, &db), &[(PASSWORD_ENV, db.password)]);
    worker_b.wait_for_line("worker polling", 0).await;
    let handle = start_shark(&b.client(), &b.task_queue, b.input(limits())).await;
    wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    let log_b = worker_b.stop();

    // What B's planner was told: the lesson A learned, with where it came from.
    let plan_prompt = b.prompt("planner", 1, 0);
    assert!(
        plan_prompt.contains("## Lessons from earlier work in this project"),
        "{plan_prompt}"
    );
    assert!(plan_prompt.contains(LESSON_SUMMARY), "{plan_prompt}");
    assert!(plan_prompt.contains("lesson #1 from bead tk-1"), "{plan_prompt}");
    assert!(
        !b.config.state_dir.join("chum.db").exists(),
        "worker B wrote a SQLite store"
    );

    // Both workers said which store they use, and neither ever wrote the password.
    for (name, log) in [("A", &log_a), ("B", &log_b)] {
        assert!(
            log.iter().any(|l| l.contains(&format!("store: {}", db.url))),
            "worker {name} did not say which store it uses: {log:#?}"
        );
        assert!(
            !log.iter().any(|l| l.contains(db.password)),
            "worker {name} logged the store's password"
        );
    }
}
