//! The wall clock, for activities (workflows read time from Temporal, never from here).

/// Milliseconds since the Unix epoch (activities may read the clock; workflows may not).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
