//! The `lessons` table and its full-text index: lessons with provenance, found by text, used in
//! prompts until they expire.

use chum_core::lesson::{fingerprint, fts_query, search_words};
use chum_core::proto::Lesson;

use super::db::{Row, args};
use super::{Store, StoreError};

const LESSON_COLUMNS: &str = "l.id, l.project, l.bead_id, l.workflow_id, l.run_id, l.attempt, l.commit_sha, l.category, \
    l.summary, l.detail, l.file_paths, l.labels, l.bad_example, l.good_example, l.language, l.created_ms, \
    l.last_used_ms, l.use_count";

fn lesson_from_row(row: &Row) -> Result<Lesson, StoreError> {
    Ok(Lesson {
        id: row.count(0)?,
        project: row.text(1)?,
        bead_id: row.text(2)?,
        workflow_id: row.text(3)?,
        run_id: row.text(4)?,
        attempt: row.small(5)?,
        commit: row.text(6)?,
        category: row.text(7)?,
        summary: row.text(8)?,
        detail: row.text(9)?,
        file_paths: row.list(10)?,
        labels: row.list(11)?,
        bad_example: row.text(12)?,
        good_example: row.text(13)?,
        language: row.text(14)?,
        created_ms: row.int(15)?,
        last_used_ms: row.int(16)?,
        use_count: row.small(17)?,
    })
}

fn lessons_from_rows(rows: Vec<Row>) -> Result<Vec<Lesson>, StoreError> {
    rows.iter().map(lesson_from_row).collect()
}

impl Store {
    /// Stores a lesson with its provenance. `None` when the project already has the exact same
    /// lesson (same fingerprint) from another run: a lesson learned twice. A retry by the run that
    /// stored it gets its id again.
    pub fn insert_lesson(&self, lesson: &Lesson, now_ms: i64) -> Result<Option<u64>, StoreError> {
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string());
        let inserted = self.conn.query_one(
            "INSERT INTO lessons (project, bead_id, workflow_id, run_id, attempt, commit_sha, category, summary,
                detail, file_paths, labels, bad_example, good_example, language, fingerprint, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
             ON CONFLICT DO NOTHING RETURNING id",
            &args![
                &lesson.project,
                &lesson.bead_id,
                &lesson.workflow_id,
                &lesson.run_id,
                lesson.attempt,
                &lesson.commit,
                &lesson.category,
                &lesson.summary,
                &lesson.detail,
                json(&lesson.file_paths),
                json(&lesson.labels),
                &lesson.bad_example,
                &lesson.good_example,
                &lesson.language,
                fingerprint(lesson),
                now_ms
            ],
        )?;
        if let Some(row) = inserted {
            return Ok(Some(row.count(0)?));
        }
        // The same run storing it again is a retried learner whose first try stored it and then
        // died (a killed worker): it gets the id back, so the lesson is still crystallized.
        self.conn
            .query_one(
                "SELECT id FROM lessons WHERE project = ?1 AND fingerprint = ?2 AND workflow_id = ?3 AND run_id = ?4",
                &args![
                    &lesson.project,
                    fingerprint(lesson),
                    &lesson.workflow_id,
                    &lesson.run_id
                ],
            )?
            .map(|r| r.count(0))
            .transpose()
    }

    pub fn lesson(&self, id: u64) -> Result<Option<Lesson>, StoreError> {
        self.conn
            .query_one(
                &format!("SELECT {LESSON_COLUMNS} FROM lessons l WHERE l.id = ?1"),
                &args![id],
            )?
            .map(|r| lesson_from_row(&r))
            .transpose()
    }

    /// Lessons matching `text` best first (SQLite: FTS5's bm25; Postgres: `ts_rank` normalized by
    /// length, as bm25 favours short matches). `project` narrows to one project; `fresh_since_ms`
    /// drops lessons unused (and not created) since then. Text that holds no searchable word
    /// matches nothing rather than failing.
    pub fn search(
        &self,
        project: Option<&str>,
        text: &str,
        limit: u32,
        fresh_since_ms: Option<i64>,
    ) -> Result<Vec<Lesson>, StoreError> {
        let fresh = "(CAST(?3 AS BIGINT) IS NULL OR CASE WHEN l.created_ms > l.last_used_ms THEN l.created_ms ELSE l.last_used_ms END >= ?3)";
        let (sql, query) = if self.conn.is_postgres() {
            let words = search_words(text);
            if words.is_empty() {
                return Ok(Vec::new());
            }
            // The words are letters, digits and underscores only: nothing to_tsquery reads as syntax.
            let sql = format!(
                "SELECT {LESSON_COLUMNS} FROM lessons l, to_tsquery('simple', ?1) q
                 WHERE l.search @@ q AND (CAST(?2 AS TEXT) IS NULL OR l.project = ?2) AND {fresh}
                 ORDER BY ts_rank(l.search, q, 1) DESC, l.id LIMIT ?4"
            );
            (sql, words.join(" | "))
        } else {
            let Some(query) = fts_query(text) else {
                return Ok(Vec::new());
            };
            let sql = format!(
                "SELECT {LESSON_COLUMNS} FROM lessons_fts f JOIN lessons l ON l.id = f.rowid
                 WHERE lessons_fts MATCH ?1 AND (?2 IS NULL OR l.project = ?2) AND {fresh}
                 ORDER BY bm25(lessons_fts) LIMIT ?4"
            );
            (sql, query)
        };
        lessons_from_rows(self.conn.query(&sql, &args![query, project, fresh_since_ms, limit])?)
    }

    /// The newest lessons, for listings.
    pub fn recent(&self, project: Option<&str>, limit: u32) -> Result<Vec<Lesson>, StoreError> {
        let sql = format!(
            "SELECT {LESSON_COLUMNS} FROM lessons l WHERE (CAST(?1 AS TEXT) IS NULL OR l.project = ?1) ORDER BY l.id DESC LIMIT ?2"
        );
        lessons_from_rows(self.conn.query(&sql, &args![project, limit])?)
    }

    /// Records that lessons went into a prompt.
    pub fn mark_used(&self, ids: &[u64], now_ms: i64) -> Result<(), StoreError> {
        for id in ids {
            self.conn.execute(
                "UPDATE lessons SET use_count = use_count + 1, last_used_ms = ?2 WHERE id = ?1",
                &args![*id, now_ms],
            )?;
        }
        Ok(())
    }

    /// How many lessons the store holds (per project, or all).
    pub fn lesson_count(&self, project: Option<&str>) -> Result<u64, StoreError> {
        self.conn
            .query_one(
                "SELECT COUNT(*) FROM lessons WHERE (CAST(?1 AS TEXT) IS NULL OR project = ?1)",
                &args![project],
            )?
            .map_or(Ok(0), |r| r.count(0))
    }
}
