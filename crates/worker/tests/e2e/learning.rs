//! The proof of the learning loop, end to end on a real dev server with real git, real semgrep and
//! the scripted agent: bead tk-1's first attempt makes a mistake that only the definition of done
//! catches; the ContinuousLearner turns it into a lesson and a Semgrep rule that passes all four
//! checks and lands in the repository; bead tk-3's first attempt makes the same mistake, and
//! Semgrep stops it before the definition of done runs.

use chum_core::proto::GateName;
use chum_core::proto::{LearnerResult, Outcome, Phase, SharkInput};
use chum_testkit::*;
use chum_workflows::LearnerRun;
use serde_json::json;
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowGetResultOptions};

const PARSE_PLAN: &str = r#"{"summary": "Add parse_numbers(line) to calc", "steps": ["write it", "test it"], "acceptance_criteria": ["parse_numbers('1  2') == [1, 2]"], "files": ["calc.py", "test_parse.py"]}"#;
const PAIRS_PLAN: &str = r#"{"summary": "Add parse_pairs(line) to calc", "steps": ["write it", "test it"], "acceptance_criteria": ["parse_pairs('a=1  b=2') == [('a', '1'), ('b', '2')]"], "files": ["pairs.py", "test_pairs.py"]}"#;

const PARSE_TEST: &str = "import unittest\nfrom calc import parse_numbers\n\n\nclass ParseTest(unittest.TestCase):\n    def test_repeated_spaces(self):\n        self.assertEqual(parse_numbers('1  2'), [1, 2])\n";
const PAIRS_TEST: &str = "import unittest\nfrom pairs import parse_pairs\n\n\nclass PairsTest(unittest.TestCase):\n    def test_pairs(self):\n        self.assertEqual(parse_pairs('a=1  b=2'), [('a', '1'), ('b', '2')])\n";

fn calc_with(body: &str) -> String {
    format!(
        "def add(a, b):\n    return a + b\n\n\ndef parse_numbers(line):\n    return [int(x) for x in line.{body}]\n"
    )
}

fn pairs_with(body: &str) -> String {
    format!("def parse_pairs(line):\n    return [tuple(p.split('=')) for p in line.{body}]\n")
}

fn review(criterion: &str, bead: &str) -> Step {
    let verdict = json!({"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": criterion, "met": true, "evidence": "`{added_line:1}`"}]});
    Step::reviewer().bead(bead).answer(verdict.to_string())
}

