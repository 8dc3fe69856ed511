//! The four checks a crystallized rule must pass, with the real semgrep CLI (installed into
//! `.tools/venv` by scripts/setup.sh): valid, matches the bad example, not the good one, quiet on
//! the base branch. Each way to fail is named in the rejection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chum_activities::learner::check_rule;
use chum_core::proto::Lesson;

fn cli() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/semgrep");
    assert!(path.exists(), "{} missing: run scripts/setup.sh", path.display());
    path
}

fn lesson() -> Lesson {
    Lesson {
        id: 7,
        category: "antipattern".into(),
        summary: "str.split(\" \") keeps empty words for repeated spaces".into(),
        bad_example: "words = title.split(\" \")".into(),
        good_example: "words = title.split()".into(),
        language: "python".into(),
        ..Lesson::default()
    }
}

fn rule(pattern: &str) -> String {
    format!(
        "rules:\n  - id: chum-7\n    languages: [python]\n    severity: ERROR\n    message: use str.split() without an argument\n    pattern: {pattern}\n"
    )
}

async fn check(yaml: &str, base_files: &[(&str, &str)]) -> Result<Vec<String>, (Vec<String>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    for (name, text) in base_files {
        std::fs::write(base.join(name), text).unwrap();
    }
    check_rule(
        &cli(),
        yaml,
        &lesson(),
        "chum-7",
        &base,
        &dir.path().join("work"),
        Duration::from_secs(120),
    )
    .await
}

#[tokio::test]
async fn a_rule_that_passes_all_four_checks_is_accepted() {
    let checks = check(&rule("$S.split(\" \")"), &[("ok.py", "words = text.split()\n")])
        .await
        .expect("accepted");
    assert_eq!(checks.len(), 4, "{checks:?}");
    assert!(checks.iter().all(|c| c.ends_with(": ok")), "{checks:?}");
}

#[tokio::test]
async fn invalid_rules_are_rejected_with_semgreps_reason() {
    let (_, reason) = check(&rule("$S.split(\" \""), &[]).await.unwrap_err();
    assert!(reason.starts_with("not a valid rule"), "{reason}");
    let no_message =
        "rules:\n  - id: chum-7\n    languages: [python]\n    severity: ERROR\n    pattern: $S.split(\" \")\n";
    let (_, reason) = check(no_message, &[]).await.unwrap_err();
    assert!(
        reason.starts_with("not a valid rule") && reason.contains("message"),
        "{reason}"
    );
    let (_, reason) = check(&rule("$S.split(\" \")").replace("chum-7", "split-rule"), &[])
        .await
        .unwrap_err();
    assert!(reason.contains("id must be chum-7"), "{reason}");
}

#[tokio::test]
async fn a_rule_must_match_the_bad_example_and_not_the_good_one() {
    let (checks, reason) = check(&rule("$S.rsplit(\" \")"), &[]).await.unwrap_err();
    assert_eq!(reason, "it does not match the bad example");
    assert_eq!(checks.last().map(String::as_str), Some("matches the bad example: no"));
    let (_, reason) = check(&rule("$S.split(...)"), &[]).await.unwrap_err();
    assert_eq!(reason, "it matches the good example too");
}

#[tokio::test]
async fn a_rule_that_fires_on_the_base_branch_is_rejected() {
    let (checks, reason) = check(
        &rule("$S.split(\" \")"),
        &[("legacy.py", "parts = line.split(\" \")\n")],
    )
    .await
    .unwrap_err();
    assert!(
        reason.contains("fires 1 time(s) on the base branch (legacy.py:1)"),
        "{reason}"
    );
    assert_eq!(checks.len(), 4);
}
