//! The store's behaviour, table by table: every test runs against a real SQLite file and against
//! a real Postgres database (a fresh one per test on the test kit's server).

use super::*;
use chum_core::proto::{GroomKind, Lesson, MutationOutcome, RunRef, SharkResult};

/// Each named test (a `fn(&StoreTarget)` below) as `sqlite::<name>` and `postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&super::StoreTarget::Sqlite(dir.path().join("chum.db")));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let Some(server) = chum_testkit::postgres::postgres() else {
                        eprintln!("skipped: no Postgres in .tools/postgres (run scripts/setup.sh)");
                        return;
                    };
                    let db = server.fresh_database();
                    super::$name(&super::StoreTarget::Postgres(chum_core::config::PostgresUrl::new(
                        db.url_with_password,
                        None,
                    )));
                }
            )*
        }
    };
}

on_both_backends!(
    lessons_are_stored_once_with_provenance_and_found_by_text,
    fts_syntax_in_user_text_never_errors,
    unused_lessons_expire_from_prompts_but_stay_in_the_store,
    rules_are_recorded_with_their_fate,
    reopening_keeps_data_and_does_not_migrate_twice,
    groom_outcomes_are_recorded_once_per_run_and_index,
    usage_is_summed_by_bead_project_day_and_provider,
    run_totals_count_every_run_ever_recorded_and_a_rerecorded_run_once,
    runs_recorded_before_the_totals_tables_are_counted_from_their_json,
    notifications_are_recorded_once_per_event_and_target,
    a_reservation_is_checked_and_settled_in_one_transaction,
    audit_entries_are_kept_newest_first,
);

fn lesson(summary: &str) -> Lesson {
    Lesson {
        project: "demo".into(),
        bead_id: "tk-1".into(),
        workflow_id: "shark-demo-tk-1".into(),
        run_id: "r1".into(),
        attempt: 1,
        category: "antipattern".into(),
        summary: summary.into(),
        detail: "str.split with a single space keeps empty words".into(),
        file_paths: vec!["textkit/slug.py".into()],
        labels: vec!["python".into()],
        bad_example: "words = title.split(\" \")".into(),
        good_example: "words = title.split()".into(),
        language: "python".into(),
        ..Lesson::default()
    }
}

fn lessons_are_stored_once_with_provenance_and_found_by_text(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
    assert_eq!(MIGRATIONS.len(), schema::POSTGRES_MIGRATIONS.len());
    let id = store
        .insert_lesson(&lesson("split on single spaces breaks slugs"), 1_000)
        .unwrap()
        .unwrap();
    let from_another_run = Lesson {
        run_id: "r2".into(),
        ..lesson("Split on  single spaces breaks SLUGS")
    };
    assert_eq!(
        store.insert_lesson(&from_another_run, 2_000).unwrap(),
        None,
        "exact duplicate"
    );
    assert_eq!(
        store
            .insert_lesson(&lesson("split on single spaces breaks slugs"), 2_500)
            .unwrap(),
        Some(id),
        "the run that stored it, retried, gets it back"
    );
    store
        .insert_lesson(
            &Lesson {
                category: "insight".into(),
                detail: "unrelated".into(),
                ..lesson("cache the parser")
            },
            3_000,
        )
        .unwrap();
    let found = store
        .search(Some("demo"), "slugify should split titles", 5, None)
        .unwrap();
    assert_eq!(found[0].id, id);
    assert_eq!(found[0].bead_id, "tk-1");
    assert_eq!(found[0].file_paths, ["textkit/slug.py"]);
    // Words are split at any non-alphanumeric character: a path's parts are words, and a
    // snake_case name is its words in a row.
    let in_a_path = store.search(Some("demo"), "the textkit module", 5, None).unwrap();
    assert!(in_a_path.iter().any(|l| l.id == id), "{in_a_path:?}");
    let phrase = store.search(Some("demo"), "breaks_slugs", 5, None).unwrap();
    assert_eq!(phrase.iter().map(|l| l.id).collect::<Vec<_>>(), [id]);
    assert!(
        store.search(Some("demo"), "slugs_breaks", 5, None).unwrap().is_empty(),
        "in that order"
    );
    assert!(
        store.search(Some("other"), "split", 5, None).unwrap().is_empty(),
        "per project"
    );
}

