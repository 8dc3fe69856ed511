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

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::contract::{Operation, contract};
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
struct ReviewRecord {
    id: u64,
    user: String,
    body: String,
    state: String,
    commit_id: String,
    comments: Vec<(String, u64, String)>,
}

#[derive(Debug, Clone)]
struct Pull {
    number: u64,
    title: String,
    body: String,
    head: String,
    base: String,
    state: String,
    merged_by: Option<String>,
    merge_commit: Option<String>,
    reviews: Vec<ReviewRecord>,
}

/// What goes wrong on purpose.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answer 502 without doing anything.
    Down,
    /// Do the work of the next request of this operation, then answer 502 (the answer is lost).
    LostAnswer(&'static str),
    /// 403 with the rate-limit headers, reset in this many seconds.
    RateLimited(u64),
}

#[derive(Default)]
struct Forge {
    pulls: Vec<Pull>,
    served: Vec<Served>,
    violations: Vec<String>,
    faults: Vec<Fault>,
    next_id: u64,
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
struct Shared {
    repo: String,
    bare: PathBuf,
    token: String,
    base_url: String,
    state: Arc<Mutex<Forge>>,
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

    /// The next API request is refused for the rate limit, which resets in `secs`.
    pub fn rate_limit_next(&self, secs: u64) {
        self.lock().faults.push(Fault::RateLimited(secs));
    }

    /// The open pull requests' numbers and the only one for `branch`, if any.
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
        let bare = &self.bare;
        let base_tip = git(bare, &["rev-parse", &format!("refs/heads/{base}")]);
        let head_tip = git(bare, &["rev-parse", &format!("refs/heads/{head}")]);
        let tree = git(bare, &["merge-tree", "--write-tree", &base_tip, &head_tip]);
        let message = format!("Merge pull request #{number} from {head}");
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
                &message,
            ],
        );
        git(bare, &["update-ref", &format!("refs/heads/{base}"), &commit, &base_tip]);
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
    reqwest::Client::new()
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

async fn serve(State(shared): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query: Vec<(String, String)> = uri.query().map(|q| url_pairs(q)).unwrap_or_default();
    let mut served = Served {
        method: method.to_string(),
        path: uri.to_string(),
        operation: String::new(),
        status: 0,
    };
    let contract = contract();
    let answer = match contract.operation(method.as_str(), &path) {
        Err(e) => {
            let violation = format!("request {method} {path}: {e}");
            shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .violations
                .push(violation);
            fail(&shared, &mut served, 404, e, None)
        }
        Ok(op) => {
            served.operation = op.id.clone();
            handle(&shared, &op, &mut served, &headers, &query, &body)
        }
    };
    shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .served
        .push(served);
    answer
}

fn handle(
    shared: &Shared,
    op: &Operation<'_>,
    served: &mut Served,
    headers: &HeaderMap,
    query: &[(String, String)],
    body: &Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {}", shared.token) {
        return fail(shared, served, 401, "Bad credentials".into(), Some(op));
    }
    let json_body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(e) => return fail(shared, served, 400, format!("Problems parsing JSON: {e}"), Some(op)),
        }
    };
    if let Err(e) = contract().check_request(op, query, json_body.as_ref()) {
        shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .violations
            .push(format!("request {} {}: {e}", served.method, served.path));
        return fail(shared, served, 422, e, Some(op));
    }
    let fault = {
        let mut forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = forge.faults.iter().position(|f| match f {
            Fault::LostAnswer(wanted) => *wanted == op.id,
            _ => true,
        });
        due.map(|i| forge.faults.remove(i))
    };
    match fault {
        Some(Fault::Down) => {
            served.status = 502;
            return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response();
        }
        Some(Fault::RateLimited(secs)) => {
            served.status = 403;
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
                + secs;
            let body = json!({"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"});
            return (
                StatusCode::FORBIDDEN,
                [
                    ("x-ratelimit-remaining", "0".to_string()),
                    ("x-ratelimit-reset", reset.to_string()),
                ],
                axum::Json(body),
            )
                .into_response();
        }
        _ => {}
    }
    let segments: Vec<String> = served
        .path
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_matches('/')
        .split('/')
        .map(String::from)
        .collect();
    let repo_ok = segments.len() >= 3 && format!("{}/{}", segments[1], segments[2]) == shared.repo;
    if !repo_ok {
        return fail(shared, served, 404, "Not Found".into(), Some(op));
    }
    let number = segments.get(4).and_then(|n| n.parse::<u64>().ok());
    let (status, answer) = match op.id.as_str() {
        "pulls/list" => list_pulls(shared, query),
        "pulls/create" => create_pull(shared, json_body.unwrap_or_default()),
        "pulls/get" => get_pull(shared, number),
        "pulls/update" => update_pull(shared, number, json_body.unwrap_or_default()),
        "pulls/list-reviews" => list_reviews(shared, number, query),
        "pulls/list-comments-for-review" => {
            review_comments(shared, number, segments.get(6).and_then(|n| n.parse().ok()))
        }
        other => (
            501,
            json!({"message": format!("the fake forge does not serve {other}")}),
        ),
    };
    if let Err(e) = contract().check_response(op, status, &answer) {
        shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .violations
            .push(format!("answer to {} {}: {e}", served.method, served.path));
    }
    if matches!(fault, Some(Fault::LostAnswer(_))) {
        served.status = 502;
        return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response();
    }
    served.status = status;
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(answer),
    )
        .into_response()
}

