//! The `pr` policy and issues as intake against the fake GitLab (held to GitLab's recorded
//! answers and documented parameters), over real git: a bare "forge" repository and the
//! project's clone of it. The same activities as GitHub's; what differs is what GitLab says.

use std::path::PathBuf;

use chum_core::config::{ForgeConfig, ForgeKind, IntakeConfig, IntegrationPolicy, ProjectConfig};
use chum_core::proto::PullRequestState;
use chum_testkit::forge::{FakeGitLab, gitlab_recordings_installed};

use super::testing::{check, request, work};
use super::{ForgeError, IntakeReport, PullRequestError, check_pull_request, open_pull_request, sync_issues};
use crate::backlog::Backlog;
use crate::repo::git;
use crate::repo::testing::{project, remote_and_clone};

const TOKEN_ENV: &str = "FAKE_GITLAB_TOKEN_FOR_UNIT_TESTS";
const TOKEN: &str = "glpat-fake-token";

struct World {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    project: ProjectConfig,
    forge: FakeGitLab,
}

async fn world() -> Option<World> {
    if !gitlab_recordings_installed() {
        eprintln!("skipped: GitLab's recorded answers are not installed (scripts/setup.sh)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (bare, work) = remote_and_clone(dir.path(), None).await;
    // SAFETY: set once, to the same value, by every test of this module.
    unsafe { std::env::set_var(TOKEN_ENV, TOKEN) };
    let forge = FakeGitLab::start("tools/calc/core", &bare, TOKEN).await;
    let mut project = project(&work, IntegrationPolicy::PullRequest);
    project.forge = Some(ForgeConfig {
        kind: ForgeKind::GitLab,
        repo: "tools/calc/core".into(),
        api_url: forge.api_url(),
        token_env: TOKEN_ENV.into(),
        webhook_secret_env: None,
        poll: std::time::Duration::from_secs(1),
        wait: std::time::Duration::from_secs(60),
    });
    Some(World {
        _dir: dir,
        bare,
        project,
        forge,
    })
}

#[tokio::test]
async fn a_merge_request_is_opened_once_sent_back_by_threads_updated_and_read_back_merged() {
    let Some(w) = world().await else { return };
    let p = &w.project;
    let first = work(p, 1, "one.txt").await;

    // GitLab's answer to the creation is lost: the retry finds the merge request (GitLab says
    // 409 to a second one from the branch; CHUM never gets that far).
    w.forge.lose_next_answer_to("merge_requests/create");
    let lost = open_pull_request(p, &request(&first, "", "body 1")).await.unwrap_err();
    assert!(
        matches!(&lost, PullRequestError::Forge(e) if !e.is_permanent()),
        "{lost:?}"
    );
    let opened = open_pull_request(p, &request(&first, "", "body 1")).await.unwrap();
    assert!(opened.problem.is_empty() && !opened.created, "{opened:?}");
    assert!(
        opened.url.ends_with("/tools/calc/core/-/merge_requests/1"),
        "{}",
        opened.url
    );
    assert_eq!(chum_testkit::git(&w.bare, &["rev-parse", "chum/tk-1"]), first);
    assert_eq!(w.forge.merge_request_count(), 1);

    let open = check_pull_request(p, &check(opened.number, &first)).await.unwrap();
    assert_eq!(open.state(), PullRequestState::Open);

    // A reviewer leaves threads on lines of the pushed commit: changes asked for.
    w.forge.request_changes(
        opened.number,
        "bob",
        &[("calc.py", 7, "negative numbers?"), ("calc.py", 9, "and zero?")],
    );
    let asked = check_pull_request(p, &check(opened.number, &first)).await.unwrap();
    assert_eq!(
        (asked.state(), asked.actor.as_str()),
        (PullRequestState::ChangesRequested, "bob")
    );
    assert!(
        asked.feedback.contains("- calc.py:7: negative numbers?"),
        "{}",
        asked.feedback
    );
    assert!(asked.feedback.contains("- calc.py:9: and zero?"), "{}", asked.feedback);

    // The next attempt replaces the branch (leased); the same merge request is updated, and the
    // threads on the old commit ask nothing of the new one.
    let second = work(p, 2, "two.txt").await;
    let updated = open_pull_request(p, &request(&second, &first, "body 2")).await.unwrap();
    assert_eq!((updated.number, updated.created), (opened.number, false));
    assert_eq!(w.forge.merge_request_for("chum/tk-1").unwrap().2, "body 2");
    assert_eq!(w.forge.count("merge_requests/update"), 1);
    let open = check_pull_request(p, &check(opened.number, &second)).await.unwrap();
    assert_eq!(open.state(), PullRequestState::Open);

    // GitLab's rate limit (429, Retry-After): the run waits as told.
    w.forge.rate_limit_next(90);
    let limited = check_pull_request(p, &check(opened.number, &second)).await.unwrap();
    assert_eq!((limited.state(), limited.wait_secs), (PullRequestState::Open, 90));

    let merge = w.forge.merge(opened.number, "alice");
    let merged = check_pull_request(p, &check(opened.number, &second)).await.unwrap();
    assert_eq!(merged.state(), PullRequestState::Merged);
    assert_eq!(
        (merged.merge_commit.as_str(), merged.actor.as_str()),
        (merge.as_str(), "alice")
    );
    assert_eq!(git(&p.repo, &["rev-parse", "main"]).await.unwrap(), merge);
    assert_eq!(w.forge.count("merge_requests/create"), 1);
    w.forge.assert_no_violations();
}

#[tokio::test]
async fn a_closed_merge_request_and_a_gitlab_that_is_down_or_refuses_the_token() {
    let Some(mut w) = world().await else { return };
    let commit = work(&w.project, 1, "one.txt").await;
    w.forge.go_down_for(1);
    let down = open_pull_request(&w.project, &request(&commit, "", "body"))
        .await
        .unwrap_err();
    assert!(
        matches!(&down, PullRequestError::Forge(ForgeError::Server { status: 502, .. })),
        "{down:?}"
    );
    let opened = open_pull_request(&w.project, &request(&commit, "", "body"))
        .await
        .unwrap();
    assert!(opened.created);
    w.forge.close(opened.number, "carol");
    let closed = check_pull_request(&w.project, &check(opened.number, &commit))
        .await
        .unwrap();
    assert_eq!(
        (closed.state(), closed.actor.as_str()),
        (PullRequestState::Closed, "carol")
    );

    // A token GitLab does not take is a configuration problem, not worth retrying.
    const WRONG: &str = "FAKE_GITLAB_WRONG_TOKEN_FOR_UNIT_TESTS";
    // SAFETY: only this test sets this variable.
    unsafe { std::env::set_var(WRONG, "glpat-wrong") };
    if let Some(f) = w.project.forge.as_mut() {
        f.token_env = WRONG.into();
    }
    let refused = check_pull_request(&w.project, &check(opened.number, &commit))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, PullRequestError::Forge(e @ ForgeError::Unauthorized { status: 401, .. }) if e.is_permanent()),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains("glpat-wrong"), "{refused}");
    w.forge.assert_no_violations();
}

