//! GitHub's REST API, the part CHUM uses: pull requests, their reviews and review comments, and
//! issues (intake). Typed requests and responses (serde), checked in the tests against GitHub's
//! published OpenAPI description (the fake forge validates every request and every response it
//! serves); the token travels in the `Authorization` header only and is never logged.

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use chum_core::config::ForgeConfig;
use chum_core::proto::{PullRequestState, PullRequestStatus};
use chum_core::pull_request::{ReviewComment as Comment, changes_requested_feedback};

use super::{ForgeError, ForgeIssue, ForgePull, http};

/// The REST API version CHUM's requests are written against.
const API_VERSION: &str = "2022-11-28";

/// A client for one repository on GitHub.
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    repo: String,
    owner: String,
    token: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BranchRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

/// A pull request (`pull-request` and `pull-request-simple` in the description).
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    pub state: String,
    pub title: String,
    pub body: Option<String>,
    pub head: BranchRef,
    /// Only in the full object (`GET .../pulls/{n}`).
    #[serde(default)]
    pub merged: Option<bool>,
    pub merged_at: Option<String>,
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub merged_by: Option<User>,
}

/// A review (`pull-request-review`).
#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    pub id: u64,
    pub user: Option<User>,
    pub body: String,
    /// APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING.
    pub state: String,
    pub commit_id: Option<String>,
}

/// A review comment on a line (`review-comment`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReviewComment {
    pub path: String,
    pub line: Option<u64>,
    pub body: String,
}

/// A label on an issue (`label`).
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub name: String,
}

/// An issue (`issue`); a pull request listed among issues has `pull_request`.
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub state: String,
    pub labels: Vec<Label>,
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct NewComment<'a> {
    body: &'a str,
}

#[derive(Serialize)]
struct Labels<'a> {
    labels: &'a [String],
}

#[derive(Serialize)]
struct NewPullRequest<'a> {
    title: &'a str,
    head: &'a str,
    base: &'a str,
    body: &'a str,
    maintainer_can_modify: bool,
}

#[derive(Serialize)]
struct PullRequestEdit<'a> {
    title: &'a str,
    body: &'a str,
}

impl GitHub {
    /// A client for the project's repository on GitHub, with `token`.
    pub fn new(forge: &ForgeConfig, token: String) -> Result<GitHub, ForgeError> {
        Ok(GitHub {
            http: http::client(&forge.api_url)?,
            api: forge.api_url.clone(),
            repo: forge.repo.clone(),
            owner: forge.owner().to_string(),
            token,
        })
    }

    /// The open pull request whose head is `branch` of this repository, if there is one.
    pub async fn open_pull_for(&self, branch: &str) -> Result<Option<ForgePull>, ForgeError> {
        let head = format!("{}:{branch}", self.owner);
        let request = self
            .request(Method::GET, &format!("/repos/{}/pulls", self.repo))
            .query(&[("head", head.as_str()), ("state", "open"), ("per_page", "10")]);
        let pulls: Vec<PullRequest> = self.send(request).await?;
        Ok(pulls.into_iter().find(|p| p.head.name == branch).map(ForgePull::from))
    }

    pub async fn create_pull(
        &self,
        title: &str,
        branch: &str,
        base: &str,
        body: &str,
    ) -> Result<ForgePull, ForgeError> {
        let request = self
            .request(Method::POST, &format!("/repos/{}/pulls", self.repo))
            .json(&NewPullRequest {
                title,
                head: branch,
                base,
                body,
                maintainer_can_modify: true,
            });
        self.send::<PullRequest>(request).await.map(ForgePull::from)
    }

    pub async fn update_pull(&self, number: u64, title: &str, body: &str) -> Result<ForgePull, ForgeError> {
        let request = self
            .request(Method::PATCH, &format!("/repos/{}/pulls/{number}", self.repo))
            .json(&PullRequestEdit { title, body });
        self.send::<PullRequest>(request).await.map(ForgePull::from)
    }

    /// What became of pull request `number`: merged, closed, changes requested on `head` (the
    /// commit CHUM pushed last), or open.
    pub async fn pull_status(&self, number: u64, head: &str) -> Result<PullRequestStatus, ForgeError> {
        let request = self.request(Method::GET, &format!("/repos/{}/pulls/{number}", self.repo));
        let pull: PullRequest = self.send(request).await?;
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
        let reviews: Vec<Review> = self
            .pages(&format!("/repos/{}/pulls/{number}/reviews", self.repo))
            .await?;
        let asking = changes_asked(&reviews, head);
        if asking.is_empty() {
            status.set_state(PullRequestState::Open);
            return Ok(status);
        }
        let mut feedback = Vec::new();
        for review in &asking {
            let comments: Vec<ReviewComment> = self
                .pages(&format!(
                    "/repos/{}/pulls/{number}/reviews/{}/comments",
                    self.repo, review.id
                ))
                .await?;
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

    /// The repository's issues (not pull requests) carrying `label`, open and closed.
    pub async fn labelled_issues(&self, label: &str) -> Result<Vec<ForgeIssue>, ForgeError> {
        let path = format!("/repos/{}/issues", self.repo);
        let items: Vec<Issue> = http::pages(&self.api, || {
            self.request(Method::GET, &path)
                .query(&[("labels", label), ("state", "all")])
        })
        .await?;
        Ok(items
            .into_iter()
            .filter(|i| i.pull_request.is_none())
            .map(|i| ForgeIssue {
                number: i.number,
                title: i.title,
                body: i.body.unwrap_or_default(),
                open: i.state == "open",
                labels: i.labels.into_iter().map(|l| l.name).collect(),
            })
            .collect())
    }

    pub async fn comment(&self, issue: u64, body: &str) -> Result<(), ForgeError> {
        let request = self
            .request(Method::POST, &format!("/repos/{}/issues/{issue}/comments", self.repo))
            .json(&NewComment { body });
        let _: serde_json::Value = self.send(request).await?;
        Ok(())
    }

    /// Replaces the issue's labels.
    pub async fn set_labels(&self, issue: u64, labels: &[String]) -> Result<(), ForgeError> {
        let request = self
            .request(Method::PUT, &format!("/repos/{}/issues/{issue}/labels", self.repo))
            .json(&Labels { labels });
        let _: Vec<Label> = self.send(request).await?;
        Ok(())
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
    }

    /// Every page of a list under `path`.
    async fn pages<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ForgeError> {
        http::pages(&self.api, || self.request(Method::GET, path)).await
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ForgeError> {
        http::send(&self.api, request).await
    }
}

impl From<PullRequest> for ForgePull {
    fn from(p: PullRequest) -> ForgePull {
        ForgePull {
            number: p.number,
            url: p.html_url,
            title: p.title,
            body: p.body.unwrap_or_default(),
        }
    }
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
