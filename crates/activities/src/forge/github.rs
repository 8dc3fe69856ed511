//! GitHub's REST API, the part the `pr` policy uses: pull requests, their reviews and review
//! comments. Typed requests and responses (serde), checked in the tests against GitHub's published
//! OpenAPI description (the fake forge validates every request and every response it serves);
//! the token travels in the `Authorization` header only and is never logged.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ForgeError;
use chum_core::config::ForgeConfig;

/// The REST API version CHUM's requests are written against.
const API_VERSION: &str = "2022-11-28";
/// Pages of reviews or comments read at most (100 each).
const MAX_PAGES: usize = 10;

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
struct Comment<'a> {
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

/// GitHub's error body.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    message: String,
    errors: Vec<serde_json::Value>,
}

impl GitHub {
    /// A client for the project's forge, with the token the worker's environment holds.
    pub fn new(forge: &ForgeConfig) -> Result<GitHub, ForgeError> {
        let token = std::env::var(&forge.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ForgeError::MissingToken {
                name: forge.token_env.clone(),
            })?;
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("chum/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ForgeError::Unreachable {
                url: forge.api_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(GitHub {
            http,
            api: forge.api_url.clone(),
            repo: forge.repo.clone(),
            owner: forge.owner().to_string(),
            token,
        })
    }

    /// The open pull request whose head is `branch` of this repository, if there is one.
    pub async fn open_pull_for(&self, branch: &str) -> Result<Option<PullRequest>, ForgeError> {
        let head = format!("{}:{branch}", self.owner);
        let request = self
            .request(Method::GET, &format!("/repos/{}/pulls", self.repo))
            .query(&[("head", head.as_str()), ("state", "open"), ("per_page", "10")]);
        let pulls: Vec<PullRequest> = self.send(request).await?;
        Ok(pulls.into_iter().find(|p| p.head.name == branch))
    }

    pub async fn create_pull(
        &self,
        title: &str,
        branch: &str,
        base: &str,
        body: &str,
    ) -> Result<PullRequest, ForgeError> {
        let request = self
            .request(Method::POST, &format!("/repos/{}/pulls", self.repo))
            .json(&NewPullRequest {
                title,
                head: branch,
                base,
                body,
                maintainer_can_modify: true,
            });
        self.send(request).await
    }

    pub async fn update_pull(&self, number: u64, title: &str, body: &str) -> Result<PullRequest, ForgeError> {
        let request = self
            .request(Method::PATCH, &format!("/repos/{}/pulls/{number}", self.repo))
            .json(&PullRequestEdit { title, body });
        self.send(request).await
    }

    pub async fn pull(&self, number: u64) -> Result<PullRequest, ForgeError> {
        let request = self.request(Method::GET, &format!("/repos/{}/pulls/{number}", self.repo));
        self.send(request).await
    }

    pub async fn reviews(&self, number: u64) -> Result<Vec<Review>, ForgeError> {
        self.pages(&format!("/repos/{}/pulls/{number}/reviews", self.repo))
            .await
    }

    pub async fn review_comments(&self, number: u64, review: u64) -> Result<Vec<ReviewComment>, ForgeError> {
        self.pages(&format!(
            "/repos/{}/pulls/{number}/reviews/{review}/comments",
            self.repo
        ))
        .await
    }

    /// The repository's issues (not pull requests) carrying `label`, open and closed.
    pub async fn labelled_issues(&self, label: &str) -> Result<Vec<Issue>, ForgeError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let request = self
                .request(Method::GET, &format!("/repos/{}/issues", self.repo))
                .query(&[
                    ("labels", label),
                    ("state", "all"),
                    ("per_page", "100"),
                    ("page", &page.to_string()),
                ]);
            let items: Vec<Issue> = self.send(request).await?;
            let last = items.len() < 100;
            all.extend(items.into_iter().filter(|i| i.pull_request.is_none()));
            if last {
                break;
            }
        }
        Ok(all)
    }

    pub async fn comment(&self, issue: u64, body: &str) -> Result<(), ForgeError> {
        let request = self
            .request(Method::POST, &format!("/repos/{}/issues/{issue}/comments", self.repo))
            .json(&Comment { body });
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

    /// Every page of a list, 100 at a time, up to [`MAX_PAGES`].
    async fn pages<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ForgeError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let request = self
                .request(Method::GET, path)
                .query(&[("per_page", "100"), ("page", &page.to_string())]);
            let items: Vec<T> = self.send(request).await?;
            let last = items.len() < 100;
            all.extend(items);
            if last {
                break;
            }
        }
        Ok(all)
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ForgeError> {
        let (client, request) = request.build_split();
        let request = request.map_err(|e| ForgeError::Unreachable {
            url: self.api.clone(),
            reason: e.to_string(),
        })?;
        let what = format!("{} {}", request.method(), request.url().path());
        let response = client.execute(request).await.map_err(|e| ForgeError::Unreachable {
            url: what.clone(),
            reason: without_url(&e),
        })?;
        let status = response.status();
        if status.is_success() {
            let bytes = response.bytes().await.map_err(|e| ForgeError::Unreachable {
                url: what.clone(),
                reason: without_url(&e),
            })?;
            return serde_json::from_slice(&bytes).map_err(|e| ForgeError::Unreadable {
                what,
                reason: e.to_string(),
            });
        }
        Err(error_of(what, status, response).await)
    }
}

/// The forge's answer as an error: rate limits (with how long to wait), server trouble, refusals.
async fn error_of(what: String, status: StatusCode, response: Response) -> ForgeError {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let remaining = header("x-ratelimit-remaining");
    let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
    let body: ErrorBody = response
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // GitHub says "rate limited" with 403 or 429 and either header (its documented contract).
    if matches!(status, StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS)
        && (retry_after.is_some() || remaining.as_deref() == Some("0"))
    {
        let wait = retry_after.unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            reset.map(|r| r.saturating_sub(now)).unwrap_or(60)
        });
        return ForgeError::RateLimited { wait_secs: wait.max(1) };
    }
    let mut message = body.message;
    if !body.errors.is_empty() {
        let details: Vec<String> = body
            .errors
            .iter()
            .map(|e| {
                e.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            })
            .collect();
        message = format!("{message} ({})", details.join("; "));
    }
    match status {
        s if s.is_server_error() => ForgeError::Server {
            what,
            status: s.as_u16(),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ForgeError::Unauthorized {
            what,
            status: status.as_u16(),
            message,
        },
        StatusCode::NOT_FOUND => ForgeError::NotFound { what },
        s => ForgeError::Refused {
            what,
            status: s.as_u16(),
            message,
        },
    }
}

/// A transport error's text without the URL (it has no credentials, but its query may be long).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = format!("{}", DisplayWithoutUrl(err));
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

struct DisplayWithoutUrl<'a>(&'a reqwest::Error);

impl std::fmt::Display for DisplayWithoutUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0;
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "the answer broke off"
        } else {
            "the request failed"
        };
        f.write_str(kind)
    }
}

/// rustls needs one crypto provider per process; CHUM's is ring (already in the build). Every
/// reqwest client of a process that links this crate needs it installed before it is built (the
/// workspace's reqwest has TLS without a provider of its own): the worker does it at start.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