fn steps() -> Vec<Step> {
    let lesson = json!([{
        "category": "antipattern",
        "summary": "str.split(\" \") keeps empty strings when words are separated by several spaces",
        "detail": "parse_numbers failed with ValueError: invalid literal for int() with base 10: ''. Split on any whitespace with str.split().",
        "file_paths": ["calc.py"], "labels": ["python", "parsing"],
        "bad_example": "parts = line.split(\" \")",
        "good_example": "parts = line.split()",
        "language": "python"
    }]);
    let rule = "Here is the rule:\n```yaml\nrules:\n  - id: chum-1\n    languages: [python]\n    severity: ERROR\n    message: split(\" \") keeps empty strings for repeated spaces; use split() with no argument\n    pattern: $S.split(\" \")\n```\n";
    vec![
        Step::planner().bead("tk-1").answer(PARSE_PLAN),
        Step::planner().bead("tk-3").answer(PAIRS_PLAN),
        // tk-1: the mistake, caught only by the definition of done; then the fix.
        Step::executor()
            .bead("tk-1")
            .attempt(1)
            .answer("Added parse_numbers.")
            .write("calc.py", &calc_with("split(\" \")"))
            .write("test_parse.py", PARSE_TEST),
        Step::executor()
            .bead("tk-1")
            .attempt(2)
            .expect_prompt_contains("ValueError")
            .answer("Split on any whitespace.")
            .write("calc.py", &calc_with("split()"))
            .write("test_parse.py", PARSE_TEST),
        // tk-3: the same mistake; the learned rule must send it back before the DoD.
        Step::executor()
            .bead("tk-3")
            .handoff(0)
            .answer("Added parse_pairs.")
            .write("pairs.py", &pairs_with("split(\" \")"))
            .write("test_pairs.py", PAIRS_TEST),
        Step::executor()
            .bead("tk-3")
            .handoff(1)
            .expect_prompt_contains("chum-1 pairs.py:2")
            .answer("Split on any whitespace.")
            .write("pairs.py", &pairs_with("split()"))
            .write("test_pairs.py", PAIRS_TEST),
        review("parse_numbers('1  2') == [1, 2]", "tk-1"),
        review("parse_pairs('a=1  b=2') == [('a', '1'), ('b', '2')]", "tk-3"),
        // The learner: lessons from the journal (it must have seen the real DoD failure), then a rule.
        Step::learner()
            .prompt_contains("Extract lessons")
            .expect_prompt_contains("ValueError: invalid literal for int()")
            .answer(lesson.to_string()),
        Step::learner().prompt_contains("Write one Semgrep rule").answer(rule),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistake_caught_by_the_dod_becomes_a_rule_that_stops_it_next_time() {
    // The DoD sleeps 2 s, standing in for a real test suite: the time Semgrep saves is the point.
    let options = HarnessOptions {
        steps: steps(),
        dod: vec!["sleep 2 && python3 -m unittest -q".into()],
        learner: true,
        ..Default::default()
    };
    let h = &Harness::start("learning", options).await;
    let (first, learned, second) = h
        .with_worker(|client| async move {
            // Bead tk-1: the DoD catches the mistake, the second attempt passes, the learner starts.
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "una"})).await;
            let first = finish(&handle, "learned_from_dod_failure").await;

            // The learner outlives the Shark; wait for its result.
            assert!(!first.learner_workflow_id.is_empty(), "{first:?}");
            let learner = client.get_workflow_handle::<LearnerRun>(first.learner_workflow_id.clone());
            let learned: LearnerResult = learner
                .get_result(WorkflowGetResultOptions::default())
                .await
                .expect("learner result");
            if std::env::var("CHUM_RECORD_HISTORIES").as_deref() == Ok("1") {
                let json = learner
                    .fetch_history(WorkflowFetchHistoryOptions::default())
                    .to_json()
                    .await
                    .unwrap();
                std::fs::write(
                    workspace_root().join("crates/workflows/tests/histories/current/learner_rule_accepted.json"),
                    json,
                )
                .unwrap();
            }

            // Bead tk-3: the same mistake, stopped by the new rule.
            let input = SharkInput {
                bead_id: "tk-3".into(),
                ..h.input(limits())
            };
            let handle = start_shark(&client, &h.task_queue, input).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "una"})).await;
            let second = finish(&handle, "learned_rule_stops_mistake").await;
            (first, learned, second)
        })
        .await;

    // Bead 1: the DoD caught it on attempt 1.
    assert_eq!(first.outcome(), Outcome::Integrated, "{first:?}");
    assert_eq!(first.attempts, 2);
    let dod_catch = first
        .gate_results
        .iter()
        .find(|g| g.gate() == GateName::Dod && !g.passed)
        .expect("the DoD caught it");
    assert!(dod_catch.excerpt.contains("ValueError"), "{}", dod_catch.excerpt);

    // The lesson, with provenance, and the rule that passed the four checks.
    assert!(learned.error.is_empty(), "{learned:?}");
    assert_eq!(learned.lessons.len(), 1);
    let lesson = &learned.lessons[0];
    assert_eq!(
        (lesson.bead_id.as_str(), lesson.attempt, lesson.commit.as_str()),
        ("tk-1", 1, first.commit.as_str())
    );
    assert_eq!(learned.rules.len(), 1);
    let rule = &learned.rules[0];
    assert!(rule.accepted, "{rule:?}");
    assert_eq!(rule.rule_id, "chum-1");
    assert_eq!(rule.checks.len(), 4, "{:?}", rule.checks);
    assert!(rule.merged);

    // The repository: the rule, its fixture, and the commit that added them, on main.
    let yaml = std::fs::read_to_string(h.repo.join(".semgrep/chum-1.yaml")).unwrap();
    assert!(
        yaml.contains("from lesson #1 (bead tk-1") && yaml.contains("id: chum-1"),
        "{yaml}"
    );
    let fixture = std::fs::read_to_string(h.repo.join(".semgrep/chum-1.py")).unwrap();
    assert!(
        fixture.contains("# ruleid: chum-1\nparts = line.split(\" \")"),
        "{fixture}"
    );
    let added = git(
        &h.repo,
        &["log", "--format=%s", "-n", "1", "--", ".semgrep/chum-1.yaml"],
    );
    assert!(added.starts_with("Add Semgrep rule chum-1"), "{added}");
    assert_eq!(
        git(
            &h.repo,
            &["log", "--format=%H", "-n", "1", "--", ".semgrep/chum-1.yaml"]
        ),
        rule.commit
    );
    let test = std::process::Command::new(workspace_root().join(".tools/venv/bin/semgrep"))
        .args([
            "--test",
            "--metrics=off",
            "--disable-version-check",
            "--quiet",
            ".semgrep",
        ])
        .current_dir(&h.repo)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "the committed fixture passes semgrep --test: {}",
        String::from_utf8_lossy(&test.stdout)
    );

    // Bead 2: Semgrep stopped the same mistake before the DoD ran, and cost less than the DoD run
    // it avoided.
    assert_eq!(second.outcome(), Outcome::Integrated, "{second:?}");
    assert_eq!(second.attempts, 1, "no attempt was lost to the mistake");
    let stop = second
        .gate_results
        .iter()
        .find(|g| g.gate() == GateName::Semgrep && !g.passed)
        .expect("semgrep stopped it");
    assert!(stop.excerpt.contains("chum-1"), "{}", stop.excerpt);
    assert!(
        !second
            .gate_results
            .iter()
            .any(|g| g.gate() == GateName::Dod && g.handoff == stop.handoff),
        "the DoD did not run on the mistake"
    );
    assert!(
        stop.duration_ms < dod_catch.duration_ms,
        "semgrep stop {} ms vs the DoD run it avoided {} ms",
        stop.duration_ms,
        dod_catch.duration_ms
    );
    eprintln!(
        "semgrep stopped the repeated mistake in {} ms; the DoD needed {} ms to catch it",
        stop.duration_ms, dod_catch.duration_ms
    );
    // Retiring the rule removes it in a commit that says why; the store keeps it as retired.
    let retired = chum_activities::learner::retire_rule(&h.config, "chum-1", "too broad for generated code")
        .await
        .unwrap();
    assert!(retired.merged && retired.problem.is_empty(), "{retired:?}");
    assert!(!h.repo.join(".semgrep/chum-1.yaml").exists() && !h.repo.join(".semgrep/chum-1.py").exists());
    let message = git(&h.repo, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("Retire Semgrep rule chum-1: too broad for generated code"),
        "{message}"
    );
    let again = chum_activities::learner::retire_rule(&h.config, "chum-1", "too broad for generated code")
        .await
        .unwrap();
    assert_eq!(again.commit, retired.commit, "retiring twice makes one commit");
    let store = chum_activities::store::Store::open(&h.config.state_dir.join("chum.db")).unwrap();
    assert_eq!(
        store.rule("chum-1").unwrap().unwrap().status,
        chum_activities::store::RuleStatus::Retired
    );
    // The lesson reached the second bead's planner, with its provenance.
    let plan_prompt = std::fs::read_to_string(h.prompts.join("planner-tk-3-1-0.prompt.md")).unwrap();
    assert!(plan_prompt.contains("lesson #1 from bead tk-1"), "{plan_prompt}");
    // And its executor's.
    let execute_prompt = std::fs::read_to_string(h.prompts.join("executor-tk-3-1-0.prompt.md")).unwrap();
    assert!(execute_prompt.contains("lesson #1 from bead tk-1"), "{execute_prompt}");
}
