//! The `groom_outcomes` table: what the groomers proposed and what became of each mutation.

use chum_core::proto::{EnumName, GroomKind, MutationOutcome, RunRef};
use rusqlite::{Row, params};

use super::{Store, StoreError};

/// One groom outcome with where it came from.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct GroomRecord {
    pub groom_workflow_id: String,
    pub project: String,
    pub kind: GroomKind,
    /// The finished bead a tactical groom followed.
    pub bead_id: String,
    pub outcome: MutationOutcome,
    pub created_ms: i64,
}

const GROOM_COLUMNS: &str = "groom_workflow_id, project, kind, bead_id, idx, op, description, mutation, applied, reason, created_id, created_ms";

fn groom_from_row(row: &Row<'_>) -> rusqlite::Result<GroomRecord> {
    Ok(GroomRecord {
        groom_workflow_id: row.get(0)?,
        project: row.get(1)?,
        // A kind this version does not know reads as unspecified rather than failing the list.
        kind: GroomKind::from_name(&row.get::<_, String>(2)?).unwrap_or_default(),
        bead_id: row.get(3)?,
        outcome: MutationOutcome {
            index: row.get(4)?,
            op: row.get(5)?,
            description: row.get(6)?,
            mutation: row.get(7)?,
            applied: row.get(8)?,
            reason: row.get(9)?,
            created_id: row.get(10)?,
        },
        created_ms: row.get(11)?,
    })
}

impl Store {
    /// Records what became of one proposed mutation of a groom run. A second record for the same
    /// (groom run, index) is ignored: the first outcome stands.
    pub fn record_groom_outcome(
        &self,
        groom: &RunRef,
        kind: GroomKind,
        outcome: &MutationOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO groom_mutations (groom_workflow_id, groom_run_id, idx, project, kind, bead_id, \
                 op, description, mutation, applied, reason, created_id, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    groom.workflow_id,
                    groom.run_id,
                    outcome.index,
                    groom.project,
                    kind.name(),
                    groom.bead_id,
                    outcome.op,
                    outcome.description,
                    outcome.mutation,
                    outcome.applied,
                    outcome.reason,
                    outcome.created_id,
                    now_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The recorded outcomes of one groom run, by index.
    pub fn groom_outcomes(&self, groom: &RunRef) -> Result<Vec<MutationOutcome>, StoreError> {
        let sql = format!(
            "SELECT {GROOM_COLUMNS} FROM groom_mutations WHERE groom_workflow_id = ?1 AND groom_run_id = ?2 ORDER BY idx"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![groom.workflow_id, groom.run_id], |r| {
                groom_from_row(r).map(|g| g.outcome)
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The latest groom outcomes, newest first (for `chum groom log`).
    pub fn recent_groom_outcomes(&self, project: Option<&str>, limit: u32) -> Result<Vec<GroomRecord>, StoreError> {
        let sql = format!(
            "SELECT {GROOM_COLUMNS} FROM groom_mutations WHERE (?1 IS NULL OR project = ?1) \
             ORDER BY created_ms DESC, groom_workflow_id, idx LIMIT ?2"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![project, limit], groom_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}