fn fail(shared: &Shared, served: &mut Served, status: u16, message: String, op: Option<&Operation<'_>>) -> Response {
    let _ = shared;
    served.status = status;
    let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
    if let Some(op) = op
        && status != 422
        && let Err(e) = contract().check_response(op, status, &body)
    {
        // Not every operation documents every error; note it, it is the fake's own answer.
        let _ = e;
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

fn list_pulls(shared: &Shared, query: &[(String, String)]) -> (u16, Value) {
    let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let head = param("head");
    let state = param("state").unwrap_or_else(|| "open".into());
    let owner = shared.repo.split('/').next().unwrap_or_default().to_string();
    let forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let pulls: Vec<Pull> = forge
        .pulls
        .iter()
        .filter(|p| state == "all" || p.state == state)
        .filter(|p| head.as_ref().is_none_or(|h| *h == format!("{owner}:{}", p.head)))
        .cloned()
        .collect();
    drop(forge);
    let items: Vec<Value> = pulls
        .iter()
        .map(|p| {
            let mut simple = pull_object(shared, p, &head_sha(shared, &p.head));
            // `pull-request-simple` has no merge details of its own.
            if let Some(o) = simple.as_object_mut() {
                for key in [
                    "merged",
                    "mergeable",
                    "rebaseable",
                    "mergeable_state",
                    "merged_by",
                    "comments",
                    "review_comments",
                    "maintainer_can_modify",
                    "commits",
                    "additions",
                    "deletions",
                    "changed_files",
                ] {
                    o.remove(key);
                }
            }
            simple
        })
        .collect();
    (200, Value::Array(items))
}

fn create_pull(shared: &Shared, body: Value) -> (u16, Value) {
    let head = body["head"].as_str().unwrap_or_default().to_string();
    let base = body["base"].as_str().unwrap_or_default().to_string();
    let validation = |message: &str| {
        (
            422,
            json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": message}], "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}),
        )
    };
    if head_sha(shared, &head).is_empty() {
        return validation(&format!("head {head} does not exist"));
    }
    let mut forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    if forge.pulls.iter().any(|p| p.head == head && p.state == "open") {
        return validation(&format!(
            "A pull request already exists for {}:{head}.",
            shared.repo.split('/').next().unwrap_or_default()
        ));
    }
    let pull = Pull {
        number: forge.pulls.len() as u64 + 1,
        title: body["title"].as_str().unwrap_or_default().to_string(),
        body: body["body"].as_str().unwrap_or_default().to_string(),
        head: head.clone(),
        base,
        state: "open".into(),
        merged_by: None,
        merge_commit: None,
        reviews: Vec::new(),
    };
    forge.pulls.push(pull.clone());
    drop(forge);
    (201, pull_object(shared, &pull, &head_sha(shared, &head)))
}

fn get_pull(shared: &Shared, number: Option<u64>) -> (u16, Value) {
    match find(shared, number) {
        Some(p) => (200, pull_object(shared, &p, &head_sha(shared, &p.head))),
        None => (
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/pulls/pulls#get-a-pull-request"}),
        ),
    }
}

