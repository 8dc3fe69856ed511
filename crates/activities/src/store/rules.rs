//! The `rules` table: every Semgrep rule crystallized from a lesson, accepted, rejected with the
//! reason, or retired.

use super::db::{Row, args};
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

fn rule_from_row(row: &Row) -> Result<RuleRecord, StoreError> {
    Ok(RuleRecord {
        rule_id: row.text(0)?,
        lesson_id: row.count(1)?,
        project: row.text(2)?,
        // The schema's CHECK allows only the three; anything else is a store written by hand.
        status: RuleStatus::parse(&row.text(3)?).unwrap_or_default(),
        reason: row.text(4)?,
        checks: row.list(5)?,
        yaml: row.text(6)?,
        path: row.text(7)?,
        commit: row.text(8)?,
        created_ms: row.int(9)?,
        updated_ms: row.int(10)?,
    })
}

const RULE_COLUMNS: &str =
    "rule_id, lesson_id, project, status, reason, checks, yaml, path, commit_sha, created_ms, updated_ms";

impl Store {
    /// Records a rule (insert or replace by rule id).
    pub fn record_rule(&self, rule: &RuleRecord) -> Result<(), StoreError> {
        self.conn.execute(
            &format!(
                "INSERT INTO rules ({RULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (rule_id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
                    checks = excluded.checks, yaml = excluded.yaml, path = excluded.path,
                    commit_sha = excluded.commit_sha, updated_ms = excluded.updated_ms"
            ),
            &args![
                &rule.rule_id,
                rule.lesson_id,
                &rule.project,
                rule.status.as_str(),
                &rule.reason,
                serde_json::to_string(&rule.checks).unwrap_or_else(|_| "[]".to_string()),
                &rule.yaml,
                &rule.path,
                &rule.commit,
                rule.created_ms,
                rule.updated_ms
            ],
        )?;
        Ok(())
    }

    pub fn rule(&self, rule_id: &str) -> Result<Option<RuleRecord>, StoreError> {
        self.conn
            .query_one(
                &format!("SELECT {RULE_COLUMNS} FROM rules WHERE rule_id = ?1"),
                &args![rule_id],
            )?
            .map(|r| rule_from_row(&r))
            .transpose()
    }

    pub fn rules(&self, project: Option<&str>) -> Result<Vec<RuleRecord>, StoreError> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM rules WHERE (CAST(?1 AS TEXT) IS NULL OR project = ?1) ORDER BY created_ms, rule_id"
        );
        self.conn
            .query(&sql, &args![project])?
            .iter()
            .map(rule_from_row)
            .collect()
    }
}
