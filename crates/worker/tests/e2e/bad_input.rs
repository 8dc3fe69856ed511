//! The bad-input suite: every kind of input CHUM takes from people and programs, wrong on
//! purpose, one table per kind. Each case must end in an error that names the problem (and, for
//! a file, the file and the key), lose nothing, and approve nothing.
//!
//! - configuration files (what the worker and `chum` load), through `settings::load_config`;
//! - `approve` signal payloads, sent to a real Shark waiting at its gate on a real dev server, by
//!   the Temporal client and by the real `temporal` CLI (a repeated key, a null name, a bare
//!   string, a misspelled signal name);
//! - agent answers, through the parsers the activities use;
//! - bead ids, through the check every entry point (CLI, API, activities) applies, and one Shark
//!   started directly with a bad id;
//! - repositories (not git, missing base branch, a dirty checkout, a detached HEAD), through the
//!   workspace code the execute and integrate activities run, on real git.
//!
//! 48 cases: 11 configuration files, 12 signals (10 payloads, approving twice, approving after
//! the gate closed), 4 through the `temporal` CLI, 8 agent answers, 9 bead ids, 4 repositories.

use std::path::Path;

use chum_core::config::{ChumConfig, OutputFormat, RawConfig};
use chum_core::proto::{Outcome, Phase, SharkInput};
use chum_testkit::*;
use serde_json::json;
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::common::v1::Payload;

const BASE_CONFIG: &str = r#"
state_dir = "state"
[projects.demo]
repo = "project"
dod = ["true"]
[providers.a]
command = ["/bin/true"]
model = "model-a"
[providers.b]
command = ["/bin/true"]
model = "model-b"
[tiers]
fast = ["a"]
other = ["b"]
[roles]
planner = "fast"
executor = "fast"
reviewer = "other"
"#;

/// (case, the file's text or `None` for no file, CHUM__ overrides, what the error must say).
type ConfigCase = (
    &'static str,
    Option<String>,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
);

fn config_cases() -> Vec<ConfigCase> {
    let with = |extra: &str| Some(format!("{BASE_CONFIG}\n{extra}\n"));
    let replaced = |from: &str, to: &str| {
        assert!(BASE_CONFIG.contains(from), "{from}");
        Some(BASE_CONFIG.replace(from, to))
    };
    vec![
        (
            "missing file",
            None,
            vec![],
            vec!["not found", "configs/chum.example.toml"],
        ),
        (
            "not TOML",
            Some("[projects.demo\nrepo = \"project\"\n".to_string()),
            vec![],
            vec!["chum.toml"],
        ),
        (
            "unknown key",
            Some(format!("colour = \"blue\"\n{BASE_CONFIG}")),
            vec![],
            vec!["unknown key `colour`"],
        ),
        (
            "unknown nested key (a typo)",
            with("[limits]\nmax_atempts = 3"),
            vec![],
            vec!["limits.max_atempts"],
        ),
        (
            "wrong type",
            with("[limits]\nmax_attempts = \"three\""),
            vec![],
            vec!["max_attempts"],
        ),
        (
            "bad duration",
            with("[limits]\ngate_timeout = \"forever\""),
            vec![],
            vec!["limits.gate_timeout", "not a duration", "\"24h\""],
        ),
        (
            "provider referenced but undefined",
            replaced("fast = [\"a\"]", "fast = [\"ghost\"]"),
            vec![],
            vec!["ghost"],
        ),
        (
            "reviewer equals executor",
            replaced("reviewer = \"other\"", "reviewer = \"fast\""),
            vec![],
            vec!["reviewer must be a different provider"],
        ),
        (
            "reviewer is another name for the executor's model",
            replaced("model = \"model-b\"", "model = \"model-a\""),
            vec![],
            vec!["roles.reviewer", "runs the same model", "allow_same_model_review"],
        ),
        (
            "role names an undefined tier",
            replaced("planner = \"fast\"", "planner = \"slow\""),
            vec![],
            vec!["slow"],
        ),
        (
            "bad value from the environment",
            Some(BASE_CONFIG.to_string()),
            vec![("CHUM__LIMITS__AGENT_TIMEOUT", "soon")],
            vec!["agent_timeout", "not a duration"],
        ),
    ]
}

