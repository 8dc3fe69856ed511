//! `chum-scripted-agent --serve ADDR`: a scripted *model server* for the real agent CLIs.
//!
//! It speaks enough of three model APIs for real agent CLIs to run a CHUM phase offline:
//! - the Anthropic Messages API (`POST /v1/messages`, server-sent events, `count_tokens`, probes)
//!   for Claude Code: file edits come back as `Read` then `Write`/`Edit` tool calls;
//! - the OpenAI Responses API (`POST /v1/responses`, server-sent events) for Codex: file edits come
//!   back as `exec_command` calls running a small Python program that writes the file;
//! - the OpenAI Chat Completions API (`POST /v1/chat/completions`, `chat_completions.rs`) for
//!   OpenCode (its `read`/`edit`/`write` tool calls) and Aider (SEARCH/REPLACE blocks in the text).
//!
//! In each, the CLI itself carries out the edits in its working directory, then gets the
//! scenario's answer as the final text.
//!
//! The server sees what the model would see: the prompt. Role, bead, attempt and redo are read
//! from CHUM's prompt text; the provider is the `--provider` the server was started as.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use chum_scripted_agent::scenario::{self, Action, Edit, Invocation, Scenario, Usage};

mod chat_completions;

struct Served {
    scenario: Scenario,
    provider: String,
    record_dir: Option<PathBuf>,
}

pub fn serve(
    scenario: Scenario,
    listen: &str,
    port_file: Option<&Path>,
    provider: String,
    record_dir: Option<PathBuf>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        if let Some(path) = port_file {
            // Written whole, then renamed, so a reader never sees a partial port.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, addr.port().to_string()).context("writing the port file")?;
            std::fs::rename(&tmp, path).context("writing the port file")?;
        }
        eprintln!("chum-scripted-agent: model server for provider {provider:?} on http://{addr}");
        let state = Arc::new(Served {
            scenario,
            provider,
            record_dir,
        });
        let app = Router::new().fallback(any(handle)).with_state(state);
        axum::serve(listener, app).await.context("serving")
    })
}

async fn handle(State(st): State<Arc<Served>>, request: axum::extract::Request) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if method != axum::http::Method::POST {
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response();
    }
    let bytes = match axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}")),
    };
    if path.ends_with("/count_tokens") {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"input_tokens": 100}"#,
        )
            .into_response();
    }
    let request: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")),
    };
    if path.ends_with("/messages") {
        answer(&st, Api::Messages, &request).await
    } else if path.ends_with("/responses") {
        answer(&st, Api::Responses, &request).await
    } else if path.ends_with("/chat/completions") {
        answer(&st, Api::Chat, &request).await
    } else {
        api_error(
            StatusCode::NOT_FOUND,
            &format!("the scripted model server does not serve {path}"),
        )
    }
}

