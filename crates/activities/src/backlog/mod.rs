//! A project's backlog, whichever backend holds it: the native JSONL file or the `bd`/`br` CLI.

mod beads;
mod beads_cli;
pub use beads::{BeadsError, BeadsFile, append_note, bead_from_json, is_dolt_store, now_rfc3339};
pub use beads_cli::{BeadsCli, BeadsCliError, parse_created_id, parse_issue_list};
pub use chum_core::new_bead::NewBead;

use std::path::PathBuf;

use chum_core::backlog::{BacklogItem, ready};
use chum_core::config::{BacklogBackend, ProjectConfig};
use chum_core::proto::{Bead, BeadStatus, EnumName};
use serde_json::{Map, Value};

/// Why the backlog could not be read or changed, from either backend.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    #[error(transparent)]
    File(#[from] BeadsError),
    #[error(transparent)]
    Cli(#[from] BeadsCliError),
}

impl BacklogError {
    /// The bead (or the whole beads file) is not there, as opposed to a backlog that could not
    /// be read.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            BacklogError::File(BeadsError::NotFound { .. } | BeadsError::NoFile(_))
                | BacklogError::Cli(BeadsCliError::NotFound { .. })
        )
    }
}

pub enum Backlog {
    Native(BeadsFile),
    Cli(BeadsCli),
}

/// A claimed bead, as Beads writes it: in progress, assigned to chum.
fn mark_claimed(obj: &mut Map<String, Value>) {
    obj.insert("status".into(), Value::String(BeadStatus::InProgress.name()));
    obj.insert("assignee".into(), Value::String("chum".into()));
}

