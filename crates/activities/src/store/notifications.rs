//! The `notifications` table: which event went to which target, so a retried or repeated
//! delivery never tells anyone twice.

use super::db::args;
use super::{Store, StoreError};

impl Store {
    /// Whether `target` already got the event `event_id`.
    pub fn notified(&self, event_id: &str, target: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_one(
                "SELECT 1 FROM notifications WHERE event_id = ?1 AND target = ?2",
                &args![event_id, target],
            )?
            .is_some())
    }

    /// Records that `target` got the event `event_id` (a second record changes nothing).
    pub fn record_notified(&self, event_id: &str, target: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO notifications (event_id, target, sent_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            &args![event_id, target, now_ms],
        )?;
        Ok(())
    }
}
