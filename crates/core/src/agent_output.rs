//! Reading what an agent CLI printed: its final answer, whether it reported an error, and its usage.
//! Agents' exit codes are unreliable (aider exits 0 after failing), so success is judged from the
//! output itself. Claude Code, Codex and OpenCode print JSON; aider prints text (and CHUM reads
//! its exact usage from its analytics log, [`aider_analytics_usage`]).

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
        OutputFormat::Aider => parse_aider(stdout),
        OutputFormat::OpencodeJsonl => parse_opencode_jsonl(stdout),
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

/// Aider `--no-pretty` prints its banner (`Aider v...` and a line per setting), a blank line,
/// then per request to the model the reply and a usage report (`Tokens: 1.2k sent, 150 received.
/// Cost: $0.01 message, $0.02 session.`), then what it did (`Applied edit to calc.py`). It asks
/// again after adding a file a reply edits, and applies the last reply's edits: the answer is the
/// text before the last usage report. No usage report means the model never answered (aider
/// prints the error and exits 0): an error answer. The tokens read here are rounded (`1.2k`);
/// CHUM replaces them with the exact ones of aider's analytics log ([`aider_analytics_usage`]).
fn parse_aider(stdout: &str) -> Result<AgentAnswer, String> {
    let lines: Vec<&str> = stdout.lines().collect();
    let Some(banner) = lines.iter().position(|l| l.starts_with("Aider v")) else {
        return Err(if stdout.trim().is_empty() {
            "the agent printed nothing on stdout (expected aider's output)".to_string()
        } else {
            format!(
                "stdout is not aider's output (no \"Aider v\" banner): {}",
                crate::text::excerpt(stdout.trim(), 200)
            )
        });
    };
    let body = banner
        + lines[banner..]
            .iter()
            .position(|l| l.trim().is_empty())
            .unwrap_or(lines.len() - banner);
    let reports: Vec<usize> = (body..lines.len())
        .filter(|&i| lines[i].starts_with("Tokens: "))
        .collect();
    let mut answer = AgentAnswer::default();
    for &i in &reports {
        let (input, output, cost) = aider_report(lines[i], lines.get(i + 1).copied().unwrap_or_default());
        answer.usage.input_tokens += input;
        answer.usage.output_tokens += output;
        answer.usage.cost_usd = cost.unwrap_or(answer.usage.cost_usd);
    }
    let (from, to) = match reports.as_slice() {
        [] => (body, lines.len()),
        [last] => (body, *last),
        [.., previous, last] => (previous + 1, *last),
    };
    answer.text = lines[from.min(to)..to].join("\n").trim().to_string();
    answer.is_error = reports.is_empty();
    Ok(answer)
}

/// One aider usage report: tokens sent (cache writes and hits included) and received, and the
/// session's cost so far (on the same line or, with cache figures, the next).
fn aider_report(line: &str, next: &str) -> (u64, u64, Option<f64>) {
    let tokens = |figure: &str| -> u64 {
        let figure = figure.trim();
        match figure.strip_suffix('k') {
            Some(k) => (k.parse::<f64>().unwrap_or(0.0) * 1000.0).round() as u64,
            None => figure.parse().unwrap_or(0),
        }
    };
    let (mut input, mut output) = (0, 0);
    let counts = line
        .trim_start_matches("Tokens: ")
        .split(". Cost:")
        .next()
        .unwrap_or_default();
    for part in counts.trim_end_matches('.').split(", ") {
        if let Some((figure, what)) = part.trim().split_once(' ') {
            match what {
                "sent" | "cache write" | "cache hit" => input += tokens(figure),
                "received" => output += tokens(figure),
                _ => {}
            }
        }
    }
    let cost = [line, next].iter().find_map(|l| {
        let rest = &l[l.find("message, $")? + "message, $".len()..];
        rest.split(' ').next()?.parse::<f64>().ok()
    });
    (input, output, cost)
}

/// The exact usage in aider's analytics log (`--analytics-log`, one JSON event a line): every
/// `message_send` event's tokens, and the session's cost. `None` when it records no request.
pub fn aider_analytics_usage(log: &str) -> Option<AgentUsage> {
    let mut usage = None::<AgentUsage>;
    for event in log.lines().filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok()) {
        if event["event"] != "message_send" {
            continue;
        }
        let properties = &event["properties"];
        let total = usage.get_or_insert_with(AgentUsage::default);
        total.input_tokens += properties["prompt_tokens"].as_u64().unwrap_or(0);
        total.output_tokens += properties["completion_tokens"].as_u64().unwrap_or(0);
        total.cost_usd = properties["total_cost"].as_f64().unwrap_or(total.cost_usd);
    }
    usage
}