/// The text of the first user message: CHUM's prompt (the CLI adds `<system-reminder>` blocks).
fn prompt_of(request: &Value) -> String {
    let Some(first) = request["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &first["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The CLI's working directory, from its system prompt ("Primary working directory: ...").
fn working_directory(request: &Value) -> Option<PathBuf> {
    let system = request["system"].to_string();
    let start = system.find("working directory: ")? + "working directory: ".len();
    let rest = &system[start..];
    let end = rest.find(['\\', '"', '\n']).unwrap_or(rest.len());
    Some(PathBuf::from(&rest[..end]))
}

fn number_after(text: &str, marker: &str) -> Option<u32> {
    let start = text.find(marker)? + marker.len();
    let digits: String = text[start..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// What CHUM asked for, read from its prompt.
fn invocation(prompt: &str, provider: &str) -> Invocation {
    let role = ["planner", "executor", "reviewer"]
        .into_iter()
        .find(|r| prompt.contains(&format!("You are the {r}")))
        .unwrap_or("")
        .to_string();
    let bead = prompt
        .find("## Work item ")
        .map(|i| &prompt[i + "## Work item ".len()..])
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("")
        .trim()
        .to_string();
    let (attempt, handoff) = if let Some(h) = number_after(prompt, "## Redo ") {
        (
            number_after(prompt, &format!("## Redo {h} of attempt ")).unwrap_or(1),
            h,
        )
    } else if let Some(a) = number_after(prompt, "(this is attempt ") {
        (a, 0)
    } else {
        (number_after(prompt, "this is planning round ").unwrap_or(1), 0)
    };
    Invocation {
        role,
        bead,
        attempt,
        handoff,
        provider: provider.to_string(),
        candidate: 0,
    }
}

/// The CHUM prompt among a Responses API request's input messages.
fn responses_prompt(request: &Value) -> String {
    request["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["role"] == "user")
        .filter_map(|item| item["content"].as_array())
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .find(|t| t.contains("You are the "))
        .unwrap_or_default()
        .to_string()
}

/// The model API a request came in on.
#[derive(Clone, Copy)]
enum Api {
    /// Anthropic Messages (Claude Code).
    Messages,
    /// OpenAI Responses (Codex).
    Responses,
    /// OpenAI Chat Completions (OpenCode with tools, Aider without).
    Chat,
}

impl Api {
    fn prompt(self, request: &Value) -> String {
        match self {
            Api::Messages => prompt_of(request),
            Api::Responses => responses_prompt(request),
            Api::Chat => chat_completions::prompt(request),
        }
    }

    /// Whether the edits go in the reply's text (Aider offers the model no tools) rather than
    /// as tool calls.
    fn edits_in_text(self, request: &Value) -> bool {
        matches!(self, Api::Chat) && !chat_completions::offers_tools(request)
    }

    /// How far the conversation is: one result comes back per tool call made.
    fn turn(self, request: &Value) -> usize {
        let (list, kind) = match self {
            Api::Messages => ("messages", "tool_result"),
            Api::Responses => ("input", "function_call_output"),
            Api::Chat => return chat_completions::tool_results(request).len(),
        };
        let items = request[list].as_array().into_iter().flatten();
        items
            .flat_map(|item| std::iter::once(item).chain(item["content"].as_array().into_iter().flatten()))
            .filter(|v| v["type"] == kind)
            .count()
    }

    /// The tool calls that carry out the edits, one per turn.
    fn calls(self, edits: &[Edit], request: &Value) -> Result<Vec<(String, Value)>, String> {
        match self {
            Api::Messages => {
                let cwd = working_directory(request)
                    .ok_or("cannot tell the CLI's working directory from its system prompt")?;
                tool_calls(edits, &cwd)
            }
            Api::Responses => Ok(edit_commands(edits)?
                .into_iter()
                .map(|cmd| ("exec_command".to_string(), json!({"cmd": cmd})))
                .collect()),
            Api::Chat => chat_completions::tool_calls(edits, request),
        }
    }

    fn call_id(self, turn: usize) -> String {
        match self {
            Api::Messages => format!("toolu_{turn:02}"),
            Api::Responses | Api::Chat => format!("call_{turn:02}"),
        }
    }

    fn stream(self, request: &Value, usage: &Usage, reply: Reply) -> Response {
        match self {
            Api::Messages => stream(request["model"].as_str().unwrap_or("scripted"), usage, reply),
            Api::Responses => responses_stream(usage, reply),
            Api::Chat => chat_completions::respond(request, usage, reply),
        }
    }

    /// The text of every tool result the CLI sent back so far, in order.
    fn tool_results(self, request: &Value) -> String {
        match self {
            Api::Chat => chat_completions::tool_results(request).join("\n"),
            Api::Messages | Api::Responses => tool_results(request),
        }
    }
}

/// Answers one request from the scenario: the next tool call, or the final text.
async fn answer(st: &Served, api: Api, request: &Value) -> Response {
    let prompt = api.prompt(request);
    let call = invocation(&prompt, &st.provider);
    let turn = api.turn(request);
    let step = match prepare(st, &call, &prompt, turn).await {
        Ok(step) => step,
        Err(response) => return response,
    };
    let usage = step.usage.clone().unwrap_or_else(|| st.scenario.usage.clone());
    match step.action() {
        Err(e) => api_error(StatusCode::BAD_REQUEST, &format!("{e:#}")),
        Ok(Action::Hang) => {
            // A model that never answers: the CLI waits until CHUM's timeout kills it.
            std::future::pending::<()>().await;
            api_error(StatusCode::GATEWAY_TIMEOUT, "unreachable")
        }
        Ok(Action::Fail { stderr, .. }) => api_error(StatusCode::INTERNAL_SERVER_ERROR, &stderr),
        Ok(Action::Garbage(text)) => api.stream(request, &usage, Reply::Text(text)),
        // Aider: the edits and the answer in one reply, every time it asks (it asks again after
        // adding a file the reply edits to its chat, and applies the blocks of the last reply).
        Ok(Action::Answer { text, edits, .. }) if api.edits_in_text(request) => {
            match chat_completions::edit_blocks(edits) {
                Err(e) => api_error(StatusCode::BAD_REQUEST, &e),
                Ok(blocks) => {
                    let text = scenario::fill_from_prompt(&text, &prompt);
                    api.stream(request, &usage, Reply::Text(format!("{blocks}{text}")))
                }
            }
        }
        Ok(Action::Answer { text, edits, .. }) => match api.calls(edits, request) {
            Err(e) => api_error(StatusCode::BAD_REQUEST, &e),
            Ok(edit_calls) => match step
                .tool_calls
                .iter()
                .map(|c| (c.name.clone(), c.input.clone()))
                .chain(edit_calls)
                .nth(turn)
            {
                Some((name, input)) => api.stream(
                    request,
                    &usage,
                    Reply::Tool {
                        id: api.call_id(turn),
                        name,
                        input,
                    },
                ),
                None => {
                    let results = api.tool_results(request);
                    if let (false, Some(dir)) = (step.tool_calls.is_empty(), &st.record_dir) {
                        let name = format!(
                            "{}-{}-{}-{}.tool-results.txt",
                            call.role, call.bead, call.attempt, call.handoff
                        );
                        let _ = std::fs::write(dir.join(name), &results);
                    }
                    let text = scenario::fill_from_prompt(&text, &prompt);
                    api.stream(request, &usage, Reply::Text(text.replace("{tool_results}", &results)))
                }
            },
        },
    }
}

/// The text of every tool result the CLI sent back so far (Messages API), in order.
fn tool_results(request: &Value) -> String {
    let blocks = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result");
    let mut out = Vec::new();
    for block in blocks {
        match &block["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(parts) => out.extend(parts.iter().filter_map(|p| p["text"].as_str()).map(str::to_string)),
            _ => {}
        }
    }
    out.join("\n")
}

/// Shell commands that carry out the edits (for CLIs whose tool is a shell). The path and the
/// contents travel base64-encoded, so no quoting can go wrong.
fn edit_commands(edits: &[Edit]) -> Result<Vec<String>, String> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    edits
        .iter()
        .map(|edit| {
            let program = if let Some(content) = &edit.write {
                format!(
                    "import base64, pathlib; p = pathlib.Path(base64.b64decode('{}').decode()); \
                     p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(base64.b64decode('{}'))",
                    b64(&edit.path),
                    b64(content)
                )
            } else if let (Some(find), Some(replace)) = (&edit.find, &edit.replace) {
                format!(
                    "import base64, pathlib, sys; p = pathlib.Path(base64.b64decode('{}').decode()); \
                     t = p.read_text(); f = base64.b64decode('{}').decode(); \
                     sys.exit('text to replace not found') if f not in t else \
                     p.write_text(t.replace(f, base64.b64decode('{}').decode(), 1))",
                    b64(&edit.path),
                    b64(find),
                    b64(replace)
                )
            } else {
                return Err(format!("the model server cannot delete {}", edit.path));
            };
            Ok(format!("python3 -c \"{program}\""))
        })
        .collect()
}

/// One streamed Responses API reply, as server-sent events.
fn responses_stream(usage: &Usage, reply: Reply) -> Response {
    let item = match reply {
        Reply::Text(text) => {
            json!({"type": "message", "id": "msg_scripted", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]})
        }
        Reply::Tool { id, name, input } => json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": id,
            "name": name, "arguments": input.to_string(), "status": "completed"}),
    };
    let events = [
        json!({"type": "response.created", "response": {"id": "resp_scripted", "object": "response", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": {"id": "resp_scripted", "object": "response", "status": "completed",
            "output": [item], "usage": {"input_tokens": usage.input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.input_tokens + usage.output_tokens}}}),
    ];
    let body: String = events
        .iter()
        .map(|data| {
            format!(
                "event: {}\ndata: {data}\n\n",
                data["type"].as_str().unwrap_or("message")
            )
        })
        .collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Records the prompt (once per conversation), finds the step and checks what it expects.
async fn prepare<'a>(
    st: &'a Served,
    call: &Invocation,
    prompt: &str,
    turn: usize,
) -> Result<&'a scenario::Step, Response> {
    if let (0, Some(dir)) = (turn, &st.record_dir) {
        let name = format!(
            "{}-{}-{}-{}.prompt.md",
            call.role, call.bead, call.attempt, call.handoff
        );
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(name), prompt);
    }
    let Some(step) = st.scenario.find(call, prompt) else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            &format!("no scenario step matches {call:?}"),
        ));
    };
    if let Some(missing) = step
        .expect_prompt_contains
        .iter()
        .find(|n| !prompt.contains(n.as_str()))
    {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            &format!("the prompt does not contain the expected text {missing:?}"),
        ));
    }
    if step.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
    }
    Ok(step)
}

