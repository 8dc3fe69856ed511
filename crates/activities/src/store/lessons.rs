//! The `lessons` table and its full-text index: lessons with provenance, found by text, used in
//! prompts until they expire.

use chum_core::lesson::{fingerprint, fts_query};
use chum_core::proto::Lesson;
use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

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

impl Store {
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
}
