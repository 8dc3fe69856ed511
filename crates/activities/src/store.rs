//! The lesson store: SQLite (bundled, FTS5) under the state directory. Lessons with provenance, a
//! full-text index kept in sync by triggers, and the rules crystallized from lessons (accepted,
//! rejected with the reason, or retired). The schema is versioned with `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use chum_core::lesson::{fingerprint, fts_query};
use chum_core::proto::{EnumName, Lesson, MutationOutcome, RunRef, SharkResult};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Schema migrations, applied in order; `user_version` says how many have run.
const MIGRATIONS: [&str; 5] = [
    r#"
    CREATE TABLE lessons (
        id INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        commit_sha TEXT NOT NULL,
        category TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail TEXT NOT NULL,
        file_paths TEXT NOT NULL,
        labels TEXT NOT NULL,
        bad_example TEXT NOT NULL,
        good_example TEXT NOT NULL,
        language TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER NOT NULL DEFAULT 0,
        use_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (project, fingerprint)
    );
    CREATE VIRTUAL TABLE lessons_fts USING fts5(
        summary, detail, file_paths, labels, bad_example, language,
        content = 'lessons', content_rowid = 'id'
    );
    CREATE TRIGGER lessons_ai AFTER INSERT ON lessons BEGIN
        INSERT INTO lessons_fts (rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES (new.id, new.summary, new.detail, new.file_paths, new.labels, new.bad_example, new.language);
    END;
    CREATE TRIGGER lessons_ad AFTER DELETE ON lessons BEGIN
        INSERT INTO lessons_fts (lessons_fts, rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES ('delete', old.id, old.summary, old.detail, old.file_paths, old.labels, old.bad_example, old.language);
    END;
    CREATE TRIGGER lessons_au AFTER UPDATE OF summary, detail, file_paths, labels, bad_example, language ON lessons BEGIN
        INSERT INTO lessons_fts (lessons_fts, rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES ('delete', old.id, old.summary, old.detail, old.file_paths, old.labels, old.bad_example, old.language);
        INSERT INTO lessons_fts (rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES (new.id, new.summary, new.detail, new.file_paths, new.labels, new.bad_example, new.language);
    END;
    CREATE TABLE rules (
        rule_id TEXT PRIMARY KEY,
        lesson_id INTEGER NOT NULL REFERENCES lessons (id),
        project TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'retired')),
        reason TEXT NOT NULL,
        checks TEXT NOT NULL,
        yaml TEXT NOT NULL,
        path TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
"#,
    r#"
    CREATE TABLE groom_mutations (
        groom_workflow_id TEXT NOT NULL,
        groom_run_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        project TEXT NOT NULL,
        kind TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        op TEXT NOT NULL,
        description TEXT NOT NULL,
        mutation TEXT NOT NULL,
        applied INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (groom_workflow_id, groom_run_id, idx)
    );
    CREATE INDEX groom_mutations_by_project ON groom_mutations (project, created_ms);
"#,
    r#"
    CREATE TABLE agent_usage (
        id INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        role TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        handoff INTEGER NOT NULL,
        provider TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        duration_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX agent_usage_by_bead ON agent_usage (project, bead_id);
    CREATE INDEX agent_usage_by_time ON agent_usage (created_ms);
"#,
    r#"
    CREATE TABLE runs (
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        result TEXT NOT NULL,
        finished_ms INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, run_id)
    );
    CREATE INDEX runs_by_project ON runs (project, finished_ms);
"#,
    // Usage a run reserves before its agent starts (settled with the real figures after), and
    // figures CHUM estimated because the agent reports none.
    r#"
    ALTER TABLE agent_usage ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agent_usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;
"#,
];

/// One groom outcome with where it came from.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct GroomRecord {
    pub groom_workflow_id: String,
    pub project: String,
    /// "tactical" or "strategic".
    pub kind: String,
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
        kind: row.get(2)?,
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
    /// The cost is CHUM's estimate (the agent reported none), not the agent's figure.
    pub estimated: bool,
}

/// What is summed for a budget check or a report.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Spent {
    pub cost_usd: f64,
    pub tokens: u64,
    pub runs: u64,
    /// Of `runs`, those whose cost CHUM estimated.
    pub estimated: u64,
}

/// Which usage to sum: any combination of project, bead and a start time.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageFilter<'a> {
    pub project: Option<&'a str>,
    pub bead_id: Option<&'a str>,
    pub since_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lesson store {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("lesson store {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A rule crystallized from a lesson, whatever became of it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct RuleRecord {
    pub rule_id: String,
    pub lesson_id: u64,
    pub project: String,
    /// "accepted", "rejected" or "retired".
    pub status: String,
    pub reason: String,
    /// One line per check.
    pub checks: Vec<String>,
    pub yaml: String,
    pub path: String,
    pub commit: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

pub struct LessonStore {
    conn: Connection,
    path: String,
}

const LESSON_COLUMNS: &str = "l.id, l.project, l.bead_id, l.workflow_id, l.run_id, l.attempt, l.commit_sha, l.category, \
    l.summary, l.detail, l.file_paths, l.labels, l.bad_example, l.good_example, l.language, l.created_ms, \
    l.last_used_ms, l.use_count";

fn lesson_from_row(row: &Row<'_>) -> rusqlite::Result<Lesson> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(Lesson {
        id: row.get::<_, i64>(0)? as u64,
        project: row.get(1)?,
        bead_id: row.get(2)?,
        workflow_id: row.get(3)?,
        run_id: row.get(4)?,
        attempt: row.get(5)?,
        commit: row.get(6)?,
        category: row.get(7)?,
        summary: row.get(8)?,
        detail: row.get(9)?,
        file_paths: list(10)?,
        labels: list(11)?,
        bad_example: row.get(12)?,
        good_example: row.get(13)?,
        language: row.get(14)?,
        created_ms: row.get(15)?,
        last_used_ms: row.get(16)?,
        use_count: row.get(17)?,
    })
}

fn rule_from_row(row: &Row<'_>) -> rusqlite::Result<RuleRecord> {
    let checks: String = row.get(5)?;
    Ok(RuleRecord {
        rule_id: row.get(0)?,
        lesson_id: row.get::<_, i64>(1)? as u64,
        project: row.get(2)?,
        status: row.get(3)?,
        reason: row.get(4)?,
        checks: serde_json::from_str(&checks).unwrap_or_default(),
        yaml: row.get(6)?,
        path: row.get(7)?,
        commit: row.get(8)?,
        created_ms: row.get(9)?,
        updated_ms: row.get(10)?,
    })
}

const RULE_COLUMNS: &str =
    "rule_id, lesson_id, project, status, reason, checks, yaml, path, commit_sha, created_ms, updated_ms";

impl LessonStore {
    /// Opens (creating if needed) the store and brings its schema up to date.
    pub fn open(path: &Path) -> Result<LessonStore, StoreError> {
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
        let mut store = LessonStore { conn, path: shown };
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

    /// Stores a lesson with its provenance. `None` when the project already has the exact same
    /// lesson (same fingerprint) from another run: a lesson learned twice. A retry by the run that
    /// stored it gets its id again.
    pub fn insert_lesson(&self, lesson: &Lesson, now_ms: i64) -> Result<Option<u64>, StoreError> {
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string());
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO lessons (project, bead_id, workflow_id, run_id, attempt, commit_sha, category, summary,
                    detail, file_paths, labels, bad_example, good_example, language, fingerprint, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    lesson.project,
                    lesson.bead_id,
                    lesson.workflow_id,
                    lesson.run_id,
                    lesson.attempt,
                    lesson.commit,
                    lesson.category,
                    lesson.summary,
                    lesson.detail,
                    json(&lesson.file_paths),
                    json(&lesson.labels),
                    lesson.bad_example,
                    lesson.good_example,
                    lesson.language,
                    fingerprint(lesson),
                    now_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        if inserted == 1 {
            return Ok(Some(self.conn.last_insert_rowid() as u64));
        }
        // The same run storing it again is a retried learner whose first try stored it and then
        // died (a killed worker): it gets the id back, so the lesson is still crystallized.
        self.conn
            .query_row(
                "SELECT id FROM lessons WHERE project = ?1 AND fingerprint = ?2 AND workflow_id = ?3 AND run_id = ?4",
                params![lesson.project, fingerprint(lesson), lesson.workflow_id, lesson.run_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|id| id.map(|id| id as u64))
            .map_err(|e| self.err(e))
    }

    pub fn lesson(&self, id: u64) -> Result<Option<Lesson>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {LESSON_COLUMNS} FROM lessons l WHERE l.id = ?1"),
                [id as i64],
                lesson_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Lessons matching `text` best first (bm25). `project` narrows to one project; `fresh_since_ms`
    /// drops lessons unused (and not created) since then. Text that holds no searchable word
    /// matches nothing rather than failing.
    pub fn search(
        &self,
        project: Option<&str>,
        text: &str,
        limit: u32,
        fresh_since_ms: Option<i64>,
    ) -> Result<Vec<Lesson>, StoreError> {
        let Some(query) = fts_query(text) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {LESSON_COLUMNS} FROM lessons_fts f JOIN lessons l ON l.id = f.rowid
             WHERE lessons_fts MATCH ?1 AND (?2 IS NULL OR l.project = ?2)
               AND (?3 IS NULL OR max(l.created_ms, l.last_used_ms) >= ?3)
             ORDER BY bm25(lessons_fts) LIMIT ?4"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![query, project, fresh_since_ms, limit], lesson_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The newest lessons, for listings.
    pub fn recent(&self, project: Option<&str>, limit: u32) -> Result<Vec<Lesson>, StoreError> {
        let sql = format!(
            "SELECT {LESSON_COLUMNS} FROM lessons l WHERE (?1 IS NULL OR l.project = ?1) ORDER BY l.id DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![project, limit], lesson_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records that lessons went into a prompt.
    pub fn mark_used(&self, ids: &[u64], now_ms: i64) -> Result<(), StoreError> {
        for id in ids {
            self.conn
                .execute(
                    "UPDATE lessons SET use_count = use_count + 1, last_used_ms = ?2 WHERE id = ?1",
                    params![*id as i64, now_ms],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Records a rule (insert or replace by rule id).
    pub fn record_rule(&self, rule: &RuleRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO rules ({RULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (rule_id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
                        checks = excluded.checks, yaml = excluded.yaml, path = excluded.path,
                        commit_sha = excluded.commit_sha, updated_ms = excluded.updated_ms"
                ),
                params![
                    rule.rule_id,
                    rule.lesson_id as i64,
                    rule.project,
                    rule.status,
                    rule.reason,
                    serde_json::to_string(&rule.checks).unwrap_or_else(|_| "[]".to_string()),
                    rule.yaml,
                    rule.path,
                    rule.commit,
                    rule.created_ms,
                    rule.updated_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn rule(&self, rule_id: &str) -> Result<Option<RuleRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {RULE_COLUMNS} FROM rules WHERE rule_id = ?1"),
                [rule_id],
                rule_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records what became of one proposed mutation of a groom run. A second record for the same
    /// (groom run, index) is ignored: the first outcome stands.
    pub fn record_groom_outcome(
        &self,
        groom: &RunRef,
        kind: &str,
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
                    kind,
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

    /// How many lessons the store holds (per project, or all).
    pub fn lesson_count(&self, project: Option<&str>) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM lessons WHERE (?1 IS NULL OR project = ?1)",
                params![project],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    pub fn record_usage(&self, u: &UsageRecord) -> Result<(), StoreError> {
        self.insert_usage(u, false).map(|_| ())
    }

    fn insert_usage(&self, u: &UsageRecord, reserved: bool) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO agent_usage (project, bead_id, workflow_id, run_id, role, attempt, handoff, provider, \
                 input_tokens, output_tokens, cost_usd, duration_ms, created_ms, reserved, estimated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
                    u.estimated
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Checks the budget and reserves `estimate` for a run about to start, as one transaction that
    /// takes SQLite's write lock first: runs checking at once (in this worker or another) each see
    /// the others' reservations, so together they cannot go past a cap by more than one run's
    /// misestimate. Reservations older than `stale_before_ms` (a worker that died mid-run) are
    /// dropped first. Returns the reservation's id for [`LessonStore::settle_usage`].
    pub fn reserve_usage(
        &mut self,
        estimate: &UsageRecord,
        stale_before_ms: i64,
        check: impl FnOnce(&LessonStore) -> Result<(), String>,
    ) -> Result<Result<i64, String>, StoreError> {
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
                 reserved = 0, estimated = ?6 WHERE id = ?1",
                params![
                    reservation,
                    u.input_tokens as i64,
                    u.output_tokens as i64,
                    u.cost_usd,
                    u.duration_ms as i64,
                    u.estimated
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
                 COALESCE(SUM(estimated), 0) \
                 FROM agent_usage WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR bead_id = ?2) \
                 AND (?3 IS NULL OR created_ms >= ?3)",
                params![filter.project, filter.bead_id, filter.since_ms],
                |r| {
                    Ok(Spent {
                        cost_usd: r.get(0)?,
                        tokens: r.get::<_, i64>(1)?.max(0) as u64,
                        runs: r.get::<_, i64>(2)?.max(0) as u64,
                        estimated: r.get::<_, i64>(3)?.max(0) as u64,
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
             COALESCE(SUM(estimated), 0) FROM agent_usage WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR bead_id = ?2) \
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
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn rules(&self, project: Option<&str>) -> Result<Vec<RuleRecord>, StoreError> {
        let sql =
            format!("SELECT {RULE_COLUMNS} FROM rules WHERE (?1 IS NULL OR project = ?1) ORDER BY created_ms, rule_id");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![project], rule_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lesson(summary: &str) -> Lesson {
        Lesson {
            project: "demo".into(),
            bead_id: "tk-1".into(),
            workflow_id: "shark-demo-tk-1".into(),
            run_id: "r1".into(),
            attempt: 1,
            category: "antipattern".into(),
            summary: summary.into(),
            detail: "str.split with a single space keeps empty words".into(),
            file_paths: vec!["textkit/slug.py".into()],
            labels: vec!["python".into()],
            bad_example: "words = title.split(\" \")".into(),
            good_example: "words = title.split()".into(),
            language: "python".into(),
            ..Lesson::default()
        }
    }

    #[test]
    fn lessons_are_stored_once_with_provenance_and_found_by_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = LessonStore::open(&dir.path().join("chum.db")).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        let id = store
            .insert_lesson(&lesson("split on single spaces breaks slugs"), 1_000)
            .unwrap()
            .unwrap();
        let from_another_run = Lesson {
            run_id: "r2".into(),
            ..lesson("Split on  single spaces breaks SLUGS")
        };
        assert_eq!(
            store.insert_lesson(&from_another_run, 2_000).unwrap(),
            None,
            "exact duplicate"
        );
        assert_eq!(
            store
                .insert_lesson(&lesson("split on single spaces breaks slugs"), 2_500)
                .unwrap(),
            Some(id),
            "the run that stored it, retried, gets it back"
        );
        store
            .insert_lesson(
                &Lesson {
                    category: "insight".into(),
                    detail: "unrelated".into(),
                    ..lesson("cache the parser")
                },
                3_000,
            )
            .unwrap();
        let found = store
            .search(Some("demo"), "slugify should split titles", 5, None)
            .unwrap();
        assert_eq!(found[0].id, id);
        assert_eq!(found[0].bead_id, "tk-1");
        assert_eq!(found[0].file_paths, ["textkit/slug.py"]);
        assert!(
            store.search(Some("other"), "split", 5, None).unwrap().is_empty(),
            "per project"
        );
    }

    #[test]
    fn fts_syntax_in_user_text_never_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = LessonStore::open(&dir.path().join("chum.db")).unwrap();
        store.insert_lesson(&lesson("split on single spaces"), 1).unwrap();
        for text in [
            "",
            "\"",
            "split\" OR \"",
            "-split",
            "spl*",
            "summary:split",
            "NEAR(a b)",
            "(((",
            "a AND",
            "é ü 中文",
        ] {
            store
                .search(None, text, 5, None)
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
        assert_eq!(store.search(None, "-split*:", 5, None).unwrap().len(), 1);
    }

    #[test]
    fn unused_lessons_expire_from_prompts_but_stay_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = LessonStore::open(&dir.path().join("chum.db")).unwrap();
        let id = store
            .insert_lesson(&lesson("split on single spaces"), 1_000)
            .unwrap()
            .unwrap();
        assert!(
            store.search(None, "split", 5, Some(5_000)).unwrap().is_empty(),
            "expired"
        );
        store.mark_used(&[id], 6_000).unwrap();
        let found = store.search(None, "split", 5, Some(5_000)).unwrap();
        assert_eq!(found.len(), 1, "used recently");
        assert_eq!((found[0].use_count, found[0].last_used_ms), (1, 6_000));
        assert!(store.lesson(id).unwrap().is_some());
    }

    #[test]
    fn rules_are_recorded_with_their_fate() {
        let dir = tempfile::tempdir().unwrap();
        let store = LessonStore::open(&dir.path().join("chum.db")).unwrap();
        let id = store.insert_lesson(&lesson("split"), 1).unwrap().unwrap();
        let mut rule = RuleRecord {
            rule_id: format!("chum-{id}"),
            lesson_id: id,
            project: "demo".into(),
            status: "rejected".into(),
            reason: "does not match the bad example".into(),
            checks: vec!["valid: ok".into()],
            ..RuleRecord::default()
        };
        store.record_rule(&rule).unwrap();
        rule.status = "accepted".into();
        store.record_rule(&rule).unwrap();
        let rules = store.rules(Some("demo")).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].status, "accepted");
        assert_eq!(rules[0].checks, ["valid: ok"]);
    }

    #[test]
    fn reopening_keeps_data_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chum.db");
        LessonStore::open(&path)
            .unwrap()
            .insert_lesson(&lesson("split"), 1)
            .unwrap();
        let store = LessonStore::open(&path).unwrap();
        assert_eq!(store.recent(None, 10).unwrap().len(), 1);
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
    }

    #[test]
    fn groom_outcomes_are_recorded_once_per_run_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = LessonStore::open(&dir.path().join("chum.db")).unwrap();
        let groom = RunRef {
            project: "demo".into(),
            bead_id: "tk-1".into(),
            workflow_id: "groom-demo-tk-1-r".into(),
            run_id: "r1".into(),
        };
        let rejected = MutationOutcome {
            index: 1,
            op: "close".into(),
            description: "close tk-9".into(),
            applied: false,
            reason: "bead tk-9 does not exist".into(),
            mutation: r#"{"op":"close"}"#.into(),
            ..MutationOutcome::default()
        };
        let applied = MutationOutcome {
            index: 0,
            op: "create".into(),
            applied: true,
            created_id: "tk-abc".into(),
            ..MutationOutcome::default()
        };
        store.record_groom_outcome(&groom, "tactical", &rejected, 1).unwrap();
        store.record_groom_outcome(&groom, "tactical", &applied, 2).unwrap();
        // A retried activity records again: the first outcome stands.
        let again = MutationOutcome {
            applied: true,
            ..rejected.clone()
        };
        store.record_groom_outcome(&groom, "tactical", &again, 3).unwrap();
        let outcomes = store.groom_outcomes(&groom).unwrap();
        assert_eq!(outcomes, vec![applied.clone(), rejected]);
        let recent = store.recent_groom_outcomes(Some("demo"), 10).unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].outcome, applied, "newest first");
        assert_eq!(recent[0].kind, "tactical");
        assert!(store.recent_groom_outcomes(Some("other"), 10).unwrap().is_empty());
    }

    #[test]
    fn usage_is_summed_by_bead_project_day_and_provider() {
        let dir = tempfile::tempdir().unwrap();
        let store = LessonStore::open(&dir.path().join("chum.db")).unwrap();
        let run = |project: &str, bead: &str, provider: &str, cost: f64, at: i64| UsageRecord {
            project: project.into(),
            bead_id: bead.into(),
            provider: provider.into(),
            role: "executor".into(),
            input_tokens: 1000,
            output_tokens: 200,
            cost_usd: cost,
            created_ms: at,
            ..UsageRecord::default()
        };
        store.record_usage(&run("demo", "tk-1", "claude", 0.5, 100)).unwrap();
        store.record_usage(&run("demo", "tk-1", "codex", 0.25, 200)).unwrap();
        store.record_usage(&run("demo", "tk-2", "claude", 1.0, 300)).unwrap();
        store.record_usage(&run("other", "x-1", "claude", 2.0, 300)).unwrap();
        let bead = store
            .spent(UsageFilter {
                project: Some("demo"),
                bead_id: Some("tk-1"),
                since_ms: None,
            })
            .unwrap();
        assert_eq!((bead.cost_usd, bead.tokens, bead.runs), (0.75, 2400, 2));
        let since = store
            .spent(UsageFilter {
                project: Some("demo"),
                since_ms: Some(200),
                ..UsageFilter::default()
            })
            .unwrap();
        assert_eq!(since.cost_usd, 1.25);
        assert_eq!(store.spent(UsageFilter::default()).unwrap().cost_usd, 3.75);
        let by = store.spent_by("provider", UsageFilter::default()).unwrap();
        assert_eq!(by[0].0, "claude");
        assert_eq!(by[0].1.cost_usd, 3.5);
        assert_eq!(by[1].0, "codex");
        assert!(
            store.spent_by("provider; DROP TABLE x", UsageFilter::default()).is_ok(),
            "column names are never taken from the caller"
        );
    }
}
