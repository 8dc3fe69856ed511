//! Pull requests (`integration = "pr"`) end to end, against the fake GitHub (every request, answer
//! and webhook checked against GitHub's OpenAPI descriptions) over a real bare repository: a bead's
//! gated work is pushed to `chum/<bead>` and proposed as a pull request whose body carries the
//! plan, each criterion with its evidence and the gates' verdicts; a review asking for changes
//! (delivered by a signed webhook) sends it back for another attempt with the comments as
//! findings, and the same pull request is updated; a forged webhook changes nothing; the forge
//! going down is retried without a second pull request; the merge closes the bead with the merge
//! commit. The bead comes from a labelled issue, which shows the bead's state as it goes and is
//! closed by the pull request (`Closes #1`). A pull request closed unmerged blocks its bead, found
//! by polling alone.

use std::path::PathBuf;
use std::time::Duration;

use chum_core::config::{RawForge, RawIntake};
use chum_core::proto::DispatchRequest;
use chum_core::proto::{GateName, Outcome, Phase, SharkInput};
use chum_testkit::forge::{FakeGitHub, contracts_installed, deliver};
use chum_testkit::*;
use serde_json::json;

const REPO: &str = "octo-org/calc";
const TOKEN_ENV: &str = "E2E_FORGE_TOKEN";
const TOKEN: &str = "ghp_e2e_fake_token_0123456789";
const SECRET_ENV: &str = "E2E_FORGE_WEBHOOK_SECRET";
const SECRET: &str = "webhook-secret-for-the-e2e-test";

/// A fake GitHub over a bare repository that will be the project's `origin` (made once the
/// harness's project exists), and the configuration change that points the project at it.
async fn forge(poll: &'static str) -> (tempfile::TempDir, PathBuf, FakeGitHub, Configure) {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("forge.git");
    let fake = FakeGitHub::start(REPO, &bare, TOKEN).await;
    // SAFETY: set before any worker of this test process runs, always to the same values.
    unsafe {
        std::env::set_var(TOKEN_ENV, TOKEN);
        std::env::set_var(SECRET_ENV, SECRET);
    }
    let api_url = fake.api_url();
    let configure: Configure = Box::new(move |c| {
        c.project().forge = Some(RawForge {
            repo: Some(REPO.into()),
            api_url: Some(api_url),
            token_env: Some(TOKEN_ENV.into()),
            webhook_secret_env: Some(SECRET_ENV.into()),
            poll: Some(poll.into()),
            ..RawForge::default()
        });
        c.project().intake = Some(RawIntake {
            forge: Some("github".into()),
            label: Some("chum".into()),
        });
    });
    (dir, bare, fake, configure)
}

