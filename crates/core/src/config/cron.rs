//! Cron expressions for `[groom] schedule`.

/// Checks a 5-field cron expression (minute hour day-of-month month day-of-week) or a `@daily`-style
/// shorthand. Temporal has the last word; this catches the common mistakes with a clear message.
pub fn check_cron(expr: &str) -> Result<(), String> {
    const SHORTHANDS: [&str; 7] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    let expr = expr.trim();
    if SHORTHANDS.contains(&expr) {
        return Ok(());
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{expr:?} has {} fields; a cron expression has 5 (minute hour day-of-month month day-of-week), e.g. \"0 6 * * *\"",
            fields.len()
        ));
    }
    for field in fields {
        if !field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?'))
        {
            return Err(format!("{expr:?}: the field {field:?} is not valid cron syntax"));
        }
    }
    Ok(())
}
