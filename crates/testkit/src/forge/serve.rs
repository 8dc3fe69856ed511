//! The fake GitHub's HTTP side: each request found in GitHub's description and checked against it
//! (query, body), the faults a test asked for, the operation served from the pull requests the
//! fake holds, and the answer checked against the description too. Answers are built from the
//! description's own examples, with this forge's facts put in.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::contract::{Operation, contract};
use super::github::{Fault, IssueRecord, Pull, ReviewRecord, Served, Shared};

pub(super) async fn serve(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: Vec<(String, String)> = uri.query().map(url_pairs).unwrap_or_default();
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
            fail(&mut served, 404, e)
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
        return fail(served, 401, "Bad credentials".into());
    }
    let json_body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(e) => return fail(served, 400, format!("Problems parsing JSON: {e}")),
        }
    };
    if let Err(e) = contract().check_request(op, query, json_body.as_ref()) {
        shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .violations
            .push(format!("request {} {}: {e}", served.method, served.path));
        return fail(served, 422, e);
    }
    let fault = {
        let mut forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        Fault::take(&mut forge.faults, &op.id)
    };
    match fault {
        Some(Fault::Down) => {
            served.status = 502;
            return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response();
        }
        Some(Fault::RateLimited(_, secs)) => {
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
        return fail(served, 404, "Not Found".into());
    }
    let number = segments.get(4).and_then(|n| n.parse::<u64>().ok());
    let (status, answer) = match op.id.as_str() {
        "pulls/list" => list_pulls(shared, query),
        "pulls/create" => create_pull(shared, json_body.unwrap_or_default()),
        "pulls/get" => get_pull(shared, number),
        "pulls/update" => update_pull(shared, number, json_body.unwrap_or_default()),
        "pulls/list-reviews" => list_reviews(shared, number, query),
        "issues/list-for-repo" => list_issues(shared, query),
        "issues/create-comment" => comment_issue(shared, number, json_body.unwrap_or_default()),
        "issues/set-labels" => label_issue(shared, number, json_body.unwrap_or_default()),
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

/// The forge's refusal, in GitHub's error shape.
fn fail(served: &mut Served, status: u16, message: String) -> Response {
    served.status = status;
    let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
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
    forge.next_number += 1;
    let pull = Pull {
        number: forge.next_number,
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
pub(super) fn pull_object(shared: &Shared, pull: &Pull, head_sha: &str) -> Value {
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

pub(super) fn review_object(shared: &Shared, number: u64, review: &ReviewRecord) -> Value {
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

pub(super) fn repository(shared: &Shared) -> Value {
    let mut value = contract().example("pull-request")["base"]["repo"].clone();
    if let Some(o) = value.as_object_mut() {
        let name = shared.repo.split('/').nth(1).unwrap_or_default();
        o.insert("full_name".into(), json!(shared.repo));
        o.insert("name".into(), json!(name));
    }
    value
}

pub(super) fn user(login: &str) -> Value {
    let mut value = contract().example("pull-request")["user"].clone();
    if let Some(o) = value.as_object_mut() {
        o.insert("login".into(), json!(login));
    }
    value
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn list_issues(shared: &Shared, query: &[(String, String)]) -> (u16, Value) {
    let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let wanted: Vec<String> = param("labels")
        .map(|l| {
            l.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let state = param("state").unwrap_or_else(|| "open".into());
    let page: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per_page: usize = param("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let issues: Vec<IssueRecord> = forge
        .issues
        .iter()
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| wanted.iter().all(|w| i.labels.contains(w)))
        .skip((page.max(1) - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    drop(forge);
    (
        200,
        Value::Array(issues.iter().map(|i| issue_object(shared, i)).collect()),
    )
}

fn comment_issue(shared: &Shared, number: Option<u64>, body: Value) -> (u16, Value) {
    let mut forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let Some(issue) = forge.issues.iter_mut().find(|i| Some(i.number) == number) else {
        return (
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let text = body["body"].as_str().unwrap_or_default().to_string();
    issue.comments.push(text.clone());
    let count = issue.comments.len() as u64;
    let number = issue.number;
    drop(forge);
    let mut comment = contract().example("issue-comment");
    if let Some(o) = comment.as_object_mut() {
        o.insert("id".into(), json!(number * 1000 + count));
        o.insert("body".into(), json!(text));
        o.insert(
            "issue_url".into(),
            json!(format!("{}/repos/{}/issues/{number}", shared.base_url, shared.repo)),
        );
    }
    (201, comment)
}

fn label_issue(shared: &Shared, number: Option<u64>, body: Value) -> (u16, Value) {
    let mut forge = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let Some(issue) = forge.issues.iter_mut().find(|i| Some(i.number) == number) else {
        return (
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    issue.labels = body["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().map(String::from))
        .collect();
    let labels = issue.labels.clone();
    drop(forge);
    (200, Value::Array(labels.iter().map(|l| label_object(l)).collect()))
}

/// An issue as GitHub's API gives it: the description's example, with this one's facts.
fn issue_object(shared: &Shared, issue: &IssueRecord) -> Value {
    let mut value = contract().example("issue");
    let api = format!("{}/repos/{}", shared.base_url, shared.repo);
    if let Some(o) = value.as_object_mut() {
        // An issue, not a pull request.
        o.remove("pull_request");
        for (key, v) in [
            ("number", json!(issue.number)),
            ("id", json!(issue.number + 9000)),
            ("url", json!(format!("{api}/issues/{}", issue.number))),
            (
                "html_url",
                json!(format!(
                    "https://github.example/{}/issues/{}",
                    shared.repo, issue.number
                )),
            ),
            ("title", json!(issue.title)),
            ("body", json!(issue.body)),
            ("state", json!(issue.state)),
            (
                "labels",
                Value::Array(issue.labels.iter().map(|l| label_object(l)).collect()),
            ),
            ("comments", json!(issue.comments.len())),
        ] {
            o.insert(key.into(), v);
        }
    }
    value
}

fn label_object(name: &str) -> Value {
    let mut value = contract().example("label");
    if let Some(o) = value.as_object_mut() {
        o.insert("name".into(), json!(name));
        o.insert("default".into(), json!(false));
    }
    value
}