fn fts_syntax_in_user_text_never_errors(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    store.insert_lesson(&lesson("split on single spaces"), 1).unwrap();
    for text in [
        "",
        "\"",
        "split\" OR \"",
        "-split",
        "spl*",
        "summary:split",
        "NEAR(a b)",
        "(((",
        "a AND",
        "é ü 中文",
    ] {
        store
            .search(None, text, 5, None)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    assert_eq!(store.search(None, "-split*:", 5, None).unwrap().len(), 1);
}

fn unused_lessons_expire_from_prompts_but_stay_in_the_store(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    let id = store
        .insert_lesson(&lesson("split on single spaces"), 1_000)
        .unwrap()
        .unwrap();
    assert!(
        store.search(None, "split", 5, Some(5_000)).unwrap().is_empty(),
        "expired"
    );
    store.mark_used(&[id], 6_000).unwrap();
    let found = store.search(None, "split", 5, Some(5_000)).unwrap();
    assert_eq!(found.len(), 1, "used recently");
    assert_eq!((found[0].use_count, found[0].last_used_ms), (1, 6_000));
    assert!(store.lesson(id).unwrap().is_some());
}

fn rules_are_recorded_with_their_fate(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    let id = store.insert_lesson(&lesson("split"), 1).unwrap().unwrap();
    let mut rule = RuleRecord {
        rule_id: format!("chum-{id}"),
        lesson_id: id,
        project: "demo".into(),
        status: RuleStatus::Rejected,
        reason: "does not match the bad example".into(),
        checks: vec!["valid: ok".into()],
        ..RuleRecord::default()
    };
    store.record_rule(&rule).unwrap();
    rule.status = RuleStatus::Accepted;
    store.record_rule(&rule).unwrap();
    let rules = store.rules(Some("demo")).unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].status, RuleStatus::Accepted);
    assert_eq!(rules[0].checks, ["valid: ok"]);
}

fn reopening_keeps_data_and_does_not_migrate_twice(target: &StoreTarget) {
    Store::at(target).unwrap().insert_lesson(&lesson("split"), 1).unwrap();
    let store = Store::at(target).unwrap();
    assert_eq!(store.recent(None, 10).unwrap().len(), 1);
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
}

fn groom_outcomes_are_recorded_once_per_run_and_index(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    let groom = RunRef {
        project: "demo".into(),
        bead_id: "tk-1".into(),
        workflow_id: "groom-demo-tk-1-r".into(),
        run_id: "r1".into(),
    };
    let rejected = MutationOutcome {
        index: 1,
        op: "close".into(),
        description: "close tk-9".into(),
        applied: false,
        reason: "bead tk-9 does not exist".into(),
        mutation: r#"{"op":"close"}"#.into(),
        ..MutationOutcome::default()
    };
    let applied = MutationOutcome {
        index: 0,
        op: "create".into(),
        applied: true,
        created_id: "tk-abc".into(),
        ..MutationOutcome::default()
    };
    store
        .record_groom_outcome(&groom, GroomKind::Tactical, &rejected, 1)
        .unwrap();
    store
        .record_groom_outcome(&groom, GroomKind::Tactical, &applied, 2)
        .unwrap();
    // A retried activity records again: the first outcome stands.
    let again = MutationOutcome {
        applied: true,
        ..rejected.clone()
    };
    store
        .record_groom_outcome(&groom, GroomKind::Tactical, &again, 3)
        .unwrap();
    let outcomes = store.groom_outcomes(&groom).unwrap();
    assert_eq!(outcomes, vec![applied.clone(), rejected]);
    let recent = store.recent_groom_outcomes(Some("demo"), 10).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].outcome, applied, "newest first");
    assert_eq!(recent[0].kind, GroomKind::Tactical);
    assert!(store.recent_groom_outcomes(Some("other"), 10).unwrap().is_empty());
}

fn usage_is_summed_by_bead_project_day_and_provider(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    let run = |project: &str, bead: &str, provider: &str, cost: f64, at: i64| UsageRecord {
        project: project.into(),
        bead_id: bead.into(),
        provider: provider.into(),
        role: "executor".into(),
        input_tokens: 1000,
        output_tokens: 200,
        cost_usd: cost,
        created_ms: at,
        ..UsageRecord::default()
    };
    store.record_usage(&run("demo", "tk-1", "claude", 0.5, 100)).unwrap();
    store.record_usage(&run("demo", "tk-1", "codex", 0.25, 200)).unwrap();
    store.record_usage(&run("demo", "tk-2", "claude", 1.0, 300)).unwrap();
    store.record_usage(&run("other", "x-1", "claude", 2.0, 300)).unwrap();
    let bead = store
        .spent(UsageFilter {
            project: Some("demo"),
            bead_id: Some("tk-1"),
            since_ms: None,
        })
        .unwrap();
    assert_eq!((bead.cost_usd, bead.tokens, bead.runs), (0.75, 2400, 2));
    let since = store
        .spent(UsageFilter {
            project: Some("demo"),
            since_ms: Some(200),
            ..UsageFilter::default()
        })
        .unwrap();
    assert_eq!(since.cost_usd, 1.25);
    assert_eq!(store.spent(UsageFilter::default()).unwrap().cost_usd, 3.75);
    let by = store.spent_by("provider", UsageFilter::default()).unwrap();
    assert_eq!(by[0].0, "claude");
    assert_eq!(by[0].1.cost_usd, 3.5);
    assert_eq!(by[1].0, "codex");
    assert!(
        store.spent_by("provider; DROP TABLE x", UsageFilter::default()).is_ok(),
        "column names are never taken from the caller"
    );
}

