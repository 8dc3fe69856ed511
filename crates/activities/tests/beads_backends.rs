//! The Beads backends against real Beads data: a `.beads/` directory and `--json` outputs recorded
//! from the real `br` tool (tests/fixtures/beads-br, see its README). The native backend is run
//! for real on a copy of the JSONL; the CLI backend's parsing is run on the recorded outputs.

use std::path::{Path, PathBuf};

use chum_activities::backlog::{BeadsFile, NewBead};
use chum_activities::backlog::{parse_created_id, parse_issue_list};
use chum_core::backlog::ready;
use serde_json::{Value, json};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/beads-br")
        .join(path)
}

fn copy_of_br_beads(dir: &Path) -> BeadsFile {
    let beads = dir.join(".beads");
    std::fs::create_dir_all(&beads).unwrap();
    std::fs::copy(fixture("dot-beads/issues.jsonl"), beads.join("issues.jsonl")).unwrap();
    std::fs::copy(fixture("dot-beads/config.yaml"), beads.join("config.yaml")).unwrap();
    BeadsFile::new(beads.join("issues.jsonl"))
}

#[test]
fn the_native_backend_round_trips_br_jsonl_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let beads = copy_of_br_beads(dir.path());
    let before = std::fs::read_to_string(beads.path()).unwrap();
    beads
        .update("demo-3kt", |o| {
            o.insert("status".into(), "in_progress".into());
        })
        .unwrap();
    let after = std::fs::read_to_string(beads.path()).unwrap();
    let (old, new): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    assert_eq!(old.len(), new.len());
    for (a, b) in old.iter().zip(&new) {
        if a.contains("\"demo-3kt\",\"title\"") {
            let (a, b): (Value, Value) = (serde_json::from_str(a).unwrap(), serde_json::from_str(b).unwrap());
            for (key, value) in a.as_object().unwrap() {
                if key != "status" && key != "updated_at" {
                    assert_eq!(&b[key], value, "field {key} kept");
                }
            }
            assert_eq!(b["status"], "in_progress");
        } else {
            assert_eq!(a, b, "untouched issues are byte-identical");
        }
    }
}

#[test]
fn created_beads_have_beads_style_ids_sorted_in_with_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let beads = copy_of_br_beads(dir.path());
    let new = NewBead {
        title: "Handle missing config file".into(),
        description: "found while validating".into(),
        priority: 1,
        issue_type: "bug".into(),
        dependencies: vec![
            ("demo-3kt".into(), "discovered-from".into()),
            ("demo-i76".into(), "blocks".into()),
        ],
        created_by: "chum".into(),
        ..NewBead::default()
    };
    let bead = beads.create(&new).unwrap();
    let suffix = bead.id.strip_prefix("demo-").expect("the prefix the existing ids use");
    assert!(
        suffix.len() == 3 && suffix.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
        "{}",
        bead.id
    );
    let text = std::fs::read_to_string(beads.path()).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "one issue per line, sorted by id");
    let items = beads.items().unwrap();
    let created = items.iter().find(|i| i.id == bead.id).unwrap();
    assert_eq!(created.dependencies.len(), 2);
    assert!(!ready(&items).iter().any(|i| i.id == bead.id), "it waits for demo-i76");
    // An id of one's own choosing, as `bd create --id`; taken ids are refused.
    let chosen = NewBead {
        id: Some("demo-own".into()),
        title: "Chosen id".into(),
        acceptance_criteria: "it has the id it asked for".into(),
        ..NewBead::default()
    };
    assert_eq!(beads.create(&chosen).unwrap().id, "demo-own");
    let err = beads.create(&chosen).unwrap_err().to_string();
    assert!(err.contains("demo-own already exists"), "{err}");
    assert_eq!(
        beads.get("demo-own").unwrap().acceptance_criteria,
        "it has the id it asked for"
    );
    beads.add_dependency(&bead.id, "demo-i76", "blocks", "chum").unwrap();
    let again = beads.items().unwrap();
    assert_eq!(
        again.iter().find(|i| i.id == bead.id).unwrap().dependencies.len(),
        2,
        "added once"
    );
}