#[tokio::test]
async fn labelled_gitlab_issues_become_gl_beads_and_show_their_state() {
    let Some(mut w) = world().await else { return };
    std::fs::create_dir_all(w.project.repo.join(".beads")).unwrap();
    std::fs::write(w.project.repo.join(".beads/issues.jsonl"), "").unwrap();
    w.project.intake = Some(IntakeConfig { label: "chum".into() });
    let p = &w.project;
    let parser = w
        .forge
        .open_issue("Parse pairs", "We need a parser.", &["chum", "priority:1"]);
    let pairs = w.forge.open_issue("Sum pairs", "- [ ] blocked by #1", &["chum"]);
    w.forge.open_issue("Not for CHUM", "", &["question"]);

    let first = sync_issues(p).await.unwrap();
    assert_eq!(first.taken, ["gl-1", "gl-2"]);
    let backlog = Backlog::of(p);
    let items = backlog.items().await.unwrap();
    let two = items.iter().find(|b| b.id == "gl-2").unwrap();
    assert_eq!(two.dependencies, [("gl-1".to_string(), "blocks".to_string())]);
    assert_eq!(items.len(), 2, "an unlabelled issue is not taken");
    let (labels, notes) = w.forge.issue(parser);
    assert_eq!(labels, ["chum", "priority:1", "chum:queued"]);
    assert!(notes[0].contains("as bead `gl-1`"), "{notes:?}");
    assert_eq!(sync_issues(p).await.unwrap(), IntakeReport::default());

    backlog
        .update(
            "gl-2",
            chum_core::proto::BeadStatus::Blocked,
            "CHUM run shark-demo-gl-2: the merge request was closed unmerged",
            "",
        )
        .await
        .unwrap();
    sync_issues(p).await.unwrap();
    let (labels, notes) = w.forge.issue(pairs);
    assert_eq!(labels.last().map(String::as_str), Some("chum:blocked"));
    assert!(notes.last().unwrap().contains("closed unmerged"), "{notes:?}");
    assert_eq!(w.forge.count("notes/create"), 3);
    w.forge.assert_no_violations();
}

#[tokio::test]
async fn the_fake_gitlab_refuses_what_gitlab_does_not_take_and_its_webhooks_are_gitlabs() {
    let Some(w) = world().await else { return };
    super::install_crypto_provider();
    let client = reqwest::Client::new();
    let project = format!("{}/projects/tools%2Fcalc%2Fcore", w.forge.api_url());
    let ask = |url: String| client.get(url).header("PRIVATE-TOKEN", TOKEN).send();
    let unknown = ask(format!("{project}/merge_requests?colour=red")).await.unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    let bad_state = ask(format!("{project}/merge_requests?state=open")).await.unwrap();
    assert_eq!(bad_state.status().as_u16(), 400, "GitLab's state is `opened`");
    let labels_as_list = client
        .put(format!("{project}/issues/1"))
        .header("PRIVATE-TOKEN", TOKEN)
        .json(&serde_json::json!({"labels": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(labels_as_list.status().as_u16(), 400);
    let no_token = client.get(format!("{project}/merge_requests")).send().await.unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
    let violations = w.forge.served().len();
    assert_eq!(violations, 4);

    // A webhook about a merge request, held to GitLab's documented payload.
    let commit = work(&w.project, 1, "one.txt").await;
    let opened = open_pull_request(&w.project, &request(&commit, "", "body"))
        .await
        .unwrap();
    let (event, payload) = w.forge.webhook(opened.number, "Merge Request Hook", "update");
    assert_eq!(event, "Merge Request Hook");
    assert_eq!(payload["object_attributes"]["source_branch"], "chum/tk-1");
    assert_eq!(payload["project"]["path_with_namespace"], "tools/calc/core");
    w.forge.request_changes(opened.number, "bob", &[("calc.py", 1, "why?")]);
    let (_, note) = w.forge.webhook(opened.number, "Note Hook", "");
    assert_eq!(note["merge_request"]["source_branch"], "chum/tk-1");
}
