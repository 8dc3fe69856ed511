//! A new bead, and the one check every way in makes before it is written: the API's
//! `POST /beads`, `chum create`, and a groomer's `create` mutation.

use std::collections::BTreeSet;

use crate::backlog::BacklogItem;
use crate::candidate::check_candidate_label;
use crate::ids::check_bead_id;

/// The dependency kinds Beads knows.
pub const DEPENDENCY_TYPES: [&str; 4] = ["blocks", "related", "parent-child", "discovered-from"];

/// A bead to create.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewBead {
    /// An id of one's own choosing (Beads' `--id`); `None` = a new `<prefix>-<base36>` id.
    pub id: Option<String>,
    pub title: String,
    pub description: String,
    pub acceptance_criteria: String,
    /// 0 (most urgent) to 4.
    pub priority: i64,
    pub issue_type: String,
    /// E.g. `fanout:3` or `select:best` (checked: a run would ignore a malformed one silently).
    pub labels: Vec<String>,
    /// (depends_on_id, type), the type one of [`DEPENDENCY_TYPES`].
    pub dependencies: Vec<(String, String)>,
    pub created_by: String,
}

/// Why a new bead is refused. `is_conflict` tells a clash with what exists from a malformed bead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewBeadError {
    #[error("the title is empty")]
    EmptyTitle,
    #[error("priority {0} is not 0-4")]
    Priority(i64),
    #[error("{0}")]
    BadId(String),
    #[error("bead {0} already exists")]
    IdTaken(String),
    #[error("a bead titled {0:?} already exists")]
    TitleTaken(String),
    #[error("bead {0} does not exist")]
    UnknownDependency(String),
    #[error("dependency type {0:?} is not one of blocks, related, parent-child, discovered-from")]
    DependencyType(String),
    #[error("label {0}")]
    Label(String),
}

impl NewBeadError {
    /// The bead clashes with one that exists (same id or title), rather than being malformed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, NewBeadError::IdTaken(_) | NewBeadError::TitleTaken(_))
    }
}

/// What the backlog holds that a new bead must not clash with: ids, and titles compared trimmed
/// and case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct KnownBeads {
    ids: BTreeSet<String>,
    titles: BTreeSet<String>,
}

impl KnownBeads {
    pub fn of(items: &[BacklogItem]) -> KnownBeads {
        KnownBeads {
            ids: items.iter().map(|i| i.id.clone()).collect(),
            titles: items.iter().map(|i| title_key(&i.title)).collect(),
        }
    }

    pub fn has_id(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Counts a bead accepted since the snapshot (a groomer's earlier `create` in one proposal).
    pub fn add_title(&mut self, title: &str) {
        self.titles.insert(title_key(title));
    }
}

fn title_key(title: &str) -> String {
    title.trim().to_lowercase()
}

impl NewBead {
    /// The one check: a title, a priority 0-4, a well-formed id nobody has, a title nobody has,
    /// dependencies on beads that exist with a kind Beads knows, and well-formed candidate labels.
    pub fn check(&self, known: &KnownBeads) -> Result<(), NewBeadError> {
        let title = self.title.trim();
        if title.is_empty() {
            return Err(NewBeadError::EmptyTitle);
        }
        if !(0..=4).contains(&self.priority) {
            return Err(NewBeadError::Priority(self.priority));
        }
        if let Some(id) = &self.id {
            check_bead_id(id).map_err(NewBeadError::BadId)?;
            if known.has_id(id) {
                return Err(NewBeadError::IdTaken(id.clone()));
            }
        }
        if known.titles.contains(&title_key(title)) {
            return Err(NewBeadError::TitleTaken(title.to_string()));
        }
        for (target, kind) in &self.dependencies {
            if !known.has_id(target) {
                return Err(NewBeadError::UnknownDependency(target.clone()));
            }
            if !DEPENDENCY_TYPES.contains(&kind.as_str()) {
                return Err(NewBeadError::DependencyType(kind.clone()));
            }
        }
        for label in &self.labels {
            check_candidate_label(label).map_err(NewBeadError::Label)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backlog::tests::item;

    fn bead(title: &str) -> NewBead {
        NewBead {
            title: title.into(),
            priority: 2,
            issue_type: "task".into(),
            ..NewBead::default()
        }
    }

    #[test]
    fn a_new_bead_is_refused_for_what_would_break_the_backlog() {
        let items = [item("tk-1", "open", 1, "2026-01-01", &[])];
        let known = KnownBeads::of(&items);
        assert_eq!(bead("Add multiply").check(&known), Ok(()));
        assert_eq!(bead("  ").check(&known), Err(NewBeadError::EmptyTitle));
        let urgent = NewBead {
            priority: 7,
            ..bead("x")
        };
        assert_eq!(urgent.check(&known), Err(NewBeadError::Priority(7)));
        let named = |id: &str| NewBead {
            id: Some(id.into()),
            ..bead("y")
        };
        assert_eq!(named("tk-1").check(&known), Err(NewBeadError::IdTaken("tk-1".into())));
        assert!(matches!(named("../x").check(&known), Err(NewBeadError::BadId(_))));
        let twin = bead(" a BEAD titled tk-1 ").check(&KnownBeads::of(&[BacklogItem {
            title: "A bead titled tk-1".into(),
            ..items[0].clone()
        }]));
        assert!(twin.as_ref().is_err_and(NewBeadError::is_conflict), "{twin:?}");
        let waits = |on: &str, kind: &str| NewBead {
            dependencies: vec![(on.into(), kind.into())],
            ..bead("z")
        };
        assert_eq!(waits("tk-1", "blocks").check(&known), Ok(()));
        assert_eq!(
            waits("tk-9", "blocks").check(&known),
            Err(NewBeadError::UnknownDependency("tk-9".into()))
        );
        assert_eq!(
            waits("tk-1", "after").check(&known),
            Err(NewBeadError::DependencyType("after".into()))
        );
        let labelled = NewBead {
            labels: vec!["fanout:99".into()],
            ..bead("w")
        };
        assert!(matches!(labelled.check(&known), Err(NewBeadError::Label(_))));
        assert!(!NewBeadError::EmptyTitle.is_conflict());
    }

    #[test]
    fn a_title_accepted_since_the_snapshot_counts() {
        let mut known = KnownBeads::of(&[]);
        assert_eq!(bead("Write docs").check(&known), Ok(()));
        known.add_title("Write docs");
        assert_eq!(
            bead("write docs").check(&known),
            Err(NewBeadError::TitleTaken("write docs".into()))
        );
    }
}
