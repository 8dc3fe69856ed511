//! The `pr` policy's two activities: the bead's branch pushed (with a lease) and its pull request
//! opened or updated; and what became of the pull request, read from the forge.

use chum_core::config::ProjectConfig;
use chum_core::gate_text::short_commit;
use chum_core::proto::{PullRequestCheck, PullRequestReport, PullRequestRequest, PullRequestState, PullRequestStatus};
use chum_core::pull_request::{ReviewComment as Comment, changes_requested_feedback};

use super::{ForgeError, GitHub, Review};
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
    let github = GitHub::new(forge)?;
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
    let pull = match github.open_pull_for(&req.branch).await? {
        Some(open) => {
            if open.title != req.title || open.body.as_deref().unwrap_or_default() != req.body {
                github.update_pull(open.number, &req.title, &req.body).await?
            } else {
                open
            }
        }
        None => match github
            .create_pull(&req.title, &req.branch, &project.base_branch, &req.body)
            .await
        {
            Ok(created) => {
                report.created = true;
                created
            }
            // Opened meanwhile (an earlier try whose answer was lost): that one is it.
            Err(ForgeError::Refused { status: 422, .. }) if github.open_pull_for(&req.branch).await?.is_some() => {
                github
                    .open_pull_for(&req.branch)
                    .await?
                    .ok_or_else(|| ForgeError::NotFound {
                        what: format!("open pull request for {}", req.branch),
                    })?
            }
            Err(ForgeError::Refused { message, .. }) => {
                report.problem = format!("the forge did not open a pull request for {}: {message}", req.branch);
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        },
    };
    report.number = pull.number;
    report.url = pull.html_url;
    Ok(report)
}

/// What became of the pull request: merged, closed, changes requested on the commit CHUM pushed
/// last, or still open (with how long to leave the forge alone when its rate limit says so).
pub async fn check_pull_request(
    project: &ProjectConfig,
    req: &PullRequestCheck,
) -> Result<PullRequestStatus, PullRequestError> {
    let forge = project.forge.as_ref().ok_or(ForgeError::NotConfigured)?;
    let github = GitHub::new(forge)?;
    match look(&github, req).await {
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

async fn look(github: &GitHub, req: &PullRequestCheck) -> Result<PullRequestStatus, ForgeError> {
    let pull = github.pull(req.number).await?;
    let mut status = PullRequestStatus {
        url: pull.html_url.clone(),
        ..PullRequestStatus::default()
    };
    if pull.merged == Some(true) || pull.merged_at.is_some() {
        status.set_state(PullRequestState::Merged);
        status.merge_commit = pull.merge_commit_sha.unwrap_or_default();
        status.actor = pull.merged_by.map(|u| u.login).unwrap_or_default();
        return Ok(status);
    }
    if pull.state == "closed" {
        status.set_state(PullRequestState::Closed);
        return Ok(status);
    }
    let reviews = github.reviews(req.number).await?;
    let asking = changes_asked(&reviews, &req.head);
    if asking.is_empty() {
        status.set_state(PullRequestState::Open);
        return Ok(status);
    }
    let mut feedback = Vec::new();
    for review in &asking {
        let comments = github.review_comments(req.number, review.id).await?;
        let comments: Vec<Comment<'_>> = comments
            .iter()
            .map(|c| Comment {
                path: &c.path,
                line: c.line,
                body: &c.body,
            })
            .collect();
        let who = review.user.as_ref().map(|u| u.login.as_str()).unwrap_or("a reviewer");
        feedback.push(changes_requested_feedback(who, &review.body, &comments));
    }
    status.set_state(PullRequestState::ChangesRequested);
    status.actor = asking
        .iter()
        .filter_map(|r| r.user.as_ref().map(|u| u.login.clone()))
        .collect::<Vec<_>>()
        .join(", ");
    status.feedback = feedback.join("\n");
    Ok(status)
}

/// The reviews of the commit CHUM pushed last whose author's latest word on it is "changes
/// requested" (a later approval by the same person, or a dismissal, takes it back).
fn changes_asked<'a>(reviews: &'a [Review], head: &str) -> Vec<&'a Review> {
    let mut latest: Vec<&Review> = Vec::new();
    for review in reviews.iter().filter(|r| r.commit_id.as_deref() == Some(head)) {
        if !matches!(review.state.as_str(), "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED") {
            continue;
        }
        let author = review.user.as_ref().map(|u| u.login.as_str());
        latest.retain(|r| r.user.as_ref().map(|u| u.login.as_str()) != author);
        latest.push(review);
    }
    latest.retain(|r| r.state == "CHANGES_REQUESTED");
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::github::User;

    fn review(id: u64, who: &str, state: &str, commit: &str) -> Review {
        Review {
            id,
            user: Some(User { login: who.into() }),
            body: format!("{state} by {who}"),
            state: state.into(),
            commit_id: Some(commit.into()),
        }
    }

    #[test]
    fn only_a_persons_latest_word_on_the_pushed_commit_asks_for_changes() {
        let reviews = vec![
            review(1, "bob", "CHANGES_REQUESTED", "old"),
            review(2, "carol", "CHANGES_REQUESTED", "new"),
            review(3, "carol", "APPROVED", "new"),
            review(4, "dave", "COMMENTED", "new"),
            review(5, "erin", "CHANGES_REQUESTED", "new"),
        ];
        let asked: Vec<u64> = changes_asked(&reviews, "new").iter().map(|r| r.id).collect();
        assert_eq!(asked, vec![5]);
        assert!(changes_asked(&reviews, "other").is_empty());
    }
}
