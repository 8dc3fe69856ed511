//! The learner's lesson extraction through CHUM's activity, with the scripted agent as the learner
//! role: lessons stored with provenance, exact duplicates skipped, garbage answered twice reported
//! as an error (never a panic, never a half-stored lesson).

use std::path::Path;
use std::sync::Arc;

use chum_activities::LearnerActivitiesImpl;
use chum_activities::agent::Unsupervised;
use chum_core::config::ChumConfig;
use chum_core::proto::{GateName, GateResult, LearnerInput, Outcome};
use chum_testkit::{HarnessConfig, Scenario, Step, bead, load_config, plan, run_ref, scripted_agent, small_config};

/// The scripted agent as the learner, playing `scenario` from the config directory.
fn config(dir: &Path, scenario: Scenario) -> Arc<ChumConfig> {
    std::fs::create_dir_all(dir.join("project")).unwrap();
    std::fs::write(dir.join("scenario.toml"), scenario.to_toml()).unwrap();
    let agent = scripted_agent().display().to_string();
    let mut file = small_config(
        &[
            &agent,
            "--scenario",
            "{config_dir}/scenario.toml",
            "--record-dir",
            "{config_dir}/prompts",
        ],
        &["planner", "executor", "learner"],
    );
    file.project().gates = Some(vec!["dod".into()]);
    for provider in file.providers() {
        provider.output = Some("claude-json".into());
    }
    load_config(&file, dir)
}

fn input() -> LearnerInput {
    let dod_failure = GateResult {
        gate: GateName::Dod as i32,
        round: 2,
        passed: false,
        excerpt: "ValueError: invalid literal for int() with base 10: ''".into(),
        ..GateResult::default()
    };
    LearnerInput {
        run: Some(run_ref()),
        bead: Some(bead("Add parse_numbers")),
        plan: Some(plan("parse numbers", &[])),
        outcome: Outcome::Integrated as i32,
        gate_results: vec![dod_failure],
        commit: "abc123".into(),
        ..LearnerInput::default()
    }
}

const LESSONS: &str = r#"[{"category": "antipattern", "summary": "split(\" \") keeps empty strings", "detail": "parse_numbers raised ValueError on repeated spaces", "bad_example": "p = s.split(\" \")", "good_example": "p = s.split()", "language": "python"},
 {"category": "insight", "summary": "test repeated spaces"}]"#;

#[tokio::test]
async fn lessons_are_stored_with_provenance_once() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::new(vec![
        Step::learner()
            .expect_prompt_contains("ValueError: invalid literal")
            .expect_prompt_contains("## How the run ended\nintegrated")
            .answer(LESSONS),
    ]);
    let learner = LearnerActivitiesImpl::new(config(dir.path(), scenario)).steps();
    let first = learner.extract_lessons_impl(input(), &Unsupervised).await.unwrap();
    assert!(first.error.is_empty(), "{}", first.error);
    assert_eq!(first.stored.len(), 2);
    let lesson = &first.stored[0];
    assert!(lesson.id > 0);
    assert_eq!(
        (lesson.bead_id.as_str(), lesson.attempt, lesson.commit.as_str()),
        ("tk-1", 2, "abc123")
    );
    let again = learner.extract_lessons_impl(input(), &Unsupervised).await.unwrap();
    // A retried learner (the same run: its first try may have died after storing) gets the same
    // lessons back, stored once, so they are still crystallized.
    let ids = |r: &chum_core::proto::LessonsReport| r.stored.iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first), "a retried learner stores nothing twice");
    assert_eq!(again.duplicates_skipped, 0);
    let mut other_run = input();
    if let Some(run) = other_run.run.as_mut() {
        run.run_id = "another-run".into();
    }
    let elsewhere = learner.extract_lessons_impl(other_run, &Unsupervised).await.unwrap();
    assert_eq!(
        (elsewhere.stored.len(), elsewhere.duplicates_skipped),
        (0, 2),
        "another run learning the same lessons stores nothing"
    );
    // The second time, the known lessons were in the prompt, to avoid duplicates.
    let prompt = std::fs::read_to_string(dir.path().join("prompts/learner-tk-1-1-0.prompt.md")).unwrap();
    assert!(
        prompt.contains("## Lessons already known") && prompt.contains("split(\" \") keeps empty strings"),
        "{prompt}"
    );
}

#[tokio::test]
async fn garbage_twice_is_an_error_not_a_lesson() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::new(vec![Step::learner().answer("I learned a lot today.")]);
    let learner = LearnerActivitiesImpl::new(config(dir.path(), scenario)).steps();
    let report = learner.extract_lessons_impl(input(), &Unsupervised).await.unwrap();
    assert!(report.stored.is_empty());
    assert!(report.error.contains("no JSON array"), "{}", report.error);
    let retry = std::fs::read_to_string(dir.path().join("prompts/learner-tk-1-2-0.prompt.md")).unwrap();
    assert!(
        retry.contains("Your previous answer could not be used"),
        "the retry was told why"
    );
}
