//! Landing on a remote (`integration = "push"`) end to end: the project's checkout is a clone of
//! a bare "forge" repository. A bead whose remote moved while it worked is brought up to the
//! remote's tip, verified there again and pushed (a fast-forward, never forced); a push the
//! remote's pre-receive hook refuses blocks the bead with what the hook said, and the remote keeps
//! what it had.

use chum_core::proto::{GateName, Outcome, Phase, SharkInput};
use chum_testkit::*;
use serde_json::json;

fn steps() -> Vec<Step> {
    vec![
        Step::planner().bead("tk-1").answer(GOOD_PLAN),
        calc_executor(GOOD_CALC).bead("tk-1"),
        Step::reviewer().bead("tk-1").answer(REVIEW_APPROVE),
        Step::planner().bead("tk-3").answer(plan_of(&["notes.txt"])),
        Step::executor()
            .bead("tk-3")
            .answer("Wrote the notes.")
            .write("notes.txt", "pairs are parsed next\n"),
        Step::reviewer().bead("tk-3").answer(REVIEW_ONE),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beads_land_on_the_remotes_base_verified_on_its_tip_and_a_refused_push_blocks_the_bead() {
    let mut options = HarnessOptions::with_steps(steps());
    options.integration = "push";
    let h = &Harness::start("push-remote", options).await;
    let top = h.dir.path();
    let forge = top.join("forge.git");
    let url = h.publish(&forge);
    // Someone else pushes to the forge's main before tk-1 lands.
    let other = top.join("someone-else");
    git(top, &["clone", "-q", &url, &other.display().to_string()]);
    std::fs::write(other.join("NOTES.md"), "release notes\n").unwrap();
    git(&other, &["add", "NOTES.md"]);
    git(&other, &["commit", "-q", "-m", "notes from someone else"]);
    git(&other, &["push", "-q", "origin", "main"]);

    let hook = forge.join("hooks/pre-receive");
    let forge_dir = forge.clone();
    let (first, second, forge_before_refusal) = h
        .with_worker(|client| async move {
            let bead = |id: &str| SharkInput {
                bead_id: id.into(),
                ..h.input(limits())
            };
            let one = start_shark(&client, &h.task_queue, bead("tk-1")).await;
            wait_for_phase(&one, Phase::AwaitingApproval, 1).await;
            send_approve(&one, json!({"approved": true, "by": "ana"})).await;
            let first = finish(&one, "push_landed").await;

            std::fs::write(
                &hook,
                "#!/bin/sh\necho 'main is frozen for the release: ask #release' >&2\nexit 1\n",
            )
            .unwrap();
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let forge_before_refusal = git(&forge_dir, &["rev-parse", "main"]);
            let three = start_shark(&client, &h.task_queue, bead("tk-3")).await;
            wait_for_phase(&three, Phase::AwaitingApproval, 1).await;
            send_approve(&three, json!({"approved": true, "by": "ana"})).await;
            let second = finish(&three, "push_refused").await;
            (first, second, forge_before_refusal)
        })
        .await;

    // tk-1 is on the forge's main, on top of what someone else pushed, and was verified there.
    assert_eq!(first.outcome(), Outcome::Integrated, "{first:?}");
    assert!(first.reason.contains("origin/main"), "{first:?}");
    let log = git(&forge, &["log", "--first-parent", "--format=%s", "main"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert!(
        subjects[0].starts_with("tk-1: ") && subjects[1] == "notes from someone else",
        "{log}"
    );
    assert_eq!(git(&forge, &["show", "main:calc.py"]), GOOD_CALC.trim_end());
    let dods = gates_of(&first, GateName::Dod);
    assert!(
        dods.iter().any(|d| d.passed && d.verification > 0),
        "the DoD ran again on the forge's tip: {dods:?}"
    );
    // The local main followed the forge's.
    assert_eq!(
        git(&h.repo, &["rev-parse", "main"]),
        git(&forge, &["rev-parse", "main"])
    );

    // tk-3's push was refused: the bead is blocked with the hook's words, the forge unchanged.
    assert_eq!(second.outcome(), Outcome::IntegrationFailed, "{second:?}");
    assert!(
        second.reason.contains("main is frozen for the release: ask #release"),
        "{second:?}"
    );
    assert_eq!(git(&forge, &["rev-parse", "main"]), forge_before_refusal);
    let bead = h.read_bead("tk-3");
    assert_eq!(bead["status"], "blocked", "{bead}");
    assert!(
        git(&h.repo, &["branch", "--list", "chum/tk-3"]).contains("chum/tk-3"),
        "the work stays on its branch"
    );

    // `chum doctor` asks the remote as the worker does.
    let config = h.write_config(&h.config_file);
    let (_, text, err) = run_chum(&config, &["doctor"]);
    let line = text.lines().find(|l| l.contains("remote")).unwrap_or_default();
    assert!(line.contains("origin/main at"), "{text}\n{err}");
    git(&h.repo, &["remote", "set-url", "origin", "file:///nowhere/forge.git"]);
    let (_, text, err) = run_chum(&config, &["doctor"]);
    let line = text.lines().find(|l| l.contains("remote")).unwrap_or_default();
    assert!(line.contains("could not be reached"), "{text}\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_remote_is_retried_then_the_run_fails_with_the_reason_and_retry_reopens_the_bead() {
    let mut options = HarnessOptions::with_steps(steps());
    options.integration = "push";
    let h = &Harness::start("push-unreachable", options).await;
    git(&h.repo, &["remote", "add", "origin", "file:///nowhere/forge.git"]);
    let result = h
        .with_worker(|client| async move {
            let one = start_shark(
                &client,
                &h.task_queue,
                SharkInput {
                    bead_id: "tk-1".into(),
                    ..h.input(limits())
                },
            )
            .await;
            wait_for_phase(&one, Phase::AwaitingApproval, 1).await;
            send_approve(&one, json!({"approved": true, "by": "ana"})).await;
            finish(&one, "push_unreachable").await
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Failed, "{result:?}");
    assert!(
        result.reason.contains("could not be reached") && result.reason.contains("/nowhere/forge.git"),
        "git's reason reaches the run: {result:?}"
    );
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked", "{bead}");
    assert!(
        git(&h.repo, &["branch", "--list", "chum/tk-1"]).contains("chum/tk-1"),
        "the gated work stays on its branch"
    );
    // Once the remote is back, a person reopens the bead for the dispatcher.
    let config = h.write_config(&h.config_file);
    let (code, text, err) = run_chum(&config, &["retry", "tk-1", "--note", "the forge is back"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("tk-1 is open again (was blocked)"), "{text}");
    assert_eq!(h.read_bead("tk-1")["status"], "open");
}
