//! Applying a groomer's mutations is at-least-once (an activity may run again after a crash):
//! a second run of the same groom applies nothing twice and reports the same outcomes.

use std::sync::Arc;

use chum_activities::GroomActivitiesImpl;
use chum_core::config::ChumConfig;
use chum_core::proto::{ApplyMutationsRequest, RunRef};
use chum_testkit::{HarnessConfig, load_config, small_config};

const BEADS: &str = concat!(
    r#"{"id":"tk-1","title":"Done work","status":"closed","priority":1,"issue_type":"task","created_at":"2026-11-22T00:00:00Z"}"#,
    "\n",
    r#"{"id":"tk-2","title":"Next work","status":"open","priority":2,"issue_type":"task","created_at":"2026-11-22T00:00:01Z"}"#,
    "\n",
    r#"{"id":"tk-3","title":"Running work","status":"in_progress","priority":2,"issue_type":"task","created_at":"2026-11-22T00:00:02Z"}"#,
    "\n"
);

fn config(dir: &std::path::Path) -> Arc<ChumConfig> {
    let repo = dir.join("project");
    std::fs::create_dir_all(repo.join(".beads")).unwrap();
    std::fs::write(repo.join(".beads/issues.jsonl"), BEADS).unwrap();
    let mut file = small_config(&["true"], &["planner", "executor", "groomer"]);
    file.project().gates = Some(vec!["dod".into()]);
    file.groom.max_mutations = Some(3);
    load_config(&file, dir)
}

#[tokio::test]
async fn a_retried_apply_changes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let activities = GroomActivitiesImpl::new(config(dir.path())).steps();
    let request = ApplyMutationsRequest {
        groom: Some(RunRef {
            project: "demo".into(),
            bead_id: "tk-1".into(),
            workflow_id: "groom-demo-tk-1-r1".into(),
            run_id: "r1".into(),
        }),
        mutations: vec![
            r#"{"op":"create","title":"Follow-up","dependencies":[{"depends_on":"tk-1","type":"discovered-from"}]}"#
                .into(),
            r#"{"op":"append_notes","id":"tk-2","notes":"tk-1 changed the API"}"#.into(),
            r#"{"op":"close","id":"tk-3","reason":"fixed in commit abcdef1234"}"#.into(),
            "not json".into(),
            r#"{"op":"update_priority","id":"tk-2","priority":0}"#.into(),
            r#"{"op":"update_priority","id":"tk-2","priority":1}"#.into(),
        ],
        kind: chum_core::proto::GroomKind::Tactical as i32,
    };
    let first = activities.apply_mutations_impl(request.clone()).await.expect("applied");
    let backlog = std::fs::read_to_string(dir.path().join("project/.beads/issues.jsonl")).unwrap();
    let second = activities.apply_mutations_impl(request).await.expect("applied again");
    assert_eq!(first, second, "the same outcomes the second time");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("project/.beads/issues.jsonl")).unwrap(),
        backlog,
        "the backlog did not change the second time"
    );

    let applied: Vec<bool> = first.outcomes.iter().map(|o| o.applied).collect();
    assert_eq!(applied, [true, true, false, false, true, false], "{first:#?}");
    assert!(first.outcomes[2].reason.contains("in progress"), "{first:?}");
    assert!(first.outcomes[3].reason.contains("not a valid mutation"), "{first:?}");
    assert!(first.outcomes[5].reason.contains("over the limit of 3"), "{first:?}");
    assert_eq!(backlog.lines().count(), 4, "one bead created: {backlog}");
    assert_eq!(backlog.matches("Follow-up").count(), 1);
    assert_eq!(backlog.matches("tk-1 changed the API").count(), 1);
}
