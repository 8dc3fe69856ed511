//! GitLab's REST API (v4), the part CHUM uses: merge requests, their discussion threads, and
//! issues (intake). Typed requests and responses (serde), checked in the tests against the
//! contract the fake GitLab serves; the token travels in the `PRIVATE-TOKEN` header only.
//!
//! GitLab has no per-commit review state like GitHub's: what asks for changes is an unresolved
//! thread on a line of the commit CHUM pushed last (`position.head_sha`). "Request changes" in
//! GitLab's review UI is such threads; resolving a thread takes it back, and a thread on an
//! older commit was answered by the push that followed it.

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use chum_core::config::ForgeConfig;
use chum_core::proto::{PullRequestState, PullRequestStatus};
use chum_core::pull_request::{ReviewComment as Comment, changes_requested_feedback};

use super::{ForgeError, ForgeIssue, ForgePull, http};

/// A client for one project on GitLab.
pub struct GitLab {
    http: reqwest::Client,
    api: String,
    /// The project's path, URL-encoded as GitLab takes it for `:id` (`group%2Fapp`).
    project: String,
    token: String,
}

#[derive(Debug, Clone, Deserialize)]
struct User {
    username: String,
}

/// A merge request (`MergeRequest` / `MergeRequestBasic` in GitLab's API).
#[derive(Debug, Clone, Deserialize)]
struct MergeRequest {
    iid: u64,
    web_url: String,
    title: String,
    description: Option<String>,
    /// opened, closed, locked, merged.
    state: String,
    source_branch: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    squash_commit_sha: Option<String>,
    #[serde(default)]
    merge_user: Option<User>,
    #[serde(default)]
    merged_by: Option<User>,
    #[serde(default)]
    closed_by: Option<User>,
}

/// A thread on a merge request.
#[derive(Debug, Clone, Deserialize)]
struct Discussion {
    notes: Vec<Note>,
}

#[derive(Debug, Clone, Deserialize)]
struct Note {
    body: String,
    author: User,
    #[serde(default)]
    system: bool,
    #[serde(default)]
    resolvable: bool,
    #[serde(default)]
    resolved: Option<bool>,
    #[serde(default)]
    position: Option<Position>,
}

/// Where a diff note sits.
#[derive(Debug, Clone, Deserialize)]
struct Position {
    head_sha: Option<String>,
    new_path: Option<String>,
    new_line: Option<u64>,
    old_path: Option<String>,
    old_line: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct Issue {
    iid: u64,
    title: String,
    description: Option<String>,
    /// opened, closed.
    state: String,
    labels: Vec<String>,
}

#[derive(Serialize)]
struct NewMergeRequest<'a> {
    source_branch: &'a str,
    target_branch: &'a str,
    title: &'a str,
    description: &'a str,
}

#[derive(Serialize)]
struct MergeRequestEdit<'a> {
    title: &'a str,
    description: &'a str,
}

#[derive(Serialize)]
struct NewNote<'a> {
    body: &'a str,
}

#[derive(Serialize)]
struct IssueLabels {
    /// Comma-separated; GitLab's form of "these labels, no others".
    labels: String,
}

impl GitLab {
    /// A client for the project's repository on GitLab, with `token`.
    pub fn new(forge: &ForgeConfig, token: String) -> Result<GitLab, ForgeError> {
        Ok(GitLab {
            http: http::client(&forge.api_url)?,
            api: forge.api_url.clone(),
            // The repo is validated to [A-Za-z0-9._-] parts, so '/' is all there is to encode.
            project: forge.repo.replace('/', "%2F"),
            token,
        })
    }

    /// The open merge request from `branch`, if there is one.
    pub async fn open_pull_for(&self, branch: &str) -> Result<Option<ForgePull>, ForgeError> {
        let request = self.request(Method::GET, "/merge_requests").query(&[
            ("state", "opened"),
            ("source_branch", branch),
            ("per_page", "10"),
        ]);
        let open: Vec<MergeRequest> = self.send(request).await?;
        Ok(open
            .into_iter()
            .find(|m| m.source_branch == branch)
            .map(ForgePull::from))
    }

    pub async fn create_pull(
        &self,
        title: &str,
        branch: &str,
        base: &str,
        body: &str,
    ) -> Result<ForgePull, ForgeError> {
        let request = self.request(Method::POST, "/merge_requests").json(&NewMergeRequest {
            source_branch: branch,
            target_branch: base,
            title,
            description: body,
        });
        self.send::<MergeRequest>(request).await.map(ForgePull::from)
    }

    pub async fn update_pull(&self, number: u64, title: &str, body: &str) -> Result<ForgePull, ForgeError> {
        let request = self
            .request(Method::PUT, &format!("/merge_requests/{number}"))
            .json(&MergeRequestEdit {
                title,
                description: body,
            });
        self.send::<MergeRequest>(request).await.map(ForgePull::from)
    }