#[test]
fn bad_configuration_files_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("project")).unwrap();
    let path = dir.path().join("chum.toml");
    // The base is valid: each case breaks exactly one thing.
    ChumConfig::from_toml(BASE_CONFIG, &path, Vec::new()).expect("the base config is valid");
    for (case, text, env, expected) in config_cases() {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let result = match &text {
            None => chum_client::settings::load_config(&dir.path().join("absent.toml")),
            Some(text) => {
                std::fs::write(&path, text).unwrap();
                // What load_config does, with this case's environment instead of the process's.
                ChumConfig::from_toml(text, &path, env)
            }
        };
        let err = match result {
            Ok(_) => panic!("{case}: accepted"),
            Err(e) => e.to_string(),
        };
        let file = if text.is_none() { "absent.toml" } else { "chum.toml" };
        assert!(err.contains(file), "{case}: the error does not name the file: {err}");
        for needle in expected {
            assert!(err.contains(needle), "{case}: {needle:?} missing from: {err}");
        }
    }
}

fn json_payload(value: serde_json::Value) -> RawValue {
    chum_workflows::approve_payload(&value)
}

fn raw_payload(encoding: &str, data: &[u8]) -> Payload {
    let mut payload = Payload {
        data: data.to_vec(),
        ..Payload::default()
    };
    payload.metadata.insert("encoding".into(), encoding.as_bytes().to_vec());
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signal_payloads_are_refused_on_record_and_never_approve() {
    let h = &Harness::with_steps("bad-signals", good_work_with(|s| s.sleep_ms(3000))).await;
    // (case, payload, what the refusal must say)
    let cases: Vec<(&str, RawValue, &str)> = vec![
        ("no payload", RawValue::new(vec![]), "carried no payload"),
        (
            "two payloads",
            RawValue::new(vec![
                raw_payload("json/plain", b"{\"approved\": true}"),
                raw_payload("json/plain", b"{\"approved\": true}"),
            ]),
            "carried 2 payloads",
        ),
        (
            "not JSON",
            RawValue::new(vec![raw_payload("json/plain", b"approve it!")]),
            "not valid JSON",
        ),
        (
            "wrong encoding",
            RawValue::new(vec![raw_payload("binary/protobuf", &[8, 1])]),
            "binary/protobuf",
        ),
        (
            "wrong type (a string)",
            json_payload(json!("yes")),
            "must be a JSON object",
        ),
        (
            "approved of the wrong type",
            json_payload(json!({"approved": "true", "by": "eve"})),
            "\"approved\" must be true or false",
        ),
        (
            "missing fields",
            json_payload(json!({"by": "eve"})),
            "\"approved\" is missing",
        ),
        (
            "extra fields",
            json_payload(json!({"approved": true, "by": "eve", "force": true})),
            "unknown field \"force\"",
        ),
        (
            "huge",
            json_payload(json!({"approved": true, "by": "eve", "feedback": "x".repeat(100_000)})),
            "the limit is 16384",
        ),
        (
            "by of the wrong type",
            json_payload(json!({"approved": true, "by": 7})),
            "\"by\" must be a string",
        ),
    ];
    let expected = cases.len();
    let (at_gate, end, outcome, approved_by) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            let mut reasons = Vec::new();
            for (_, payload, _) in cases.iter() {
                send_raw_approve(&handle, payload.clone()).await;
            }
            let at_gate = wait_for_refusals(&handle, expected).await;
            for ((case, _, needle), refused) in cases.iter().zip(&at_gate.rejected_signals) {
                reasons.push((case.to_string(), needle.to_string(), refused.reason.clone()));
            }
            // Approve twice: the second is refused (already decided, or the gate already closed).
            send_approve(&handle, json!({"approved": true, "by": "frank"})).await;
            send_approve(&handle, json!({"approved": true, "by": "mallory"})).await;
            // Approve after the gate closed (the agent is at work): refused on record. (Once the
            // run is over, Temporal itself refuses the signal: the execution has completed.)
            wait_for_phase(&handle, Phase::Executing, 0).await;
            send_approve(&handle, json!({"approved": false, "by": "late", "feedback": "wait"})).await;
            let result = finish(&handle, "bad_signals_suite").await;
            let end = wait_for_refusals(&handle, expected + 2).await;
            ((at_gate, reasons), end, result.outcome(), result.approved_by)
        })
        .await;
    let (at_gate, reasons) = at_gate;
    assert_eq!(at_gate.phase(), Phase::AwaitingApproval, "a bad payload moved the gate");
    assert!(
        at_gate.decisions.is_empty(),
        "a bad payload decided: {:?}",
        at_gate.decisions
    );
    assert_eq!(reasons.len(), expected, "{:?}", at_gate.rejected_signals);
    for (case, needle, reason) in reasons {
        assert!(reason.contains(&needle), "{case}: {needle:?} missing from {reason:?}");
    }
    assert_eq!(outcome, Outcome::Integrated);
    assert_eq!(approved_by, "frank", "the first valid approval decides");
    let late: Vec<&str> = end.rejected_signals[expected..]
        .iter()
        .map(|r| r.reason.as_str())
        .collect();
    assert_eq!(late.len(), 2, "{:?}", end.rejected_signals);
    assert!(
        late[0].contains("already received") || late[0].contains("no plan and no result is waiting"),
        "approve twice: {late:?}"
    );
    assert!(
        late[1].contains("no plan and no result is waiting for approval (phase: executing)"),
        "approve after the gate: {late:?}"
    );
    assert_eq!(h.commits_on("main"), 2, "integrated exactly once");
}

