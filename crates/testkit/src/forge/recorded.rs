//! GitLab's contract as far as it is published in a registry: GitLab answers recorded from a real
//! GitLab (gitlab.kitware.com, by the `gitlab` crate's `fetch_from_gitlab.py`, shipped in its
//! `data/` up to 0.1609.0) and GitLab's documented webhook payloads (Debian's go-gitlab
//! testdata), installed by `scripts/setup.sh` into `.tools/forge-contracts/gitlab`. GitLab has
//! no OpenAPI description of merge requests, discussions and notes in any registry; so the fake
//! GitLab serves answers made from these recordings, and [`same_shape`] holds every answer and
//! webhook to them: no field GitLab does not send, none missing, each of the recorded type. What
//! a request may carry is GitLab's documented parameters per endpoint ([`endpoint`]).

use std::path::PathBuf;

use serde_json::Value;

/// Where setup put the recordings.
pub fn gitlab_recordings_dir() -> PathBuf {
    crate::workspace_root().join(".tools/forge-contracts/gitlab")
}

/// Whether the recordings are installed. Without them the GitLab tests skip, unless
/// `CHUM_REQUIRE_FORGE_CONTRACTS=1` (CI) makes that a failure.
pub fn gitlab_recordings_installed() -> bool {
    let dir = gitlab_recordings_dir();
    let there = dir.join("rest/merge_request.json").is_file() && dir.join("webhooks/merge_request.json").is_file();
    if !there && std::env::var("CHUM_REQUIRE_FORGE_CONTRACTS").is_ok_and(|v| v == "1") {
        panic!("CHUM_REQUIRE_FORGE_CONTRACTS=1 but GitLab's recorded answers are not installed: run scripts/setup.sh");
    }
    there
}

/// A recording: `rest/merge_request.json`, `webhooks/note_merge_request.json`, ...
pub fn recorded(name: &str) -> Value {
    let path = gitlab_recordings_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `served` has the shape of `recorded`: the same fields (none missing, none GitLab does
/// not send), each of the recorded JSON type or null; a list's items each like one recorded item.
/// A recorded null or empty object says nothing about what is there.
pub fn same_shape(recorded: &Value, served: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    compare(recorded, served, "$", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(8);
        Err(problems.join("; "))
    }
}

fn compare(recorded: &Value, served: &Value, at: &str, problems: &mut Vec<String>) {
    match (recorded, served) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(want), Value::Object(got)) => {
            if want.is_empty() {
                return;
            }
            for key in want.keys().filter(|k| !got.contains_key(*k)) {
                problems.push(format!("{at}.{key} is missing (GitLab sends it)"));
            }
            for (key, value) in got {
                match want.get(key) {
                    None => problems.push(format!("{at}.{key} is not a field GitLab sends")),
                    Some(like) => compare(like, value, &format!("{at}.{key}"), problems),
                }
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.is_empty() {
                return;
            }
            for (i, item) in got.iter().enumerate() {
                let mut best: Option<Vec<String>> = None;
                for like in want {
                    let mut found = Vec::new();
                    compare(like, item, &format!("{at}[{i}]"), &mut found);
                    if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                        best = Some(found);
                    }
                }
                problems.extend(best.unwrap_or_default());
            }
        }
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => {}
        (want, got) => problems.push(format!("{at} is {} where GitLab sends {}", kind(got), kind(want))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// One endpoint of GitLab's API v4 the fake serves, with the parameters GitLab documents for it
/// (docs.gitlab.com/api/merge_requests, /api/discussions, /api/issues, /api/notes).
pub struct Endpoint {
    pub operation: &'static str,
    pub query: &'static [&'static str],
    pub body: &'static [&'static str],
    pub required: &'static [&'static str],
    /// The recording the answer has the shape of (a list's items for lists).
    pub answer: &'static str,
}

