//! The `groom_outcomes` table: what the groomers proposed and what became of each mutation.

use super::db::{Row, args};
use super::{Store, StoreError};
use chum_core::proto::{EnumName, GroomKind, MutationOutcome, RunRef};

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

fn groom_from_row(row: &Row) -> Result<GroomRecord, StoreError> {
    Ok(GroomRecord {
        groom_workflow_id: row.text(0)?,
        project: row.text(1)?,
        // A kind this version does not know reads as unspecified rather than failing the list.
        kind: GroomKind::from_name(&row.text(2)?).unwrap_or_default(),
        bead_id: row.text(3)?,
        outcome: MutationOutcome {
            index: row.small(4)?,
            op: row.text(5)?,
            description: row.text(6)?,
            mutation: row.text(7)?,
            applied: row.flag(8)?,
            reason: row.text(9)?,
            created_id: row.text(10)?,
        },
        created_ms: row.int(11)?,
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
        self.conn.execute(
            "INSERT INTO groom_mutations (groom_workflow_id, groom_run_id, idx, project, kind, bead_id, \
             op, description, mutation, applied, reason, created_id, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING",
            &args![
                &groom.workflow_id,
                &groom.run_id,
                outcome.index,
                &groom.project,
                kind.name(),
                &groom.bead_id,
                &outcome.op,
                &outcome.description,
                &outcome.mutation,
                outcome.applied,
                &outcome.reason,
                &outcome.created_id,
                now_ms
            ],
        )?;
        Ok(())
    }

    /// The recorded outcomes of one groom run, by index.
    pub fn groom_outcomes(&self, groom: &RunRef) -> Result<Vec<MutationOutcome>, StoreError> {
        let sql = format!(
            "SELECT {GROOM_COLUMNS} FROM groom_mutations WHERE groom_workflow_id = ?1 AND groom_run_id = ?2 ORDER BY idx"
        );
        self.conn
            .query(&sql, &args![&groom.workflow_id, &groom.run_id])?
            .iter()
            .map(|r| groom_from_row(r).map(|g| g.outcome))
            .collect()
    }

    /// The latest groom outcomes, newest first (for `chum groom log`).
    pub fn recent_groom_outcomes(&self, project: Option<&str>, limit: u32) -> Result<Vec<GroomRecord>, StoreError> {
        let sql = format!(
            "SELECT {GROOM_COLUMNS} FROM groom_mutations WHERE (CAST(?1 AS TEXT) IS NULL OR project = ?1) \
             ORDER BY created_ms DESC, groom_workflow_id, idx LIMIT ?2"
        );
        self.conn
            .query(&sql, &args![project, limit])?
            .iter()
            .map(groom_from_row)
            .collect()
    }
}