/// A finished run with `gates` (gate, name, passed) and one phase span per entry of `phases`
/// (phase, seconds).
fn finished_run(
    id: &str,
    outcome: chum_core::proto::Outcome,
    gates: &[(chum_core::proto::GateName, &str, bool)],
    phases: &[(chum_core::proto::Phase, i64)],
) -> (RunRef, SharkResult) {
    use chum_core::proto::{GateResult, PhaseSpan};
    let run = RunRef {
        project: "demo".into(),
        bead_id: id.into(),
        workflow_id: format!("shark-demo-{id}"),
        run_id: "r1".into(),
    };
    let result = SharkResult {
        outcome: outcome as i32,
        gate_results: gates
            .iter()
            .map(|(gate, name, passed)| GateResult {
                gate: *gate as i32,
                name: name.to_string(),
                passed: *passed,
                ..GateResult::default()
            })
            .collect(),
        phases: phases
            .iter()
            .map(|(phase, seconds)| PhaseSpan {
                phase: *phase as i32,
                started_ms: 1_000,
                ended_ms: 1_000 + seconds * 1000,
                ..PhaseSpan::default()
            })
            .collect(),
        ..SharkResult::default()
    };
    (run, result)
}

fn run_totals_count_every_run_ever_recorded_and_a_rerecorded_run_once(target: &StoreTarget) {
    use chum_core::proto::{GateName, Outcome, Phase};
    let store = Store::at(target).unwrap();
    let caught = [
        (GateName::Semgrep, "", false),
        (GateName::Semgrep, "", true),
        (GateName::Named, "typecheck", true),
    ];
    for i in 0..30 {
        let (run, mut result) = finished_run(
            &format!("tk-{i}"),
            Outcome::Integrated,
            &caught,
            &[(Phase::Dod, 2), (Phase::Executing, 40)],
        );
        // Ten of them ran on host "b" of several; the rest on one host (no host).
        if i % 3 == 0 {
            result.host = "b".into();
        }
        store.record_run(&run, &result, i).unwrap();
    }
    let (run, result) = finished_run("tk-x", Outcome::Escalated, &[(GateName::Dod, "", false)], &[]);
    store.record_run(&run, &result, 100).unwrap();
    // The same run recorded again (a retried activity) is counted once.
    store.record_run(&run, &result, 101).unwrap();

    let totals = store.run_totals(&[1.0, 5.0, 60.0]).unwrap();
    assert_eq!(
        totals.finished,
        [
            ("demo".to_string(), "escalated".to_string(), 1),
            ("demo".to_string(), "integrated".to_string(), 30)
        ]
    );
    assert_eq!(
        totals.finished_by_host,
        [("demo".to_string(), "b".to_string(), "integrated".to_string(), 10)]
    );
    assert_eq!(
        totals.gates,
        [
            ("dod".to_string(), false, 1),
            ("semgrep".to_string(), false, 30),
            ("semgrep".to_string(), true, 30),
            ("typecheck".to_string(), true, 30),
        ]
    );
    let dod = totals.phases.iter().find(|p| p.phase == "dod").unwrap();
    assert_eq!(
        (dod.count, dod.seconds, dod.at_most.clone()),
        (30, 60.0, vec![0, 30, 30])
    );
    let executing = totals.phases.iter().find(|p| p.phase == "executing").unwrap();
    assert_eq!(executing.at_most, [0, 0, 30]);
}

