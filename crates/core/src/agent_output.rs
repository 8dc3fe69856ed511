//! Reading what an agent CLI printed: its final answer, whether it reported an error, and its usage.
//! Agents' exit codes are unreliable (aider exits 0 after failing), so success is judged from the
//! output itself.

use serde_json::Value;

use crate::config::OutputFormat;
use crate::proto::AgentUsage;

/// An agent's final answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentAnswer {
    pub text: String,
    /// The CLI itself said the run failed (Claude Code `is_error`, a Codex `error` event).
    pub is_error: bool,
    pub usage: AgentUsage,
}

/// Parses stdout according to the provider's output format.
pub fn parse_agent_output(format: OutputFormat, stdout: &str) -> Result<AgentAnswer, String> {
    match format {
        OutputFormat::ClaudeJson => parse_claude_json(stdout),
        OutputFormat::CodexJsonl => parse_codex_jsonl(stdout),
        OutputFormat::Text => Ok(AgentAnswer {
            text: stdout.trim().to_string(),
            ..AgentAnswer::default()
        }),
    }
}

/// Claude Code `--output-format json` prints one `{"type":"result",...}` object; with
/// `stream-json` the same object is the last line.
fn parse_claude_json(stdout: &str) -> Result<AgentAnswer, String> {
    let trimmed = stdout.trim();
    if trimmed.is_empty() {
        return Err("the agent printed nothing on stdout (expected Claude Code JSON)".to_string());
    }
    let result: Value = match serde_json::from_str::<Value>(trimmed) {
        Ok(v) => v,
        Err(_) => trimmed
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find(|v| v.get("type").and_then(Value::as_str) == Some("result"))
            .ok_or_else(|| {
                format!(
                    "stdout is not Claude Code JSON (no {{\"type\": \"result\"}} object): {}",
                    crate::text::excerpt(trimmed, 200)
                )
            })?,
    };
    let Some(obj) = result.as_object() else {
        return Err("Claude Code JSON output is not an object".to_string());
    };
    let text = match obj.get("result") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    let is_error = obj.get("is_error").and_then(Value::as_bool).unwrap_or(false)
        || obj
            .get("subtype")
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("error"));
    let usage = obj.get("usage").cloned().unwrap_or(Value::Null);
    let tokens = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    Ok(AgentAnswer {
        text,
        is_error,
        usage: AgentUsage {
            input_tokens: tokens("input_tokens")
                + tokens("cache_creation_input_tokens")
                + tokens("cache_read_input_tokens"),
            output_tokens: tokens("output_tokens"),
            cost_usd: obj.get("total_cost_usd").and_then(Value::as_f64).unwrap_or(0.0),
        },
    })
}