#[test]
fn ready_on_br_data_excludes_epics_and_blocked_beads() {
    let dir = tempfile::tempdir().unwrap();
    let beads = copy_of_br_beads(dir.path());
    let items = beads.items().unwrap();
    let ready_ids: Vec<&str> = ready(&items).into_iter().map(|i| i.id.as_str()).collect();
    // demo-5qb is closed, so demo-3kt (which it blocked) is ready; demo-i76 waits for demo-3kt;
    // demo-vn6 is an epic (br lists it as ready; CHUM does not).
    assert_eq!(ready_ids, ["demo-3kt"]);
}

#[test]
fn the_cli_backend_reads_both_list_shapes_and_created_ids() {
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("outputs/{name}"))).unwrap()).unwrap()
    };
    let envelope = parse_issue_list(&read("list-all.json")).unwrap();
    assert_eq!(envelope.len(), 4);
    let bare = parse_issue_list(&read("ready-2.json")).unwrap();
    assert!(bare.iter().any(|o| o["id"] == "demo-3kt"));
    let shown = parse_issue_list(&read("show.json")).unwrap();
    assert_eq!(shown[0]["id"], "demo-5qb");
    assert_eq!(parse_created_id(&read("create.json")).unwrap(), "demo-5qb");
    assert!(parse_issue_list(&serde_json::json!({"nope": 1})).is_err());
}

