//! The backlog as a DAG: which beads are ready, and whether a groomer's proposed changes are safe.
//! Pure functions over a snapshot; the backends (native JSONL, the `bd`/`br` CLI) live in the
//! activities crate.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::new_bead::{DEPENDENCY_TYPES, KnownBeads, NewBead};
use crate::proto::BeadStatus;

pub use crate::backlog_view::{
    BacklogCounts, BacklogRow, backlog_listing, backlog_rows, backlog_summary, rows_listing,
};

/// What CHUM needs of one issue to reason about the DAG.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BacklogItem {
    pub id: String,
    pub title: String,
    pub status: String,
    pub priority: i64,
    pub issue_type: String,
    pub created_at: String,
    pub assignee: String,
    /// Why it was closed (the evidence), for closed beads.
    pub close_reason: String,
    /// (depends_on_id, type), e.g. ("demo-5qb", "blocks").
    pub dependencies: Vec<(String, String)>,
}

impl BacklogItem {
    /// Its status, typed (`Unspecified` for one CHUM does not know; `status` keeps the text).
    pub fn state(&self) -> BeadStatus {
        BeadStatus::of(&self.status)
    }

    /// Reads the fields from a Beads issue object (JSONL line or `--json` output).
    pub fn from_json(obj: &Map<String, Value>) -> BacklogItem {
        let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let dependencies = obj
            .get("dependencies")
            .and_then(Value::as_array)
            .map(|deps| {
                deps.iter()
                    .filter_map(|d| {
                        let target = d.get("depends_on_id").and_then(Value::as_str)?;
                        let kind = d.get("type").and_then(Value::as_str).unwrap_or("blocks");
                        Some((target.to_string(), kind.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        BacklogItem {
            id: text("id"),
            title: text("title"),
            status: text("status"),
            priority: obj.get("priority").and_then(Value::as_i64).unwrap_or(2),
            issue_type: text("issue_type"),
            created_at: text("created_at"),
            assignee: text("assignee"),
            close_reason: text("close_reason"),
            dependencies,
        }
    }
}

/// Why a bead is not ready, or `None` when it is: open, not an epic, every `blocks` dependency
/// closed. A dependency on a bead that does not exist blocks (it cannot be checked).
pub fn blocker(item: &BacklogItem, by_id: &BTreeMap<&str, &BacklogItem>) -> Option<String> {
    if item.state() != BeadStatus::Open {
        return Some(format!("status is {}", item.status));
    }
    if item.issue_type == "epic" {
        return Some("it is an epic".to_string());
    }
    for (target, kind) in &item.dependencies {
        if kind != "blocks" {
            continue;
        }
        match by_id.get(target.as_str()) {
            None => return Some(format!("it depends on {target}, which does not exist")),
            Some(dep) if dep.state() != BeadStatus::Closed => {
                return Some(format!("it waits for {target} ({})", dep.status));
            }
            Some(_) => {}
        }
    }
    None
}

/// The ready beads, in the order they should be worked on: priority (0 first), then age.
pub fn ready(items: &[BacklogItem]) -> Vec<&BacklogItem> {
    let by_id: BTreeMap<&str, &BacklogItem> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut ready: Vec<&BacklogItem> = items.iter().filter(|i| blocker(i, &by_id).is_none()).collect();
    ready.sort_by(|a, b| (a.priority, &a.created_at, &a.id).cmp(&(b.priority, &b.created_at, &b.id)));
    ready
}

/// A change a groomer proposes to the backlog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mutation {
    UpdatePriority {
        id: String,
        priority: i64,
    },
    AddDependency {
        id: String,
        depends_on: String,
        #[serde(default = "blocks")]
        r#type: String,
    },
    AppendNotes {
        id: String,
        notes: String,
    },
    Create {
        title: String,
        #[serde(default)]
        description: String,
        #[serde(default = "two")]
        priority: i64,
        #[serde(default = "task")]
        issue_type: String,
        /// (depends_on_id, type) pairs, e.g. a `discovered-from` link to the finished bead.
        #[serde(default)]
        dependencies: Vec<NewDependency>,
    },
    Close {
        id: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDependency {
    pub depends_on: String,
    #[serde(default = "blocks")]
    pub r#type: String,
}

fn blocks() -> String {
    "blocks".to_string()
}
fn two() -> i64 {
    2
}
fn task() -> String {
    "task".to_string()
}

impl Mutation {
    /// The bead a `create` makes: labelled `chum-groomed`, created by CHUM.
    pub fn as_new_bead(&self) -> Option<NewBead> {
        let Mutation::Create {
            title,
            description,
            priority,
            issue_type,
            dependencies,
        } = self
        else {
            return None;
        };
        Some(NewBead {
            id: None,
            title: title.trim().to_string(),
            description: description.clone(),
            acceptance_criteria: String::new(),
            priority: *priority,
            issue_type: issue_type.clone(),
            labels: vec!["chum-groomed".to_string()],
            dependencies: dependencies
                .iter()
                .map(|d| (d.depends_on.clone(), d.r#type.clone()))
                .collect(),
            created_by: "chum".to_string(),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Mutation::UpdatePriority { id, priority } => format!("set the priority of {id} to {priority}"),
            Mutation::AddDependency { id, depends_on, r#type } => format!("{id} {type} on {depends_on}"),
            Mutation::AppendNotes { id, notes } => format!("note on {id}: {:?}", crate::text::clip(notes, 60)),
            Mutation::Create { title, .. } => format!("create {title:?}"),
            Mutation::Close { id, reason } => format!("close {id} ({:?})", crate::text::clip(reason, 60)),
        }
    }
}

/// Parses a groomer's answer: a JSON array of mutations (in a fence or bare).
pub fn parse_mutations(answer: &str) -> Result<Vec<Mutation>, String> {
    let trimmed = answer.trim();
    let json = if let Some(start) = trimmed.find("```") {
        let body = &trimmed[start + 3..];
        let body = body.strip_prefix("json").unwrap_or(body);
        body.find("```").map(|end| body[..end].trim()).unwrap_or(body.trim())
    } else {
        match (trimmed.find('['), trimmed.rfind(']')) {
            (Some(a), Some(b)) if b > a => &trimmed[a..=b],
            _ => {
                return Err(format!(
                    "no JSON array of mutations in the answer: {}",
                    crate::text::excerpt(trimmed, 200)
                ));
            }
        }
    };
    serde_json::from_str(json).map_err(|e| format!("the mutations do not parse: {e}"))
}

/// A groomer's answer: the proposed mutations and, from a strategic groom, a briefing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroomAnswer {
    pub mutations: Vec<Mutation>,
    pub briefing: String,
}

/// Parses a groomer's answer: a JSON array of mutations, or an object
/// `{"briefing": "...", "mutations": [...]}` (a strategic groom), bare or in a fence. A strategic
/// answer must carry a briefing.
pub fn parse_groom_answer(answer: &str, strategic: bool) -> Result<GroomAnswer, String> {
    let trimmed = answer.trim();
    let body = match trimmed.find("```") {
        Some(start) => {
            let rest = &trimmed[start + 3..];
            let rest = rest.strip_prefix("json").unwrap_or(rest);
            rest.find("```").map(|end| rest[..end].trim()).unwrap_or(rest.trim())
        }
        None => trimmed,
    };
    let object = match (body.find('{'), body.find('[')) {
        (Some(o), Some(a)) => o < a,
        (Some(_), None) => true,
        _ => false,
    };
    if !object {
        if strategic {
            return Err(
                "a strategic groom answers with one JSON object {\"briefing\": \"...\", \"mutations\": [...]}"
                    .to_string(),
            );
        }
        return parse_mutations(body).map(|mutations| GroomAnswer {
            mutations,
            briefing: String::new(),
        });
    }
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b > a => &body[a..=b],
        _ => {
            return Err(format!(
                "no JSON object in the answer: {}",
                crate::text::excerpt(body, 200)
            ));
        }
    };
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[serde(default)]
        briefing: String,
        #[serde(default)]
        mutations: Vec<Mutation>,
    }
    let shape: Shape = serde_json::from_str(json).map_err(|e| format!("the answer does not parse: {e}"))?;
    if strategic && shape.briefing.trim().is_empty() {
        return Err("the briefing is missing or empty".to_string());
    }
    Ok(GroomAnswer {
        mutations: shape.mutations,
        briefing: shape.briefing,
    })
}

/// Evidence a close must cite: a commit, a bead, a test or a merge, something a person can check.
fn cites_evidence(reason: &str, ids: &BTreeSet<String>) -> bool {
    let lower = reason.to_lowercase();
    let hex = reason.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() >= 7);
    let bead = ids.iter().any(|id| reason.contains(id.as_str()));
    let words = ["commit", "merged", "test", "duplicate of", "fixed in", "superseded by"]
        .iter()
        .any(|w| lower.contains(w));
    reason.trim().len() >= 15 && (hex || bead || words)
}

/// Whether adding `from -> to` to the dependency graph closes a cycle.
fn creates_cycle(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    // A cycle exists if `from` is reachable from `to`.
    let mut stack = vec![to.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(node) = stack.pop() {
        if node == from {
            return true;
        }
        if seen.insert(node.clone()) {
            stack.extend(edges.get(&node).into_iter().flatten().cloned());
        }
    }
    false
}

/// Checks proposed mutations against the backlog, in order, as if each accepted one had been
/// applied. Returns every mutation with `Ok` or the reason it is refused. At most `max` are
/// accepted; the rest are refused as over the limit.
pub fn validate_mutations(
    items: &[BacklogItem],
    proposed: Vec<Mutation>,
    max: usize,
) -> Vec<(Mutation, Result<(), String>)> {
    let ids: BTreeSet<String> = items.iter().map(|i| i.id.clone()).collect();
    let mut status: BTreeMap<String, BeadStatus> = items.iter().map(|i| (i.id.clone(), i.state())).collect();
    let mut known = KnownBeads::of(items);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in items {
        for (target, _) in &item.dependencies {
            edges.entry(item.id.clone()).or_default().insert(target.clone());
        }
    }
    let mut accepted = 0;
    let mut out = Vec::new();
    for m in proposed {
        let verdict = (|| -> Result<(), String> {
            if accepted >= max {
                return Err(format!("over the limit of {max} changes per run"));
            }
            let exists = |id: &str| -> Result<(), String> {
                if ids.contains(id) {
                    Ok(())
                } else {
                    Err(format!("bead {id} does not exist"))
                }
            };
            match &m {
                Mutation::UpdatePriority { id, priority } => {
                    exists(id)?;
                    if !(0..=4).contains(priority) {
                        return Err(format!("priority {priority} is not 0-4"));
                    }
                }
                Mutation::AddDependency { id, depends_on, r#type } => {
                    exists(id)?;
                    exists(depends_on)?;
                    if !DEPENDENCY_TYPES.contains(&r#type.as_str()) {
                        return Err(format!(
                            "dependency type {type:?} is not one of {}",
                            DEPENDENCY_TYPES.join(", ")
                        ));
                    }
                    if id == depends_on || creates_cycle(&edges, id, depends_on) {
                        return Err(format!("{id} depending on {depends_on} would make a cycle"));
                    }
                    edges.entry(id.clone()).or_default().insert(depends_on.clone());
                }
                Mutation::AppendNotes { id, notes } => {
                    exists(id)?;
                    if notes.trim().is_empty() {
                        return Err("the notes are empty".to_string());
                    }
                }
                Mutation::Create { title, .. } => {
                    if let Some(new) = m.as_new_bead() {
                        new.check(&known).map_err(|e| e.to_string())?;
                    }
                    known.add_title(title);
                }
                Mutation::Close { id, reason } => {
                    exists(id)?;
                    match status.get(id) {
                        Some(BeadStatus::InProgress) => {
                            return Err(format!("{id} is in progress; it is not closed under a running Shark"));
                        }
                        Some(BeadStatus::Closed) => return Err(format!("{id} is already closed")),
                        _ => {}
                    }
                    if !cites_evidence(reason, &ids) {
                        return Err("a close must cite evidence (a commit, a bead, a test) in its reason".to_string());
                    }
                    status.insert(id.clone(), BeadStatus::Closed);
                }
            }
            Ok(())
        })();
        if verdict.is_ok() {
            accepted += 1;
        }
        out.push((m, verdict));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn item(id: &str, status: &str, priority: i64, created: &str, deps: &[&str]) -> BacklogItem {
        BacklogItem {
            id: id.into(),
            title: format!("title of {id}"),
            status: status.into(),
            priority,
            issue_type: "task".into(),
            created_at: created.into(),
            assignee: String::new(),
            close_reason: String::new(),
            dependencies: deps.iter().map(|d| (d.to_string(), "blocks".to_string())).collect(),
        }
    }

    fn ids(items: Vec<&BacklogItem>) -> Vec<&str> {
        items.into_iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn ready_follows_chains_diamonds_and_missing_dependencies() {
        // a -> b -> c (chain); a -> d, a -> e, d+e -> f (diamond); g depends on a missing bead.
        let mut items = vec![
            item("a", "open", 2, "1", &[]),
            item("b", "open", 1, "2", &["a"]),
            item("c", "open", 0, "3", &["b"]),
            item("d", "open", 2, "4", &["a"]),
            item("e", "open", 2, "5", &["a"]),
            item("f", "open", 2, "6", &["d", "e"]),
            item("g", "open", 0, "7", &["nope"]),
        ];
        assert_eq!(ids(ready(&items)), ["a"]);
        items[0].status = "closed".into();
        assert_eq!(ids(ready(&items)), ["b", "d", "e"], "priority first, then age");
        items[3].status = "closed".into();
        assert_eq!(ids(ready(&items)), ["b", "e"], "f still waits for e");
        items[4].status = "closed".into();
        assert_eq!(ids(ready(&items)), ["b", "f"]);
    }

    #[test]
    fn epics_non_open_beads_and_related_links_are_handled() {
        let mut epic = item("x", "open", 0, "1", &[]);
        epic.issue_type = "epic".into();
        let mut related = item("y", "open", 1, "2", &[]);
        related.dependencies = vec![("x".into(), "related".into())];
        let items = vec![epic, related, item("z", "in_progress", 0, "3", &[])];
        assert_eq!(ids(ready(&items)), ["y"], "related links do not block");
    }

    #[test]
    fn mutations_are_validated_in_order() {
        let items = vec![
            item("a", "open", 2, "1", &[]),
            item("b", "open", 2, "2", &["a"]),
            item("c", "in_progress", 2, "3", &[]),
        ];
        let proposed = parse_mutations(
            r#"[{"op": "update_priority", "id": "a", "priority": 1},
                {"op": "update_priority", "id": "a", "priority": 9},
                {"op": "add_dependency", "id": "a", "depends_on": "b"},
                {"op": "add_dependency", "id": "zz", "depends_on": "a"},
                {"op": "create", "title": "Title of B"},
                {"op": "create", "title": "Follow-up", "dependencies": [{"depends_on": "a", "type": "discovered-from"}]},
                {"op": "close", "id": "c", "reason": "done in commit abcdef123"},
                {"op": "close", "id": "b", "reason": "because"},
                {"op": "close", "id": "b", "reason": "duplicate of a, merged in commit 1234567"},
                {"op": "append_notes", "id": "a", "notes": "over the limit"}]"#,
        )
        .unwrap();
        let verdicts: Vec<Result<(), String>> = validate_mutations(&items, proposed, 3)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert!(verdicts[0].is_ok());
        assert!(verdicts[1].as_ref().unwrap_err().contains("not 0-4"));
        assert!(verdicts[2].as_ref().unwrap_err().contains("cycle"));
        assert!(verdicts[3].as_ref().unwrap_err().contains("zz does not exist"));
        assert!(verdicts[4].as_ref().unwrap_err().contains("already exists"));
        assert!(verdicts[5].is_ok());
        assert!(verdicts[6].as_ref().unwrap_err().contains("in progress"));
        assert!(verdicts[7].as_ref().unwrap_err().contains("cite evidence"));
        assert!(verdicts[8].is_ok());
        assert!(verdicts[9].as_ref().unwrap_err().contains("over the limit"));
    }

    #[test]
    fn garbage_mutations_are_parse_errors() {
        assert!(parse_mutations("no changes").is_err());
        assert!(
            parse_mutations(r#"[{"op": "delete", "id": "a"}]"#)
                .unwrap_err()
                .contains("parse")
        );
        assert!(parse_mutations(r#"[{"op": "close", "id": "a", "reason": "x", "force": true}]"#).is_err());
        assert_eq!(parse_mutations("```json\n[]\n```").unwrap(), vec![]);
    }

    #[test]
    fn groom_answers_are_arrays_or_briefing_objects() {
        let tactical = parse_groom_answer(r#"[{"op": "append_notes", "id": "a", "notes": "n"}]"#, false).unwrap();
        assert_eq!(tactical.mutations.len(), 1);
        let strategic = parse_groom_answer(
            "Here it is:\n```json\n{\"briefing\": \"# Top\", \"mutations\": [{\"op\": \"update_priority\", \"id\": \"a\", \"priority\": 0}]}\n```",
            true,
        )
        .unwrap();
        assert_eq!(strategic.briefing, "# Top");
        assert_eq!(strategic.mutations.len(), 1);
        assert!(parse_groom_answer("[]", true).unwrap_err().contains("JSON object"));
        assert!(
            parse_groom_answer(r#"{"mutations": []}"#, true)
                .unwrap_err()
                .contains("briefing")
        );
        assert!(parse_groom_answer(r#"{"briefing": "b", "extra": 1}"#, true).is_err());
    }

    #[test]
    fn a_closed_bead_cannot_be_closed_twice_in_one_proposal() {
        let items = vec![item("a", "open", 1, "1", &[])];
        let close = || Mutation::Close {
            id: "a".into(),
            reason: "done in commit abcdef1 by another bead".into(),
        };
        let verdicts = validate_mutations(&items, vec![close(), close()], 5);
        assert!(verdicts[0].1.is_ok());
        assert!(verdicts[1].1.as_ref().unwrap_err().contains("already closed"));
    }
}
