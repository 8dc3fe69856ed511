//! The four checks a crystallized rule must pass, with the real semgrep CLI: valid, matches the
//! lesson's bad example, not its good one, and silent on the base branch.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chum_core::config::SemgrepSettings;
use chum_core::lesson::rule_fixture;
use chum_core::proto::Lesson;
use chum_core::text::excerpt;
use serde_json::Value;
use tokio::process::Command;

use crate::exec::{ChildEnv, ProgramError, given_path};
use crate::semgrep::locate_core;

/// Finds the `semgrep` CLI: the configured one, the one on PATH, or the one beside `semgrep-core`.
pub fn locate_cli(settings: &SemgrepSettings) -> Result<PathBuf, ProgramError> {
    if let Some(given) = given_path("the semgrep CLI", settings.cli.clone(), "[semgrep] cli", None) {
        return given;
    }
    if let Ok(cli) = which::which("semgrep") {
        return Ok(cli);
    }
    // <venv>/lib/python3.X/site-packages/semgrep/bin/semgrep-core -> <venv>/bin/semgrep
    let core = locate_core(settings)?;
    match core.ancestors().nth(6).map(|venv| venv.join("bin/semgrep")) {
        Some(cli) if cli.is_file() => Ok(cli),
        _ => Err(ProgramError::not_found(
            "the semgrep CLI",
            format!("is not on PATH nor beside {}", core.display()),
            "set [semgrep] cli",
        )),
    }
}

/// Runs the semgrep CLI offline (no metrics, no version check) and returns (exit code, stdout).
async fn semgrep_cli(cli: &Path, args: &[&str], cwd: &Path, timeout: Duration) -> Result<(i32, String), String> {
    let mut command = Command::new(cli);
    command
        .args(["--metrics=off", "--disable-version-check", "--quiet"])
        .args(args)
        .current_dir(cwd)
        // It runs agent-written rules: the child allow-list, with its HOME in the scratch directory.
        .env_clear()
        .envs(ChildEnv::new(cwd, cwd).into_vec())
        .env("SEMGREP_ENABLE_VERSION_CHECK", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| format!("semgrep did not finish within {}s", timeout.as_secs()))?
        .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

fn error_messages(json: &Value) -> String {
    json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = e["long_msg"].as_str().or(e["message"].as_str()).unwrap_or("invalid");
            excerpt(text.lines().next().unwrap_or_default(), 200)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The four checks, each with real semgrep. `Ok` carries the passed checks; `Err` the checks so
/// far and the reason for the rejection.
pub async fn check_rule(
    cli: &Path,
    yaml: &str,
    lesson: &Lesson,
    id: &str,
    base_checkout: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<Vec<String>, (Vec<String>, String)> {
    let mut checks = Vec::new();
    let fail = |checks: &Vec<String>, line: String, reason: String| {
        let mut all = checks.clone();
        all.push(line);
        Err((all, reason))
    };
    let io = |e: std::io::Error| (Vec::new(), format!("cannot prepare the checks: {e}"));
    std::fs::create_dir_all(work.join("empty")).map_err(io)?;
    std::fs::create_dir_all(work.join("test")).map_err(io)?;
    let rule_file = work.join(format!("{id}.yaml"));
    std::fs::write(&rule_file, yaml).map_err(io)?;
    let rule_arg = rule_file.display().to_string();

    // 1. valid: schema and patterns, offline (scanning an empty directory reports both).
    if !yaml
        .lines()
        .any(|l| l.trim_start().trim_start_matches("- ").trim() == format!("id: {id}"))
    {
        return fail(&checks, "valid: no".into(), format!("the rule's id must be {id}"));
    }
    let (code, out) = semgrep_cli(cli, &["--json", "--config", &rule_arg, "empty"], work, timeout)
        .await
        .map_err(|e| (checks.clone(), e))?;
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    if code != 0 || !json["errors"].as_array().is_none_or(|e| e.is_empty()) {
        let why = error_messages(&json);
        return fail(
            &checks,
            "valid: no".into(),
            format!("not a valid rule (semgrep exit {code}): {why}"),
        );
    }
    checks.push("valid (schema and pattern): ok".to_string());

    // 2 and 3. the bad example matches, the good one does not: a `semgrep --test` fixture.
    let (ext, fixture) =
        rule_fixture(lesson, id).ok_or_else(|| (checks.clone(), format!("no fixture for {}", lesson.language)))?;
    std::fs::write(work.join("test").join(format!("{id}.yaml")), yaml).map_err(io)?;
    std::fs::write(work.join("test").join(format!("{id}.{ext}")), &fixture).map_err(io)?;
    let (_, out) = semgrep_cli(cli, &["--test", "--json", "test"], work, timeout)
        .await
        .map_err(|e| (checks.clone(), e))?;
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut expected = Vec::new();
    let mut reported = Vec::new();
    for result in json["results"].as_object().into_iter().flatten().map(|(_, v)| v) {
        for (_, check) in result["checks"].as_object().into_iter().flatten() {
            for (_, m) in check["matches"].as_object().into_iter().flatten() {
                let lines = |k: &str| {
                    m[k].as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_u64)
                        .collect::<Vec<_>>()
                };
                expected.extend(lines("expected_lines"));
                reported.extend(lines("reported_lines"));
            }
        }
    }
    if expected.is_empty() {
        let why = json["config_with_errors"].to_string();
        return fail(
            &checks,
            "matches the bad example: no".into(),
            format!("semgrep --test found nothing to check: {why}"),
        );
    }
    if expected.iter().any(|l| !reported.contains(l)) {
        return fail(
            &checks,
            "matches the bad example: no".into(),
            "it does not match the bad example".to_string(),
        );
    }
    checks.push("matches the bad example: ok".to_string());
    if reported.iter().any(|l| !expected.contains(l)) {
        return fail(
            &checks,
            "does not match the good example: no".into(),
            "it matches the good example too".to_string(),
        );
    }
    checks.push("does not match the good example: ok".to_string());

    // 4. nothing on the base branch as it is now (CHUM's own rule fixtures left out).
    let target = base_checkout.display().to_string();
    let (code, out) = semgrep_cli(
        cli,
        &["--json", "--config", &rule_arg, "--exclude", ".semgrep", &target],
        work,
        timeout,
    )
    .await
    .map_err(|e| (checks.clone(), e))?;
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let Some(results) = json["results"].as_array() else {
        return fail(
            &checks,
            "quiet on the base branch: no".into(),
            format!("the base-branch scan failed (exit {code})"),
        );
    };
    if !results.is_empty() {
        let places: Vec<String> = results
            .iter()
            .take(3)
            .map(|r| {
                let path = r["path"].as_str().unwrap_or_default();
                let shown = path.strip_prefix(&format!("{target}/")).unwrap_or(path);
                format!(
                    "{shown}:{}",
                    r.pointer("/start/line").and_then(Value::as_u64).unwrap_or(0)
                )
            })
            .collect();
        return fail(
            &checks,
            "quiet on the base branch: no".into(),
            format!(
                "it fires {} time(s) on the base branch ({})",
                results.len(),
                places.join(", ")
            ),
        );
    }
    checks.push("quiet on the base branch: ok".to_string());
    Ok(checks)
}
