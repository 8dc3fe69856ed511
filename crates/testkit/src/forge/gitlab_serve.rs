//! The fake GitLab's HTTP side: `/api/v4/projects/:id/...` found among the endpoints GitLab
//! documents and checked against its parameters, the faults a test asked for, the operation
//! served from the merge requests and issues the fake holds, and the answer held to GitLab's
//! recorded one. Answers are GitLab's recorded answers with this forge's facts put in.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::github::{Fault, IssueRecord, Served};
use super::gitlab::{LabShared, MergeRequestRecord, Thread};
use super::recorded::{Endpoint, endpoint, recorded, same_shape};

pub(super) async fn serve(
    State(shared): State<LabShared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut served = Served {
        method: method.to_string(),
        path: uri.to_string(),
        operation: String::new(),
        status: 0,
    };
    let answer = handle(&shared, &method, &uri, &headers, &body, &mut served);
    shared.lock().served.push(served);
    answer
}

fn handle(
    shared: &LabShared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    served: &mut Served,
) -> Response {
    let violation = |text: String| shared.lock().violations.push(text);
    let Some(rest) = uri.path().strip_prefix("/api/v4/projects/") else {
        violation(format!(
            "request {method} {}: not a project endpoint of GitLab's API v4",
            uri.path()
        ));
        return fail(served, 404, "404 Not Found");
    };
    let mut parts = rest.split('/');
    let project = parts.next().unwrap_or_default().replace("%2F", "/").replace("%2f", "/");
    let segments: Vec<&str> = parts.collect();
    let Some(endpoint) = endpoint(method.as_str(), &segments) else {
        violation(format!(
            "request {method} {}: not an endpoint the fake GitLab knows",
            uri.path()
        ));
        return fail(served, 404, "404 Not Found");
    };
    served.operation = endpoint.operation.to_string();
    let token = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token != shared.token {
        return fail(served, 401, "401 Unauthorized");
    }
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let json_body = match (body.is_empty(), serde_json::from_slice::<Value>(body)) {
        (true, _) => None,
        (false, Ok(v)) => Some(v),
        (false, Err(e)) => return fail(served, 400, &format!("400 Bad request - {e}")),
    };
    if let Err(e) = check_request(&endpoint, &query, json_body.as_ref()) {
        violation(format!("request {method} {}: {e}", uri.path()));
        return fail(served, 400, &format!("400 Bad request - {e}"));
    }
    let fault = {
        let mut lab = shared.lock();
        Fault::take(&mut lab.faults, endpoint.operation)
    };
    match fault {
        Some(Fault::Down) => {
            served.status = 502;
            return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response();
        }
        Some(Fault::RateLimited(_, secs)) => {
            served.status = 429;
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
                + secs;
            // GitLab's documented rate-limit answer.
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("ratelimit-remaining", "0".to_string()),
                    ("ratelimit-reset", reset.to_string()),
                    ("retry-after", secs.to_string()),
                ],
                "Retry later",
            )
                .into_response();
        }
        _ => {}
    }
    if !project.eq_ignore_ascii_case(&shared.repo) {
        return fail(served, 404, "404 Project Not Found");
    }
    let number = segments.get(1).and_then(|n| n.parse::<u64>().ok());
    let body = json_body.unwrap_or_default();
    let (status, answer) = match endpoint.operation {
        "merge_requests/list" => list_merge_requests(shared, &query),
        "merge_requests/create" => create_merge_request(shared, &body),
        "merge_requests/get" => with_merge_request(shared, number, |_| ()),
        "merge_requests/update" => with_merge_request(shared, number, |mr| {
            if let Some(title) = body["title"].as_str() {
                mr.title = title.to_string();
            }
            if let Some(description) = body["description"].as_str() {
                mr.description = description.to_string();
            }
        }),
        "discussions/list" => list_discussions(shared, number, &query),
        "issues/list" => list_issues(shared, &query),
        "issues/update" => update_issue(shared, number, &body),
        "notes/create" => note_issue(shared, number, &body),
        other => (
            501,
            json!({"message": format!("the fake GitLab does not serve {other}")}),
        ),
    };
    if (200..300).contains(&status) {
        let mut like = recorded(endpoint.answer);
        if answer.is_array() && !like.is_array() {
            like = Value::Array(vec![like]);
        }
        if let Err(e) = same_shape(&like, &answer) {
            violation(format!("answer to {method} {}: {e}", uri.path()));
        }
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

/// Whether the query and body carry only what GitLab documents for the endpoint, and what it requires.
fn check_request(endpoint: &Endpoint, query: &[(String, String)], body: Option<&Value>) -> Result<(), String> {
    for (name, value) in query {
        if !endpoint.query.contains(&name.as_str()) {
            return Err(format!(
                "{}: the query parameter {name:?} is not one it takes",
                endpoint.operation
            ));
        }
        if name == "state" && !["opened", "closed", "locked", "merged", "all"].contains(&value.as_str()) {
            return Err(format!("{}: state={value:?} is not a state", endpoint.operation));
        }
        if matches!(name.as_str(), "per_page" | "page") && value.parse::<u32>().is_err() {
            return Err(format!("{}: {name}={value:?} is not a number", endpoint.operation));
        }
    }
    match body {
        None if !endpoint.required.is_empty() => Err(format!("{} needs a JSON body", endpoint.operation)),
        None => Ok(()),
        Some(_) if endpoint.body.is_empty() => Err(format!("{} takes no body", endpoint.operation)),
        Some(Value::Object(fields)) => {
            if let Some(unknown) = fields.keys().find(|k| !endpoint.body.contains(&k.as_str())) {
                return Err(format!(
                    "{}: {unknown:?} is not a parameter it takes",
                    endpoint.operation
                ));
            }
            if let Some(missing) = endpoint.required.iter().find(|r| !fields.contains_key(**r)) {
                return Err(format!("{}: {missing} is missing", endpoint.operation));
            }
            // GitLab takes labels as a comma-separated string.
            if fields.get("labels").is_some_and(|l| !l.is_string()) {
                return Err(format!(
                    "{}: labels must be a comma-separated string",
                    endpoint.operation
                ));
            }
            Ok(())
        }
        Some(_) => Err(format!("{}: the body is not a JSON object", endpoint.operation)),
    }
}

/// GitLab's refusal: `{"message": ...}`.
fn fail(served: &mut Served, status: u16, message: &str) -> Response {
    served.status = status;
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!({"message": message})),
    )
        .into_response()
}