/// Codex `exec --json` prints one event per line; the last `agent_message` item is the answer and
/// `turn.completed` events carry usage.
fn parse_codex_jsonl(stdout: &str) -> Result<AgentAnswer, String> {
    let mut answer = AgentAnswer::default();
    let mut saw_event = false;
    let mut last_error = None;
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        saw_event = true;
        match event.get("type").and_then(Value::as_str).unwrap_or_default() {
            "item.completed" => {
                let item = event.get("item").cloned().unwrap_or(Value::Null);
                let item_type = item.get("type").and_then(Value::as_str).unwrap_or_default();
                if item_type == "agent_message" || item_type == "assistant_message" {
                    if let Some(text) = item.get("text").and_then(Value::as_str) {
                        answer.text = text.to_string();
                    }
                } else if item_type == "error" {
                    last_error = item.get("message").and_then(Value::as_str).map(str::to_string);
                }
            }
            "turn.completed" => {
                let usage = event.get("usage").cloned().unwrap_or(Value::Null);
                let tokens = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
                answer.usage.input_tokens += tokens("input_tokens");
                answer.usage.output_tokens += tokens("output_tokens");
            }
            "turn.failed" => {
                last_error = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or(Some("turn failed".to_string()));
            }
            "error" => {
                last_error = event.get("message").and_then(Value::as_str).map(str::to_string);
            }
            _ => {}
        }
    }
    if !saw_event {
        return Err(format!(
            "stdout is not Codex JSONL (no JSON events): {}",
            crate::text::excerpt(stdout, 200)
        ));
    }
    if let (true, Some(err)) = (answer.text.is_empty(), last_error) {
        answer.is_error = true;
        answer.text = err;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape Claude Code 2.1 prints with `-p --output-format json` (see shared/docs/tools.md).
    const CLAUDE_OK: &str = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":4890,"num_turns":2,"result":"MOCK-REPLY-42","stop_reason":"end_turn","session_id":"0b5c","total_cost_usd":0.0123,"usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":5,"output_tokens":42},"modelUsage":{},"permission_denials":[],"terminal_reason":"completed"}"#;
    const CLAUDE_NOT_LOGGED_IN: &str = r#"{"type":"result","subtype":"success","is_error":true,"result":"Not logged in · Please run /login","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}"#;

    #[test]
    fn claude_json_result_usage_and_cost() {
        let a = parse_agent_output(OutputFormat::ClaudeJson, CLAUDE_OK).unwrap();
        assert_eq!(a.text, "MOCK-REPLY-42");
        assert!(!a.is_error);
        assert_eq!(a.usage.input_tokens, 125);
        assert_eq!(a.usage.output_tokens, 42);
        assert!((a.usage.cost_usd - 0.0123).abs() < 1e-9);
    }

    #[test]
    fn claude_is_error_counts_even_when_subtype_says_success() {
        let a = parse_agent_output(OutputFormat::ClaudeJson, CLAUDE_NOT_LOGGED_IN).unwrap();
        assert!(a.is_error);
        assert!(a.text.contains("Not logged in"));
    }

    #[test]
    fn claude_stream_json_uses_the_final_result_line() {
        let stream = format!(
            "{}\n{}\n{}\n",
            r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"s","tools":[]}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}"#,
            CLAUDE_OK
        );
        assert_eq!(
            parse_agent_output(OutputFormat::ClaudeJson, &stream).unwrap().text,
            "MOCK-REPLY-42"
        );
    }

    #[test]
    fn claude_garbage_and_empty_output_are_errors() {
        assert!(
            parse_agent_output(OutputFormat::ClaudeJson, "")
                .unwrap_err()
                .contains("printed nothing")
        );
        assert!(
            parse_agent_output(OutputFormat::ClaudeJson, "Segmentation fault")
                .unwrap_err()
                .contains("not Claude Code JSON")
        );
    }

    #[test]
    fn codex_jsonl_last_agent_message_and_usage() {
        let out = r#"{"type":"thread.started","thread_id":"t1"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"thinking"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"ls","aggregated_output":"a\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"{\"approved\": true}"}}
{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":100,"output_tokens":80}}"#;
        let a = parse_agent_output(OutputFormat::CodexJsonl, out).unwrap();
        assert_eq!(a.text, "{\"approved\": true}");
        assert!(!a.is_error);
        assert_eq!(a.usage.input_tokens, 1200);
        assert_eq!(a.usage.output_tokens, 80);
    }

    #[test]
    fn codex_network_errors_are_reported_as_errors() {
        // What codex 0.169 prints offline (shared/docs/tools.md).
        let out = r#"{"type":"thread.started","thread_id":"t1"}
{"type":"turn.started"}
{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}"#;
        let a = parse_agent_output(OutputFormat::CodexJsonl, out).unwrap();
        assert!(a.is_error);
        assert!(a.text.contains("waiting for network"));
        assert!(parse_agent_output(OutputFormat::CodexJsonl, "plain words").is_err());
    }

    #[test]
    fn text_output_is_stdout() {
        assert_eq!(
            parse_agent_output(OutputFormat::Text, "  answer\n").unwrap().text,
            "answer"
        );
    }
}
