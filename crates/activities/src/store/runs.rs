//! The `runs` table: each finished Shark run's result, for `chum runs` and the console.

use chum_core::proto::{EnumName, RunRef, SharkResult};
use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Stores a finished run (the whole result as JSON); a second record of the same run
    /// replaces the first.
    pub fn record_run(&self, run: &RunRef, result: &SharkResult, now_ms: i64) -> Result<(), StoreError> {
        let json = serde_json::to_string(result).unwrap_or_else(|_| "{}".to_string());
        self.conn
            .execute(
                "INSERT OR REPLACE INTO runs (workflow_id, run_id, project, bead_id, outcome, reason, attempts, result, \
                 finished_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run.workflow_id,
                    run.run_id,
                    run.project,
                    run.bead_id,
                    result.outcome().name(),
                    result.reason,
                    result.attempts,
                    json,
                    now_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The finished runs, newest first, at most `limit`.
    pub fn runs(&self, project: Option<&str>, limit: u32) -> Result<Vec<(RunRef, SharkResult)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT workflow_id, run_id, project, bead_id, result FROM runs WHERE (?1 IS NULL OR project = ?1) \
                 ORDER BY finished_ms DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![project, limit], |r| {
                let json: String = r.get(4)?;
                Ok((
                    RunRef {
                        workflow_id: r.get(0)?,
                        run_id: r.get(1)?,
                        project: r.get(2)?,
                        bead_id: r.get(3)?,
                    },
                    serde_json::from_str::<SharkResult>(&json).unwrap_or_default(),
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}
