//! The `runs` table: each finished Shark run's result, for `chum runs` and the console; and its
//! gate verdicts and phase spans as rows (`run_gates`, `run_phases`), which the metrics count.

use chum_core::proto::{EnumName, RunRef, SharkResult};
use rusqlite::params;

use super::{Store, StoreError};

/// Every finished run counted, for counters that only go up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTotals {
    /// (project, outcome, runs)
    pub finished: Vec<(String, String, u64)>,
    /// (gate as people read it, passed, verdicts)
    pub gates: Vec<(String, bool, u64)>,
    pub phases: Vec<PhaseTotals>,
}

/// One phase's spans over every finished run: a cumulative histogram over the caller's bounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseTotals {
    pub phase: String,
    /// Spans of at most each bound, seconds (cumulative, like Prometheus' `le` buckets).
    pub at_most: Vec<u64>,
    pub seconds: f64,
    pub count: u64,
}

impl Store {
    /// Stores a finished run (the whole result as JSON, its gates and phases as rows); a second
    /// record of the same run replaces the first.
    pub fn record_run(&self, run: &RunRef, result: &SharkResult, now_ms: i64) -> Result<(), StoreError> {
        let json = serde_json::to_string(result).unwrap_or_else(|_| "{}".to_string());
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
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
        let key = params![run.workflow_id, run.run_id];
        for table in ["run_gates", "run_phases"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE workflow_id = ?1 AND run_id = ?2"),
                key,
            )
            .map_err(|e| self.err(e))?;
        }
        for g in &result.gate_results {
            tx.execute(
                "INSERT INTO run_gates (workflow_id, run_id, gate, passed) VALUES (?1, ?2, ?3, ?4)",
                params![run.workflow_id, run.run_id, g.label(), g.passed],
            )
            .map_err(|e| self.err(e))?;
        }
        for span in result
            .phases
            .iter()
            .filter(|p| p.ended_ms > 0 && p.ended_ms >= p.started_ms)
        {
            tx.execute(
                "INSERT INTO run_phases (workflow_id, run_id, phase, seconds) VALUES (?1, ?2, ?3, ?4)",
                params![
                    run.workflow_id,
                    run.run_id,
                    span.phase().name(),
                    (span.ended_ms - span.started_ms) as f64 / 1000.0
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every finished run counted by SQL aggregates: outcomes per project, gate verdicts, and each
    /// phase's spans as a histogram over `bounds` (seconds).
    pub fn run_totals(&self, bounds: &[f64]) -> Result<RunTotals, StoreError> {
        let sqlite = |e| self.err(e);
        let mut totals = RunTotals::default();
        let mut stmt = self
            .conn
            .prepare("SELECT project, outcome, COUNT(*) FROM runs GROUP BY project, outcome ORDER BY project, outcome")
            .map_err(sqlite)?;
        totals.finished = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)))
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        let mut stmt = self
            .conn
            .prepare("SELECT gate, passed, COUNT(*) FROM run_gates GROUP BY gate, passed ORDER BY gate, passed")
            .map_err(sqlite)?;
        totals.gates = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)))
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        // The bounds are the caller's constants, written into the query as numbers.
        let buckets: String = bounds
            .iter()
            .map(|b| format!(", SUM(CASE WHEN seconds <= {b:?} THEN 1 ELSE 0 END)"))
            .collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT phase, SUM(seconds), COUNT(*){buckets} FROM run_phases GROUP BY phase ORDER BY phase"
            ))
            .map_err(sqlite)?;
        totals.phases = stmt
            .query_map([], |r| {
                let mut at_most = Vec::with_capacity(bounds.len());
                for i in 0..bounds.len() {
                    at_most.push(r.get::<_, i64>(3 + i)?.max(0) as u64);
                }
                Ok(PhaseTotals {
                    phase: r.get(0)?,
                    seconds: r.get(1)?,
                    count: r.get::<_, i64>(2)?.max(0) as u64,
                    at_most,
                })
            })
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        Ok(totals)
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