/// Which endpoint `method` on `/projects/:id/<rest>` is (rest split by '/').
pub fn endpoint(method: &str, rest: &[&str]) -> Option<Endpoint> {
    const PAGES: &[&str] = &["per_page", "page"];
    let e = |operation, query, body, required, answer| {
        Some(Endpoint {
            operation,
            query,
            body,
            required,
            answer,
        })
    };
    match (method, rest) {
        ("GET", ["merge_requests"]) => e(
            "merge_requests/list",
            &[
                "state",
                "source_branch",
                "target_branch",
                "labels",
                "order_by",
                "sort",
                "scope",
                "author_username",
                "reviewer_username",
                "per_page",
                "page",
            ],
            &[],
            &[],
            "rest/get_merge_requests.json",
        ),
        ("POST", ["merge_requests"]) => e(
            "merge_requests/create",
            &[],
            &[
                "source_branch",
                "target_branch",
                "title",
                "description",
                "assignee_id",
                "assignee_ids",
                "reviewer_ids",
                "labels",
                "milestone_id",
                "remove_source_branch",
                "allow_collaboration",
                "squash",
                "target_project_id",
            ],
            &["source_branch", "target_branch", "title"],
            "rest/merge_request.json",
        ),
        ("GET", ["merge_requests", _]) => e(
            "merge_requests/get",
            &[
                "render_html",
                "include_diverged_commits_count",
                "include_rebase_in_progress",
            ],
            &[],
            &[],
            "rest/merge_request.json",
        ),
        ("PUT", ["merge_requests", _]) => e(
            "merge_requests/update",
            &[],
            &[
                "title",
                "description",
                "target_branch",
                "state_event",
                "labels",
                "add_labels",
                "remove_labels",
                "assignee_id",
                "assignee_ids",
                "reviewer_ids",
                "milestone_id",
                "remove_source_branch",
                "squash",
                "discussion_locked",
                "allow_collaboration",
            ],
            &[],
            "rest/merge_request.json",
        ),
        ("GET", ["merge_requests", _, "discussions"]) => e("discussions/list", PAGES, &[], &[], "rest/discussion.json"),
        ("GET", ["issues"]) => e(
            "issues/list",
            &[
                "labels",
                "state",
                "iids[]",
                "search",
                "order_by",
                "sort",
                "milestone",
                "scope",
                "author_id",
                "assignee_id",
                "per_page",
                "page",
            ],
            &[],
            &[],
            "rest/issue.json",
        ),
        ("PUT", ["issues", _]) => e(
            "issues/update",
            &[],
            &[
                "title",
                "description",
                "labels",
                "add_labels",
                "remove_labels",
                "state_event",
                "assignee_ids",
                "confidential",
                "milestone_id",
                "due_date",
                "discussion_locked",
                "issue_type",
            ],
            &[],
            "rest/issue.json",
        ),
        ("POST", ["issues", _, "notes"]) => e(
            "notes/create",
            &[],
            &["body", "internal", "confidential", "created_at"],
            &["body"],
            "rest/note.json",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::same_shape;

    #[test]
    fn an_answer_must_have_the_recorded_fields_and_types() {
        let recorded = json!({"iid": 1, "labels": ["a"], "merged_by": null, "diff_refs": {"head_sha": "x"}});
        assert!(
            same_shape(
                &recorded,
                &json!({"iid": 2, "labels": [], "merged_by": {"id": 1}, "diff_refs": {"head_sha": "y"}})
            )
            .is_ok()
        );
        let err = same_shape(
            &recorded,
            &json!({"iid": "2", "labels": [], "merged_by": null, "diff_refs": {"head_sha": "y"}, "extra": 1}),
        )
        .unwrap_err();
        assert!(err.contains("$.iid is a string where GitLab sends a number"), "{err}");
        assert!(err.contains("$.extra is not a field GitLab sends"), "{err}");
        let err = same_shape(&recorded, &json!({"iid": 2, "labels": [3], "merged_by": null})).unwrap_err();
        assert!(err.contains("$.diff_refs is missing"), "{err}");
        assert!(err.contains("$.labels[0] is a number"), "{err}");
    }
}
