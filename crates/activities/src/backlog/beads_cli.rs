//! The Beads CLI backend, for teams that run Beads itself: shells out to `bd` or `br` with
//! `--json` and reads both of their output shapes (a bare array, or `{"issues": [...]}`). The
//! tool's own stderr is the error.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Map, Value};
use tokio::process::Command;

use crate::backlog::NewBead;

/// Why the `bd`/`br` CLI did not answer as asked. The tool's own stderr is in the message.
#[derive(Debug, thiserror::Error)]
pub enum BeadsCliError {
    #[error("cannot run {program}: {source}; install it or set the project's beads_backend = \"native\"")]
    Start { program: String, source: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("`{command}` printed no JSON ({detail})")]
    NotJson { command: String, detail: String },
    #[error("bead {id} not found")]
    NotFound { id: String },
    /// The JSON is not the shape `bd`/`br` answer with.
    #[error("{0}")]
    Answer(String),
}

/// The issues in a `--json` answer: a bare array (`ready`, `show`, `update`, `close`), the
/// `{"issues": [...]}` envelope (`list`), or one object.
pub fn parse_issue_list(value: &Value) -> Result<Vec<Map<String, Value>>, BeadsCliError> {
    let list: &[Value] = match value {
        Value::Array(items) => items,
        Value::Object(obj) if obj.get("issues").is_some_and(Value::is_array) => {
            obj["issues"].as_array().map(Vec::as_slice).unwrap_or_default()
        }
        Value::Object(obj) if obj.contains_key("id") => return Ok(vec![obj.clone()]),
        other => {
            return Err(BeadsCliError::Answer(format!(
                "not a list of issues: {}",
                chum_core::text::excerpt(&other.to_string(), 200)
            )));
        }
    };
    Ok(list.iter().filter_map(|v| v.as_object().cloned()).collect())
}

/// The id in a `create --json` answer (one issue object, or a list of one).
pub fn parse_created_id(value: &Value) -> Result<String, BeadsCliError> {
    parse_issue_list(value)?
        .first()
        .and_then(|o| o.get("id").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| BeadsCliError::Answer("the create answer has no id".to_string()))
}

pub struct BeadsCli {
    pub program: PathBuf,
    pub repo: PathBuf,
}

impl BeadsCli {
    async fn run(&self, args: &[&str]) -> Result<Value, BeadsCliError> {
        let output = Command::new(&self.program)
            .args(args)
            .arg("--json")
            .current_dir(&self.repo)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| BeadsCliError::Start {
                program: self.program.display().to_string(),
                source,
            })?;
        let command = || format!("{} {}", self.program.display(), args.join(" "));
        if !output.status.success() {
            return Err(BeadsCliError::Failed {
                command: command(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.trim()).map_err(|e| BeadsCliError::NotJson {
            command: command(),
            detail: e.to_string(),
        })
    }

    pub async fn list(&self) -> Result<Vec<Map<String, Value>>, BeadsCliError> {
        parse_issue_list(&self.run(&["list", "--all"]).await?)
    }

    pub async fn show(&self, id: &str) -> Result<Map<String, Value>, BeadsCliError> {
        parse_issue_list(&self.run(&["show", id]).await?)?
            .into_iter()
            .next()
            .ok_or_else(|| BeadsCliError::NotFound { id: id.to_string() })
    }

    /// The tool's own ready list (it knows the dependencies; `list` only counts them).
    pub async fn ready(&self) -> Result<Vec<Map<String, Value>>, BeadsCliError> {
        parse_issue_list(&self.run(&["ready"]).await?)
    }

    pub async fn create(&self, new: &NewBead) -> Result<String, BeadsCliError> {
        let priority = new.priority.to_string();
        let mut args = vec![
            "create",
            new.title.as_str(),
            "-p",
            &priority,
            "-t",
            new.issue_type.as_str(),
        ];
        if !new.description.is_empty() {
            args.extend(["-d", new.description.as_str()]);
        }
        if !new.acceptance_criteria.is_empty() {
            args.extend(["--acceptance", new.acceptance_criteria.as_str()]);
        }
        if let Some(id) = &new.id {
            args.extend(["--id", id.as_str()]);
        }
        let labels = new.labels.join(",");
        if !labels.is_empty() {
            args.extend(["--labels", labels.as_str()]);
        }
        let id = parse_created_id(&self.run(&args).await?)?;
        for (target, kind) in &new.dependencies {
            self.add_dependency(&id, target, kind).await?;
        }
        Ok(id)
    }

    pub async fn set_status(&self, id: &str, status: &str) -> Result<(), BeadsCliError> {
        self.run(&["update", id, "--status", status]).await.map(|_| ())
    }

    pub async fn claim(&self, id: &str) -> Result<(), BeadsCliError> {
        self.run(&["update", id, "--status", "in_progress", "--assignee", "chum"])
            .await
            .map(|_| ())
    }

    pub async fn append_notes(&self, id: &str, notes: &str) -> Result<(), BeadsCliError> {
        self.run(&["update", id, "--append-notes", notes]).await.map(|_| ())
    }

    pub async fn set_priority(&self, id: &str, priority: i64) -> Result<(), BeadsCliError> {
        self.run(&["update", id, "--priority", &priority.to_string()])
            .await
            .map(|_| ())
    }

    pub async fn close(&self, id: &str, reason: &str) -> Result<(), BeadsCliError> {
        self.run(&["close", id, "--reason", reason]).await.map(|_| ())
    }

    pub async fn add_dependency(&self, id: &str, depends_on: &str, kind: &str) -> Result<(), BeadsCliError> {
        self.run(&["dep", "add", id, depends_on, "--type", kind])
            .await
            .map(|_| ())
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }
}
