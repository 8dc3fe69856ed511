//! The backlog as people and groomers read it: one row per bead with its state (ready, blocked
//! and by what, in progress, closed), the counts, and the listing `chum backlog` prints.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::backlog::{BacklogItem, blocker, ready};
use crate::proto::BeadStatus;

/// One bead with its state as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogRow {
    pub id: String,
    pub title: String,
    pub priority: i64,
    pub issue_type: String,
    /// The bead's own status (open, in_progress, closed, ...).
    pub status: String,
    /// "ready", "blocked", or the status for beads that are neither (in_progress, closed, ...).
    pub state: String,
    /// Why a blocked bead is not ready; empty otherwise.
    pub blocked_by: String,
    /// Its dependencies, as "<kind> <bead>".
    pub depends: Vec<String>,
    /// For closed beads: the evidence it was closed with.
    pub close_reason: String,
    /// For beads in progress, when the server was asked: what its Shark is doing (executing,
    /// waiting for a person, waiting for an execution slot and why). Empty when not known.
    pub run: String,
}

/// Every bead but tombstones, open ones in the order they would be worked on (priority, age),
/// then the closed ones.
pub fn backlog_rows(items: &[BacklogItem]) -> Vec<BacklogRow> {
    let by_id: BTreeMap<&str, &BacklogItem> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let ready_ids: BTreeSet<&str> = ready(items).into_iter().map(|i| i.id.as_str()).collect();
    let mut open: Vec<&BacklogItem> = items
        .iter()
        .filter(|i| !matches!(i.state(), BeadStatus::Closed | BeadStatus::Tombstone))
        .collect();
    open.sort_by(|a, b| (a.priority, &a.created_at, &a.id).cmp(&(b.priority, &b.created_at, &b.id)));
    let closed = items.iter().filter(|i| i.state() == BeadStatus::Closed);
    open.into_iter()
        .chain(closed)
        .map(|item| {
            let (state, blocked_by) = if ready_ids.contains(item.id.as_str()) {
                ("ready".to_string(), String::new())
            } else {
                match blocker(item, &by_id) {
                    Some(why) if item.state() == BeadStatus::Open => ("blocked".to_string(), why),
                    _ => (item.status.clone(), String::new()),
                }
            };
            BacklogRow {
                id: item.id.clone(),
                title: item.title.clone(),
                priority: item.priority,
                issue_type: item.issue_type.clone(),
                status: item.status.clone(),
                state,
                blocked_by,
                depends: item.dependencies.iter().map(|(t, k)| format!("{k} {t}")).collect(),
                close_reason: item.close_reason.clone(),
                run: String::new(),
            }
        })
        .collect()
}

/// How many beads are in each state; they add up to `total` (tombstones are left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BacklogCounts {
    pub ready: usize,
    pub blocked: usize,
    pub in_progress: usize,
    pub closed: usize,
    /// Deferred, pinned, or a status CHUM does not know.
    pub other: usize,
    pub total: usize,
}

impl BacklogCounts {
    pub fn of(rows: &[BacklogRow]) -> BacklogCounts {
        let count = |state: &str| rows.iter().filter(|r| r.state == state).count();
        let (ready, blocked, in_progress, closed) =
            (count("ready"), count("blocked"), count("in_progress"), count("closed"));
        BacklogCounts {
            ready,
            blocked,
            in_progress,
            closed,
            other: rows.len() - ready - blocked - in_progress - closed,
            total: rows.len(),
        }
    }
}

/// The state of the backlog for a groomer: what is ready, what is blocked and by what, what is in
/// progress, one line per open bead (closed ones are counted).
pub fn backlog_summary(items: &[BacklogItem]) -> String {
    backlog_listing(items, false)
}

/// [`backlog_summary`], and with `closed_too` the closed beads too, each with its close reason.
/// The counts add up to the beads listed (tombstones are left out).
pub fn backlog_listing(items: &[BacklogItem], closed_too: bool) -> String {
    rows_listing(&backlog_rows(items), closed_too)
}

/// The listing of [`backlog_listing`] for rows already made (and perhaps told what the Sharks of
/// beads in progress are doing).
pub fn rows_listing(rows: &[BacklogRow], closed_too: bool) -> String {
    use std::fmt::Write as _;
    let BacklogCounts {
        ready,
        blocked,
        in_progress,
        closed,
        other,
        ..
    } = BacklogCounts::of(rows);
    let mut out = String::new();
    let _ = write!(
        out,
        "{} beads: {ready} ready, {blocked} blocked, {in_progress} in progress, {closed} closed",
        rows.len()
    );
    if other > 0 {
        let _ = write!(out, ", {other} other (deferred, pinned, ...)");
    }
    out.push_str(".\n");
    for row in rows.iter().filter(|r| r.state != "closed") {
        let state = if row.state == "blocked" {
            format!("blocked: {}", row.blocked_by)
        } else if !row.run.is_empty() {
            format!("{}: {}", row.state, row.run)
        } else {
            row.state.clone()
        };
        let _ = write!(
            out,
            "- {} [P{} {}] {} ({state})",
            row.id, row.priority, row.issue_type, row.title
        );
        if !row.depends.is_empty() {
            let _ = write!(out, "; depends: {}", row.depends.join(", "));
        }
        out.push('\n');
    }
    if closed_too {
        for row in rows.iter().filter(|r| r.state == "closed") {
            let _ = writeln!(
                out,
                "- {} [P{} {}] {} (closed: {})",
                row.id,
                row.priority,
                row.issue_type,
                row.title,
                crate::text::clip(&row.close_reason, 160)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backlog::tests::item;

    fn items() -> Vec<BacklogItem> {
        let closed = BacklogItem {
            close_reason: "done in commit abcdef1".into(),
            ..item("a", "closed", 1, "1", &[])
        };
        vec![
            closed,
            item("b", "open", 2, "2", &["c"]),
            item("c", "in_progress", 1, "3", &[]),
            item("d", "open", 0, "4", &["a"]),
            item("e", "tombstone", 0, "5", &[]),
        ]
    }

    #[test]
    fn the_summary_names_ready_blocked_and_in_progress_beads_and_the_counts_add_up() {
        let summary = backlog_summary(&items());
        assert!(
            summary.starts_with("4 beads: 1 ready, 1 blocked, 1 in progress, 1 closed.\n"),
            "{summary}"
        );
        assert!(summary.contains("- d [P0 task] title of d (ready)"), "{summary}");
        assert!(
            summary.contains("- b [P2 task] title of b (blocked: it waits for c (in_progress)); depends: blocks c"),
            "{summary}"
        );
        assert!(!summary.contains("- a "), "{summary}");
        let all = backlog_listing(&items(), true);
        assert!(
            all.contains("- a [P1 task] title of a (closed: done in commit abcdef1)"),
            "{all}"
        );
    }

    #[test]
    fn rows_carry_the_state_for_scripts() {
        let rows = backlog_rows(&items());
        let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.id.as_str(), r.state.as_str())).collect();
        assert_eq!(
            states,
            [("d", "ready"), ("c", "in_progress"), ("b", "blocked"), ("a", "closed")]
        );
        assert_eq!(rows[2].blocked_by, "it waits for c (in_progress)");
    }
}