    /// What became of merge request `number`: merged (with the commit that landed it: the merge
    /// commit, the squash commit, or the head itself for a fast-forward), closed, changes asked
    /// for on `head`, or open.
    pub async fn pull_status(&self, number: u64, head: &str) -> Result<PullRequestStatus, ForgeError> {
        let request = self.request(Method::GET, &format!("/merge_requests/{number}"));
        let mr: MergeRequest = self.send(request).await?;
        let mut status = PullRequestStatus {
            url: mr.web_url.clone(),
            ..PullRequestStatus::default()
        };
        match mr.state.as_str() {
            "merged" => {
                status.set_state(PullRequestState::Merged);
                status.merge_commit = mr
                    .merge_commit_sha
                    .or(mr.squash_commit_sha)
                    .or(mr.sha)
                    .unwrap_or_default();
                status.actor = mr.merge_user.or(mr.merged_by).map(|u| u.username).unwrap_or_default();
                return Ok(status);
            }
            "closed" => {
                status.set_state(PullRequestState::Closed);
                status.actor = mr.closed_by.map(|u| u.username).unwrap_or_default();
                return Ok(status);
            }
            _ => {}
        }
        let discussions: Vec<Discussion> = self
            .pages(&format!("/merge_requests/{number}/discussions"), &[])
            .await?;
        let asking = changes_asked(&discussions, head);
        if asking.is_empty() {
            status.set_state(PullRequestState::Open);
            return Ok(status);
        }
        // One finding per person, their threads' notes as line comments.
        let mut people: Vec<&str> = Vec::new();
        for thread in &asking {
            let who = thread.notes[0].author.username.as_str();
            if !people.contains(&who) {
                people.push(who);
            }
        }
        let feedback: Vec<String> = people
            .iter()
            .map(|who| {
                let comments: Vec<Comment<'_>> = asking
                    .iter()
                    .filter(|t| t.notes[0].author.username == *who)
                    .flat_map(|t| {
                        let at = t.notes[0].position.as_ref();
                        let path = at
                            .and_then(|p| p.new_path.as_deref().or(p.old_path.as_deref()))
                            .unwrap_or_default();
                        let line = at.and_then(|p| p.new_line.or(p.old_line));
                        t.notes.iter().filter(|n| !n.system).map(move |n| Comment {
                            path,
                            line,
                            body: &n.body,
                        })
                    })
                    .collect();
                changes_requested_feedback(who, "", &comments)
            })
            .collect();
        status.set_state(PullRequestState::ChangesRequested);
        status.actor = people.join(", ");
        status.feedback = feedback.join("\n");
        Ok(status)
    }

    /// The project's issues carrying `label`, open and closed.
    pub async fn labelled_issues(&self, label: &str) -> Result<Vec<ForgeIssue>, ForgeError> {
        let issues: Vec<Issue> = self.pages("/issues", &[("labels", label)]).await?;
        Ok(issues
            .into_iter()
            .map(|i| ForgeIssue {
                number: i.iid,
                title: i.title,
                body: i.description.unwrap_or_default(),
                open: i.state == "opened",
                labels: i.labels,
            })
            .collect())
    }

    pub async fn comment(&self, issue: u64, body: &str) -> Result<(), ForgeError> {
        let request = self
            .request(Method::POST, &format!("/issues/{issue}/notes"))
            .json(&NewNote { body });
        let _: serde_json::Value = self.send(request).await?;
        Ok(())
    }

    /// Replaces the issue's labels.
    pub async fn set_labels(&self, issue: u64, labels: &[String]) -> Result<(), ForgeError> {
        let request = self
            .request(Method::PUT, &format!("/issues/{issue}"))
            .json(&IssueLabels {
                labels: labels.join(","),
            });
        let _: Issue = self.send(request).await?;
        Ok(())
    }

    /// A request about the project (`/projects/:id<path>`).
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/projects/{}{path}", self.api, self.project))
            .header("PRIVATE-TOKEN", &self.token)
    }

    /// Every page of a list under the project's `path`, with `query`.
    async fn pages<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<T>, ForgeError> {
        http::pages(&self.api, || self.request(Method::GET, path).query(query)).await
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ForgeError> {
        http::send(&self.api, request).await
    }
}

impl From<MergeRequest> for ForgePull {
    fn from(m: MergeRequest) -> ForgePull {
        ForgePull {
            number: m.iid,
            url: m.web_url,
            title: m.title,
            body: m.description.unwrap_or_default(),
        }
    }
}

/// The unresolved threads started on a line of `head` (the commit CHUM pushed last).
fn changes_asked<'a>(discussions: &'a [Discussion], head: &str) -> Vec<&'a Discussion> {
    discussions
        .iter()
        .filter(|d| {
            let Some(first) = d.notes.first() else { return false };
            !first.system
                && first.resolvable
                && first.resolved != Some(true)
                && first.position.as_ref().and_then(|p| p.head_sha.as_deref()) == Some(head)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(who: &str, head: Option<&str>, resolved: bool) -> Discussion {
        Discussion {
            notes: vec![Note {
                body: format!("{who} says"),
                author: User { username: who.into() },
                system: false,
                resolvable: true,
                resolved: Some(resolved),
                position: head.map(|h| Position {
                    head_sha: Some(h.into()),
                    new_path: Some("calc.py".into()),
                    new_line: Some(3),
                    old_path: None,
                    old_line: None,
                }),
            }],
        }
    }

    #[test]
    fn only_unresolved_threads_on_the_pushed_commit_ask_for_changes() {
        let threads = vec![
            thread("bob", Some("old"), false),
            thread("carol", Some("new"), true),
            thread("dave", None, false),
            thread("erin", Some("new"), false),
        ];
        let asked: Vec<&str> = changes_asked(&threads, "new")
            .iter()
            .map(|d| d.notes[0].author.username.as_str())
            .collect();
        assert_eq!(asked, vec!["erin"]);
        assert!(changes_asked(&threads, "other").is_empty());
    }
}
