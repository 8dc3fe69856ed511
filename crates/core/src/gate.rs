//! The human gate's input: validating an `approve` signal payload.
//!
//! Signal payloads are taken as raw JSON and checked here, because a typed handler that fails to
//! decode a payload fails every workflow task and wedges the run (see the SDK notes). A payload
//! that is not exactly a decision is refused with a reason and never approves.

use serde_json::Value;
use temporalio_common::protos::temporal::api::common::v1::Payload;

/// The bead label that asks a person to approve its result before integration, whatever the
/// project's `approve_result`.
pub const APPROVE_RESULT_LABEL: &str = "approve-result";

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
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err(format!("\"{key}\" must be a string (or left out), got {}", kind(other))),
        }
    };
    Ok(GateDecision {
        approved,
        feedback: text("feedback")?,
        by: text("by")?,
    })
}

/// The strict form of a decision, for what a JSON map cannot see: a key given twice.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StrictDecision {
    approved: bool,
    #[serde(default)]
    feedback: String,
    #[serde(default)]
    by: String,
}

/// Checks an `approve` payload as sent, byte for byte: valid UTF-8 JSON, no key twice (a map
/// keeps the last value, so `{"approved": false, "approved": true}` would approve), then
/// [`parse_gate_decision`]'s rules.
pub fn parse_gate_payload(bytes: &[u8]) -> Result<GateDecision, String> {
    if bytes.len() > MAX_SIGNAL_BYTES {
        return Err(format!(
            "payload is {} bytes; the limit is {MAX_SIGNAL_BYTES}",
            bytes.len()
        ));
    }
    let json: Value = serde_json::from_slice(bytes).map_err(|e| format!("payload is not valid JSON: {e}"))?;
    let decision = parse_gate_decision(&json)?;
    if let Err(e) = serde_json::from_slice::<StrictDecision>(bytes) {
        let text = e.to_string();
        if text.starts_with("duplicate field") {
            let field = text.split('`').nth(1).unwrap_or("a field");
            return Err(format!("\"{field}\" is given twice; send each field once"));
        }
        return Err(format!("payload is not a decision: {text}"));
    }
    Ok(decision)
}

/// The JSON an `approve` signal carries, as sent: exactly one `json/plain` payload (a
/// `binary/null` one reads as `null`, which [`parse_gate_payload`] then refuses with its reason).
pub fn signal_json(payloads: &[Payload]) -> Result<&[u8], String> {
    let payload = match payloads {
        [] => {
            return Err(
                "the signal carried no payload; send --input '{\"approved\": true, \"by\": \"<you>\"}'".to_string(),
            );
        }
        [one] => one,
        many => {
            return Err(format!(
                "the signal carried {} payloads; send exactly one JSON object",
                many.len()
            ));
        }
    };
    if payload.data.len() > MAX_SIGNAL_BYTES {
        return Err(format!(
            "payload is {} bytes; the limit is {MAX_SIGNAL_BYTES}",
            payload.data.len()
        ));
    }
    let encoding = payload
        .metadata
        .get("encoding")
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap_or_default();
    match encoding.as_str() {
        "json/plain" => Ok(&payload.data),
        "binary/null" => Ok(b"null"),
        other => Err(format!(
            "payload encoding {other:?} is not supported; send a JSON object"
        )),
    }
}

/// What a refused signal carried, short enough for the status query.
pub fn signal_excerpt(payloads: &[Payload]) -> String {
    match payloads {
        [] => "(no payload)".to_string(),
        [one, ..] => crate::text::excerpt(&String::from_utf8_lossy(&one.data), 200),
    }
}

/// One `json/plain` payload carrying `value`, as clients send it (`chum approve`, tests).
pub fn json_payload(value: &Value) -> Payload {
    let mut payload = Payload {
        data: value.to_string().into_bytes(),
        ..Payload::default()
    };
    payload.metadata.insert("encoding".to_string(), b"json/plain".to_vec());
    payload
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
            (
                json!({"approved": true, "by": null}),
                "\"by\" must be a string (or left out), got null",
            ),
            (
                json!({"approved": true, "feedback": null}),
                "\"feedback\" must be a string",
            ),
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

    #[test]
    fn a_signal_carries_exactly_one_json_payload() {
        let one = json_payload(&json!({"approved": true}));
        assert_eq!(
            signal_json(std::slice::from_ref(&one)).unwrap(),
            br#"{"approved":true}"#
        );
        let err = signal_json(&[]).unwrap_err();
        assert!(err.contains("no payload") && err.contains("--input"), "{err}");
        let err = signal_json(&[one.clone(), one.clone()]).unwrap_err();
        assert!(err.contains("2 payloads"), "{err}");
        let mut binary = one.clone();
        binary.metadata.insert("encoding".into(), b"binary/plain".to_vec());
        let err = signal_json(std::slice::from_ref(&binary)).unwrap_err();
        assert!(err.contains("\"binary/plain\" is not supported"), "{err}");
        let mut null = Payload::default();
        null.metadata.insert("encoding".into(), b"binary/null".to_vec());
        assert_eq!(signal_json(std::slice::from_ref(&null)).unwrap(), b"null");
        let mut huge = one.clone();
        huge.data = vec![b' '; MAX_SIGNAL_BYTES + 1];
        assert!(signal_json(&[huge]).unwrap_err().contains("the limit is"));
        assert_eq!(signal_excerpt(&[]), "(no payload)");
        assert_eq!(signal_excerpt(&[one]), r#"{"approved":true}"#);
    }

    #[test]
    fn payloads_are_checked_as_sent_so_a_repeated_key_never_approves() {
        let err = parse_gate_payload(br#"{"approved": false, "approved": true}"#).unwrap_err();
        assert!(err.contains("\"approved\" is given twice"), "{err}");
        let err = parse_gate_payload(br#"{"approved": true, "by": "a", "by": "b"}"#).unwrap_err();
        assert!(err.contains("\"by\" is given twice"), "{err}");
        let err = parse_gate_payload(b"{\"approved\": true, \"by\": \"\xff\xfe\"}").unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = parse_gate_payload(br#"{"approved": true, "by": null}"#).unwrap_err();
        assert!(err.contains("got null"), "{err}");
        let err = parse_gate_payload(br#"{"approved": true, "by": 12}"#).unwrap_err();
        assert!(err.contains("must be a string"), "{err}");
        let ok = parse_gate_payload(br#"{"approved": true, "by": "alice"}"#).unwrap();
        assert!(ok.approved && ok.by == "alice");
    }
}
