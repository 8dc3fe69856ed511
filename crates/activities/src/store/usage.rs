//! The `agent_usage` table: what every agent run reported (or CHUM estimated) it spent, the
//! reservations budgets take before a run, and the sums reports and caps read.

use super::db::{Row, args};
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

/// The sums of a usage query, from `first` on: cost, tokens, runs, estimated, computed.
const SUMS: &str = "COALESCE(SUM(cost_usd), 0), CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT), \
    COUNT(*), CAST(COALESCE(SUM(estimated), 0) AS BIGINT), CAST(COALESCE(SUM(computed), 0) AS BIGINT)";

/// Usage matching a [`UsageFilter`] bound as ?1, ?2, ?3.
const FILTERED: &str = "(CAST(?1 AS TEXT) IS NULL OR project = ?1) AND (CAST(?2 AS TEXT) IS NULL OR bead_id = ?2) \
    AND (CAST(?3 AS BIGINT) IS NULL OR created_ms >= ?3)";

fn spent_from(r: &Row, first: usize) -> Result<Spent, StoreError> {
    Ok(Spent {
        cost_usd: r.real(first)?,
        tokens: r.count(first + 1)?,
        runs: r.count(first + 2)?,
        estimated: r.count(first + 3)?,
        computed: r.count(first + 4)?,
    })
}

impl Store {
    pub fn record_usage(&self, u: &UsageRecord) -> Result<(), StoreError> {
        self.insert_usage(u, false).map(|_| ())
    }

    fn insert_usage(&self, u: &UsageRecord, reserved: bool) -> Result<i64, StoreError> {
        let row = self.conn.query_one(
            "INSERT INTO agent_usage (project, bead_id, workflow_id, run_id, role, attempt, handoff, provider, \
             input_tokens, output_tokens, cost_usd, duration_ms, created_ms, reserved, estimated, computed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) RETURNING id",
            &args![
                &u.project,
                &u.bead_id,
                &u.workflow_id,
                &u.run_id,
                &u.role,
                u.attempt,
                u.handoff,
                &u.provider,
                u.input_tokens,
                u.output_tokens,
                u.cost_usd,
                u.duration_ms,
                u.created_ms,
                reserved,
                u.estimated,
                u.computed
            ],
        )?;
        row.map_or(Ok(0), |r| r.int(0))
    }

    /// Checks the budget and reserves `estimate` for a run about to start, as one transaction that
    /// takes the store's write lock first (SQLite's `BEGIN IMMEDIATE`; Postgres locks the usage
    /// table against other writers): runs checking at once (in this worker or another) each see
    /// the others' reservations, so together they cannot go past a cap by more than one run's
    /// misestimate. Reservations older than `stale_before_ms` (a worker that died mid-run) are
    /// dropped first. Returns the reservation's id for [`Store::settle_usage`].
    pub fn reserve_usage<E>(
        &mut self,
        estimate: &UsageRecord,
        stale_before_ms: i64,
        check: impl FnOnce(&Store) -> Result<(), E>,
    ) -> Result<Result<i64, E>, StoreError> {
        let begin = if self.conn.is_postgres() {
            "BEGIN; LOCK TABLE agent_usage IN SHARE ROW EXCLUSIVE MODE"
        } else {
            "BEGIN IMMEDIATE"
        };
        self.conn.transaction(begin, || {
            self.conn.execute(
                "DELETE FROM agent_usage WHERE reserved = 1 AND created_ms < ?1",
                &args![stale_before_ms],
            )?;
            if let Err(why) = check(self) {
                return Ok((Err(why), false));
            }
            Ok((Ok(self.insert_usage(estimate, true)?), true))
        })
    }

    /// Removes a reservation whose run never started.
    pub fn drop_reservation(&self, reservation: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM agent_usage WHERE id = ?1 AND reserved = 1",
            &args![reservation],
        )?;
        Ok(())
    }

    /// Replaces a reservation with what the run really used.
    pub fn settle_usage(&self, reservation: i64, u: &UsageRecord) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE agent_usage SET input_tokens = ?2, output_tokens = ?3, cost_usd = ?4, duration_ms = ?5, \
             reserved = 0, estimated = ?6, computed = ?7 WHERE id = ?1",
            &args![
                reservation,
                u.input_tokens,
                u.output_tokens,
                u.cost_usd,
                u.duration_ms,
                u.estimated,
                u.computed
            ],
        )?;
        if changed == 0 {
            // The reservation was dropped as stale meanwhile: the real figures still count.
            self.record_usage(u)?;
        }
        Ok(())
    }

    /// A provider's average reported cost and tokens per run for a role (the last 50 runs), the
    /// estimate a new run reserves; zero without history.
    pub fn typical_usage(&self, provider: &str, role: &str) -> Result<(f64, u64), StoreError> {
        let row = self.conn.query_one(
            "SELECT CAST(COALESCE(AVG(cost_usd), 0) AS DOUBLE PRECISION), \
                    CAST(COALESCE(AVG(input_tokens + output_tokens), 0) AS DOUBLE PRECISION) FROM \
             (SELECT cost_usd, input_tokens, output_tokens FROM agent_usage \
              WHERE provider = ?1 AND role = ?2 AND reserved = 0 ORDER BY id DESC LIMIT 50) recent",
            &args![provider, role],
        )?;
        match row {
            Some(r) => Ok((r.real(0)?, r.real(1)?.max(0.0) as u64)),
            None => Ok((0.0, 0)),
        }
    }

    /// The usage matching `filter`, summed.
    pub fn spent(&self, filter: UsageFilter<'_>) -> Result<Spent, StoreError> {
        let row = self.conn.query_one(
            &format!("SELECT {SUMS} FROM agent_usage WHERE {FILTERED}"),
            &args![filter.project, filter.bead_id, filter.since_ms],
        )?;
        row.map_or(Ok(Spent::default()), |r| spent_from(&r, 0))
    }

    /// Usage summed per value of `column` ("provider", "role", "project" or "bead_id"; anything
    /// else means "provider"), largest spend first.
    pub fn spent_by(&self, column: &str, filter: UsageFilter<'_>) -> Result<Vec<(String, Spent)>, StoreError> {
        let column = match column {
            "provider" | "role" | "project" | "bead_id" => column,
            _ => "provider",
        };
        let sql = format!(
            "SELECT {column}, {SUMS} FROM agent_usage WHERE {FILTERED} GROUP BY {column} ORDER BY 2 DESC, 3 DESC, 1"
        );
        self.conn
            .query(&sql, &args![filter.project, filter.bead_id, filter.since_ms])?
            .iter()
            .map(|r| Ok((r.text(0)?, spent_from(r, 1)?)))
            .collect()
    }

    /// All usage, summed per (provider, role).
    pub fn spent_by_provider_and_role(&self) -> Result<Vec<(String, String, Spent)>, StoreError> {
        self.conn
            .query(
                "SELECT provider, role, COALESCE(SUM(cost_usd), 0), \
                 CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT), COUNT(*) \
                 FROM agent_usage GROUP BY provider, role ORDER BY provider, role",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.text(0)?,
                    r.text(1)?,
                    Spent {
                        cost_usd: r.real(2)?,
                        tokens: r.count(3)?,
                        runs: r.count(4)?,
                        estimated: 0,
                        computed: 0,
                    },
                ))
            })
            .collect()
    }
}