/// br (beads_rust) on a workspace the native backend writes to: br keeps its own SQLite
/// database and imports the JSONL again when its content hash changed (`sync::compute_jsonl_newer`
/// in br 0.7.6), a row replacing br's when its `updated_at` is newer. This runs the real br: it
/// makes a workspace, the native backend claims, notes, creates with a dependency and closes in it,
/// and br must show every change (list, ready, show) and keep them through a write of its own.
/// br 0.7.6 takes ~21 minutes to build here (a pure-Rust SQLite and its runtime, ~2.5 M lines;
/// `RUSTC_BOOTSTRAP=1 cargo build --no-default-features --ignore-rust-version` from its crate),
/// too long for CI; so it runs by hand (`CHUM_BR=<br> cargo test -p chum-activities --test
/// beads_backends -- --ignored`), and with `CHUM_RECORD_BR=1` records what br showed into
/// tests/fixtures/beads-br/after-native, which the next test holds CHUM to in CI.
#[tokio::test]
#[ignore = "needs the real br binary in CHUM_BR (too long to build in CI; the recording is checked instead)"]
async fn br_shows_every_change_the_native_backend_makes() {
    use chum_activities::backlog::Backlog;
    use chum_core::proto::BeadStatus;

    let br = std::env::var("CHUM_BR").expect("CHUM_BR: the path of a br binary");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("demo");
    std::fs::create_dir_all(&repo).unwrap();
    chum_testkit::git(&repo, &["init", "-q", "-b", "main"]);
    let run = |args: &[&str]| -> Value {
        let out = std::process::Command::new(&br)
            .args(args)
            .arg("--json")
            .current_dir(&repo)
            .output()
            .expect("br runs");
        assert!(
            out.status.success(),
            "br {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    run(&["init"]);
    let parse = run(&["create", "Parse pairs", "-p", "1"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sum = run(&["create", "Sum pairs", "-p", "2"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    run(&["dep", "add", &sum, &parse]);

    // The native backend works in br's workspace, as a Shark does.
    let backlog = Backlog::Native(BeadsFile::new(repo.join(".beads/issues.jsonl")));
    backlog.claim(&parse).await.unwrap();
    backlog
        .update(
            &parse,
            BeadStatus::Unspecified,
            "CHUM run shark-demo: plan approved by ana",
            "",
        )
        .await
        .unwrap();
    let found = backlog
        .create(&NewBead {
            title: "Handle odd counts".into(),
            description: "found while parsing".into(),
            priority: 1,
            issue_type: "bug".into(),
            dependencies: vec![(parse.clone(), "discovered-from".into())],
            created_by: "chum".into(),
            ..NewBead::default()
        })
        .await
        .unwrap();
    backlog
        .update(
            &parse,
            BeadStatus::Closed,
            "",
            "CHUM run shark-demo: commit abc123 merged into main",
        )
        .await
        .unwrap();

    // br sees all of it.
    let listed = run(&["list", "--all"]);
    let issues = listed["issues"].as_array().expect("br's list shape");
    let of = |id: &str| issues.iter().find(|i| i["id"] == id).cloned().unwrap_or(Value::Null);
    assert_eq!(of(&parse)["status"], "closed", "{listed}");
    assert_eq!(
        of(&parse)["close_reason"],
        "CHUM run shark-demo: commit abc123 merged into main"
    );
    assert_eq!(of(&parse)["assignee"], "chum");
    assert_eq!(of(&found)["title"], "Handle odd counts", "{listed}");
    let shown = run(&["show", &parse]);
    assert!(
        shown[0]["notes"]
            .as_str()
            .unwrap_or_default()
            .contains("plan approved by ana"),
        "{shown}"
    );
    let ready = run(&["ready"]);
    let ready_ids: Vec<&str> = ready
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(ready_ids.contains(&sum.as_str()), "its blocker closed by CHUM: {ready}");
    assert!(ready_ids.contains(&found.as_str()), "{ready}");

    // A write of br's own keeps CHUM's changes (br imported them before it wrote).
    run(&["update", &sum, "--status", "in_progress"]);
    let after = BeadsFile::new(repo.join(".beads/issues.jsonl"));
    assert_eq!(after.get(&parse).unwrap().status, "closed");
    assert_eq!(after.get(&sum).unwrap().status, "in_progress");
    assert_eq!(after.get(&found).unwrap().title, "Handle odd counts");

    if std::env::var("CHUM_RECORD_BR").is_ok_and(|v| v == "1") {
        let out = fixture("after-native");
        std::fs::create_dir_all(&out).unwrap();
        let ids = json!({"parse": parse, "sum": sum, "found": found});
        for (name, value) in [("ids", ids), ("list-all", listed), ("show", shown), ("ready", ready)] {
            std::fs::write(
                out.join(format!("{name}.json")),
                serde_json::to_string_pretty(&value).unwrap(),
            )
            .unwrap();
        }
        std::fs::copy(repo.join(".beads/issues.jsonl"), out.join("issues.jsonl")).unwrap();
    }
}

/// What the real br showed after the native backend's changes (recorded by the test above): CHUM's
/// claim, note, new bead and close are all there, and the JSONL br wrote afterwards is one the
/// native backend reads with every change intact.
#[test]
fn br_showed_the_native_backends_changes_and_its_own_jsonl_reads_back() {
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("after-native/{name}.json"))).unwrap()).unwrap()
    };
    let ids = read("ids");
    let (parse, sum, found) = (
        ids["parse"].as_str().unwrap(),
        ids["sum"].as_str().unwrap(),
        ids["found"].as_str().unwrap(),
    );
    let listed = read("list-all");
    let issues = listed["issues"].as_array().unwrap();
    let of = |id: &str| issues.iter().find(|i| i["id"] == id).unwrap();
    assert_eq!(
        (of(parse)["status"].as_str(), of(parse)["assignee"].as_str()),
        (Some("closed"), Some("chum"))
    );
    assert_eq!(of(found)["title"], "Handle odd counts");
    assert!(
        read("show")[0]["notes"]
            .as_str()
            .unwrap()
            .contains("plan approved by ana")
    );
    let ready = read("ready");
    assert!(ready.as_array().unwrap().iter().any(|i| i["id"] == sum));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("issues.jsonl");
    std::fs::copy(fixture("after-native/issues.jsonl"), &path).unwrap();
    let beads = BeadsFile::new(path);
    assert_eq!(beads.get(parse).unwrap().status, "closed");
    assert_eq!(beads.get(sum).unwrap().status, "in_progress");
    let items = beads.items().unwrap();
    assert!(items.iter().any(|i| i.id == found), "{items:?}");
}
