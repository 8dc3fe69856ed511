//! The `rules` table: every Semgrep rule crystallized from a lesson, accepted, rejected with the
//! reason, or retired.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

/// What became of a crystallized rule. Only an accepted rule is in the project's `.semgrep/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    Accepted,
    /// Failed one of the four checks (the default: a rule is only ever used once accepted).
    #[default]
    Rejected,
    /// Was accepted, then taken out of `.semgrep/` by a person.
    Retired,
}

impl RuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Accepted => "accepted",
            RuleStatus::Rejected => "rejected",
            RuleStatus::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<RuleStatus> {
        [RuleStatus::Accepted, RuleStatus::Rejected, RuleStatus::Retired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for RuleStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for RuleStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RuleStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        RuleStatus::parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown rule status {text:?}").into()))
    }
}

/// A rule crystallized from a lesson, whatever became of it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct RuleRecord {
    pub rule_id: String,
    pub lesson_id: u64,
    pub project: String,
    pub status: RuleStatus,
    pub reason: String,
    /// One line per check.
    pub checks: Vec<String>,
    pub yaml: String,
    pub path: String,
    pub commit: String,
    pub created_ms: i64,
    pub updated_ms: i64,
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

impl Store {
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
