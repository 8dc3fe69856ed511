//! CHUM's store: one SQLite file (bundled, FTS5) under the state directory, one file here per
//! table: lessons with provenance and their full-text index, the rules crystallized from them,
//! groom outcomes, finished runs and agent usage. The artifact files (prompts, outputs, diffs,
//! logs) live beside it on disk. The schema is versioned with `PRAGMA user_version`.
//!
//! Architecture invariant: nothing outside this folder writes SQL; every table's reads and writes
//! are methods of [`Store`] in that table's file.

mod artifacts;
mod grooms;
mod lessons;
mod notifications;
mod rules;
mod runs;
mod schema;
#[cfg(test)]
mod tests;
mod usage;

pub use artifacts::RunArtifacts;
pub use grooms::GroomRecord;
pub use rules::{RuleRecord, RuleStatus};
pub use runs::{PhaseTotals, RunTotals};
pub use usage::{Spent, UsageFilter, UsageRecord};

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use schema::MIGRATIONS;

/// A store that could not be opened, read or written; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lesson store {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("lesson store {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// An open store. Cheap to open per activity (WAL; a busy timeout instead of lock errors).
pub struct Store {
    conn: Connection,
    path: String,
}

impl Store {
    /// Opens (creating if needed) the store and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: shown.clone(),
                source,
            })?;
        }
        let sqlite = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sqlite)?;
        let mut store = Store { conn, path: shown };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let applied = self.schema_version()?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = self.conn.transaction().map_err(sqlite)?;
            tx.execute_batch(sql).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
        Ok(())
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(version.max(0) as usize)
    }
}
