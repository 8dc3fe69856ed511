//! A fake GitLab for the tests: the merge request, discussion, issue and note API CHUM uses,
//! served over a real bare git repository at `/api/v4`, every answer made from and held to
//! GitLab's recorded answers ([`super::recorded`]), every request to the parameters GitLab
//! documents for its endpoint. A request that breaks them is answered 400 and recorded as a
//! violation, so a test ends with `assert_no_violations`. People's actions (threads asking for
//! changes, a merge, a close) are methods; webhooks go out with the secret in `X-Gitlab-Token`,
//! as GitLab sends them, their payloads held to GitLab's documented ones.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::github::{Fault, IssueRecord, Served, merge_in};
use super::gitlab_serve::serve;
use super::recorded::{recorded, same_shape};
use crate::project::git;

/// A thread a reviewer started on a line.
#[derive(Debug, Clone)]
pub(super) struct Thread {
    pub(super) id: String,
    pub(super) author: String,
    pub(super) head_sha: String,
    pub(super) path: String,
    pub(super) line: u64,
    pub(super) notes: Vec<String>,
    pub(super) resolved: bool,
}

#[derive(Debug, Clone)]
pub(super) struct MergeRequestRecord {
    pub(super) iid: u64,
    pub(super) title: String,
    pub(super) description: String,
    pub(super) source_branch: String,
    pub(super) target_branch: String,
    /// opened, closed, merged.
    pub(super) state: String,
    pub(super) merged_by: Option<String>,
    pub(super) closed_by: Option<String>,
    pub(super) merge_commit: Option<String>,
    pub(super) threads: Vec<Thread>,
}

#[derive(Default)]
pub(super) struct Lab {
    pub(super) merge_requests: Vec<MergeRequestRecord>,
    /// GitLab numbers issues and merge requests apart (`#1` and `!1`).
    pub(super) issues: Vec<IssueRecord>,
    pub(super) served: Vec<Served>,
    pub(super) violations: Vec<String>,
    pub(super) faults: Vec<Fault>,
    pub(super) next_id: u64,
}

#[derive(Clone)]
pub(super) struct LabShared {
    pub(super) repo: String,
    pub(super) bare: PathBuf,
    pub(super) token: String,
    pub(super) base_url: String,
    pub(super) state: Arc<Mutex<Lab>>,
}

impl LabShared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Lab> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn head_of(&self, branch: &str) -> String {
        git(&self.bare, &["rev-parse", &format!("refs/heads/{branch}")])
    }
}

/// The fake GitLab: project `group/name` over `bare`.
#[derive(Clone)]
pub struct FakeGitLab {
    pub addr: SocketAddr,
    shared: LabShared,
}

impl FakeGitLab {
    /// Serves `repo` (its path with namespace) over the bare repository `bare`, taking `token` only.
    pub async fn start(repo: &str, bare: &Path, token: &str) -> FakeGitLab {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake forge listens");
        let addr = listener.local_addr().expect("its address");
        let shared = LabShared {
            repo: repo.to_string(),
            bare: bare.to_path_buf(),
            token: token.to_string(),
            base_url: format!("http://{addr}"),
            state: Arc::new(Mutex::new(Lab {
                next_id: 5000,
                ..Lab::default()
            })),
        };
        let app = axum::Router::new().fallback(serve).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitLab { addr, shared }
    }

    /// The API root a project's `forge.api_url` names.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v4", self.addr)
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Every request served so far.
    pub fn served(&self) -> Vec<Served> {
        self.shared.lock().served.clone()
    }

    /// How many requests of an operation (`merge_requests/create`) were served, whatever their answer.
    pub fn count(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .served
            .iter()
            .filter(|s| s.operation == operation)
            .count()
    }

    /// Fails the test with every request, answer or webhook that broke GitLab's contract.
    pub fn assert_no_violations(&self) {
        let violations = self.shared.lock().violations.clone();
        assert!(violations.is_empty(), "contract violations:\n{}", violations.join("\n"));
    }

    /// The next `n` API requests answer 502 and change nothing.
    pub fn go_down_for(&self, n: usize) {
        self.shared.lock().faults.extend(std::iter::repeat_n(Fault::Down, n));
    }

    /// The next request of `operation` is served, but its answer is lost (502).
    pub fn lose_next_answer_to(&self, operation: &'static str) {
        self.shared.lock().faults.push(Fault::LostAnswer(operation));
    }

    /// The next look at a merge request (`merge_requests/get`) is refused for the rate limit
    /// (429), which resets in `secs`.
    pub fn rate_limit_next(&self, secs: u64) {
        self.shared
            .lock()
            .faults
            .push(Fault::RateLimited("merge_requests/get", secs));
    }

    /// Someone opens an issue; returns its iid.
    pub fn open_issue(&self, title: &str, body: &str, labels: &[&str]) -> u64 {
        let mut lab = self.shared.lock();
        let number = lab.issues.len() as u64 + 1;
        lab.issues.push(IssueRecord {
            number,
            title: title.into(),
            body: body.into(),
            state: "opened".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            comments: Vec::new(),
        });
        number
    }

    /// An issue's labels and the notes on it, in order.
    pub fn issue(&self, number: u64) -> (Vec<String>, Vec<String>) {
        let lab = self.shared.lock();
        let issue = lab.issues.iter().find(|i| i.number == number).expect("the issue");
        (issue.labels.clone(), issue.comments.clone())
    }

