//! The `pr` policy's two activities: the bead's branch pushed (with a lease) and its pull request
//! opened or updated; and what became of the pull request, read from the forge.

use chum_core::config::ProjectConfig;
use chum_core::gate_text::short_commit;
use chum_core::proto::{PullRequestCheck, PullRequestReport, PullRequestRequest, PullRequestState, PullRequestStatus};

use super::{Forge, ForgeError};
use crate::repo::{BranchPush, RepoProblem, follow_remote_base, push_branch};

/// What stopped an activity of the `pr` policy.
#[derive(Debug, thiserror::Error)]
pub enum PullRequestError {
    #[error(transparent)]
    Repo(#[from] RepoProblem),
    #[error(transparent)]
    Forge(#[from] ForgeError),
}

/// Pushes the bead's commit to its branch and opens the pull request, or updates the open one.
pub async fn open_pull_request(
    project: &ProjectConfig,
    req: &PullRequestRequest,
) -> Result<PullRequestReport, PullRequestError> {
    let forge = project.forge.as_ref().ok_or(ForgeError::NotConfigured)?;
    // The client first: a missing token is said before anything is pushed.
    let forge = Forge::new(forge)?;
    let mut report = PullRequestReport {
        head: req.commit.clone(),
        ..PullRequestReport::default()
    };
    match push_branch(project, &req.branch, &req.commit, &req.leased_head).await? {
        BranchPush::Pushed => {}
        BranchPush::ChangedByOthers { found } => {
            let found = if found.is_empty() {
                "deleted".to_string()
            } else {
                format!("at {}", short_commit(&found))
            };
            let pushed = if req.leased_head.is_empty() {
                "it did not exist before CHUM's first push".to_string()
            } else {
                format!("CHUM pushed {} last", short_commit(&req.leased_head))
            };
            report.problem = format!(
                "{} on {} was changed by someone else (it is {found}; {pushed}); CHUM does not overwrite work it did not push. The bead's work is on the local branch {}",
                req.branch, project.remote, req.branch
            );
            return Ok(report);
        }
        BranchPush::Refused(said) => {
            report.problem = format!("{} refused the push of {}: {said}", project.remote, req.branch);
            return Ok(report);
        }
    }
    let pull = match forge.open_pull_for(&req.branch).await? {
        Some(open) => {
            if open.title != req.title || open.body != req.body {
                forge.update_pull(open.number, &req.title, &req.body).await?
            } else {
                open
            }
        }
        None => match forge
            .create_pull(&req.title, &req.branch, &project.base_branch, &req.body)
            .await
        {
            Ok(created) => {
                report.created = true;
                created
            }
            // Opened meanwhile (an earlier try whose answer was lost): that one is it. GitHub
            // says so with 422, GitLab with 409.
            Err(ForgeError::Refused {
                status: 422 | 409,
                message,
                ..
            }) => match forge.open_pull_for(&req.branch).await? {
                Some(open) => open,
                None => {
                    report.problem = format!(
                        "the forge did not open a {} for {}: {message}",
                        forge.kind().pull_request_name(),
                        req.branch
                    );
                    return Ok(report);
                }
            },
            Err(ForgeError::Refused { message, .. }) => {
                report.problem = format!(
                    "the forge did not open a {} for {}: {message}",
                    forge.kind().pull_request_name(),
                    req.branch
                );
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        },
    };
    report.number = pull.number;
    report.url = pull.url;
    Ok(report)
}

/// What became of the pull request: merged, closed, changes requested on the commit CHUM pushed
/// last, or still open (with how long to leave the forge alone when its rate limit says so).
pub async fn check_pull_request(
    project: &ProjectConfig,
    req: &PullRequestCheck,
) -> Result<PullRequestStatus, PullRequestError> {
    let forge = project.forge.as_ref().ok_or(ForgeError::NotConfigured)?;
    let forge = Forge::new(forge)?;
    match forge.pull_status(req.number, &req.head).await {
        Ok(status) => {
            if status.state() == PullRequestState::Merged {
                // The next bead starts from what was merged; a remote that does not answer now
                // is fetched again later.
                if let Err(e) = follow_remote_base(project).await {
                    tracing::info!(project = %project.name, "the local base did not follow the merge yet: {e}");
                }
            }
            Ok(status)
        }
        Err(ForgeError::RateLimited { wait_secs }) => Ok(PullRequestStatus {
            state: PullRequestState::Open as i32,
            wait_secs: u32::try_from(wait_secs).unwrap_or(u32::MAX),
            ..PullRequestStatus::default()
        }),
        Err(e) => Err(e.into()),
    }
}

/// The two activities against the fake GitHub (GitHub's OpenAPI description checks every request
/// and answer), over real git: a bare "forge" repository and the project's clone of it.
#[cfg(test)]
mod against_the_fake_forge {
    use std::path::{Path, PathBuf};

    use chum_core::config::{ForgeConfig, ForgeKind, IntegrationPolicy};
    use chum_testkit::forge::{FakeGitHub, contracts_installed};

    use super::*;
    use crate::forge::testing::{check, request, work};
    use crate::repo::git;
    use crate::repo::testing::{project, remote_and_clone};

    const TOKEN_ENV: &str = "FAKE_FORGE_TOKEN_FOR_UNIT_TESTS";

    struct World {
        _dir: tempfile::TempDir,
        bare: PathBuf,
        project: ProjectConfig,
        forge: FakeGitHub,
    }

    async fn world() -> Option<World> {
        if !contracts_installed() {
            eprintln!("skipped: GitHub's OpenAPI descriptions are not installed (scripts/setup.sh)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (bare, work) = remote_and_clone(dir.path(), None).await;
        // SAFETY: set once, to the same value, by every test of this module.
        unsafe { std::env::set_var(TOKEN_ENV, "ghp_fake_token") };
        let forge = FakeGitHub::start("octo-org/calc", &bare, "ghp_fake_token").await;
        let mut project = project(&work, IntegrationPolicy::PullRequest);
        project.forge = Some(ForgeConfig {
            kind: ForgeKind::GitHub,
            repo: "octo-org/calc".into(),
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

    fn remote_tip(bare: &Path, branch: &str) -> String {
        chum_testkit::git(bare, &["rev-parse", branch])
    }

    #[tokio::test]
    async fn a_pull_request_is_opened_once_updated_in_place_and_read_back_until_it_is_merged() {
        let Some(w) = world().await else { return };
        let p = &w.project;
        let first = work(p, 1, "one.txt").await;

        // The forge's answer to the creation is lost: the retry finds the pull request.
        w.forge.lose_next_answer_to("pulls/create");
        let lost = open_pull_request(p, &request(&first, "", "body 1")).await.unwrap_err();
        assert!(
            matches!(&lost, PullRequestError::Forge(e) if !e.is_permanent()),
            "{lost:?}"
        );
        let opened = open_pull_request(p, &request(&first, "", "body 1")).await.unwrap();
        assert!(!opened.created, "the retry found the one the lost answer was about");
        assert!(opened.problem.is_empty(), "{opened:?}");
        assert_eq!(remote_tip(&w.bare, "chum/tk-1"), first);
        let again = open_pull_request(p, &request(&first, "", "body 1")).await.unwrap();
        assert_eq!((again.number, again.created), (opened.number, false));
        assert_eq!(w.forge.pull_count(), 1, "one pull request, however often it is asked");
        assert_eq!(w.forge.count("pulls/update"), 0, "nothing changed, nothing written");

        // Still open, nobody said anything.
        let open = check_pull_request(p, &check(opened.number, &first)).await.unwrap();
        assert_eq!(open.state(), PullRequestState::Open);

        // A reviewer asks for changes on the pushed commit, with a comment on a line.
        w.forge.request_changes(
            opened.number,
            "bob",
            "Please handle negatives",
            &[("calc.py", 7, "negative numbers?")],
        );
        let asked = check_pull_request(p, &check(opened.number, &first)).await.unwrap();
        assert_eq!(asked.state(), PullRequestState::ChangesRequested);
        assert_eq!(asked.actor, "bob");
        assert!(
            asked.feedback.contains("- calc.py:7: negative numbers?"),
            "{}",
            asked.feedback
        );

        // The next attempt's work replaces the branch (leased) and the same pull request is updated.
        let second = work(p, 2, "two.txt").await;
        let updated = open_pull_request(p, &request(&second, &first, "body 2")).await.unwrap();
        assert_eq!((updated.number, updated.created), (opened.number, false));
        assert_eq!(remote_tip(&w.bare, "chum/tk-1"), second);
        assert_eq!(w.forge.pull_for("chum/tk-1").unwrap().2, "body 2");
        // The old review was of the old commit: it asks nothing of the new one.
        let open = check_pull_request(p, &check(opened.number, &second)).await.unwrap();
        assert_eq!(open.state(), PullRequestState::Open);

        // The rate limit: the run is told how long to wait instead of failing.
        w.forge.rate_limit_next(120);
        let limited = check_pull_request(p, &check(opened.number, &second)).await.unwrap();
        assert_eq!(limited.state(), PullRequestState::Open);
        assert!((100..=121).contains(&limited.wait_secs), "{limited:?}");

        // Merged on the forge: a real merge commit, and the local base follows it.
        let merge = w.forge.merge(opened.number, "alice");
        let merged = check_pull_request(p, &check(opened.number, &second)).await.unwrap();
        assert_eq!(merged.state(), PullRequestState::Merged);
        assert_eq!(
            (merged.merge_commit.as_str(), merged.actor.as_str()),
            (merge.as_str(), "alice")
        );
        assert_eq!(git(&p.repo, &["rev-parse", "main"]).await.unwrap(), merge);
        w.forge.assert_no_violations();
    }

    #[tokio::test]
    async fn a_forge_that_is_down_is_worth_retrying_and_a_closed_pull_request_is_read_as_closed() {
        let Some(w) = world().await else { return };
        let p = &w.project;
        let commit = work(p, 1, "one.txt").await;
        w.forge.go_down_for(1);
        let down = open_pull_request(p, &request(&commit, "", "body")).await.unwrap_err();
        assert!(
            matches!(&down, PullRequestError::Forge(ForgeError::Server { status: 502, .. })),
            "{down:?}"
        );
        assert!(matches!(&down, PullRequestError::Forge(e) if !e.is_permanent()));
        let opened = open_pull_request(p, &request(&commit, "", "body")).await.unwrap();
        assert!(opened.created);
        w.forge.close(opened.number);
        let closed = check_pull_request(p, &check(opened.number, &commit)).await.unwrap();
        assert_eq!(closed.state(), PullRequestState::Closed);
        assert_eq!(w.forge.count("pulls/create"), 1);
        w.forge.assert_no_violations();
    }

    #[tokio::test]
    async fn a_wrong_token_is_a_configuration_problem_named_by_its_variable() {
        let Some(mut w) = world().await else { return };
        if let Some(f) = w.project.forge.as_mut() {
            f.token_env = "FAKE_FORGE_TOKEN_NOBODY_SET".into();
        }
        let commit = work(&w.project, 1, "one.txt").await;
        let missing = open_pull_request(&w.project, &request(&commit, "", "body"))
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("FAKE_FORGE_TOKEN_NOBODY_SET"), "{missing}");
        assert!(
            chum_testkit::git(&w.bare, &["branch", "--list", "chum/tk-1"]).is_empty(),
            "nothing is pushed before the forge can be asked"
        );
        w.forge.assert_no_violations();
    }

    #[tokio::test]
    async fn labelled_issues_become_beads_once_and_show_their_beads_state() {
        let Some(mut w) = world().await else { return };
        std::fs::create_dir_all(w.project.repo.join(".beads")).unwrap();
        std::fs::write(w.project.repo.join(".beads/issues.jsonl"), "").unwrap();
        w.project.intake = Some(chum_core::config::IntakeConfig { label: "chum".into() });
        let p = &w.project;
        let parser = w.forge.open_issue(
            "Parse pairs",
            "We need a parser.",
            &["chum", "priority:1", "fanout:2", "bug"],
        );
        let pairs = w
            .forge
            .open_issue("Sum pairs", "- [ ] blocked by #1\n\nThen sum them.", &["chum"]);
        let other = w.forge.open_issue("Not for CHUM", "", &["question"]);

        let first = crate::forge::sync_issues(p).await.unwrap();
        assert_eq!(first.taken, ["gh-1", "gh-2"]);
        assert_eq!(first.updated, [parser, pairs]);
        let backlog = crate::backlog::Backlog::of(p);
        let one = backlog.get("gh-1").await.unwrap();
        assert_eq!((one.title.as_str(), one.priority), ("Parse pairs", 1));
        assert!(
            one.labels.contains(&"fanout:2".to_string()) && one.labels.contains(&"forge:#1".to_string()),
            "{one:?}"
        );
        let items = backlog.items().await.unwrap();
        let two = items.iter().find(|b| b.id == "gh-2").unwrap();
        assert_eq!(two.dependencies, [("gh-1".to_string(), "blocks".to_string())]);
        assert!(
            !items.iter().any(|b| b.id == format!("gh-{other}")),
            "an unlabelled issue is not taken"
        );
        let (labels, comments) = w.forge.issue(parser);
        assert_eq!(labels, ["chum", "priority:1", "fanout:2", "bug", "chum:queued"]);
        assert_eq!(comments.len(), 1);
        assert!(comments[0].contains("as bead `gh-1`"), "{comments:?}");

        // Nothing changed: nothing is said again.
        let again = crate::forge::sync_issues(p).await.unwrap();
        assert_eq!(again, crate::forge::IntakeReport::default());

        // Blocked by an issue CHUM has not taken: taken all the same, and said.
        let waits = w.forge.open_issue("Document pairs", "blocked by #3", &["chum"]);
        let said = crate::forge::sync_issues(p).await.unwrap();
        assert_eq!(said.taken, [format!("gh-{waits}")]);
        assert!(
            said.problems
                .iter()
                .any(|p| p.contains("blocked by #3, which CHUM has not taken")),
            "{said:?}"
        );

        // The bead moves on: the issue shows it, once per change.
        backlog.claim("gh-1").await.unwrap();
        crate::forge::sync_issues(p).await.unwrap();
        backlog
            .update(
                "gh-1",
                chum_core::proto::BeadStatus::Closed,
                "",
                "CHUM run shark-demo-gh-1: commit abc merged into main",
            )
            .await
            .unwrap();
        crate::forge::sync_issues(p).await.unwrap();
        let (labels, comments) = w.forge.issue(parser);
        assert_eq!(labels.last().map(String::as_str), Some("chum:done"));
        assert_eq!(comments.len(), 3, "{comments:?}");
        assert!(comments[1].contains("`chum approve gh-1`"), "{comments:?}");
        assert!(comments[2].contains("commit abc merged into main"), "{comments:?}");
        assert_eq!(w.forge.count("issues/create-comment"), 5);
        w.forge.assert_no_violations();
    }

    #[tokio::test]
    async fn the_fake_refuses_what_githubs_description_does_not_allow() {
        let Some(w) = world().await else { return };
        let client = {
            crate::forge::install_crypto_provider();
            reqwest::Client::new()
        };
        let ask = |url: String| client.get(url).bearer_auth("ghp_fake_token").send();
        let unknown = ask(format!("{}/repos/octo-org/calc/pulls?colour=red", w.forge.api_url()))
            .await
            .unwrap();
        assert_eq!(unknown.status().as_u16(), 422);
        let bad_type = ask(format!("{}/repos/octo-org/calc/pulls?per_page=many", w.forge.api_url()))
            .await
            .unwrap();
        assert_eq!(bad_type.status().as_u16(), 422);
        let no_path = ask(format!("{}/repos/octo-org/calc/pulls/1/teleport", w.forge.api_url()))
            .await
            .unwrap();
        assert_eq!(no_path.status().as_u16(), 404);
        let served = w.forge.served();
        assert_eq!(served.len(), 3);
        let caught = std::panic::catch_unwind(|| w.forge.assert_no_violations()).unwrap_err();
        let said = caught.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            said.contains("\"colour\" is not one it takes") && said.contains("per_page"),
            "{said}"
        );
    }

    #[tokio::test]
    async fn the_webhooks_the_fake_sends_match_githubs_webhook_description() {
        let Some(w) = world().await else { return };
        let commit = work(&w.project, 1, "one.txt").await;
        let opened = open_pull_request(&w.project, &request(&commit, "", "body"))
            .await
            .unwrap();
        w.forge.request_changes(opened.number, "bob", "no", &[]);
        let (event, review) = w.forge.webhook(opened.number, "pull_request_review", "submitted");
        assert_eq!(event, "pull_request_review");
        assert_eq!(review["pull_request"]["head"]["ref"], "chum/tk-1");
        w.forge.merge(opened.number, "alice");
        let (_, closed) = w.forge.webhook(opened.number, "pull_request", "closed");
        assert_eq!(closed["pull_request"]["merged"], true);
        w.forge.assert_no_violations();
    }
}
