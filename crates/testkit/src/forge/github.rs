//! A fake GitHub for the tests: the pull request API CHUM uses, served over a real bare git
//! repository, every request and every answer checked against GitHub's OpenAPI description
//! ([`super::contract`]). A request the description does not allow is answered 422 and recorded as
//! a violation; an answer of the fake's own that does not match is recorded too, so a test ends
//! with `assert_no_violations`. People's actions (a review asking for changes, a merge, a close)
//! are methods, and webhooks go out HMAC-signed like GitHub's, their payloads checked against the
//! webhook description.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::contract::contract;
use super::serve::{pull_object, repository, review_object, serve, user};
use crate::project::git;

/// One request the fake served: method, path (with query), HTTP status.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub path: String,
    pub operation: String,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub(super) struct ReviewRecord {
    pub(super) id: u64,
    pub(super) user: String,
    pub(super) body: String,
    pub(super) state: String,
    pub(super) commit_id: String,
    pub(super) comments: Vec<(String, u64, String)>,
}

#[derive(Debug, Clone)]
pub(super) struct IssueRecord {
    pub(super) number: u64,
    pub(super) title: String,
    pub(super) body: String,
    pub(super) state: String,
    pub(super) labels: Vec<String>,
    pub(super) comments: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Pull {
    pub(super) number: u64,
    pub(super) title: String,
    pub(super) body: String,
    pub(super) head: String,
    pub(super) base: String,
    pub(super) state: String,
    pub(super) merged_by: Option<String>,
    pub(super) merge_commit: Option<String>,
    pub(super) reviews: Vec<ReviewRecord>,
}

/// What goes wrong on purpose.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fault {
    /// Answer 502 without doing anything.
    Down,
    /// Do the work of the next request of this operation, then answer 502 (the answer is lost).
    LostAnswer(&'static str),
    /// The next request of this operation: 403 with the rate-limit headers (GitLab: 429), reset
    /// in this many seconds.
    RateLimited(&'static str, u64),
}

impl Fault {
    /// The first fault due for a request of `operation`, taken off the list.
    pub(super) fn take(faults: &mut Vec<Fault>, operation: &str) -> Option<Fault> {
        let due = faults.iter().position(|f| match f {
            Fault::LostAnswer(wanted) | Fault::RateLimited(wanted, _) => *wanted == operation,
            Fault::Down => true,
        });
        due.map(|i| faults.remove(i))
    }
}

/// Merges `head` into `base` in the bare repository as a person on the forge would: a real merge
/// commit (by "Reviewer") with `message`, the base moved to it. Returns it.
pub(super) fn merge_in(bare: &Path, base: &str, head: &str, message: &str) -> String {
    let base_tip = git(bare, &["rev-parse", &format!("refs/heads/{base}")]);
    let head_tip = git(bare, &["rev-parse", &format!("refs/heads/{head}")]);
    let tree = git(bare, &["merge-tree", "--write-tree", &base_tip, &head_tip]);
    let commit = git(
        bare,
        &[
            "-c",
            "user.name=Reviewer",
            "-c",
            "user.email=reviewer@example.com",
            "commit-tree",
            &tree,
            "-p",
            &base_tip,
            "-p",
            &head_tip,
            "-m",
            message,
        ],
    );
    git(bare, &["update-ref", &format!("refs/heads/{base}"), &commit, &base_tip]);
    commit
}

#[derive(Default)]
pub(super) struct Forge {
    pub(super) pulls: Vec<Pull>,
    pub(super) issues: Vec<IssueRecord>,
    /// Issues and pull requests share their numbers, as on GitHub.
    pub(super) next_number: u64,
    pub(super) served: Vec<Served>,
    pub(super) violations: Vec<String>,
    pub(super) faults: Vec<Fault>,
    pub(super) next_id: u64,
}

/// The fake forge: `owner/name` over `bare`.
#[derive(Clone)]
pub struct FakeGitHub {
    pub addr: SocketAddr,
    pub repo: String,
    bare: PathBuf,
    state: Arc<Mutex<Forge>>,
    token: String,
}

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) repo: String,
    pub(super) bare: PathBuf,
    pub(super) token: String,
    pub(super) base_url: String,
    pub(super) state: Arc<Mutex<Forge>>,
}