#[test]
fn bad_agent_answers_are_refused_with_what_to_fix() {
    let plan = |answer: &str| {
        chum_core::plan::parse_plan(answer)
            .and_then(|p| chum_core::plan::validate_plan(&p).map_err(|problems| problems.join("; ")))
    };
    let verdict = |answer: &str| chum_core::review::parse_verdict(answer).map(|_| ());
    let envelope =
        |stdout: &str| chum_core::agent_output::parse_agent_output(OutputFormat::ClaudeJson, stdout).map(|_| ());
    let huge = "I have many thoughts. ".repeat(500_000);
    assert!(huge.len() >= 10_000_000);
    // (case, the result of parsing it, what the error must say)
    let cases: Vec<(&str, Result<(), String>, &str)> = vec![
        ("empty output", envelope(""), "printed nothing"),
        (
            "output that is not JSON",
            envelope("Sure! Here is my plan."),
            "Claude Code JSON",
        ),
        (
            "a plan answer without JSON",
            plan("I would add multiply.").map(|_| ()),
            "contains no JSON object",
        ),
        (
            "JSON with the wrong fields",
            plan(r#"{"title": "multiply", "todo": ["x"]}"#).map(|_| ()),
            "summary",
        ),
        (
            "a plan without acceptance criteria",
            plan(
                r#"{"summary": "Add multiply", "steps": ["add it"], "acceptance_criteria": [], "files": ["calc.py"]}"#,
            )
            .map(|_| ()),
            "`acceptance_criteria` is empty",
        ),
        (
            "a verdict with an unknown severity",
            verdict(
                r#"{"approved": false, "findings": [{"severity": "catastrophic", "file": "calc.py", "line": 1, "message": "no"}], "criteria": []}"#,
            ),
            "catastrophic",
        ),
        (
            "a verdict that is not JSON",
            verdict("LGTM!"),
            "contains no JSON object",
        ),
        ("a 10 MB answer", plan(&huge).map(|_| ()), "contains no JSON object"),
    ];
    for (case, result, needle) in cases {
        let err = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert!(err.contains(needle), "{case}: {needle:?} missing from {err:?}");
        // The error goes into the next prompt and the run's history: an excerpt, never the answer.
        assert!(err.len() < 2_000, "{case}: a {} byte error", err.len());
    }
}

#[test]
fn bad_bead_ids_are_refused_before_they_reach_a_path_a_branch_or_a_workflow_id() {
    let cases = [
        ("a path", "../../etc/passwd", "'/'"),
        ("spaces", "tk 1", "' '"),
        ("unicode", "tk-ü", "'ü'"),
        ("an emoji", "tk-🦈", "'🦈'"),
        ("empty", "", "empty"),
        ("a dot-dot", "tk..1", "not usable"),
        ("a git lock name", "tk-1.lock", "not usable"),
        ("too long", &"t".repeat(101), "limit is 100"),
    ];
    for (case, id, needle) in cases {
        let err = chum_core::ids::check_bead_id(id)
            .err()
            .unwrap_or_else(|| panic!("{case}: accepted"));
        assert!(err.contains(needle), "{case}: {needle:?} missing from {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shark_started_by_hand_with_a_bad_bead_id_fails_clearly_and_touches_nothing() {
    let h = &Harness::with_steps("bad-bead-id", vec![planner(GOOD_PLAN)]).await;
    let result = h
        .with_worker(|client| async move {
            let input = SharkInput {
                bead_id: "../escape".into(),
                ..h.input(limits())
            };
            let handle = start_shark(&client, &h.task_queue, input).await;
            handle.get_result(Default::default()).await.expect("the run ends")
        })
        .await;
    assert_ne!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert!(result.reason.contains("\"../escape\" contains '/'"), "{result:?}");
    assert!(result.approved_by.is_empty());
    assert_eq!(h.commits_on("main"), 1, "nothing committed");
    assert!(!h.dir.path().join("escape").exists());
}

fn project_config(repo: &Path, base_branch: &str) -> chum_core::config::ProjectConfig {
    let mut file: RawConfig = toml::from_str(BASE_CONFIG).expect("the base config reads");
    let project = file.project();
    project.repo = Some(repo.display().to_string());
    project.base_branch = Some(base_branch.into());
    project.integration = Some("merge".into());
    project.sandbox = Some("none".into());
    let text = toml::to_string(&file).expect("the config serializes");
    let config = ChumConfig::from_toml(&text, &repo.with_file_name("chum.toml"), Vec::new()).expect("valid");
    config.projects["demo"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_repositories_get_an_error_that_says_what_to_do_and_lose_no_work() {
    use chum_activities::repo::{integrate, prepare_worktree, stage_changes};
    let dir = tempfile::tempdir().unwrap();

    // Not a git repository.
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let err = prepare_worktree(&project_config(&plain, "main"), "tk-1", 1, 0)
        .await
        .expect_err("not a repository");
    assert!(err.is_permanent());
    assert!(
        err.to_string().contains("is not a git repository") && err.to_string().contains("set `repo`"),
        "{err}"
    );

    // A base branch that does not exist.
    let repo = make_project(dir.path());
    let err = prepare_worktree(&project_config(&repo, "trunk"), "tk-1", 1, 0)
        .await
        .expect_err("no trunk");
    assert!(
        err.to_string().contains("base branch `trunk` does not exist") && err.to_string().contains("base_branch"),
        "{err}"
    );

    // A dirty checkout of the base branch that the bead's change would overwrite: integration
    // stops with a reason, the person's edit stays, the work stays on its branch.
    let project = project_config(&repo, "main");
    let attempt = prepare_worktree(&project, "tk-1", 1, 0).await.expect("worktree");
    std::fs::write(attempt.path.join("calc.py"), GOOD_CALC).unwrap();
    stage_changes(&attempt.git, &attempt.base_commit).await.expect("staged");
    let local_edit = "def add(a, b):\n    return a + b  # someone is editing this\n";
    std::fs::write(repo.join("calc.py"), local_edit).unwrap();
    let report = integrate(&project, &integrate_request(&attempt.path, 1))
        .await
        .expect("report");
    assert!(!report.merged, "{report:?}");
    assert!(
        report.problem.contains("Commit or stash the local changes") && report.problem.contains("chum/tk-1"),
        "{report:?}"
    );
    assert_eq!(std::fs::read_to_string(repo.join("calc.py")).unwrap(), local_edit);
    assert_eq!(
        git(&repo, &["show", "chum/tk-1:calc.py"]).trim_end(),
        GOOD_CALC.trim_end(),
        "the work is on its branch"
    );

    // A detached HEAD in the main checkout: nothing checks out the base branch, so it moves by
    // reference; the checkout stays where the person left it.
    git(&repo, &["checkout", "-q", "--", "calc.py"]);
    git(&repo, &["checkout", "-q", "--detach", "HEAD"]);
    let detached_at = git(&repo, &["rev-parse", "HEAD"]);
    let report = integrate(&project, &integrate_request(&attempt.path, 1))
        .await
        .expect("report");
    assert!(report.merged && report.problem.is_empty(), "{report:?}");
    assert_eq!(git(&repo, &["rev-parse", "main"]), report.commit);
    assert_eq!(
        git(&repo, &["rev-parse", "HEAD"]),
        detached_at,
        "the detached checkout was left alone"
    );
}

/// The gate through the real `temporal` CLI, as a person at a terminal uses it: a malformed update
/// is refused at the terminal; a repeated key, a null name and a bare string as signals are refused
/// on record; a misspelled signal name is accepted by the server but reaches no handler (the Rust
/// SDK has no catch-all, README says so) and changes nothing; the well-formed approval (an update)
/// decides, with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temporal_cli_approves_only_with_a_well_formed_decision() {
    let h = &Harness::with_steps("cli-signals", good_work()).await;
    let address = h.address.trim_start_matches("http://").to_string();
    let signal = |name: &str, input: &str| {
        let (ok, said) = temporal_cli(&address, &["workflow", "signal", "--name", name, "--input", input]);
        assert!(ok, "temporal workflow signal {name} {input}: {said}");
    };
    // `temporal workflow update execute`: the answer (or the refusal) comes back to the terminal.
    // It waits for the worker, which runs in this same task: off the async thread, then.
    let update = |input: &'static str| {
        let address = address.clone();
        tokio::task::spawn_blocking(move || update_with_cli(&address, input))
    };
    let metadata = || {
        let address = address.clone();
        tokio::task::spawn_blocking(move || temporal_cli(&address, &["workflow", "metadata"]))
    };
    let (refusals, after_typo, result) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            // The Temporal UI's line for the run (the metadata query the SDK answers): at the gate
            // it says what a person can do.
            let (ok, meta) = metadata().await.expect("the CLI ran");
            assert!(
                ok && meta.contains("waiting for a person") && meta.contains("chum approve tk-1"),
                "{meta}"
            );
            // A malformed decision as an update fails at the terminal, with the reason, and leaves
            // nothing behind (not even a refusal in the status: it never reached the history).
            let (ok, said) = update(r#"{"approved": "yes"}"#).await.expect("the CLI ran");
            assert!(!ok && said.contains("\"approved\" must be true or false"), "{said}");
            signal("approve", r#"{"approved": false, "approved": true}"#);
            signal("approve", r#"{"approved": true, "by": null}"#);
            signal("approve", r#""yes""#);
            let refusals = wait_for_refusals(&handle, 3).await;
            signal("aprove", r#"{"approved": true, "by": "typo"}"#);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let after_typo = status(&handle).await;
            // The well-formed decision as an update: the run answers with the round it decided.
            let (ok, said) = update(r#"{"approved": true, "by": "cli-user"}"#)
                .await
                .expect("the CLI ran");
            assert!(ok && said.contains("round"), "{said}");
            // The gate has closed: the same decision as a signal is refused on record.
            signal("approve", r#"{"approved": true, "by": "too-late"}"#);
            (refusals, after_typo, finish(&handle, "cli_signals").await)
        })
        .await;
    let reasons: Vec<&str> = refusals.rejected_signals.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("\"approved\" is given twice"), "{reasons:?}");
    assert!(
        reasons[1].contains("\"by\" must be a string (or left out), got null"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("must be a JSON object"), "{reasons:?}");
    assert_eq!(refusals.phase(), Phase::AwaitingApproval);
    assert!(refusals.decisions.is_empty(), "{:?}", refusals.decisions);
    assert_eq!(
        after_typo.phase(),
        Phase::AwaitingApproval,
        "a misspelled signal moved the gate"
    );
    assert_eq!(after_typo.rejected_signals.len(), 3);
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.approved_by, "cli-user");
}

/// `temporal <args> --address <address> --workflow-id shark-demo-tk-1`: (succeeded, what it printed).
fn temporal_cli(address: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(temporal_binary())
        .args(args)
        .args(["--address", address, "--workflow-id", "shark-demo-tk-1"])
        .output()
        .expect("the temporal CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `temporal workflow update execute --name approve --input <input>`: (succeeded, what it printed).
fn update_with_cli(address: &str, input: &str) -> (bool, String) {
    temporal_cli(
        address,
        &["workflow", "update", "execute", "--name", "approve", "--input", input],
    )
}
