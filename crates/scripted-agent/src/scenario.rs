//! The scenario file: what the scripted agent does for each (role, bead, attempt).
//!
//! ```toml
//! [usage]                      # reported on every answer unless a step has its own
//! input_tokens = 1200
//! output_tokens = 300
//! cost_usd = 0.0042
//!
//! [[step]]
//! role = "planner"             # CHUM_ROLE; omitted = any role
//! bead = "tk-1a"               # CHUM_BEAD_ID; omitted = any bead
//! attempt = 1                  # CHUM_ATTEMPT (the plan round for planners); omitted = any
//! handoff = 0                  # CHUM_HANDOFF (redo number within the attempt); omitted = any
//! provider = "scripted-a"      # CHUM_PROVIDER (the provider name in chum.toml); omitted = any
//! candidate = 2                # CHUM_CANDIDATE (Monte Carlo candidate, 0 = none); omitted = any
//! prompt_contains = ["..."]   # match only prompts containing all of these
//! expect_prompt_contains = ["..."]   # fail (exit 4) if the prompt lacks one of these
//! sleep_ms = 0                 # pretend to think
//! # then exactly one action:
//! answer = '{"summary": "..."}'       # print this as the `result`
//! edits = [{ path = "a.py", write = "..." },            # and edit files first: whole file,
//!          { path = "b.py", find = "x", replace = "y" }, # or replace the first occurrence,
//!          { path = "c.py", delete = true }]             # or delete
//! is_error = true              # with `answer`: report it as an error (like "Not logged in")
//! fail = { exit_code = 2, stderr = "boom" }   # exit non-zero without an answer
//! hang = true                  # never answer (and hold a child process)
//! garbage = "not json"         # print this instead of the JSON contract
//! tool_calls = [{ name = "mcp__everything__echo", input = { message = "hi" } }]
//!                              # model server only: call these tools first; `{tool_results}` in
//!                              # the answer is replaced by what they returned
//! ```
//! `{added_line:N}` in an answer stands for the N-th line the diff in the prompt adds (counting
//! lines of at least 8 non-blank characters), JSON-escaped: a scripted reviewer quotes the change
//! it sees, as a model would, whatever the executor of the test wrote.
//!
//! The first matching step wins, so put specific steps before general ones.

use std::path::{Component, Path};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub usage: Usage,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailSpec {
    #[serde(default = "default_exit")]
    pub exit_code: u8,
    #[serde(default)]
    pub stderr: String,
}

fn default_exit() -> u8 {
    1
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    pub path: String,
    pub write: Option<String>,
    pub find: Option<String>,
    pub replace: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub role: Option<String>,
    pub bead: Option<String>,
    pub attempt: Option<u32>,
    pub handoff: Option<u32>,
    pub provider: Option<String>,
    pub candidate: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_contains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_prompt_contains: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sleep_ms: u64,
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<Edit>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_error: bool,
    pub fail: Option<FailSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub hang: bool,
    pub garbage: Option<String>,
    pub usage: Option<Usage>,
    /// A shell command run (`sh -c`, in the working directory) before the action, like a real
    /// agent's shell tool; its exit code and output are appended to the answer. Tests use it to
    /// try to break out of the sandbox.
    pub shell: Option<String>,
    /// Output to write before the action, like an agent gone haywire: `bytes` of `x` on
    /// `stream` ("stdout" or "stderr"). Tests use it to check that captures are bounded.
    pub flood: Option<Flood>,
    /// Model server only: tools to call (one per turn) before the edits, e.g. an MCP server's
    /// `mcp__everything__echo`. `{tool_results}` in the answer is replaced by what they returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub name: String,
    #[serde(default = "empty_input")]
    pub input: serde_json::Value,
}

fn empty_input() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Flood {
    pub bytes: u64,
    #[serde(default = "default_flood_stream")]
    pub stream: String,
}