fn runs_recorded_before_the_totals_tables_are_counted_from_their_json(target: &StoreTarget) {
    use chum_core::proto::{GateName, Outcome, Phase};
    let store = Store::at(target).unwrap();
    let (run, result) = finished_run(
        "tk-1",
        Outcome::Integrated,
        &[(GateName::Review, "", true), (GateName::Named, "proof", false)],
        &[(Phase::Review, 3)],
    );
    store.record_run(&run, &result, 1).unwrap();
    // As a store from before the migration had it: the run's JSON only.
    let back_to_7 = if store.conn.is_postgres() {
        "DELETE FROM chum_schema_migrations WHERE version >= 8"
    } else {
        "PRAGMA user_version = 7"
    };
    store
        .conn
        .batch(&format!(
            "DROP TABLE run_gates; DROP TABLE run_phases; DROP INDEX runs_by_outcome; DROP TABLE audit; \
             DROP INDEX runs_by_host; ALTER TABLE runs DROP COLUMN host; {back_to_7};"
        ))
        .unwrap();
    drop(store);
    super::postgres::forget_migrations();

    let store = Store::at(target).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
    let totals = store.run_totals(&[5.0]).unwrap();
    assert_eq!(
        totals.gates,
        [("proof".to_string(), false, 1), ("review".to_string(), true, 1)]
    );
    let review = totals.phases.iter().find(|p| p.phase == "review").unwrap();
    assert_eq!(
        (review.count, review.seconds, review.at_most.clone()),
        (1, 3.0, vec![1])
    );
}

fn notifications_are_recorded_once_per_event_and_target(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    assert!(!store.notified("run-ended-1", "team").unwrap());
    store.record_notified("run-ended-1", "team", 10).unwrap();
    store.record_notified("run-ended-1", "team", 20).unwrap();
    assert!(store.notified("run-ended-1", "team").unwrap());
    assert!(!store.notified("run-ended-1", "ops").unwrap(), "per target");
}

fn a_reservation_is_checked_and_settled_in_one_transaction(target: &StoreTarget) {
    let mut store = Store::at(target).unwrap();
    let usage = |cost: f64, at: i64| UsageRecord {
        project: "demo".into(),
        bead_id: "tk-1".into(),
        provider: "claude".into(),
        role: "executor".into(),
        input_tokens: 100,
        output_tokens: 10,
        cost_usd: cost,
        created_ms: at,
        ..UsageRecord::default()
    };
    let demo = UsageFilter {
        project: Some("demo"),
        ..UsageFilter::default()
    };
    // A reservation that dies with its worker is dropped once stale.
    store
        .reserve_usage(&usage(5.0, 10), 0, |_| Ok::<(), String>(()))
        .unwrap()
        .unwrap();
    let id = store
        .reserve_usage(&usage(1.0, 1_000), 500, |s| {
            let spent = s.spent(demo).unwrap();
            assert_eq!(spent.cost_usd, 0.0, "the stale reservation is gone before the check");
            Ok::<(), String>(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(store.spent(demo).unwrap().cost_usd, 1.0, "reserved counts as spent");
    let refused = store
        .reserve_usage(&usage(1.0, 1_001), 500, |s| {
            if s.spent(demo).unwrap().cost_usd >= 1.0 {
                Err("over the cap".to_string())
            } else {
                Ok(())
            }
        })
        .unwrap();
    assert_eq!(refused, Err("over the cap".to_string()));
    assert_eq!(
        store.spent(demo).unwrap().runs,
        1,
        "a refused reservation leaves nothing"
    );
    store.settle_usage(id, &usage(0.4, 1_000)).unwrap();
    let spent = store.spent(demo).unwrap();
    assert_eq!((spent.cost_usd, spent.tokens, spent.runs), (0.4, 110, 1));
    assert_eq!(store.typical_usage("claude", "executor").unwrap(), (0.4, 110));
    store.drop_reservation(id).unwrap();
    assert_eq!(store.spent(demo).unwrap().runs, 1, "a settled run is no reservation");
}

fn audit_entries_are_kept_newest_first(target: &StoreTarget) {
    let store = Store::at(target).unwrap();
    let entry = |action: &str, result: &str| AuditEntry {
        ts: "2026-12-06T05:00:00Z".into(),
        who: "una".into(),
        action: action.into(),
        target: "shark-demo-tk-1".into(),
        result: result.into(),
        remote: "127.0.0.1:5000".into(),
    };
    store.record_audit(&entry("approve", "requested")).unwrap();
    store.record_audit(&entry("approve", "ok")).unwrap();
    let entries = store.audit_entries(10).unwrap();
    assert_eq!(entries, [entry("approve", "ok"), entry("approve", "requested")]);
    assert_eq!(store.audit_entries(1).unwrap().len(), 1);
}