/// One dispatcher round, as the Dispatcher runs it: forge issues taken, ready beads claimed.
pub(super) async fn dispatch(h: &Harness, client: &temporalio_client::Client) -> chum_core::proto::DispatchReport {
    chum_activities::DispatcherActivitiesImpl::new(h.config.clone())
        .steps()
        .dispatch_round_impl(client, DispatchRequest { project: "demo".into() })
        .await
        .expect("a dispatcher round")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bead_becomes_a_pull_request_that_review_sends_back_and_a_merge_closes() {
    if !contracts_installed() {
        eprintln!("skipped: GitHub's OpenAPI descriptions are not installed (scripts/setup.sh)");
        return;
    }
    // Polling every 15 minutes: only the webhooks can make this test go on in time.
    let (_forge_dir, bare, fake, configure) = forge("15m").await;
    let steps = vec![
        Step::planner().bead("gh-1").answer(GOOD_PLAN),
        calc_executor(GOOD_CALC).bead("gh-1").attempt(1),
        // The second attempt must be told what the reviewer on the forge said.
        calc_executor(GOOD_CALC)
            .bead("gh-1")
            .attempt(2)
            .expect_prompt_contains("calc.py:5: what about negative numbers?"),
        Step::reviewer().bead("gh-1").answer(REVIEW_APPROVE),
    ];
    let mut options = HarnessOptions::with_steps(steps);
    options.integration = "pr";
    options.configure.push(configure);
    let h = &Harness::start("pull-requests", options).await;
    h.publish(&bare);

    let fake = &fake;
    let (result, first, forged, merge, issue) = h
        .with_worker(|client| async move {
            let (api, _stop) = h.start_api(client.clone(), Vec::new(), None).await;
            let hook = format!("{api}/forge/github");
            // The bead comes from a labelled issue: a dispatcher round takes it and claims it.
            let issue = fake.open_issue("Add multiply", "calc needs multiply(a, b).", &["chum"]);
            let round = dispatch(h, &client).await;
            assert_eq!(round.taken_from_forge, ["gh-1"], "{round:?}");
            assert!(round.to_start.contains(&"gh-1".to_string()), "{round:?}");
            let run = start_shark(
                &client,
                &h.task_queue,
                SharkInput {
                    bead_id: "gh-1".into(),
                    ..h.input(limits())
                },
            )
            .await;
            wait_for_phase(&run, Phase::AwaitingApproval, 1).await;
            send_approve(&run, json!({"approved": true, "by": "ana"})).await;

            // The work is a pull request; the run waits for people, holding no slot.
            let first = wait_for_attempt_phase(&run, Phase::AwaitingPullRequest, 1).await;
            let number = first.pull_request_number;
            // The dispatcher sees it waits for people: it takes none of the project's capacity.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let running = chum_activities::dispatcher::running_sharks(&client, "demo")
                    .await
                    .unwrap();
                if running.awaiting_pull_request.contains("gh-1") {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never seen waiting: {running:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }

            // A forged delivery (the wrong secret) is refused and wakes nothing.
            fake.request_changes(
                number,
                "bob",
                "Not yet.",
                &[("calc.py", 5, "what about negative numbers?")],
            );
            let (event, payload) = fake.webhook(number, "pull_request_review", "submitted");
            let forged = deliver(&hook, "not-the-secret", &event, &payload).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(status(&run).await.attempt, 1, "a forged webhook changed nothing");

            // The real one: the run reads the review and tries again; the forge is down for a
            // while when the update goes out, and the retries open no second pull request.
            fake.go_down_for(3);
            assert_eq!(deliver(&hook, SECRET, &event, &payload).await, 202);
            let second = wait_for_attempt_phase(&run, Phase::AwaitingPullRequest, 2).await;
            assert_eq!(second.pull_request_number, number, "the same pull request, updated");

            // Merged on the forge; the webhook says so.
            let merge = fake.merge(number, "carol");
            let (event, payload) = fake.webhook(number, "pull_request", "closed");
            assert_eq!(deliver(&hook, SECRET, &event, &payload).await, 202);
            let result = finish(&run, "pull_request_merged").await;
            // The next round shows the bead's end on its issue.
            dispatch(h, &client).await;
            (result, first, forged, merge, issue)
        })
        .await;

    assert_eq!(forged, 401);
    // The first pull request's body: the plan, each criterion with its evidence, the verdicts.
    let (number, state, body) = fake.pull_for("chum/gh-1").expect("a pull request for chum/gh-1");
    assert_eq!((number, state.as_str()), (first.pull_request_number, "closed"));
    assert!(
        body.starts_with("Add multiply(a, b) to calc with a unit test"),
        "{body}"
    );
    assert!(body.contains("- [x] multiply(3, 4) == 12\n  evidence: "), "{body}");
    assert!(
        body.contains("| dod | 2 | passed |"),
        "the body was updated with attempt 2: {body}"
    );
    assert!(body.contains("approved by ana"), "{body}");
    assert!(body.contains("Closes #1"), "the pull request closes the issue: {body}");
    assert_eq!(fake.pull_count(), 1);
    assert_eq!(fake.count("pulls/create"), 1, "one creation, whatever the retries");

    // The bead is closed with the merge commit, and the local base followed the forge's.
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.commit, merge);
    assert!(
        result
            .pull_request_url
            .ends_with(&format!("/pull/{}", first.pull_request_number)),
        "{result:?}"
    );
    let prs = gates_of(&result, GateName::PullRequest);
    assert!(
        prs.iter()
            .any(|g| !g.passed && g.excerpt.contains("bob requested changes")),
        "{prs:?}"
    );
    assert!(
        prs.last()
            .is_some_and(|g| g.passed && g.excerpt.contains("merged by carol")),
        "{prs:?}"
    );
    let bead = h.read_bead("gh-1");
    assert_eq!(bead["status"], "closed", "{bead}");
    assert_eq!(git(&h.repo, &["rev-parse", "main"]), merge);
    // What was merged is attempt 2's work, pushed over attempt 1's with the lease.
    assert_eq!(git(&bare, &["show", &format!("{merge}:calc.py")]), GOOD_CALC.trim_end());
    let audit = std::fs::read_to_string(&h.config.api.audit_log).unwrap_or_default();
    assert!(audit.contains("refused: the signature does not match"), "{audit}");
    // The issue followed its bead: taken, worked on, done with the merge commit.
    let (labels, comments) = fake.issue(issue);
    assert_eq!(labels, ["chum", "chum:done"]);
    assert!(comments.iter().any(|c| c.contains("as bead `gh-1`")), "{comments:?}");
    assert!(
        comments.last().is_some_and(|c| c.contains(&merge[..12])),
        "{comments:?}"
    );
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_closed_unmerged_blocks_the_bead_found_by_polling() {
    if !contracts_installed() {
        eprintln!("skipped: GitHub's OpenAPI descriptions are not installed (scripts/setup.sh)");
        return;
    }
    let (_forge_dir, bare, fake, configure) = forge("1s").await;
    let steps = vec![
        Step::planner().bead("tk-1").answer(GOOD_PLAN),
        calc_executor(GOOD_CALC).bead("tk-1"),
        Step::reviewer().bead("tk-1").answer(REVIEW_APPROVE),
    ];
    let mut options = HarnessOptions::with_steps(steps);
    options.integration = "pr";
    options.configure.push(configure);
    let h = &Harness::start("pull-request-closed", options).await;
    h.publish(&bare);
    let fake = &fake;
    // The run's first look at its pull request meets the rate limit, and waits as long as GitHub
    // says; meanwhile someone closes it, and no webhook comes.
    fake.rate_limit_next(5);
    let result = h
        .with_worker(|client| async move {
            let run = start_shark(
                &client,
                &h.task_queue,
                SharkInput {
                    bead_id: "tk-1".into(),
                    ..h.input(limits())
                },
            )
            .await;
            wait_for_phase(&run, Phase::AwaitingApproval, 1).await;
            send_approve(&run, json!({"approved": true, "by": "ana"})).await;
            let waiting = wait_for_attempt_phase(&run, Phase::AwaitingPullRequest, 1).await;
            fake.close(waiting.pull_request_number);
            let result = finish(&run, "pull_request_closed").await;
            (result, timer_durations(&run).await)
        })
        .await;
    let (result, timers) = result;
    // The plan gate's timer, then the polls: 1 s, and after the rate-limited look the ~5 s GitHub
    // asked for (not the backoff's 2 s, nor a doubled 10 s); the next look finds it closed.
    assert_eq!(timers.len(), 3, "{timers:?}");
    assert_eq!(timers[1], Duration::from_secs(1), "{timers:?}");
    assert!(
        (3..=6).contains(&timers[2].as_secs()),
        "the rate limit's wait: {timers:?}"
    );
    assert_eq!(result.outcome(), Outcome::IntegrationFailed, "{result:?}");
    assert!(result.reason.contains("was closed without being merged"), "{result:?}");
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked", "{bead}");
    assert!(
        git(&bare, &["branch", "--list", "chum/tk-1"]).contains("chum/tk-1"),
        "the work stays on the forge's branch"
    );
    assert_ne!(
        git(&bare, &["rev-parse", "main"]),
        git(&bare, &["rev-parse", "chum/tk-1"])
    );
    fake.assert_no_violations();
}

/// `approve_result` with `pr`: the result gate waits with the result on the pull request (its body
/// says how to decide); a rejection is redone and updates the same pull request; the approval
/// shows in its body, and the run then waits for the merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_gate_waits_on_the_pull_request_and_a_rejection_updates_it() {
    if !contracts_installed() {
        eprintln!("skipped: GitHub's OpenAPI descriptions are not installed (scripts/setup.sh)");
        return;
    }
    let (_forge_dir, bare, fake, configure) = forge("15m").await;
    let steps = vec![
        Step::planner().bead("tk-1").answer(GOOD_PLAN),
        calc_executor(GOOD_CALC).bead("tk-1").attempt(1),
        calc_executor(GOOD_CALC)
            .bead("tk-1")
            .attempt(2)
            .expect_prompt_contains("name the test after the bug"),
        Step::reviewer().bead("tk-1").answer(REVIEW_APPROVE),
    ];
    let mut options = HarnessOptions::with_steps(steps);
    options.integration = "pr";
    options.configure.push(configure);
    options
        .configure
        .push(Box::new(|c| c.project().approve_result = Some(true)));
    let h = &Harness::start("result-on-pull-request", options).await;
    h.publish(&bare);
    let fake = &fake;
    let (result, waiting_body, approved_body) = h
        .with_worker(|client| async move {
            let (api, _stop) = h.start_api(client.clone(), Vec::new(), None).await;
            let run = start_shark(
                &client,
                &h.task_queue,
                SharkInput {
                    bead_id: "tk-1".into(),
                    ..h.input(limits())
                },
            )
            .await;
            wait_for_phase(&run, Phase::AwaitingApproval, 1).await;
            send_approve(&run, json!({"approved": true, "by": "ana"})).await;

            // The result waits for a person, and it is on the pull request already.
            let first = wait_for_attempt_phase(&run, Phase::AwaitingResultApproval, 1).await;
            assert!(first.pull_request_number > 0, "{first:?}");
            let (_, state, waiting_body) = fake.pull_for("chum/tk-1").expect("a pull request");
            assert_eq!(state, "open");
            send_approve(
                &run,
                json!({"approved": false, "by": "rosa", "feedback": "name the test after the bug"}),
            )
            .await;
            let second = wait_for_attempt_phase(&run, Phase::AwaitingResultApproval, 2).await;
            assert_eq!(
                second.pull_request_number, first.pull_request_number,
                "the same one, updated"
            );
            send_approve(&run, json!({"approved": true, "by": "rosa"})).await;
            wait_for_attempt_phase(&run, Phase::AwaitingPullRequest, 2).await;
            let (_, _, approved_body) = fake.pull_for("chum/tk-1").expect("a pull request");

            fake.merge(first.pull_request_number, "carol");
            let (event, payload) = fake.webhook(first.pull_request_number, "pull_request", "closed");
            assert_eq!(
                deliver(&format!("{api}/forge/github"), SECRET, &event, &payload).await,
                202
            );
            (
                finish(&run, "result_on_pull_request").await,
                waiting_body,
                approved_body,
            )
        })
        .await;

    assert!(waiting_body.contains("`chum approve tk-1`"), "{waiting_body}");
    assert!(!approved_body.contains("`chum approve tk-1`"), "{approved_body}");
    assert!(
        approved_body.contains("| result | 2 | passed | result approved by rosa |"),
        "{approved_body}"
    );
    assert!(
        approved_body.contains("| result | 1 | failed | result rejected by rosa"),
        "{approved_body}"
    );
    assert_eq!(fake.pull_count(), 1);
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 2);
    assert_eq!(h.read_bead("tk-1")["status"], "closed");
    fake.assert_no_violations();
}