fn default_flood_stream() -> String {
    "stdout".to_string()
}

/// Who is calling: from the flags or CHUM's environment variables.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub role: String,
    pub bead: String,
    pub attempt: u32,
    pub handoff: u32,
    pub provider: String,
    pub candidate: u32,
}

pub enum Action<'a> {
    Answer {
        text: String,
        edits: &'a [Edit],
        is_error: bool,
    },
    Fail {
        exit_code: u8,
        stderr: String,
    },
    Hang,
    Garbage(String),
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading scenario {}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).with_context(|| format!("parsing scenario {}", path.display()))?;
        for (i, step) in scenario.steps.iter().enumerate() {
            step.action()
                .with_context(|| format!("{}: step {}", path.display(), i + 1))?;
        }
        Ok(scenario)
    }

    pub fn find(&self, call: &Invocation, prompt: &str) -> Option<&Step> {
        self.steps.iter().find(|s| {
            s.role.as_deref().is_none_or(|r| r == call.role)
                && s.bead.as_deref().is_none_or(|b| b == call.bead)
                && s.attempt.is_none_or(|a| a == call.attempt)
                && s.handoff.is_none_or(|h| h == call.handoff)
                && s.provider.as_deref().is_none_or(|p| p == call.provider)
                && s.candidate.is_none_or(|c| c == call.candidate)
                && s.prompt_contains.iter().all(|needle| prompt.contains(needle.as_str()))
        })
    }
}

impl Step {
    pub fn describe(&self) -> String {
        let any = |v: Option<String>| v.unwrap_or_else(|| "*".into());
        format!(
            "role={} bead={} attempt={} handoff={} provider={}",
            any(self.role.clone()),
            any(self.bead.clone()),
            any(self.attempt.map(|a| a.to_string())),
            any(self.handoff.map(|h| h.to_string())),
            any(self.provider.clone())
        )
    }

    pub fn action(&self) -> Result<Action<'_>> {
        let chosen = [
            self.answer.is_some() || !self.edits.is_empty(),
            self.fail.is_some(),
            self.hang,
            self.garbage.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if chosen != 1 {
            bail!("a step needs exactly one of `answer` (with optional `edits`), `fail`, `hang`, `garbage`");
        }
        if let Some(f) = &self.fail {
            return Ok(Action::Fail {
                exit_code: f.exit_code,
                stderr: f.stderr.clone(),
            });
        }
        if self.hang {
            return Ok(Action::Hang);
        }
        if let Some(g) = &self.garbage {
            return Ok(Action::Garbage(g.clone()));
        }
        for edit in &self.edits {
            edit.check()?;
        }
        Ok(Action::Answer {
            text: self.answer.clone().unwrap_or_else(|| "Done.".to_string()),
            edits: &self.edits,
            is_error: self.is_error,
        })
    }
}

