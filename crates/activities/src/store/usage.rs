//! The `agent_usage` table: what every agent run reported (or CHUM estimated) it spent, the
//! reservations budgets take before a run, and the sums reports and caps read.

use rusqlite::params;

use super::{Store, StoreError};

/// One agent run's reported usage, with where it was spent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageRecord {
    pub project: String,
    pub bead_id: String,
    pub workflow_id: String,
    pub run_id: String,
    /// The role, which is the phase it was spent in: planner, executor, reviewer, learner, groomer.
    pub role: String,
    pub attempt: u32,
    pub handoff: u32,
    pub provider: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub duration_ms: u64,
    pub created_ms: i64,
    /// The cost is CHUM's estimate from the run's time (the agent reported none), not the agent's figure.
    pub estimated: bool,
    /// The cost is CHUM's, computed from the tokens the agent reported and its provider's price.
    pub computed: bool,
}

/// What is summed for a budget check or a report.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Spent {
    pub cost_usd: f64,
    pub tokens: u64,
    pub runs: u64,
    /// Of `runs`, those whose cost CHUM estimated from their time.
    pub estimated: u64,
    /// Of `runs`, those whose cost CHUM computed from their tokens and a price.
    pub computed: u64,
}

/// Which usage to sum: any combination of project, bead and a start time.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageFilter<'a> {
    pub project: Option<&'a str>,
    pub bead_id: Option<&'a str>,
    pub since_ms: Option<i64>,
}

impl Store {
    pub fn record_usage(&self, u: &UsageRecord) -> Result<(), StoreError> {
        self.insert_usage(u, false).map(|_| ())
    }

    fn insert_usage(&self, u: &UsageRecord, reserved: bool) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO agent_usage (project, bead_id, workflow_id, run_id, role, attempt, handoff, provider, \
                 input_tokens, output_tokens, cost_usd, duration_ms, created_ms, reserved, estimated, computed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    u.project,
                    u.bead_id,
                    u.workflow_id,
                    u.run_id,
                    u.role,
                    u.attempt,
                    u.handoff,
                    u.provider,
                    u.input_tokens as i64,
                    u.output_tokens as i64,
                    u.cost_usd,
                    u.duration_ms as i64,
                    u.created_ms,
                    reserved,
                    u.estimated,
                    u.computed
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Checks the budget and reserves `estimate` for a run about to start, as one transaction that
    /// takes SQLite's write lock first: runs checking at once (in this worker or another) each see
    /// the others' reservations, so together they cannot go past a cap by more than one run's
    /// misestimate. Reservations older than `stale_before_ms` (a worker that died mid-run) are
    /// dropped first. Returns the reservation's id for [`Store::settle_usage`].
    pub fn reserve_usage<E>(
        &mut self,
        estimate: &UsageRecord,
        stale_before_ms: i64,
        check: impl FnOnce(&Store) -> Result<(), E>,
    ) -> Result<Result<i64, E>, StoreError> {
        let path = self.path.clone();
        let sqlite = |e: rusqlite::Error| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        };
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite)?;
        let outcome = (|| {
            self.conn
                .execute(
                    "DELETE FROM agent_usage WHERE reserved = 1 AND created_ms < ?1",
                    params![stale_before_ms],
                )
                .map_err(|e| self.err(e))?;
            if let Err(why) = check(self) {
                return Ok(Err(why));
            }
            self.insert_usage(estimate, true).map(Ok)
        })();
        let end = if matches!(outcome, Ok(Ok(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        self.conn.execute_batch(end).map_err(sqlite)?;
        outcome
    }

    /// Removes a reservation whose run never started.
    pub fn drop_reservation(&self, reservation: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM agent_usage WHERE id = ?1 AND reserved = 1",
                params![reservation],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Replaces a reservation with what the run really used.
    pub fn settle_usage(&self, reservation: i64, u: &UsageRecord) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE agent_usage SET input_tokens = ?2, output_tokens = ?3, cost_usd = ?4, duration_ms = ?5, \
                 reserved = 0, estimated = ?6, computed = ?7 WHERE id = ?1",
                params![
                    reservation,
                    u.input_tokens as i64,
                    u.output_tokens as i64,
                    u.cost_usd,
                    u.duration_ms as i64,
                    u.estimated,
                    u.computed
                ],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            // The reservation was dropped as stale meanwhile: the real figures still count.
            self.record_usage(u)?;
        }
        Ok(())
    }

    /// A provider's average reported cost and tokens per run for a role (the last 50 runs), the
    /// estimate a new run reserves; zero without history.
    pub fn typical_usage(&self, provider: &str, role: &str) -> Result<(f64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(AVG(cost_usd), 0), COALESCE(AVG(input_tokens + output_tokens), 0) FROM \
                 (SELECT cost_usd, input_tokens, output_tokens FROM agent_usage \
                  WHERE provider = ?1 AND role = ?2 AND reserved = 0 ORDER BY id DESC LIMIT 50)",
                params![provider, role],
                |r| Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?.max(0.0) as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// The usage matching `filter`, summed.
    pub fn spent(&self, filter: UsageFilter<'_>) -> Result<Spent, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens + output_tokens), 0), COUNT(*), \
                 COALESCE(SUM(estimated), 0), COALESCE(SUM(computed), 0) \
                 FROM agent_usage WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR bead_id = ?2) \
                 AND (?3 IS NULL OR created_ms >= ?3)",
                params![filter.project, filter.bead_id, filter.since_ms],
                |r| {
                    Ok(Spent {
                        cost_usd: r.get(0)?,
                        tokens: r.get::<_, i64>(1)?.max(0) as u64,
                        runs: r.get::<_, i64>(2)?.max(0) as u64,
                        estimated: r.get::<_, i64>(3)?.max(0) as u64,
                        computed: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Usage summed per value of `column` ("provider", "role", "project" or "bead_id"; anything
    /// else means "provider"), largest spend first.
    pub fn spent_by(&self, column: &str, filter: UsageFilter<'_>) -> Result<Vec<(String, Spent)>, StoreError> {
        let column = match column {
            "provider" | "role" | "project" | "bead_id" => column,
            _ => "provider",
        };
        let sql = format!(
            "SELECT {column}, COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens + output_tokens), 0), COUNT(*), \
             COALESCE(SUM(estimated), 0), COALESCE(SUM(computed), 0) FROM agent_usage WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR bead_id = ?2) \
             AND (?3 IS NULL OR created_ms >= ?3) GROUP BY {column} ORDER BY 2 DESC, 3 DESC, 1"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![filter.project, filter.bead_id, filter.since_ms], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Spent {
                        cost_usd: r.get(1)?,
                        tokens: r.get::<_, i64>(2)?.max(0) as u64,
                        runs: r.get::<_, i64>(3)?.max(0) as u64,
                        estimated: r.get::<_, i64>(4)?.max(0) as u64,
                        computed: r.get::<_, i64>(5)?.max(0) as u64,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// All usage, summed per (provider, role).
    pub fn spent_by_provider_and_role(&self) -> Result<Vec<(String, String, Spent)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT provider, role, COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens + output_tokens), 0), \
                 COUNT(*) FROM agent_usage GROUP BY provider, role ORDER BY provider, role",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    Spent {
                        cost_usd: r.get(2)?,
                        tokens: r.get::<_, i64>(3)?.max(0) as u64,
                        runs: r.get::<_, i64>(4)?.max(0) as u64,
                        estimated: 0,
                        computed: 0,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}
