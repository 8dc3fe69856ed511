//! The `notifications` table: which event went to which target, so a retried or repeated
//! delivery never tells anyone twice.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

impl Store {
    /// Whether `target` already got the event `event_id`.
    pub fn notified(&self, event_id: &str, target: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM notifications WHERE event_id = ?1 AND target = ?2",
                params![event_id, target],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.err(e))
    }

    /// Records that `target` got the event `event_id` (a second record changes nothing).
    pub fn record_notified(&self, event_id: &str, target: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO notifications (event_id, target, sent_ms) VALUES (?1, ?2, ?3)",
                params![event_id, target, now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