/// OpenCode `run --format json` prints one event per line: `text` parts (the answer is the text
/// of the last message that has any), `tool_use` parts, `step_finish` parts with each model
/// request's `tokens` and `cost`, and `error` events.
fn parse_opencode_jsonl(stdout: &str) -> Result<AgentAnswer, String> {
    let mut answer = AgentAnswer::default();
    let mut saw_event = false;
    let mut last_message = String::new();
    let mut last_error = None;
    for event in stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
    {
        saw_event = true;
        let part = &event["part"];
        match event["type"].as_str().unwrap_or_default() {
            "text" => {
                let message = part["messageID"].as_str().unwrap_or_default();
                if message != last_message {
                    answer.text.clear();
                    last_message = message.to_string();
                }
                answer.text.push_str(part["text"].as_str().unwrap_or_default());
            }
            "step_finish" => {
                let tokens = &part["tokens"];
                let count = |v: &Value| v.as_u64().unwrap_or(0);
                answer.usage.input_tokens +=
                    count(&tokens["input"]) + count(&tokens["cache"]["read"]) + count(&tokens["cache"]["write"]);
                answer.usage.output_tokens += count(&tokens["output"]) + count(&tokens["reasoning"]);
                answer.usage.cost_usd += part["cost"].as_f64().unwrap_or(0.0);
            }
            "error" => {
                let error = &event["error"];
                last_error = Some(
                    error["data"]["message"]
                        .as_str()
                        .or(error["name"].as_str())
                        .unwrap_or("OpenCode reported an error")
                        .to_string(),
                );
            }
            _ => {}
        }
    }
    if !saw_event {
        return Err(format!(
            "stdout is not OpenCode JSON (no JSON events): {}",
            crate::text::excerpt(stdout, 200)
        ));
    }
    if let Some(error) = last_error {
        answer.is_error = true;
        answer.text = error;
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

    // What aider 0.86.2 printed against the model server: it added calc.py to the chat and asked again.
    const AIDER_OK: &str = "Analytics have been permanently disabled.\n\nAider v0.86.2\nModel: openai/scripted with diff edit format\nGit repo: none\nRepo-map: disabled\n\ncalc.py\n```\n<<<<<<< SEARCH\n    return a + b\n=======\n    return a * b\n>>>>>>> REPLACE\n```\n\nDone, first.\n\nTokens: 1.2k sent, 150 received.\n\ncalc.py\n{\"approved\": true}\n\nTokens: 12k sent, 1.5k cache hit, 150 received. Cost: $0.0040 message, $0.0081 session.\n\nApplied edit to calc.py\n";

    #[test]
    fn aider_answer_is_the_last_reply_and_usage_its_reports() {
        let a = parse_agent_output(OutputFormat::Aider, AIDER_OK).unwrap();
        assert_eq!(a.text, "calc.py\n{\"approved\": true}");
        assert!(!a.is_error);
        assert_eq!(
            (a.usage.input_tokens, a.usage.output_tokens),
            (1200 + 12000 + 1500, 300)
        );
        assert!((a.usage.cost_usd - 0.0081).abs() < 1e-12);
    }

    #[test]
    fn aider_without_a_usage_report_never_got_an_answer() {
        let out =
            "Aider v0.86.2\nModel: openai/x with diff edit format\n\nlitellm.APIConnectionError: Connection refused\n";
        let a = parse_agent_output(OutputFormat::Aider, out).unwrap();
        assert!(a.is_error);
        assert!(a.text.contains("Connection refused"), "{}", a.text);
        assert!(parse_agent_output(OutputFormat::Aider, "usage: aider [-h]").is_err());
        assert!(parse_agent_output(OutputFormat::Aider, "").is_err());
    }

    #[test]
    fn aider_analytics_log_has_the_exact_usage() {
        let log = r#"{"event": "launched", "properties": {}}
{"event": "message_send", "properties": {"prompt_tokens": 1200, "completion_tokens": 150, "cost": 0.003, "total_cost": 0.003}}
{"event": "message_send", "properties": {"prompt_tokens": 1210, "completion_tokens": 151, "cost": 0.003, "total_cost": 0.006}}"#;
        let usage = aider_analytics_usage(log).unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (2410, 301));
        assert!((usage.cost_usd - 0.006).abs() < 1e-12);
        assert_eq!(aider_analytics_usage(r#"{"event": "exit"}"#), None);
    }

    #[test]
    fn opencode_jsonl_last_message_text_and_summed_steps() {
        // The shape OpenCode 1.18.33 prints with `run --format json`.
        let out = r#"{"type":"step_start","part":{"messageID":"m1","type":"step-start"}}
{"type":"tool_use","part":{"messageID":"m1","type":"tool","tool":"edit","state":{"status":"completed"}}}
{"type":"step_finish","part":{"messageID":"m1","reason":"tool-calls","tokens":{"input":1200,"output":150,"reasoning":0,"cache":{"write":0,"read":0}},"cost":0}}
{"type":"text","part":{"messageID":"m2","type":"text","text":"Added "}}
{"type":"text","part":{"messageID":"m2","type":"text","text":"multiply()."}}
{"type":"step_finish","part":{"messageID":"m2","reason":"stop","tokens":{"input":1000,"output":100,"reasoning":7,"cache":{"write":0,"read":200}},"cost":0.25}}"#;
        let a = parse_agent_output(OutputFormat::OpencodeJsonl, out).unwrap();
        assert_eq!(a.text, "Added multiply().");
        assert!(!a.is_error);
        assert_eq!((a.usage.input_tokens, a.usage.output_tokens), (2400, 257));
        assert!((a.usage.cost_usd - 0.25).abs() < 1e-12);
    }

    #[test]
    fn opencode_error_events_are_errors() {
        let out = r#"{"type":"error","sessionID":"s","error":{"name":"UnknownError","data":{"message":"Unexpected server error."}}}"#;
        let a = parse_agent_output(OutputFormat::OpencodeJsonl, out).unwrap();
        assert!(a.is_error && a.text == "Unexpected server error.", "{a:?}");
        assert!(parse_agent_output(OutputFormat::OpencodeJsonl, "Error: no such model").is_err());
    }

    #[test]
    fn text_output_is_stdout() {
        assert_eq!(
            parse_agent_output(OutputFormat::Text, "  answer\n").unwrap().text,
            "answer"
        );
    }
}