fn update_pull(shared: &Shared, number: Option<u64>, body: Value) -> (u16, Value) {
    let mut forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let Some(pull) = forge.pulls.iter_mut().find(|p| Some(p.number) == number) else {
        return (
            422,
            json!({"message": "Validation Failed", "errors": [], "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    if let Some(title) = body["title"].as_str() {
        pull.title = title.into();
    }
    if let Some(text) = body["body"].as_str() {
        pull.body = text.into();
    }
    let pull = pull.clone();
    drop(forge);
    (200, pull_object(shared, &pull, &head_sha(shared, &pull.head)))
}

fn list_reviews(shared: &Shared, number: Option<u64>, query: &[(String, String)]) -> (u16, Value) {
    let page: usize = query
        .iter()
        .find(|(n, _)| n == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let Some(pull) = find(shared, number) else {
        return (200, json!([]));
    };
    let items: Vec<Value> = if page == 1 {
        pull.reviews
            .iter()
            .map(|r| review_object(shared, pull.number, r))
            .collect()
    } else {
        Vec::new()
    };
    (200, Value::Array(items))
}

fn review_comments(shared: &Shared, number: Option<u64>, review: Option<u64>) -> (u16, Value) {
    let Some(pull) = find(shared, number) else {
        return (
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let Some(review) = pull.reviews.iter().find(|r| Some(r.id) == review) else {
        return (
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let template = contract().example("review-comment-items")[0].clone();
    let items: Vec<Value> = review
        .comments
        .iter()
        .enumerate()
        .map(|(i, (path, line, text))| {
            let mut c = template.clone();
            let o = c.as_object_mut().expect("an example object");
            o.insert("id".into(), json!(review.id * 100 + i as u64));
            o.insert("pull_request_review_id".into(), json!(review.id));
            o.insert("path".into(), json!(path));
            o.insert("line".into(), json!(line));
            o.insert("original_line".into(), json!(line));
            o.insert("body".into(), json!(text));
            o.insert("commit_id".into(), json!(review.commit_id));
            o.insert("original_commit_id".into(), json!(review.commit_id));
            o.insert("user".into(), user(&review.user));
            o.insert(
                "pull_request_url".into(),
                json!(format!(
                    "{}/repos/{}/pulls/{}",
                    shared.base_url, shared.repo, pull.number
                )),
            );
            c
        })
        .collect();
    (200, Value::Array(items))
}

fn find(shared: &Shared, number: Option<u64>) -> Option<Pull> {
    let forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    forge.pulls.iter().find(|p| Some(p.number) == number).cloned()
}

fn head_sha(shared: &Shared, branch: &str) -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")])
        .current_dir(&shared.bare)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A pull request as GitHub's API gives it: the description's own example, with this one's facts.
fn pull_object(shared: &Shared, pull: &Pull, head_sha: &str) -> Value {
    let mut value = contract().example("pull-request");
    let api = format!("{}/repos/{}", shared.base_url, shared.repo);
    let html = format!("https://github.example/{}/pull/{}", shared.repo, pull.number);
    let merged = pull.merge_commit.is_some();
    let owner = shared.repo.split('/').next().unwrap_or_default();
    let o = value.as_object_mut().expect("an example object");
    for (key, v) in [
        ("number", json!(pull.number)),
        ("id", json!(pull.number + 5000)),
        ("url", json!(format!("{api}/pulls/{}", pull.number))),
        ("html_url", json!(html)),
        ("state", json!(pull.state)),
        ("title", json!(pull.title)),
        ("body", json!(pull.body)),
        ("merged", json!(merged)),
        (
            "merged_at",
            if merged {
                json!("2026-12-05T12:00:00Z")
            } else {
                Value::Null
            },
        ),
        (
            "closed_at",
            if pull.state == "closed" {
                json!("2026-12-05T12:00:00Z")
            } else {
                Value::Null
            },
        ),
        (
            "merge_commit_sha",
            pull.merge_commit.as_ref().map(|c| json!(c)).unwrap_or(Value::Null),
        ),
        (
            "merged_by",
            pull.merged_by.as_ref().map(|u| user(u)).unwrap_or(Value::Null),
        ),
        ("draft", json!(false)),
        // Nobody is asked for a review (the description's example names a team without the
        // `type` its own schema requires).
        ("requested_teams", json!([])),
        ("requested_reviewers", json!([])),
    ] {
        o.insert(key.into(), v);
    }
    o["head"]["ref"] = json!(pull.head);
    o["head"]["sha"] = json!(head_sha);
    o["head"]["label"] = json!(format!("{owner}:{}", pull.head));
    o["base"]["ref"] = json!(pull.base);
    o["base"]["label"] = json!(format!("{owner}:{}", pull.base));
    value
}

fn review_object(shared: &Shared, number: u64, review: &ReviewRecord) -> Value {
    let mut value = contract().example("pull-request-review");
    let o = value.as_object_mut().expect("an example object");
    o.insert("id".into(), json!(review.id));
    o.insert("user".into(), user(&review.user));
    o.insert("body".into(), json!(review.body));
    o.insert("state".into(), json!(review.state));
    o.insert("commit_id".into(), json!(review.commit_id));
    o.insert(
        "pull_request_url".into(),
        json!(format!("{}/repos/{}/pulls/{number}", shared.base_url, shared.repo)),
    );
    value
}

fn repository(shared: &Shared) -> Value {
    let mut value = contract().example("pull-request")["base"]["repo"].clone();
    if let Some(o) = value.as_object_mut() {
        let name = shared.repo.split('/').nth(1).unwrap_or_default();
        o.insert("full_name".into(), json!(shared.repo));
        o.insert("name".into(), json!(name));
    }
    value
}

fn user(login: &str) -> Value {
    let mut value = contract().example("pull-request")["user"].clone();
    if let Some(o) = value.as_object_mut() {
        o.insert("login".into(), json!(login));
    }
    value
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}
