//! The human gate's input: validating an `approve` signal payload.
//!
//! Signal payloads are taken as raw JSON and checked here, because a typed handler that fails to
//! decode a payload fails every workflow task and wedges the run (see the SDK notes). A payload
//! that is not exactly a decision is refused with a reason and never approves.

use serde_json::Value;

use crate::proto::GateDecision;

/// Payloads larger than this are refused outright (and only an excerpt is kept).
pub const MAX_SIGNAL_BYTES: usize = 16 * 1024;
const KNOWN_KEYS: [&str; 3] = ["approved", "feedback", "by"];

/// Checks an `approve` payload: an object with a boolean `approved`, optional string `feedback`
/// and `by`, and nothing else.
pub fn parse_gate_decision(raw: &Value) -> Result<GateDecision, String> {
    let size = raw.to_string().len();
    if size > MAX_SIGNAL_BYTES {
        return Err(format!("payload is {size} bytes; the limit is {MAX_SIGNAL_BYTES}"));
    }
    let Value::Object(map) = raw else {
        return Err(format!(
            "payload must be a JSON object like {{\"approved\": true, \"feedback\": \"...\", \"by\": \"name\"}}, got {}",
            kind(raw)
        ));
    };
    if let Some(extra) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {extra:?}; the fields are \"approved\", \"feedback\" and \"by\""
        ));
    }
    let approved = match map.get("approved") {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!("\"approved\" must be true or false, got {}", kind(other)));
        }
        None => return Err("\"approved\" is missing; send true to approve, false to reject".to_string()),
    };
    let text = |key: &str| -> Result<String, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err(format!("\"{key}\" must be a string, got {}", kind(other))),
        }
    };
    Ok(GateDecision {
        approved,
        feedback: text("feedback")?,
        by: text("by")?,
    })
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", crate::text::excerpt(s, 40)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_well_formed_decision_is_accepted() {
        let d = parse_gate_decision(&json!({"approved": true, "feedback": " ok ", "by": "alice"})).unwrap();
        assert!(d.approved);
        assert_eq!(d.feedback, "ok");
        assert_eq!(d.by, "alice");
        let d = parse_gate_decision(&json!({"approved": false})).unwrap();
        assert!(!d.approved && d.by.is_empty());
    }

    #[test]
    fn malformed_payloads_are_refused_never_approved() {
        let cases = [
            (json!("yes"), "must be a JSON object"),
            (json!(true), "must be a JSON object"),
            (json!(null), "must be a JSON object"),
            (json!([true]), "must be a JSON object"),
            (json!({}), "\"approved\" is missing"),
            (json!({"approved": "true"}), "must be true or false"),
            (json!({"approved": 1}), "must be true or false"),
            (json!({"approved": true, "by": 7}), "\"by\" must be a string"),
            (json!({"approved": true, "aproved": true}), "unknown field \"aproved\""),
            (
                json!({"approved": true, "feedback": "x".repeat(MAX_SIGNAL_BYTES)}),
                "the limit is",
            ),
        ];
        for (payload, reason) in cases {
            let err = parse_gate_decision(&payload).expect_err("must be refused");
            assert!(err.contains(reason), "{payload}: {err}");
        }
    }
}
