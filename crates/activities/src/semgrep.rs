//! The Semgrep pre-filter: the project's `.semgrep/` rules plus CHUM's shipped pack, run on the
//! files an attempt changed.
//!
//! The `semgrep` CLI spends ~1.7 s starting up; its engine `semgrep-core` answers in ~0.1 s. The
//! gate calls the engine directly: each rule file is validated once (by content, cached), a file
//! that does not validate is quarantined (reported, left out, never failing the bead), and one
//! engine call scans every changed file with every valid rule. Offline by construction: the
//! engine does no network I/O (no metrics, no version check, no login).
//!
//! The gate fails closed: a file the engine could not scan (a timeout, an error, missing from
//! what it scanned) is a failure with the reason, and so is a scan with every rule quarantined.
//! Findings count only on lines the attempt added or changed (a baseline against its base commit,
//! like `semgrep --baseline-commit`); the others are counted and left out.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chum_core::config::SemgrepSettings;
use chum_core::proto::{QuarantinedRule, SemgrepFinding};
use serde_json::Value;

use crate::exec::ChildEnv;
use crate::exec::{ProcessSpec, ProgramError, given_path, read_capped, run_process};

/// CHUM's shipped rule pack, compiled in (the `semgrep --test` fixtures stay in `semgrep/`).
pub const SHIPPED_RULES: [(&str, &str); 7] = [
    (
        "python/eval-exec.yaml",
        include_str!("../../../semgrep/rules/python/eval-exec.yaml"),
    ),
    (
        "python/bare-except-pass.yaml",
        include_str!("../../../semgrep/rules/python/bare-except-pass.yaml"),
    ),
    (
        "python/mutable-default-arg.yaml",
        include_str!("../../../semgrep/rules/python/mutable-default-arg.yaml"),
    ),
    (
        "rust/dbg-macro.yaml",
        include_str!("../../../semgrep/rules/rust/dbg-macro.yaml"),
    ),
    (
        "rust/todo-unimplemented.yaml",
        include_str!("../../../semgrep/rules/rust/todo-unimplemented.yaml"),
    ),
    (
        "go/println-outside-main.yaml",
        include_str!("../../../semgrep/rules/go/println-outside-main.yaml"),
    ),
    (
        "go/panic-todo.yaml",
        include_str!("../../../semgrep/rules/go/panic-todo.yaml"),
    ),
];

/// The engine's analyzer for a file, by extension.
pub fn language_of(path: &str) -> Option<&'static str> {
    let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "py" | "pyi" => "python",
        "rs" => "rust",
        "go" => "go",
        "js" | "jsx" | "mjs" | "cjs" => "javascript",
        "ts" | "tsx" => "typescript",
        "java" => "java",
        "rb" => "ruby",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" => "cpp",
        "sh" | "bash" => "bash",
        "kt" | "kts" => "kotlin",
        "php" => "php",
        "swift" => "swift",
        "scala" => "scala",
        "cs" => "csharp",
        "lua" => "lua",
        "tf" => "terraform",
        _ => return None,
    })
}

/// Finds `semgrep-core`: the configured path, `CHUM_SEMGREP_CORE`, or inside the Python package
/// of the `semgrep` on PATH (`<venv>/lib/python3.X/site-packages/semgrep/bin/semgrep-core`).
pub fn locate_core(settings: &SemgrepSettings) -> Result<PathBuf, ProgramError> {
    if let Some(given) = given_path(
        "semgrep-core",
        settings.core.clone(),
        "[semgrep] core",
        Some("CHUM_SEMGREP_CORE"),
    ) {
        return given;
    }
    let cli = which::which("semgrep").map_err(|_| {
        ProgramError::not_found(
            "`semgrep`",
            "is not on PATH",
            "run scripts/setup.sh (it installs it into .tools/venv) or set [semgrep] core",
        )
    })?;
    let cli = std::fs::canonicalize(&cli).unwrap_or(cli);
    let beside = || {
        ProgramError::not_found(
            "semgrep-core",
            format!("is not in the Python package of {}", cli.display()),
            "set [semgrep] core",
        )
    };
    let lib = cli.parent().and_then(Path::parent).ok_or_else(beside)?.join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|_| beside())?;
    for entry in entries.flatten() {
        let candidate = entry.path().join("site-packages/semgrep/bin/semgrep-core");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(beside())
}

/// Writes the shipped pack under the state directory (when its content changed) and lists it with
/// the project's own `.semgrep/*.yml|yaml`.
pub fn rule_files(state_dir: &Path, repo: &Path) -> std::io::Result<Vec<PathBuf>> {
    let pack = state_dir.join("semgrep-pack");
    let mut files = Vec::new();
    for (name, content) in SHIPPED_RULES {
        let path = pack.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, content)?;
        }
        files.push(path);
    }
    let own = repo.join(".semgrep");
    if own.is_dir() {
        let mut project: Vec<PathBuf> = walk(&own)?
            .into_iter()
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
            .collect();
        project.sort();
        files.extend(project);
    }
    Ok(files)
}

fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?)
        } else {
            out.push(path)
        }
    }
    Ok(out)
}

/// What one engine call printed: results and errors (the engine prints progress dots first).
fn engine_json(stdout: &str) -> Option<Value> {
    let start = stdout.find('{')?;
    serde_json::from_str(stdout[start..].trim()).ok()
}

/// Runs the engine in `cwd` and captures its output under `work`.
async fn run_engine(
    core: &Path,
    args: Vec<String>,
    cwd: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<(String, String, bool), String> {
    let stdout_path = work.join("engine.out.json");
    let stderr_path = work.join("engine.err.log");
    let spec = ProcessSpec {
        program: core.to_path_buf(),
        args,
        cwd: cwd.to_path_buf(),
        // It scans agent-written files: the child allow-list, nothing of the worker's secrets.
        env: ChildEnv::new(work, work).into_vec(),
        stdin: None,
        timeout,
        stdout_path: stdout_path.clone(),
        stderr_path: stderr_path.clone(),
        capture_limit: 32 * 1024 * 1024,
        cgroup_procs: Vec::new(),
    };
    let outcome = run_process(&spec, Duration::from_secs(5), || async {}, std::future::pending::<()>())
        .await
        .map_err(|e| format!("cannot run semgrep-core {}: {e}", core.display()))?;
    if outcome.timed_out {
        return Err(format!("semgrep-core did not finish within {}s", timeout.as_secs()));
    }
    let stdout = read_capped(&stdout_path, 32 * 1024 * 1024).await.unwrap_or_default();
    let stderr = read_capped(&stderr_path, 64 * 1024).await.unwrap_or_default();
    Ok((stdout, stderr, outcome.success()))
}

/// The changed files that exist (deleted ones are not scanned) and that the engine has an
/// analyzer for.
fn targets_of<'a>(changed_files: &'a [String], worktree: &Path) -> Vec<&'a String> {
    changed_files
        .iter()
        .filter(|f| worktree.join(f).is_file() && language_of(f).is_some())
        .collect()
}

/// Targets the engine did not scan in full: a per-file error (a timeout, out of memory, a parse
/// failure: anything but partial parsing, which still scans the rest of the file) or missing
/// from `paths.scanned`. Each is a reason the gate fails closed.
fn unscanned(json: &Value, targets: &[&String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in json["errors"].as_array().into_iter().flatten() {
        let kind = e["error_type"].as_str().unwrap_or("error");
        let Some(path) = e.pointer("/location/path").and_then(Value::as_str) else {
            continue;
        };
        if kind == "PartialParsing" || out.iter().any(|(p, _)| p == path) {
            continue;
        }
        let message = e["message"].as_str().unwrap_or_default().trim();
        let why = if message.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}: {}", chum_core::text::excerpt(message, 200))
        };
        out.push((path.to_string(), why));
    }
    let scanned: Vec<&str> = json
        .pointer("/paths/scanned")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for target in targets {
        if !scanned.contains(&target.as_str()) && !out.iter().any(|(p, _)| p == *target) {
            out.push((target.to_string(), "the engine did not scan it".into()));
        }
    }
    out
}

/// The lines each file's new version adds or changes relative to the base (from
/// `git diff --unified=0`): `file -> [(first, last)]`, 1-based and inclusive.
pub fn added_lines(unified_zero_diff: &str) -> HashMap<String, Vec<(u32, u32)>> {
    let mut out: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
    let mut file: Option<String> = None;
    for line in unified_zero_diff.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            file = path.strip_prefix("b/").map(str::to_string);
        } else if let (Some(hunk), Some(f)) = (line.strip_prefix("@@ "), &file) {
            // "@@ -a,b +c,d @@": the new side starts at c and spans d lines (1 when absent).
            let Some(new_side) = hunk.split_whitespace().find(|p| p.starts_with('+')) else {
                continue;
            };
            let mut parts = new_side[1..].split(',');
            let start: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let count: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            if count > 0 {
                out.entry(f.clone()).or_default().push((start, start + count - 1));
            }
        }
    }
    out
}

/// Findings on lines the attempt added or changed; the rest were there before (returned second).
pub fn only_new_findings(
    findings: Vec<SemgrepFinding>,
    added: &HashMap<String, Vec<(u32, u32)>>,
) -> (Vec<SemgrepFinding>, usize) {
    let (new, old): (Vec<_>, Vec<_>) = findings.into_iter().partition(|f| {
        added
            .get(&f.file)
            .is_some_and(|ranges| ranges.iter().any(|(a, b)| (*a..=*b).contains(&f.line)))
    });
    (new, old.len())
}

