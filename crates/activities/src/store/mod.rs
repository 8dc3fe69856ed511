//! CHUM's store, one file here per table: lessons with provenance and their full-text index, the
//! rules crystallized from them, groom outcomes, finished runs, agent usage, notifications and
//! the API's audit entries.
//! It is one SQLite file (bundled, FTS5) under the state directory by default, or, with `[store]
//! url = "postgres://..."`, a Postgres database that several workers share (full-text search with
//! a `tsvector`). Both have the same numbered migrations (schema.rs) and the same queries (db.rs
//! says how); callers see one [`Store`]. The artifact files (prompts, outputs, diffs, logs) live
//! on disk under the state directory either way.
//!
//! Architecture invariant: nothing outside this folder writes SQL; every table's reads and writes
//! are methods of [`Store`] in that table's file.

mod artifacts;
mod audit;
mod db;
mod grooms;
mod lessons;
mod notifications;
mod postgres;
mod rules;
mod runs;
mod schema;
#[cfg(test)]
mod tests;
mod usage;

pub use artifacts::RunArtifacts;
pub use audit::AuditEntry;
pub use grooms::GroomRecord;
pub use rules::{RuleRecord, RuleStatus};
pub use runs::{PhaseTotals, RunTotals};
pub use usage::{Spent, UsageFilter, UsageRecord};

use std::path::{Path, PathBuf};
use std::time::Duration;

use chum_core::config::{ChumConfig, PostgresUrl, StoreLocation};
use db::{Backend, Conn};
use rusqlite::Connection;
use schema::MIGRATIONS;

/// A store that could not be opened, read or written; the message names the file or the URL
/// (never its password).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lesson store {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("lesson store {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("lesson store {url} (store.url): {}", postgres_detail(source))]
    Postgres { url: String, source: ::postgres::Error },
    #[error("lesson store {store}: {detail}")]
    Data { store: String, detail: String },
}

/// A Postgres error as a person can act on it: the server's own message (with its hint) rather
/// than the client's bare "db error".
fn postgres_detail(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_string(),
        },
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Where a store is: what [`Store::at`] opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

impl StoreTarget {
    /// The configured store: `[store] url`, or `<state_dir>/chum.db`.
    pub fn of(config: &ChumConfig) -> StoreTarget {
        match &config.store {
            StoreLocation::Embedded => StoreTarget::Sqlite(config.state_dir.join("chum.db")),
            StoreLocation::Postgres(url) => StoreTarget::Postgres(url.clone()),
        }
    }
}

impl std::fmt::Display for StoreTarget {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreTarget::Sqlite(path) => write!(f, "{}", path.display()),
            StoreTarget::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// An open store. Cheap to open per activity: SQLite with WAL and a busy timeout instead of lock
/// errors; Postgres from a pool of connections, migrated once per process.
pub struct Store {
    conn: Conn,
}

impl Store {
    /// Opens the configured store (see [`StoreTarget::of`]).
    pub fn for_config(config: &ChumConfig) -> Result<Store, StoreError> {
        Store::at(&StoreTarget::of(config))
    }

    /// Opens (creating if needed) a store and brings its schema up to date.
    pub fn at(target: &StoreTarget) -> Result<Store, StoreError> {
        match target {
            StoreTarget::Sqlite(path) => Store::open(path),
            StoreTarget::Postgres(url) => {
                let client = postgres::connect(url)?;
                let store = Store {
                    conn: Conn {
                        backend: Backend::Postgres(Box::new(std::cell::RefCell::new(client))),
                        shown: url.redacted(),
                    },
                };
                postgres::migrate(&store.conn, url)?;
                Ok(store)
            }
        }
    }

    /// Opens (creating if needed) the SQLite store at `path` and brings its schema up to date.
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
        let mut store = Store {
            conn: Conn {
                backend: Backend::Sqlite(conn),
                shown,
            },
        };
        store.migrate_sqlite()?;
        Ok(store)
    }

    fn migrate_sqlite(&mut self) -> Result<(), StoreError> {
        let applied = self.schema_version()?;
        let shown = self.conn.shown.clone();
        let Backend::Sqlite(conn) = &mut self.conn.backend else {
            return Ok(());
        };
        let sqlite = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction().map_err(sqlite)?;
            tx.execute_batch(sql).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
        Ok(())
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        match &self.conn.backend {
            Backend::Sqlite(conn) => {
                let version: i64 = conn
                    .pragma_query_value(None, "user_version", |r| r.get(0))
                    .map_err(|e| self.conn.sqlite_err(e))?;
                Ok(version.max(0) as usize)
            }
            Backend::Postgres(_) => postgres::schema_version(&self.conn),
        }
    }

    /// Which store this is: its path, or its URL without the password.
    pub fn shown(&self) -> &str {
        &self.conn.shown
    }
}