fn page_of<T: Clone>(items: &[T], query: &[(String, String)]) -> Vec<T> {
    let get = |name: &str, default: usize| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let (per_page, page) = (get("per_page", 20).max(1), get("page", 1).max(1));
    items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect()
}

fn list_merge_requests(shared: &LabShared, query: &[(String, String)]) -> (u16, Value) {
    let wanted = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let all: Vec<MergeRequestRecord> = shared
        .lock()
        .merge_requests
        .iter()
        .filter(|m| wanted("state").is_none_or(|s| s == "all" || s == m.state))
        .filter(|m| wanted("source_branch").is_none_or(|b| b == m.source_branch))
        .cloned()
        .collect();
    let template = recorded("rest/get_merge_requests.json")[0].clone();
    let items: Vec<Value> = page_of(&all, query)
        .iter()
        .map(|m| merge_request_object(shared, m, template.clone()))
        .collect();
    (200, Value::Array(items))
}

fn create_merge_request(shared: &LabShared, body: &Value) -> (u16, Value) {
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let (source, target) = (text("source_branch"), text("target_branch"));
    let mut lab = shared.lock();
    if let Some(open) = lab
        .merge_requests
        .iter()
        .find(|m| m.source_branch == source && m.state == "opened")
    {
        // GitLab's answer to a second open merge request from one branch.
        let message = format!(
            "Another open merge request already exists for this source branch: !{}",
            open.iid
        );
        return (409, json!({"message": [message]}));
    }
    drop(lab);
    let exists = |b: &str| {
        std::process::Command::new("git")
            .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{b}")])
            .current_dir(&shared.bare)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !exists(&source) || !exists(&target) {
        return (404, json!({"message": "404 Branch Not Found"}));
    }
    lab = shared.lock();
    let record = MergeRequestRecord {
        iid: lab.merge_requests.len() as u64 + 1,
        title: text("title"),
        description: text("description"),
        source_branch: source,
        target_branch: target,
        state: "opened".into(),
        merged_by: None,
        closed_by: None,
        merge_commit: None,
        threads: Vec::new(),
    };
    lab.merge_requests.push(record.clone());
    drop(lab);
    (
        201,
        merge_request_object(shared, &record, recorded("rest/merge_request.json")),
    )
}

fn with_merge_request(
    shared: &LabShared,
    iid: Option<u64>,
    change: impl FnOnce(&mut MergeRequestRecord),
) -> (u16, Value) {
    let record = {
        let mut lab = shared.lock();
        let Some(mr) = lab.merge_requests.iter_mut().find(|m| Some(m.iid) == iid) else {
            return (404, json!({"message": "404 Not found"}));
        };
        change(mr);
        mr.clone()
    };
    (
        200,
        merge_request_object(shared, &record, recorded("rest/merge_request.json")),
    )
}

fn list_discussions(shared: &LabShared, iid: Option<u64>, query: &[(String, String)]) -> (u16, Value) {
    let Some(mr) = shared
        .lock()
        .merge_requests
        .iter()
        .find(|m| Some(m.iid) == iid)
        .cloned()
    else {
        return (404, json!({"message": "404 Not found"}));
    };
    let items: Vec<Value> = page_of(&mr.threads, query)
        .iter()
        .map(|t| discussion_object(&mr, t))
        .collect();
    (200, Value::Array(items))
}

fn list_issues(shared: &LabShared, query: &[(String, String)]) -> (u16, Value) {
    let wanted = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let labels: Vec<String> = wanted("labels")
        .map(|l| l.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let all: Vec<IssueRecord> = shared
        .lock()
        .issues
        .iter()
        .filter(|i| labels.iter().all(|l| i.labels.contains(l)))
        .filter(|i| wanted("state").is_none_or(|s| s == "all" || s == i.state))
        .cloned()
        .collect();
    let items: Vec<Value> = page_of(&all, query).iter().map(|i| issue_object(shared, i)).collect();
    (200, Value::Array(items))
}

fn update_issue(shared: &LabShared, iid: Option<u64>, body: &Value) -> (u16, Value) {
    let mut lab = shared.lock();
    let Some(issue) = lab.issues.iter_mut().find(|i| Some(i.number) == iid) else {
        return (404, json!({"message": "404 Not found"}));
    };
    if let Some(labels) = body["labels"].as_str() {
        issue.labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
    }
    let issue = issue.clone();
    drop(lab);
    (200, issue_object(shared, &issue))
}

fn note_issue(shared: &LabShared, iid: Option<u64>, body: &Value) -> (u16, Value) {
    let text = body["body"].as_str().unwrap_or_default().to_string();
    let mut lab = shared.lock();
    lab.next_id += 1;
    let id = lab.next_id;
    let Some(issue) = lab.issues.iter_mut().find(|i| Some(i.number) == iid) else {
        return (404, json!({"message": "404 Not found"}));
    };
    issue.comments.push(text.clone());
    let number = issue.number;
    drop(lab);
    let mut note = recorded("rest/note.json");
    put(&mut note, "id", json!(id));
    put(&mut note, "body", json!(text));
    put(&mut note, "author", user("chum-bot"));
    put(&mut note, "noteable_type", json!("Issue"));
    put(&mut note, "noteable_iid", json!(number));
    (201, note)
}

/// Sets `key` where the recording has it (an answer keeps GitLab's fields, no more).
fn put(object: &mut Value, key: &str, value: Value) {
    if let Some(slot) = object.get_mut(key) {
        *slot = value;
    }
}

/// A user as GitLab shows one, from a recorded author.
pub(super) fn user(username: &str) -> Value {
    user_like(&recorded("rest/merge_request.json")["author"], username)
}

/// A user shaped like `like` (a recording's own author: GitLab's user fields grew over time).
fn user_like(like: &Value, username: &str) -> Value {
    let mut author = like.clone();
    put(&mut author, "username", json!(username));
    put(&mut author, "name", json!(username));
    put(
        &mut author,
        "web_url",
        json!(format!("https://gitlab.example/{username}")),
    );
    author
}

fn merge_request_object(shared: &LabShared, mr: &MergeRequestRecord, mut object: Value) -> Value {
    let head = shared.head_of(&mr.source_branch);
    let like = object["author"].clone();
    let user = |name: &str| user_like(&like, name);
    let url = format!("{}/{}/-/merge_requests/{}", shared.base_url, shared.repo, mr.iid);
    let merged = mr.state == "merged";
    for (key, value) in [
        ("id", json!(100_000 + mr.iid)),
        ("iid", json!(mr.iid)),
        ("title", json!(mr.title)),
        ("description", json!(mr.description)),
        ("state", json!(mr.state)),
        ("source_branch", json!(mr.source_branch)),
        ("target_branch", json!(mr.target_branch)),
        ("sha", json!(head)),
        ("merge_commit_sha", json!(mr.merge_commit)),
        ("squash_commit_sha", Value::Null),
        ("merged_by", mr.merged_by.as_deref().map(user).unwrap_or(Value::Null)),
        ("merge_user", mr.merged_by.as_deref().map(user).unwrap_or(Value::Null)),
        (
            "merged_at",
            if merged {
                json!("2026-12-05T12:00:00.000Z")
            } else {
                Value::Null
            },
        ),
        ("closed_by", mr.closed_by.as_deref().map(user).unwrap_or(Value::Null)),
        (
            "closed_at",
            if mr.closed_by.is_some() {
                json!("2026-12-05T12:00:00.000Z")
            } else {
                Value::Null
            },
        ),
        ("web_url", json!(url)),
        ("reference", json!(format!("!{}", mr.iid))),
        ("labels", json!([])),
        ("draft", json!(false)),
        ("work_in_progress", json!(false)),
        (
            "user_notes_count",
            json!(mr.threads.iter().map(|t| t.notes.len()).sum::<usize>()),
        ),
        (
            "detailed_merge_status",
            json!(if mr.state == "opened" { "mergeable" } else { "not_open" }),
        ),
        ("author", user("chum-bot")),
    ] {
        put(&mut object, key, value);
    }
    if let Some(refs) = object.get_mut("references") {
        put(refs, "short", json!(format!("!{}", mr.iid)));
        put(refs, "relative", json!(format!("!{}", mr.iid)));
        put(refs, "full", json!(format!("{}!{}", shared.repo, mr.iid)));
    }
    if let Some(diff) = object.get_mut("diff_refs") {
        put(diff, "head_sha", json!(head));
    }
    object
}

fn discussion_object(mr: &MergeRequestRecord, thread: &Thread) -> Value {
    let recorded_threads = recorded("rest/discussion.json");
    let template = recorded_threads
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["notes"][0]["type"] == "DiffNote")
        .cloned()
        .expect("a recorded thread on a line");
    let note_template = template["notes"][0].clone();
    let notes: Vec<Value> = thread
        .notes
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut note = note_template.clone();
            put(&mut note, "id", json!(900_000 + i as u64));
            put(&mut note, "body", json!(text));
            put(&mut note, "author", user(&thread.author));
            put(&mut note, "noteable_iid", json!(mr.iid));
            put(&mut note, "resolved", json!(thread.resolved));
            put(&mut note, "resolved_by", Value::Null);
            put(&mut note, "resolved_at", Value::Null);
            if let Some(position) = note.get_mut("position") {
                put(position, "head_sha", json!(thread.head_sha));
                put(position, "new_path", json!(thread.path));
                put(position, "old_path", json!(thread.path));
                put(position, "new_line", json!(thread.line));
                put(position, "old_line", Value::Null);
            }
            note
        })
        .collect();
    let mut discussion = template;
    put(&mut discussion, "id", json!(thread.id));
    put(&mut discussion, "individual_note", json!(false));
    put(&mut discussion, "notes", Value::Array(notes));
    discussion
}

fn issue_object(shared: &LabShared, issue: &IssueRecord) -> Value {
    let mut object = recorded("rest/issue.json");
    let url = format!("{}/{}/-/issues/{}", shared.base_url, shared.repo, issue.number);
    for (key, value) in [
        ("id", json!(200_000 + issue.number)),
        ("iid", json!(issue.number)),
        ("title", json!(issue.title)),
        ("description", json!(issue.body)),
        ("state", json!(issue.state)),
        ("labels", json!(issue.labels)),
        ("web_url", json!(url)),
        ("closed_at", Value::Null),
        ("closed_by", Value::Null),
        ("user_notes_count", json!(issue.comments.len())),
    ] {
        put(&mut object, key, value);
    }
    if let Some(refs) = object.get_mut("references") {
        put(refs, "short", json!(format!("#{}", issue.number)));
        put(refs, "relative", json!(format!("#{}", issue.number)));
        put(refs, "full", json!(format!("{}#{}", shared.repo, issue.number)));
    }
    object
}