impl FakeGitHub {
    /// Serves `repo` (`owner/name`) over the bare repository `bare`, taking `token` only.
    pub async fn start(repo: &str, bare: &Path, token: &str) -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake forge listens");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(Mutex::new(Forge {
            next_id: 1000,
            ..Forge::default()
        }));
        let shared = Shared {
            repo: repo.to_string(),
            bare: bare.to_path_buf(),
            token: token.to_string(),
            base_url: format!("http://{addr}"),
            state: state.clone(),
        };
        let app = axum::Router::new().fallback(serve).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitHub {
            addr,
            repo: repo.to_string(),
            bare: bare.to_path_buf(),
            state,
            token: token.to_string(),
        }
    }

    /// The API root a project's `forge.api_url` names.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Every request served so far.
    pub fn served(&self) -> Vec<Served> {
        self.lock().served.clone()
    }

    /// How many requests of an operation (`pulls/create`) were served, whatever their answer.
    pub fn count(&self, operation: &str) -> usize {
        self.lock().served.iter().filter(|s| s.operation == operation).count()
    }

    /// Fails the test with every request or answer that broke GitHub's contract.
    pub fn assert_no_violations(&self) {
        let violations = self.lock().violations.clone();
        assert!(violations.is_empty(), "contract violations:\n{}", violations.join("\n"));
    }

    /// The next `n` API requests answer 502 and change nothing.
    pub fn go_down_for(&self, n: usize) {
        self.lock().faults.extend(std::iter::repeat_n(Fault::Down, n));
    }

    /// The next request of `operation` (e.g. "pulls/create") is served, but its answer is lost (502).
    pub fn lose_next_answer_to(&self, operation: &'static str) {
        self.lock().faults.push(Fault::LostAnswer(operation));
    }

    /// The next look at a pull request (`pulls/get`) is refused for the rate limit, which resets
    /// in `secs`. Aimed at the look so that a test can set it before the run gets there.
    pub fn rate_limit_next(&self, secs: u64) {
        self.lock().faults.push(Fault::RateLimited("pulls/get", secs));
    }

    /// Someone opens an issue; returns its number.
    pub fn open_issue(&self, title: &str, body: &str, labels: &[&str]) -> u64 {
        let mut forge = self.lock();
        forge.next_number += 1;
        let number = forge.next_number;
        forge.issues.push(IssueRecord {
            number,
            title: title.into(),
            body: body.into(),
            state: "open".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            comments: Vec::new(),
        });
        number
    }

    /// An issue's labels and the comments on it, in order.
    pub fn issue(&self, number: u64) -> (Vec<String>, Vec<String>) {
        let forge = self.lock();
        let issue = forge.issues.iter().find(|i| i.number == number).expect("the issue");
        (issue.labels.clone(), issue.comments.clone())
    }

    /// The pull request for `branch`, if any: its number, state and body.
    pub fn pull_for(&self, branch: &str) -> Option<(u64, String, String)> {
        self.lock()
            .pulls
            .iter()
            .find(|p| p.head == branch)
            .map(|p| (p.number, p.state.clone(), p.body.clone()))
    }

    pub fn pull_count(&self) -> usize {
        self.lock().pulls.len()
    }

    /// `user` submits a review asking for changes on the pull request's current head, with
    /// comments on lines (path, line, text).
    pub fn request_changes(&self, number: u64, user: &str, body: &str, comments: &[(&str, u64, &str)]) {
        let head = self.head_of(number);
        let mut forge = self.lock();
        forge.next_id += 1;
        let id = forge.next_id;
        let pull = forge
            .pulls
            .iter_mut()
            .find(|p| p.number == number)
            .expect("the pull request");
        pull.reviews.push(ReviewRecord {
            id,
            user: user.into(),
            body: body.into(),
            state: "CHANGES_REQUESTED".into(),
            commit_id: head,
            comments: comments
                .iter()
                .map(|(p, l, t)| (p.to_string(), *l, t.to_string()))
                .collect(),
        });
    }

    /// `user` merges the pull request: a real merge commit on the base branch of the bare
    /// repository. Returns it.
    pub fn merge(&self, number: u64, user: &str) -> String {
        let (head, base) = {
            let forge = self.lock();
            let pull = forge
                .pulls
                .iter()
                .find(|p| p.number == number)
                .expect("the pull request");
            (pull.head.clone(), pull.base.clone())
        };
        let commit = merge_in(
            &self.bare,
            &base,
            &head,
            &format!("Merge pull request #{number} from {head}"),
        );
        let mut forge = self.lock();
        let pull = forge
            .pulls
            .iter_mut()
            .find(|p| p.number == number)
            .expect("the pull request");
        pull.state = "closed".into();
        pull.merged_by = Some(user.into());
        pull.merge_commit = Some(commit.clone());
        commit
    }

    /// `user` closes the pull request without merging it.
    pub fn close(&self, number: u64) {
        let mut forge = self.lock();
        let pull = forge
            .pulls
            .iter_mut()
            .find(|p| p.number == number)
            .expect("the pull request");
        pull.state = "closed".into();
    }

    /// The webhook GitHub would send for the pull request now (`pull_request` with `action`, or
    /// `pull_request_review` with "submitted"), checked against the webhook description: the
    /// event name and the payload.
    pub fn webhook(&self, number: u64, event: &str, action: &str) -> (String, Value) {
        let forge = self.lock();
        let pull = forge
            .pulls
            .iter()
            .find(|p| p.number == number)
            .expect("the pull request")
            .clone();
        drop(forge);
        let shared = self.shared();
        let mut pull_json = pull_object(&shared, &pull, &self.head_of(number));
        // The webhook's pull request carries a few fields the REST one leaves out.
        let pr = pull_json.as_object_mut().expect("an object");
        pr.entry("merged").or_insert(json!(pull.merge_commit.is_some()));
        for (key, value) in [
            ("comments", json!(0)),
            ("review_comments", json!(0)),
            ("commits", json!(1)),
            ("additions", json!(1)),
            ("deletions", json!(0)),
            ("changed_files", json!(1)),
            ("maintainer_can_modify", json!(true)),
            ("mergeable", Value::Null),
            ("rebaseable", Value::Null),
            ("mergeable_state", json!("unknown")),
            (
                "merged_by",
                pull.merged_by.as_ref().map(|u| user(u)).unwrap_or(Value::Null),
            ),
        ] {
            pr.entry(key).or_insert(value);
        }
        // The webhook's repositories carry their visibility.
        for side in ["head", "base"] {
            if let Some(repo) = pr
                .get_mut(side)
                .and_then(|s| s.get_mut("repo"))
                .and_then(Value::as_object_mut)
            {
                repo.entry("visibility").or_insert(json!("public"));
            }
        }
        let repository = repository(&shared);
        let sender = user("reviewer");
        let (schema, payload) = match event {
            "pull_request" => (
                format!("webhook-pull-request-{action}"),
                json!({"action": action, "number": number, "pull_request": pull_json, "repository": repository, "sender": sender}),
            ),
            "pull_request_review" => {
                let review = pull.reviews.last().expect("a review");
                (
                    "webhook-pull-request-review-submitted".to_string(),
                    json!({"action": "submitted", "review": review_object(&shared, number, review), "pull_request": pull_json, "repository": repository, "sender": sender}),
                )
            }
            other => panic!("the fake sends no {other} webhooks"),
        };
        if let Err(e) = contract().check_webhook(&schema, &payload) {
            self.lock().violations.push(format!("webhook {schema}: {e}"));
        }
        (event.to_string(), payload)
    }

    fn head_of(&self, number: u64) -> String {
        let forge = self.lock();
        let pull = forge
            .pulls
            .iter()
            .find(|p| p.number == number)
            .expect("the pull request");
        git(&self.bare, &["rev-parse", &format!("refs/heads/{}", pull.head)])
    }

    fn shared(&self) -> Shared {
        Shared {
            repo: self.repo.clone(),
            bare: self.bare.clone(),
            token: self.token.clone(),
            base_url: self.api_url(),
            state: self.state.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Forge> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Signs a webhook body as GitHub does: `sha256=<hex HMAC-SHA256 of the body with the secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Delivers a webhook to `url` the way GitHub does, signed with `secret`; returns the HTTP status.
pub async fn deliver(url: &str, secret: &str, event: &str, payload: &Value) -> u16 {
    let body = serde_json::to_vec(payload).expect("a payload");
    let sig = signature(secret, &body);
    crate::processes::http_client()
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitHub-Hookshot/fake")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header("X-Hub-Signature-256", sig)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}