impl Backlog {
    pub fn of(project: &ProjectConfig) -> Backlog {
        match &project.backlog {
            BacklogBackend::Native => {
                let file = project.repo.join(&project.beads_file);
                // Keep the lock out of the project's `git status` when the repository has a .git
                // directory. A backlog outside the checkout (several hosts' shared file) keeps its
                // lock beside it, where every worker that writes it looks.
                let git_dir = project.repo.join(".git");
                Backlog::Native(if git_dir.is_dir() && file.starts_with(&project.repo) {
                    BeadsFile::with_lock(file, git_dir.join("chum-beads.lock"))
                } else {
                    BeadsFile::new(file)
                })
            }
            BacklogBackend::Cli { program } => Backlog::Cli(BeadsCli {
                program: PathBuf::from(program),
                repo: project.repo.clone(),
            }),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Bead, BacklogError> {
        match self {
            Backlog::Native(f) => f.get(id).map_err(BacklogError::from),
            Backlog::Cli(c) => Ok(bead_from_json(&c.show(id).await?)),
        }
    }

    /// Every issue, for the DAG checks (the CLI's `list` carries no dependencies, so each open
    /// bead is shown for them).
    pub async fn items(&self) -> Result<Vec<BacklogItem>, BacklogError> {
        match self {
            Backlog::Native(f) => f.items().map_err(BacklogError::from),
            Backlog::Cli(c) => {
                let mut items = Vec::new();
                for obj in c.list().await? {
                    let status = obj.get("status").and_then(Value::as_str).unwrap_or_default();
                    let id = obj.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                    let full = if BeadStatus::of(status) != BeadStatus::Closed {
                        c.show(&id).await.unwrap_or(obj)
                    } else {
                        obj
                    };
                    items.push(BacklogItem::from_json(&full));
                }
                Ok(items)
            }
        }
    }

    /// The ready beads in working order (see `chum_core::backlog::ready`).
    pub async fn ready(&self) -> Result<Vec<BacklogItem>, BacklogError> {
        match self {
            Backlog::Native(f) => {
                let items = f.items().map_err(BacklogError::from)?;
                Ok(ready(&items).into_iter().cloned().collect())
            }
            Backlog::Cli(c) => {
                // The tool knows the dependencies; CHUM adds its own rules (no epics) and order.
                let items: Vec<BacklogItem> = c.ready().await?.iter().map(BacklogItem::from_json).collect();
                let mut ready: Vec<BacklogItem> = items
                    .into_iter()
                    .filter(|i| i.issue_type != "epic" && i.state() == BeadStatus::Open)
                    .collect();
                ready.sort_by(|a, b| (a.priority, &a.created_at, &a.id).cmp(&(b.priority, &b.created_at, &b.id)));
                Ok(ready)
            }
        }
    }

    /// Claims a bead for CHUM: status in_progress, assignee chum.
    pub async fn claim(&self, id: &str) -> Result<Bead, BacklogError> {
        match self {
            Backlog::Native(f) => f.update(id, mark_claimed).map_err(BacklogError::from),
            Backlog::Cli(c) => {
                c.claim(id).await?;
                self.get(id).await
            }
        }
    }

    /// Claims several beads at once (a dispatcher round's): with the native backend one write of
    /// the file, all or none.
    pub async fn claim_all(&self, ids: &[String]) -> Result<(), BacklogError> {
        match self {
            Backlog::Native(f) => f.update_many(ids, mark_claimed).map_err(BacklogError::from),
            Backlog::Cli(_) => {
                for id in ids {
                    self.claim(id).await?;
                }
                Ok(())
            }
        }
    }

    /// Sets a status (unspecified = keep), appends a note (once), and closes with a reason.
    /// Returns the bead's status afterwards, as the backlog writes it.
    pub async fn update(
        &self,
        id: &str,
        status: BeadStatus,
        note: &str,
        close_reason: &str,
    ) -> Result<String, BacklogError> {
        match self {
            Backlog::Native(f) => f
                .update(id, |obj| {
                    if status != BeadStatus::Unspecified {
                        obj.insert("status".into(), Value::String(status.name()));
                    }
                    if status == BeadStatus::Closed {
                        obj.insert("closed_at".into(), Value::String(now_rfc3339()));
                        obj.insert("close_reason".into(), Value::String(close_reason.to_string()));
                    }
                    append_note(obj, note);
                })
                .map(|b| b.status)
                .map_err(BacklogError::from),
            Backlog::Cli(c) => {
                if !note.trim().is_empty() {
                    c.append_notes(id, note).await?;
                }
                match status {
                    BeadStatus::Unspecified => {}
                    BeadStatus::Closed => c.close(id, close_reason).await?,
                    other => c.set_status(id, &other.name()).await?,
                }
                Ok(status.name())
            }
        }
    }

    pub async fn set_priority(&self, id: &str, priority: i64) -> Result<(), BacklogError> {
        match self {
            Backlog::Native(f) => f
                .update(id, |obj| {
                    obj.insert("priority".into(), Value::from(priority));
                })
                .map(|_| ())
                .map_err(BacklogError::from),
            Backlog::Cli(c) => Ok(c.set_priority(id, priority).await?),
        }
    }

    pub async fn create(&self, new: &NewBead) -> Result<String, BacklogError> {
        match self {
            Backlog::Native(f) => f.create(new).map(|b| b.id).map_err(BacklogError::from),
            Backlog::Cli(c) => Ok(c.create(new).await?),
        }
    }

    pub async fn add_dependency(&self, id: &str, depends_on: &str, kind: &str) -> Result<(), BacklogError> {
        match self {
            Backlog::Native(f) => f
                .add_dependency(id, depends_on, kind, "chum")
                .map_err(BacklogError::from),
            Backlog::Cli(c) => Ok(c.add_dependency(id, depends_on, kind).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_bead_is_told_apart_from_a_backlog_that_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issues.jsonl");
        let backlog = Backlog::Native(BeadsFile::new(path.clone()));
        let no_file = backlog.get("tk-1").await.unwrap_err();
        assert!(no_file.is_not_found(), "{no_file}");

        std::fs::write(&path, "{\"id\":\"tk-1\",\"title\":\"t\",\"status\":\"open\"}\n").unwrap();
        let missing = backlog.get("tk-2").await.unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(missing.to_string().contains("tk-2"), "{missing}");

        std::fs::write(&path, "not json\n").unwrap();
        let broken = backlog.get("tk-1").await.unwrap_err();
        assert!(!broken.is_not_found(), "a broken file is not a missing bead: {broken}");
        assert!(broken.to_string().contains("issues.jsonl:1"), "{broken}");
    }
}