impl Edit {
    fn check(&self) -> Result<()> {
        let p = Path::new(&self.path);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            bail!("edit path {:?} must stay inside the working directory", self.path);
        }
        let kinds = [
            self.write.is_some(),
            self.find.is_some() || self.replace.is_some(),
            self.delete,
        ];
        if kinds.iter().filter(|b| **b).count() != 1 || (self.find.is_some() != self.replace.is_some()) {
            bail!(
                "edit of {:?} needs exactly one of `write`, `find` + `replace`, `delete = true`",
                self.path
            );
        }
        Ok(())
    }

    pub fn apply(&self, dir: &Path) -> Result<()> {
        let path = dir.join(&self.path);
        if self.delete {
            return std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()));
        }
        if let Some(content) = &self.write {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            return std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()));
        }
        let (Some(find), Some(replace)) = (&self.find, &self.replace) else {
            bail!("nothing to do")
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        if !text.contains(find.as_str()) {
            bail!("{} does not contain the text to replace: {find:?}", path.display());
        }
        std::fs::write(&path, text.replacen(find.as_str(), replace, 1))
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Fills `{added_line:N}` in an answer from the diff in the prompt (see the module docs).
pub fn fill_from_prompt(answer: &str, prompt: &str) -> String {
    if !answer.contains("{added_line:") {
        return answer.to_string();
    }
    let diff = prompt
        .split("```diff")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_default();
    let added: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| l[1..].trim())
        .filter(|l| l.chars().filter(|c| !c.is_whitespace()).count() >= 8)
        .collect();
    let mut out = answer.to_string();
    for (i, line) in added.iter().enumerate() {
        // A JSON string's inside: the quotes at each end go, any inside stay escaped.
        let quoted = serde_json::to_string(line).unwrap_or_default();
        let escaped = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
        out = out.replace(&format!("{{added_line:{}}}", i + 1), escaped);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, text).unwrap();
        Scenario::load(&path).unwrap()
    }

    fn call(role: &str, bead: &str, attempt: u32) -> Invocation {
        Invocation {
            role: role.into(),
            bead: bead.into(),
            attempt,
            handoff: 0,
            provider: "a".into(),
            candidate: 0,
        }
    }

    #[test]
    fn first_matching_step_wins() {
        let s = scenario(
            r#"
            [[step]]
            role = "executor"
            bead = "b-1"
            attempt = 1
            fail = { exit_code = 3, stderr = "x" }
            [[step]]
            role = "executor"
            answer = "general"
            "#,
        );
        assert!(matches!(
            s.find(&call("executor", "b-1", 1), "").unwrap().action().unwrap(),
            Action::Fail { exit_code: 3, .. }
        ));
        assert_eq!(
            s.find(&call("executor", "b-1", 2), "").unwrap().answer.as_deref(),
            Some("general")
        );
        assert!(s.find(&call("planner", "b-1", 1), "").is_none());
    }

    #[test]
    fn edits_write_patch_and_delete_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello world").unwrap();
        std::fs::write(dir.path().join("gone.txt"), "x").unwrap();
        for edit in [
            Edit {
                path: "sub/new.txt".into(),
                write: Some("new".into()),
                find: None,
                replace: None,
                delete: false,
            },
            Edit {
                path: "a.txt".into(),
                write: None,
                find: Some("world".into()),
                replace: Some("there".into()),
                delete: false,
            },
            Edit {
                path: "gone.txt".into(),
                write: None,
                find: None,
                replace: None,
                delete: true,
            },
        ] {
            edit.check().unwrap();
            edit.apply(dir.path()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/new.txt")).unwrap(), "new");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "hello there"
        );
        assert!(!dir.path().join("gone.txt").exists());
        let escape = Edit {
            path: "../x".into(),
            write: Some("x".into()),
            find: None,
            replace: None,
            delete: false,
        };
        assert!(escape.check().is_err());
    }

    #[test]
    fn a_step_with_two_actions_is_rejected_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[[step]]\nanswer = \"x\"\nhang = true\n").unwrap();
        let err = Scenario::load(&path).unwrap_err();
        assert!(format!("{err:#}").contains("exactly one"), "{err:#}");
    }

    #[test]
    fn an_answer_quotes_the_lines_the_diff_in_the_prompt_adds() {
        let prompt = "## The change\n```diff\n+++ b/calc.py\n+x = 1\n+def multiply(a, b):\n+    return \"a\" * b\n+NAME = \"bench-001\"\n```\n";
        let answer = fill_from_prompt(
            r#"{"e": "`{added_line:1}`", "f": "`{added_line:2}`", "g": "`{added_line:3}`"}"#,
            prompt,
        );
        assert_eq!(
            answer,
            r#"{"e": "`def multiply(a, b):`", "f": "`return \"a\" * b`", "g": "`NAME = \"bench-001\"`"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&answer).expect("still JSON");
        assert_eq!(parsed["g"], "`NAME = \"bench-001\"`");
    }
}
