//! The `audit` table: every control action the HTTP API and the console took or refused, as the
//! worker's audit log file has it, so a shared store holds every worker's.

use super::db::args;
use super::{Store, StoreError};

/// One audit entry: who asked for what on which target, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AuditEntry {
    /// RFC 3339, as the audit log file writes it.
    pub ts: String,
    pub who: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub remote: String,
}

impl Store {
    pub fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO audit (ts, who, action, target, result, remote) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &args![
                &entry.ts,
                &entry.who,
                &entry.action,
                &entry.target,
                &entry.result,
                &entry.remote
            ],
        )?;
        Ok(())
    }

    /// The newest audit entries first, at most `limit`.
    pub fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.conn
            .query(
                "SELECT ts, who, action, target, result, remote FROM audit ORDER BY id DESC LIMIT ?1",
                &args![limit],
            )?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    ts: r.text(0)?,
                    who: r.text(1)?,
                    action: r.text(2)?,
                    target: r.text(3)?,
                    result: r.text(4)?,
                    remote: r.text(5)?,
                })
            })
            .collect()
    }
}