/// Rule validation results by content, so each file is checked once per worker.
#[derive(Default)]
pub struct ValidationCache {
    verdicts: Mutex<HashMap<u64, Option<String>>>,
}

impl ValidationCache {
    /// `None` when the file is a valid rule file, else why not.
    pub async fn check(&self, core: &Path, file: &Path, work: &Path, timeout: Duration) -> Option<String> {
        let content = match std::fs::read(file) {
            Ok(c) => c,
            Err(e) => return Some(format!("cannot read it: {e}")),
        };
        let mut hasher = DefaultHasher::new();
        content.hash(&mut hasher);
        let key = hasher.finish();
        if let Some(known) = self.verdicts.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return known;
        }
        let verdict = validate_rule_file(core, file, &work.join(format!("validate-{key:016x}")), timeout).await;
        if let Ok(mut m) = self.verdicts.lock() {
            m.insert(key, verdict.clone());
        }
        verdict
    }
}

/// Validates each of `files` with [`validate_rule_file`], each in its own directory under
/// `scratch`; the verdicts come back in the files' order (`None`: it validates).
pub async fn validate_rule_files(
    core: &Path,
    files: &[PathBuf],
    scratch: &Path,
    timeout: Duration,
) -> Vec<Option<String>> {
    let mut verdicts = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        verdicts.push(validate_rule_file(core, file, &scratch.join(i.to_string()), timeout).await);
    }
    verdicts
}

/// Parses a rule file with the engine and no targets: rule parse errors (bad patterns, missing
/// fields) and YAML errors come back; a file without any rule is refused too. `dir` is this
/// validation's own scratch directory.
pub async fn validate_rule_file(core: &Path, file: &Path, dir: &Path, timeout: Duration) -> Option<String> {
    let dir = dir.to_path_buf();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Some(format!("cannot prepare validation: {e}"));
    }
    let targets = dir.join("targets.json");
    if let Err(e) = std::fs::write(&targets, "[\"Targets\", []]") {
        return Some(format!("cannot prepare validation: {e}"));
    }
    let args = vec![
        "-rules".to_string(),
        file.display().to_string(),
        "-targets".to_string(),
        targets.display().to_string(),
        "-json".to_string(),
    ];
    let (stdout, stderr, _) = match run_engine(core, args, &dir, &dir, timeout).await {
        Ok(out) => out,
        Err(e) => return Some(e),
    };
    let Some(json) = engine_json(&stdout) else {
        let why = stderr
            .lines()
            .find(|l| l.contains("Error") || l.contains("invalid"))
            .unwrap_or(stderr.trim());
        return Some(chum_core::text::excerpt(why, 300));
    };
    let errors: Vec<String> = json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let rule = e["rule_id"].as_str().map(|r| format!("rule {r}: ")).unwrap_or_default();
            let message = e["message"]
                .as_str()
                .unwrap_or("invalid")
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let line = e
                .pointer("/location/start/line")
                .and_then(Value::as_u64)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            format!("{rule}{message}{line}")
        })
        .collect();
    if !errors.is_empty() {
        return Some(errors.join("; "));
    }
    let text = std::fs::read_to_string(file).unwrap_or_default();
    if !text.contains("id:") && !text.contains("\"id\"") {
        return Some("the file defines no rule".to_string());
    }
    None
}

/// The result of scanning an attempt's changes.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    pub findings: Vec<SemgrepFinding>,
    pub quarantined: Vec<QuarantinedRule>,
    pub rule_files: usize,
    pub files_scanned: usize,
    pub duration: Duration,
    /// The engine's raw JSON, for the artifact store.
    pub raw: String,
    /// Targets the engine did not scan, and why (a timeout, an error, left out of `paths.scanned`).
    pub not_scanned: Vec<(String, String)>,
}