/// Claude Code's tool calls that carry out the edits: each file is read first, as the CLI
/// requires before it writes or edits an existing file.
fn tool_calls(edits: &[Edit], cwd: &Path) -> Result<Vec<(String, Value)>, String> {
    let mut calls = Vec::new();
    for edit in edits {
        let file = cwd.join(&edit.path).display().to_string();
        calls.push(("Read".to_string(), json!({"file_path": file})));
        if let Some(content) = &edit.write {
            calls.push(("Write".to_string(), json!({"file_path": file, "content": content})));
        } else if let (Some(find), Some(replace)) = (&edit.find, &edit.replace) {
            calls.push((
                "Edit".to_string(),
                json!({"file_path": file, "old_string": find, "new_string": replace}),
            ));
        } else {
            return Err(format!(
                "the model server cannot delete {} (no delete tool is allowed)",
                edit.path
            ));
        }
    }
    Ok(calls)
}

enum Reply {
    Text(String),
    Tool { id: String, name: String, input: Value },
}

/// One streamed message, as server-sent events.
fn stream(model: &str, usage: &Usage, reply: Reply) -> Response {
    let mut body = String::new();
    let mut event = |name: &str, data: Value| {
        body.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_scripted", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": 1}}}),
    );
    let stop = match reply {
        Reply::Text(text) => {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            );
            "end_turn"
        }
        Reply::Tool { id, name, input } => {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}),
            );
            "tool_use"
        }
    };
    event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": usage.output_tokens}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn api_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_role_bead_attempt_and_redo_from_chums_prompts() {
        let c = invocation(
            "You are the executor in CHUM...\n## Work item tk-1a: Add slugify\n...## Redo 2 of attempt 3: the work",
            "b",
        );
        assert_eq!(
            (c.role.as_str(), c.bead.as_str(), c.attempt, c.handoff),
            ("executor", "tk-1a", 3, 2)
        );
        let c = invocation(
            "You are the planner in CHUM\n## Work item x-1: t\n## Feedback on the previous plan (this is planning round 2)",
            "a",
        );
        assert_eq!((c.role.as_str(), c.attempt), ("planner", 2));
        let c = invocation(
            "You are the executor\n## Work item x-1: t\n(this is attempt 2, starting from a clean checkout)",
            "a",
        );
        assert_eq!((c.attempt, c.handoff), (2, 0));
    }

    #[test]
    fn finds_the_working_directory_in_the_system_prompt() {
        let request = json!({"system": [{"type": "text", "text": "# Environment\n - Primary working directory: /tmp/wt/1\n - Is a git repository: true"}]});
        assert_eq!(working_directory(&request), Some(PathBuf::from("/tmp/wt/1")));
    }
}
