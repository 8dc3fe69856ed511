//! The `runs` table: each finished Shark run's result, for `chum runs` and the console; and its
//! gate verdicts and phase spans as rows (`run_gates`, `run_phases`), which the metrics count.

use super::db::{Row, args};
use super::{Store, StoreError};
use chum_core::proto::{EnumName, RunRef, SharkResult};

/// Every finished run counted, for counters that only go up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTotals {
    /// (project, outcome, runs)
    pub finished: Vec<(String, String, u64)>,
    /// (project, host, outcome, runs) of the runs whose attempts were bound to a host.
    pub finished_by_host: Vec<(String, String, String, u64)>,
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
        self.conn.transaction("BEGIN", || {
            self.conn.execute(
                "INSERT INTO runs (workflow_id, run_id, project, bead_id, outcome, reason, attempts, result, \
                     finished_ms, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (workflow_id, run_id) DO UPDATE SET project = excluded.project, \
                     bead_id = excluded.bead_id, outcome = excluded.outcome, reason = excluded.reason, \
                     attempts = excluded.attempts, result = excluded.result, finished_ms = excluded.finished_ms, \
                     host = excluded.host",
                &args![
                    &run.workflow_id,
                    &run.run_id,
                    &run.project,
                    &run.bead_id,
                    result.outcome().name(),
                    &result.reason,
                    result.attempts,
                    &json,
                    now_ms,
                    &result.host
                ],
            )?;
            for table in ["run_gates", "run_phases"] {
                self.conn.execute(
                    &format!("DELETE FROM {table} WHERE workflow_id = ?1 AND run_id = ?2"),
                    &args![&run.workflow_id, &run.run_id],
                )?;
            }
            for g in &result.gate_results {
                self.conn.execute(
                    "INSERT INTO run_gates (workflow_id, run_id, gate, passed) VALUES (?1, ?2, ?3, ?4)",
                    &args![&run.workflow_id, &run.run_id, g.label(), g.passed],
                )?;
            }
            for span in result
                .phases
                .iter()
                .filter(|p| p.ended_ms > 0 && p.ended_ms >= p.started_ms)
            {
                self.conn.execute(
                    "INSERT INTO run_phases (workflow_id, run_id, phase, seconds) VALUES (?1, ?2, ?3, ?4)",
                    &args![
                        &run.workflow_id,
                        &run.run_id,
                        span.phase().name(),
                        (span.ended_ms - span.started_ms) as f64 / 1000.0
                    ],
                )?;
            }
            Ok(((), true))
        })
    }

    /// Every finished run counted by SQL aggregates: outcomes per project, gate verdicts, and each
    /// phase's spans as a histogram over `bounds` (seconds).
    pub fn run_totals(&self, bounds: &[f64]) -> Result<RunTotals, StoreError> {
        let counted =
            |r: &Row| -> Result<(String, String, u64), StoreError> { Ok((r.text(0)?, r.text(1)?, r.count(2)?)) };
        let finished = self
            .conn
            .query(
                "SELECT project, outcome, COUNT(*) FROM runs GROUP BY project, outcome ORDER BY project, outcome",
                &[],
            )?
            .iter()
            .map(counted)
            .collect::<Result<_, _>>()?;
        let finished_by_host = self
            .conn
            .query(
                "SELECT project, host, outcome, COUNT(*) FROM runs WHERE host <> '' \
                 GROUP BY project, host, outcome ORDER BY project, host, outcome",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.count(3)?)))
            .collect::<Result<_, StoreError>>()?;
        let gates = self
            .conn
            .query(
                "SELECT gate, passed, COUNT(*) FROM run_gates GROUP BY gate, passed ORDER BY gate, passed",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.flag(1)?, r.count(2)?)))
            .collect::<Result<_, StoreError>>()?;
        // The bounds are the caller's constants, written into the query as numbers.
        let buckets: String = bounds
            .iter()
            .map(|b| format!(", CAST(SUM(CASE WHEN seconds <= {b:?} THEN 1 ELSE 0 END) AS BIGINT)"))
            .collect();
        let phases = self
            .conn
            .query(
                &format!("SELECT phase, SUM(seconds), COUNT(*){buckets} FROM run_phases GROUP BY phase ORDER BY phase"),
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(PhaseTotals {
                    phase: r.text(0)?,
                    seconds: r.real(1)?,
                    count: r.count(2)?,
                    at_most: (0..bounds.len()).map(|i| r.count(3 + i)).collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(RunTotals {
            finished,
            finished_by_host,
            gates,
            phases,
        })
    }

    /// The finished runs, newest first, at most `limit`.
    pub fn runs(&self, project: Option<&str>, limit: u32) -> Result<Vec<(RunRef, SharkResult)>, StoreError> {
        self.conn
            .query(
                "SELECT workflow_id, run_id, project, bead_id, result FROM runs \
                 WHERE (CAST(?1 AS TEXT) IS NULL OR project = ?1) ORDER BY finished_ms DESC LIMIT ?2",
                &args![project, limit],
            )?
            .iter()
            .map(|r| {
                Ok((
                    RunRef {
                        workflow_id: r.text(0)?,
                        run_id: r.text(1)?,
                        project: r.text(2)?,
                        bead_id: r.text(3)?,
                    },
                    serde_json::from_str::<SharkResult>(&r.text(4)?).unwrap_or_default(),
                ))
            })
            .collect()
    }
}