/// The engine's limit per file and rule (a file it reaches is not scanned: the gate fails).
pub const FILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Validates the rule files (quarantining the invalid ones) and scans `changed_files` (relative
/// to `worktree`) with the rest, in one engine call, within `timeout` in all and `file_timeout`
/// per file.
#[allow(clippy::too_many_arguments)]
pub async fn scan(
    core: &Path,
    cache: &ValidationCache,
    rules: &[PathBuf],
    worktree: &Path,
    changed_files: &[String],
    work: &Path,
    timeout: Duration,
    file_timeout: Duration,
) -> Result<ScanOutcome, String> {
    let started = Instant::now();
    std::fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let mut outcome = ScanOutcome::default();
    let mut valid = Vec::new();
    let checks = futures::future::join_all(rules.iter().map(|f| cache.check(core, f, work, timeout))).await;
    for (file, problem) in rules.iter().zip(checks) {
        match problem {
            None => valid.push(file.clone()),
            Some(reason) => outcome.quarantined.push(QuarantinedRule {
                file: file.display().to_string(),
                reason,
            }),
        }
    }
    outcome.rule_files = valid.len();
    let targets: Vec<Value> = targets_of(changed_files, worktree)
        .into_iter()
        .filter_map(|f| language_of(f).map(|lang| (f, lang)))
        .map(|(f, lang)| {
            serde_json::json!(["CodeTarget", {"path": {"fpath": f, "ppath": format!("/{f}")}, "analyzer": lang, "products": ["sast"]}])
        })
        .collect();
    outcome.files_scanned = targets.len();
    if targets.is_empty() || valid.is_empty() {
        outcome.duration = started.elapsed();
        return Ok(outcome);
    }
    let targets_file = work.join("targets.json");
    std::fs::write(&targets_file, serde_json::json!(["Targets", targets]).to_string())
        .map_err(|e| format!("cannot write {}: {e}", targets_file.display()))?;
    let mut args = Vec::new();
    for file in &valid {
        args.push("-rules".to_string());
        args.push(file.display().to_string());
    }
    args.extend([
        "-targets".to_string(),
        targets_file.display().to_string(),
        "-json".to_string(),
    ]);
    args.extend(["-timeout".to_string(), format!("{}", file_timeout.as_secs_f64())]);
    // Targets are relative to the worktree, so the engine runs there; its output goes to `work`.
    let (stdout, stderr, exited_ok) = run_engine(core, args, worktree, work, timeout).await?;
    let json = engine_json(&stdout)
        .ok_or_else(|| format!("semgrep-core gave no JSON: {}", chum_core::text::excerpt(&stderr, 300)))?;
    if !exited_ok {
        return Err(format!(
            "semgrep-core failed: {}",
            chum_core::text::tail_excerpt(&stderr, 300)
        ));
    }
    outcome.not_scanned = unscanned(&json, &targets_of(changed_files, worktree));
    for r in json["results"].as_array().into_iter().flatten() {
        outcome.findings.push(SemgrepFinding {
            rule_id: r["check_id"].as_str().unwrap_or_default().to_string(),
            file: r["path"].as_str().unwrap_or_default().to_string(),
            line: r.pointer("/start/line").and_then(Value::as_u64).unwrap_or(0) as u32,
            message: r
                .pointer("/extra/message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string(),
            severity: r
                .pointer("/extra/severity")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    outcome.raw = stdout;
    outcome.duration = started.elapsed();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(file: &str, line: u32) -> SemgrepFinding {
        SemgrepFinding {
            rule_id: "r".into(),
            file: file.into(),
            line,
            ..SemgrepFinding::default()
        }
    }

    #[test]
    fn only_findings_on_added_or_changed_lines_count() {
        let diff = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -3,0 +4,2 @@ def add\n+x\n+y\n@@ -9 +11 @@\n-a\n+b\ndiff --git a/new.py b/new.py\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,3 @@\n+1\n+2\n+3\ndiff --git a/gone.py b/gone.py\n--- a/gone.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n";
        let added = added_lines(diff);
        assert_eq!(added["calc.py"], vec![(4, 5), (11, 11)]);
        assert_eq!(added["new.py"], vec![(1, 3)]);
        assert!(!added.contains_key("gone.py"));
        let (new, old) = only_new_findings(
            vec![
                finding("calc.py", 4),
                finding("calc.py", 2),
                finding("calc.py", 11),
                finding("new.py", 3),
                finding("other.py", 1),
            ],
            &added,
        );
        assert_eq!(
            new.iter().map(|f| (f.file.as_str(), f.line)).collect::<Vec<_>>(),
            [("calc.py", 4), ("calc.py", 11), ("new.py", 3)]
        );
        assert_eq!(old, 2, "pre-existing findings are counted");
    }

    #[test]
    fn a_file_the_engine_timed_out_on_or_did_not_scan_is_unscanned() {
        // What semgrep-core 1.182 printed for a per-file timeout (recorded here).
        let json: Value = serde_json::from_str(r#"{"results": [], "errors": [{"error_type": "Timeout", "severity": "warn", "message": "", "location": {"path": "big.py", "start": {"line": 1, "col": 1, "offset": 0}, "end": {"line": 1, "col": 1, "offset": 0}}, "rule_id": "chum.python.eval-exec"}, {"error_type": "PartialParsing", "severity": "warn", "message": "", "location": {"path": "ok.py"}}], "paths": {"scanned": ["big.py", "ok.py"]}}"#).unwrap();
        let (big, ok, lost) = ("big.py".to_string(), "ok.py".to_string(), "lost.py".to_string());
        let out = unscanned(&json, &[&big, &ok, &lost]);
        assert_eq!(
            out,
            vec![
                ("big.py".to_string(), "Timeout".to_string()),
                ("lost.py".to_string(), "the engine did not scan it".to_string())
            ]
        );
    }
}
