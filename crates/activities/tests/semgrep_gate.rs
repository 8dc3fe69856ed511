//! The Semgrep gate against the real engine (`semgrep-core` from the semgrep scripts/setup.sh
//! installs): validation, quarantine, and scanning changed files with the shipped pack.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chum_activities::semgrep::{FILE_TIMEOUT, SHIPPED_RULES, ValidationCache, rule_files, scan, validate_rule_file};

fn core() -> PathBuf {
    chum_testkit::semgrep_core()
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn every_shipped_rule_file_validates() {
    let dir = tempfile::tempdir().unwrap();
    let files = rule_files(dir.path(), dir.path()).unwrap();
    assert_eq!(files.len(), SHIPPED_RULES.len());
    for (i, file) in files.iter().enumerate() {
        let verdict = validate_rule_file(&core(), file, &dir.path().join(i.to_string()), TIMEOUT).await;
        assert!(verdict.is_none(), "{}: {verdict:?}", file.display());
    }
}

#[tokio::test]
async fn broken_rule_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "pattern.yaml",
            "rules:\n  - id: p\n    languages: [python]\n    severity: ERROR\n    message: m\n    pattern: eval(\n",
            "Invalid pattern",
        ),
        (
            "schema.yaml",
            "rules:\n  - id: s\n    languages: [python]\n    pattern: eval(...)\n",
            "message",
        ),
        ("yaml.yaml", "rules: [ {id: x\n", "YAML"),
        ("empty.yaml", "rules: []\n", "defines no rule"),
    ];
    for (i, (name, text, why)) in cases.iter().enumerate() {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let verdict = validate_rule_file(&core(), &file, &dir.path().join(format!("v{i}")), TIMEOUT).await;
        let reason = verdict.unwrap_or_else(|| panic!("{name} should be refused"));
        assert!(reason.contains(why), "{name}: {reason}");
    }
}

#[tokio::test]
async fn a_scan_reports_findings_on_changed_files_only_and_quarantines_bad_rules() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".semgrep")).unwrap();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join(".semgrep/broken.yml"),
        "rules:\n  - id: b\n    languages: [go]\n    severity: ERROR\n    message: m\n    pattern: fmt.Println(\n",
    )
    .unwrap();
    std::fs::write(repo.join("changed.py"), "def load(text):\n    return eval(text)\n").unwrap();
    std::fs::write(repo.join("untouched.py"), "x = eval(input())\n").unwrap();
    std::fs::write(repo.join("src/lib.rs"), "pub fn f(x: u32) -> u32 {\n    dbg!(x)\n}\n").unwrap();
    std::fs::write(repo.join("notes.txt"), "eval(me)\n").unwrap();
    let state = dir.path().join("state");
    let rules = rule_files(&state, &repo).unwrap();
    let cache = ValidationCache::default();
    let changed = vec![
        "changed.py".to_string(),
        "src/lib.rs".to_string(),
        "notes.txt".to_string(),
        "gone.py".to_string(),
    ];

    let first = scan(
        &core(),
        &cache,
        &rules,
        &repo,
        &changed,
        &dir.path().join("w1"),
        TIMEOUT,
        FILE_TIMEOUT,
    )
    .await
    .unwrap();
    let mut found: Vec<(String, String, u32)> = first
        .findings
        .iter()
        .map(|f| (f.rule_id.clone(), f.file.clone(), f.line))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("chum.python.eval-exec".to_string(), "changed.py".to_string(), 2),
            ("chum.rust.dbg-macro".to_string(), "src/lib.rs".to_string(), 2),
        ]
    );
    assert_eq!(first.files_scanned, 2, "text files and deleted files are not scanned");
    assert_eq!(first.quarantined.len(), 1);
    assert!(first.quarantined[0].file.ends_with("broken.yml"));

    // With validation cached, a scan is one engine call.
    let started = Instant::now();
    let second = scan(
        &core(),
        &cache,
        &rules,
        &repo,
        &changed,
        &dir.path().join("w2"),
        TIMEOUT,
        FILE_TIMEOUT,
    )
    .await
    .unwrap();
    eprintln!(
        "cached scan of {} files with {} rule files: {:?}",
        second.files_scanned,
        second.rule_files,
        started.elapsed()
    );
    assert_eq!(second.findings.len(), 2);
}

/// A file the engine cannot scan within its per-file limit is reported as not scanned (the gate
/// then fails closed) instead of silently passing: here the limit is made tiny for a large file.
#[tokio::test]
async fn a_file_the_engine_times_out_on_is_not_scanned_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let big: String = (0..20_000)
        .map(|i| format!("def f{i}(a):\n    return eval(a) + f{}(a)\n", i + 1))
        .collect();
    std::fs::write(repo.join("big.py"), big).unwrap();
    let rules = rule_files(&dir.path().join("state"), &repo).unwrap();
    let outcome = scan(
        &core(),
        &ValidationCache::default(),
        &rules,
        &repo,
        &["big.py".to_string()],
        &dir.path().join("w"),
        TIMEOUT,
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert_eq!(outcome.not_scanned.len(), 1, "{:?}", outcome.not_scanned);
    assert_eq!(outcome.not_scanned[0].0, "big.py");
    assert!(
        outcome.not_scanned[0].1.contains("Timeout"),
        "{:?}",
        outcome.not_scanned
    );
}

/// With every rule file quarantined (here: an engine that cannot read any of them), the gate has
/// checked nothing and fails closed, saying so, instead of passing.
#[tokio::test]
async fn a_scan_with_every_rule_quarantined_fails_closed() {
    use chum_activities::SharkActivitiesImpl;
    use chum_core::proto::SemgrepRequest;
    use chum_testkit::{HarnessConfig, load_config, run_ref, small_config};
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("project");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| chum_testkit::git(&repo, args);
    std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "initial"]);
    // An engine that understands no rule file: every one is quarantined.
    let broken = dir.path().join("semgrep-core");
    std::fs::write(&broken, "#!/bin/sh\necho 'cannot load rules' >&2\nexit 2\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut file = small_config(&["/bin/true"], &["planner", "executor"]);
    let project = file.project();
    project.gates = Some(vec!["semgrep".into()]);
    project.sandbox = Some("none".into());
    file.semgrep.core = Some(broken.display().to_string());
    let config = load_config(&file, dir.path());
    let project = config.project("demo").unwrap().clone();
    let wt = chum_activities::repo::prepare_worktree(&project, "tk-1", 1, 0)
        .await
        .unwrap();
    std::fs::write(wt.path.join("calc.py"), "def add(a, b):\n    return eval('a + b')\n").unwrap();
    chum_activities::repo::stage_changes(&wt.git, &wt.base_commit)
        .await
        .unwrap();
    let report = SharkActivitiesImpl::new(config)
        .steps()
        .semgrep_impl(SemgrepRequest {
            run: Some(run_ref()),
            worktree: wt.path.display().to_string(),
            changed_files: vec!["calc.py".into()],
            attempt: 1,
            ..SemgrepRequest::default()
        })
        .await
        .expect("the gate answers");
    assert!(!report.passed, "{report:?}");
    assert_eq!(report.rule_files, 0);
    assert!(!report.quarantined.is_empty());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("every rule file is quarantined")),
        "{:?}",
        report.findings
    );
}
