//! Merge requests on GitLab (`integration = "pr"`, `forge.kind = "gitlab"`) end to end, against
//! the fake GitLab (every answer held to GitLab's recorded answers, every request to its
//! documented parameters) over a real bare repository: a labelled GitLab issue becomes bead
//! `gl-1`; its gated work is pushed and proposed as a merge request; a delivery with the wrong
//! `X-Gitlab-Token` is refused and changes nothing; threads on the pushed commit (announced by a
//! Note Hook) send it back for another attempt with the threads as findings, and the same merge
//! request is updated; the merge (a Merge Request Hook) closes the bead with the merge commit and
//! the issue shows it.

use std::time::Duration;

use chum_core::config::{RawForge, RawIntake};
use chum_core::proto::{GateName, Outcome, Phase, SharkInput};
use chum_testkit::forge::{FakeGitLab, deliver_gitlab, gitlab_recordings_installed};
use chum_testkit::*;
use serde_json::json;

use super::pull_requests::dispatch;

const REPO: &str = "tools/calc";
const TOKEN_ENV: &str = "E2E_GITLAB_TOKEN";
const TOKEN: &str = "glpat-e2e-fake-token-0123456789";
const SECRET_ENV: &str = "E2E_GITLAB_WEBHOOK_SECRET";
const SECRET: &str = "gitlab-webhook-secret-for-the-e2e-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_issue_becomes_a_merge_request_that_threads_send_back_and_a_merge_closes() {
    if !gitlab_recordings_installed() {
        eprintln!("skipped: GitLab's recorded answers are not installed (scripts/setup.sh)");
        return;
    }
    let forge_dir = tempfile::tempdir().unwrap();
    let bare = forge_dir.path().join("forge.git");
    let fake = FakeGitLab::start(REPO, &bare, TOKEN).await;
    // SAFETY: set before any worker of this test process runs, always to the same values.
    unsafe {
        std::env::set_var(TOKEN_ENV, TOKEN);
        std::env::set_var(SECRET_ENV, SECRET);
    }
    let api_url = fake.api_url();
    let configure: Configure = Box::new(move |c| {
        c.project().forge = Some(RawForge {
            kind: Some("gitlab".into()),
            repo: Some(REPO.into()),
            api_url: Some(api_url),
            token_env: Some(TOKEN_ENV.into()),
            webhook_secret_env: Some(SECRET_ENV.into()),
            // Polling every 15 minutes: only the webhooks can make this test go on in time.
            poll: Some("15m".into()),
            ..RawForge::default()
        });
        c.project().intake = Some(RawIntake {
            forge: Some("gitlab".into()),
            label: Some("chum".into()),
        });
    });
    let steps = vec![
        Step::planner().bead("gl-1").answer(GOOD_PLAN),
        calc_executor(GOOD_CALC).bead("gl-1").attempt(1),
        calc_executor(GOOD_CALC)
            .bead("gl-1")
            .attempt(2)
            .expect_prompt_contains("calc.py:5: what about negative numbers?"),
        Step::reviewer().bead("gl-1").answer(REVIEW_APPROVE),
    ];
    let mut options = HarnessOptions::with_steps(steps);
    options.integration = "pr";
    options.configure.push(configure);
    let h = &Harness::start("merge-requests", options).await;
    h.publish(&bare);

    let fake = &fake;
    let (result, first, forged, merge, issue) = h
        .with_worker(|client| async move {
            let (api, _stop) = h.start_api(client.clone(), Vec::new(), None).await;
            let hook = format!("{api}/forge/gitlab");
            let issue = fake.open_issue("Add multiply", "calc needs multiply(a, b).", &["chum"]);
            let round = dispatch(h, &client).await;
            assert_eq!(round.taken_from_forge, ["gl-1"], "{round:?}");
            let run = start_shark(
                &client,
                &h.task_queue,
                SharkInput {
                    bead_id: "gl-1".into(),
                    ..h.input(limits())
                },
            )
            .await;
            wait_for_phase(&run, Phase::AwaitingApproval, 1).await;
            send_approve(&run, json!({"approved": true, "by": "ana"})).await;
            let first = wait_for_attempt_phase(&run, Phase::AwaitingPullRequest, 1).await;
            let iid = first.pull_request_number;

            // Threads on lines of the pushed commit; a delivery with the wrong token wakes nothing.
            fake.request_changes(iid, "bob", &[("calc.py", 5, "what about negative numbers?")]);
            let (event, payload) = fake.webhook(iid, "Note Hook", "");
            let forged = deliver_gitlab(&hook, "not-the-secret", &event, &payload).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(status(&run).await.attempt, 1, "a forged webhook changed nothing");

            // The real one: the run reads the threads and tries again; GitLab is down for a
            // while when the update goes out, and no second merge request is opened.
            fake.go_down_for(3);
            assert_eq!(deliver_gitlab(&hook, SECRET, &event, &payload).await, 202);
            let second = wait_for_attempt_phase(&run, Phase::AwaitingPullRequest, 2).await;
            assert_eq!(second.pull_request_number, iid, "the same merge request, updated");

            let merge = fake.merge(iid, "carol");
            let (event, payload) = fake.webhook(iid, "Merge Request Hook", "merge");
            assert_eq!(deliver_gitlab(&hook, SECRET, &event, &payload).await, 202);
            let result = finish(&run, "merge_request_merged").await;
            dispatch(h, &client).await;
            (result, first, forged, merge, issue)
        })
        .await;

    assert_eq!(forged, 401);
    let (iid, state, description) = fake.merge_request_for("chum/gl-1").expect("a merge request");
    assert_eq!((iid, state.as_str()), (first.pull_request_number, "merged"));
    assert!(
        description.contains("- [x] multiply(3, 4) == 12\n  evidence: "),
        "{description}"
    );
    assert!(
        description.contains("| dod | 2 | passed |"),
        "updated by attempt 2: {description}"
    );
    assert!(description.contains("Closes #1"), "{description}");
    assert_eq!(
        fake.count("merge_requests/create"),
        1,
        "one creation, whatever the retries"
    );

    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.commit, merge);
    assert!(
        result
            .pull_request_url
            .ends_with(&format!("/{REPO}/-/merge_requests/{iid}")),
        "{result:?}"
    );
    let asked = gates_of(&result, GateName::PullRequest);
    assert!(
        asked.iter().any(|g| !g.passed && g.excerpt.contains("bob")),
        "{asked:?}"
    );
    assert!(
        asked
            .last()
            .is_some_and(|g| g.passed && g.excerpt.contains("merged by carol")),
        "{asked:?}"
    );
    assert_eq!(h.read_bead("gl-1")["status"], "closed");
    assert_eq!(git(&h.repo, &["rev-parse", "main"]), merge);
    let audit = std::fs::read_to_string(&h.config.api.audit_log).unwrap_or_default();
    assert!(audit.contains("refused: the token does not match"), "{audit}");
    let (labels, notes) = fake.issue(issue);
    assert_eq!(labels, ["chum", "chum:done"]);
    assert!(notes.last().is_some_and(|n| n.contains(&merge[..12])), "{notes:?}");
    fake.assert_no_violations();
}