    /// The merge request from `branch`, if any: its iid, state and description.
    pub fn merge_request_for(&self, branch: &str) -> Option<(u64, String, String)> {
        self.shared
            .lock()
            .merge_requests
            .iter()
            .find(|m| m.source_branch == branch)
            .map(|m| (m.iid, m.state.clone(), m.description.clone()))
    }

    pub fn merge_request_count(&self) -> usize {
        self.shared.lock().merge_requests.len()
    }

    /// `user` starts an unresolved thread on each (path, line, text) of the merge request's
    /// current head: what GitLab's "Request changes" review leaves.
    pub fn request_changes(&self, iid: u64, user: &str, comments: &[(&str, u64, &str)]) {
        let branch = self.record(iid).source_branch;
        let head = self.shared.head_of(&branch);
        let mut lab = self.shared.lock();
        let mut threads = Vec::new();
        for (path, line, text) in comments {
            lab.next_id += 1;
            threads.push(Thread {
                id: format!("{:040x}", lab.next_id),
                author: user.into(),
                head_sha: head.clone(),
                path: path.to_string(),
                line: *line,
                notes: vec![text.to_string()],
                resolved: false,
            });
        }
        let mr = lab
            .merge_requests
            .iter_mut()
            .find(|m| m.iid == iid)
            .expect("the merge request");
        mr.threads.extend(threads);
    }

    /// `user` merges the merge request: a real merge commit on the target branch of the bare
    /// repository. Returns it.
    pub fn merge(&self, iid: u64, user: &str) -> String {
        let mr = self.record(iid);
        let message = format!(
            "Merge branch '{}' into '{}'\n\nSee merge request {}!{iid}",
            mr.source_branch, mr.target_branch, self.shared.repo
        );
        let commit = merge_in(&self.shared.bare, &mr.target_branch, &mr.source_branch, &message);
        self.update(iid, |m| {
            m.state = "merged".into();
            m.merged_by = Some(user.into());
            m.merge_commit = Some(commit.clone());
        });
        commit
    }

    /// `user` closes the merge request without merging it.
    pub fn close(&self, iid: u64, user: &str) {
        self.update(iid, |m| {
            m.state = "closed".into();
            m.closed_by = Some(user.into());
        });
    }

    /// The webhook GitLab would send about the merge request now: "Merge Request Hook" (with
    /// `action`: update, merge, close, ...) or "Note Hook" (the last thread's note). Returns the
    /// `X-Gitlab-Event` and the payload, held to GitLab's documented payload.
    pub fn webhook(&self, iid: u64, event: &str, action: &str) -> (String, Value) {
        let mr = self.record(iid);
        let head = self.shared.head_of(&mr.source_branch);
        let (name, mut payload) = match event {
            "Merge Request Hook" => ("webhooks/merge_request.json", recorded("webhooks/merge_request.json")),
            "Note Hook" => (
                "webhooks/note_merge_request.json",
                recorded("webhooks/note_merge_request.json"),
            ),
            other => panic!("the fake sends no {other} webhooks"),
        };
        let like = payload.clone();
        payload["project"]["path_with_namespace"] = json!(self.shared.repo);
        payload["project"]["web_url"] = json!(format!("{}/{}", self.shared.base_url, self.shared.repo));
        let attributes = json!({
            "iid": iid,
            "title": mr.title,
            "description": mr.description,
            "source_branch": mr.source_branch,
            "target_branch": mr.target_branch,
            "state": mr.state,
            "url": format!("{}/{}/-/merge_requests/{iid}", self.shared.base_url, self.shared.repo),
        });
        let about = if event == "Merge Request Hook" {
            payload["object_attributes"]["action"] = json!(action);
            "object_attributes"
        } else {
            let last = mr.threads.last().map(|t| t.notes.join("\n")).unwrap_or_default();
            payload["object_attributes"]["note"] = json!(last);
            "merge_request"
        };
        for (key, value) in attributes.as_object().into_iter().flatten() {
            if payload[about].get(key).is_some() {
                payload[about][key] = value.clone();
            }
        }
        payload[about]["last_commit"]["id"] = json!(head);
        if let Err(e) = same_shape(&like, &payload) {
            self.shared.lock().violations.push(format!("webhook {name}: {e}"));
        }
        (event.to_string(), payload)
    }

    fn record(&self, iid: u64) -> MergeRequestRecord {
        self.shared
            .lock()
            .merge_requests
            .iter()
            .find(|m| m.iid == iid)
            .cloned()
            .expect("the merge request")
    }

    fn update(&self, iid: u64, change: impl FnOnce(&mut MergeRequestRecord)) {
        let mut lab = self.shared.lock();
        let mr = lab
            .merge_requests
            .iter_mut()
            .find(|m| m.iid == iid)
            .expect("the merge request");
        change(mr);
    }
}

/// Delivers a webhook to `url` the way GitLab does: the secret token in `X-Gitlab-Token`.
/// Returns the HTTP status.
pub async fn deliver_gitlab(url: &str, token: &str, event: &str, payload: &Value) -> u16 {
    let body = serde_json::to_vec(payload).expect("a payload");
    crate::processes::http_client()
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitLab/17.0.0")
        .header("X-Gitlab-Event", event)
        .header("X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e")
        .header("X-Gitlab-Token", token)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}
