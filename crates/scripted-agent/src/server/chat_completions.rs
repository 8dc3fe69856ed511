//! The OpenAI Chat Completions API (`POST /v1/chat/completions`), as two agent CLIs use it:
//! - OpenCode (its `@ai-sdk/openai-compatible` provider) streams and offers tools: file edits come
//!   back as its own `read`, then `edit` or `write` tool calls, with absolute paths under the
//!   working directory its system prompt names;
//! - Aider (through litellm) offers no tools: file edits come back in the reply's text as aider's
//!   SEARCH/REPLACE blocks (its `diff` edit format), which aider applies itself.
//!
//! Every answer reports the scenario's usage (`usage`; in a stream, the last chunk before
//! `[DONE]`, which OpenCode asks for with `stream_options.include_usage`).

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use chum_scripted_agent::scenario::{Edit, Usage};

use super::Reply;

/// The text of a message's `content`: a string, or the text of its parts.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// CHUM's prompt: the first user message that is one (Aider sends its own examples first, and
/// appends its edit-format rules to the prompt).
pub(super) fn prompt(request: &Value) -> String {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| content_text(&m["content"]))
        .find(|t| t.contains("You are the "))
        .unwrap_or_default()
}

/// The tool results sent back so far, in order (one per tool call made).
pub(super) fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| content_text(&m["content"]).unwrap_or_default())
        .collect()
}

/// Whether the CLI offers tools (OpenCode) or expects the edits in the reply's text (Aider).
pub(super) fn offers_tools(request: &Value) -> bool {
    request["tools"].as_array().is_some_and(|tools| !tools.is_empty())
}

/// The CLI's working directory, from its system prompt (OpenCode: "Working directory: ...").
fn working_directory(request: &Value) -> Option<PathBuf> {
    let system = request["messages"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "system")
        .filter_map(|m| content_text(&m["content"]))
        .collect::<Vec<_>>()
        .join("\n");
    let marker = "Working directory: ";
    let start = system.find(marker)? + marker.len();
    let line = system[start..].lines().next()?.trim();
    (!line.is_empty()).then(|| PathBuf::from(line))
}

/// OpenCode's tool calls that carry out the edits: each file is read first, as its `edit` and
/// `write` tools require of an existing file (reading a new one fails harmlessly).
pub(super) fn tool_calls(edits: &[Edit], request: &Value) -> Result<Vec<(String, Value)>, String> {
    let cwd = working_directory(request).ok_or("cannot tell the CLI's working directory from its system prompt")?;
    let mut calls = Vec::new();
    for edit in edits {
        let file = cwd.join(&edit.path).display().to_string();
        calls.push(("read".to_string(), json!({"filePath": file})));
        if let Some(content) = &edit.write {
            calls.push(("write".to_string(), json!({"filePath": file, "content": content})));
        } else if let (Some(find), Some(replace)) = (&edit.find, &edit.replace) {
            calls.push((
                "edit".to_string(),
                json!({"filePath": file, "oldString": find, "newString": replace}),
            ));
        } else {
            return Err(format!(
                "the model server cannot delete {} with OpenCode's tools",
                edit.path
            ));
        }
    }
    Ok(calls)
}

/// The edits as aider's SEARCH/REPLACE blocks. A `write` is a block with an empty SEARCH, which
/// aider applies by creating the file (to an existing file it would append: write new files only).
pub(super) fn edit_blocks(edits: &[Edit]) -> Result<String, String> {
    let line_ended = |s: &str| {
        if s.is_empty() || s.ends_with('\n') {
            s.to_string()
        } else {
            format!("{s}\n")
        }
    };
    let mut text = String::new();
    for edit in edits {
        let (find, replace) = match (&edit.write, &edit.find, &edit.replace) {
            (Some(content), _, _) => (String::new(), line_ended(content)),
            (None, Some(find), Some(replace)) => (line_ended(find), line_ended(replace)),
            _ => {
                return Err(format!(
                    "the model server cannot delete {} with aider's edit blocks",
                    edit.path
                ));
            }
        };
        text.push_str(&format!(
            "{}\n```\n<<<<<<< SEARCH\n{find}=======\n{replace}>>>>>>> REPLACE\n```\n\n",
            edit.path
        ));
    }
    Ok(text)
}

/// One answer: a JSON `chat.completion`, or, when the request asks to stream, its chunks as
/// server-sent events.
pub(super) fn respond(request: &Value, usage: &Usage, reply: Reply) -> Response {
    let model = request["model"].as_str().unwrap_or("scripted");
    let usage = json!({"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens});
    let (message, delta, finish) = match reply {
        Reply::Text(text) => (
            json!({"role": "assistant", "content": text}),
            json!({"role": "assistant", "content": text}),
            "stop",
        ),
        Reply::Tool { id, name, input } => {
            let call = |index: Option<u32>| {
                let mut call = json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": input.to_string()}});
                if let Some(index) = index {
                    call["index"] = json!(index);
                }
                call
            };
            (
                json!({"role": "assistant", "content": null, "tool_calls": [call(None)]}),
                json!({"role": "assistant", "tool_calls": [call(Some(0))]}),
                "tool_calls",
            )
        }
    };
    let chunk = |choices: Value, usage: Option<&Value>| {
        let mut chunk = json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": choices});
        if let Some(usage) = usage {
            chunk["usage"] = usage.clone();
        }
        chunk
    };
    let (content_type, body) = if request["stream"] == true {
        let chunks = [
            chunk(json!([{"index": 0, "delta": delta, "finish_reason": null}]), None),
            chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish}]), None),
            chunk(json!([]), Some(&usage)),
        ];
        let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        body.push_str("data: [DONE]\n\n");
        ("text/event-stream", body)
    } else {
        let completion = json!({"id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage});
        ("application/json", completion.to_string())
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(path: &str, find: &str, replace: &str) -> Edit {
        Edit {
            path: path.into(),
            write: None,
            find: Some(find.into()),
            replace: Some(replace.into()),
            delete: false,
        }
    }

    #[test]
    fn aider_gets_search_replace_blocks_and_new_files_an_empty_search() {
        let write = Edit {
            path: "t.py".into(),
            write: Some("x = 1".into()),
            find: None,
            replace: None,
            delete: false,
        };
        let blocks = edit_blocks(&[edit("a.py", "    return a\n", "    return b\n"), write]).unwrap();
        assert_eq!(
            blocks,
            "a.py\n```\n<<<<<<< SEARCH\n    return a\n=======\n    return b\n>>>>>>> REPLACE\n```\n\n\
             t.py\n```\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n```\n\n"
        );
    }

    #[test]
    fn opencode_reads_then_edits_under_its_working_directory() {
        let request = json!({"messages": [
            {"role": "system", "content": "You are opencode.\n<env>\n  Working directory: /w/t 1\n  Is directory a git repo: yes\n</env>"},
            {"role": "user", "content": "You are the executor"}]});
        let calls = tool_calls(&[edit("calc.py", "a", "b")], &request).unwrap();
        assert_eq!(calls[0], ("read".to_string(), json!({"filePath": "/w/t 1/calc.py"})));
        assert_eq!(
            calls[1],
            (
                "edit".to_string(),
                json!({"filePath": "/w/t 1/calc.py", "oldString": "a", "newString": "b"})
            )
        );
        assert_eq!(prompt(&request), "You are the executor");
    }
}
