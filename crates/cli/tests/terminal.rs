//! What a person meets at the terminal, with the real `chum` binary: a closed pipe
//! (`chum backlog | head`) ends it quietly, like every Unix tool, instead of a panic and a
//! backtrace.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use chum_core::config::RawConfig;
use chum_testkit::{HarnessConfig, git, small_config};

/// A config for project `demo` on `repo` (no Temporal needed for `backlog`): two providers of
/// different models, so it is valid with a reviewer.
fn config_file(repo: &str) -> RawConfig {
    let mut file = small_config(&["true"], &["planner", "executor"]);
    file.state_dir = None;
    file.project().repo = Some(repo.into());
    file.project().dod = vec!["true".into()];
    let mut b = file.providers["a"].clone();
    file.providers.get_mut("a").expect("provider a").model = Some("a".into());
    b.model = Some("b".into());
    file.providers.insert("b".into(), b);
    file.tiers.insert("other".into(), vec!["b".into()]);
    file.roles.insert("reviewer".into(), "other".into());
    file
}

/// A project with a long backlog, and a config that names it (no Temporal needed for `backlog`).
fn project_with_a_long_backlog(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("project");
    std::fs::create_dir_all(repo.join(".beads")).unwrap();
    let mut beads = String::new();
    for i in 0..3000 {
        beads.push_str(&format!(
            "{{\"id\":\"tk-{i}\",\"title\":\"Bead number {i} with a title long enough to fill a line\",\"status\":\"open\",\"priority\":2,\"issue_type\":\"task\",\"created_at\":\"2026-12-01T00:00:00Z\"}}\n"
        ));
    }
    std::fs::write(repo.join(".beads/issues.jsonl"), beads).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "backlog"]);
    let config = dir.join("chum.toml");
    std::fs::write(&config, toml::to_string(&config_file("project")).unwrap()).unwrap();
    config
}

#[test]
fn a_closed_pipe_ends_chum_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = project_with_a_long_backlog(dir.path());
    // Check the config and the command first: the whole backlog, read to the end.
    let full = Command::new(env!("CARGO_BIN_EXE_chum"))
        .args(["--config", config.to_str().unwrap(), "backlog", "--all"])
        .output()
        .expect("chum runs");
    assert!(full.status.success(), "{}", String::from_utf8_lossy(&full.stderr));
    assert!(String::from_utf8_lossy(&full.stdout).contains("tk-2999"));

    // `chum backlog --all | head -1`: the reader goes away after one line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chum"))
        .args(["--config", config.to_str().unwrap(), "backlog", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chum starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let out = child.wait_with_output().expect("chum ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "no panic on a closed pipe: {stderr}");
    assert!(stderr.trim().is_empty(), "nothing on stderr either: {stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "ends like a Unix tool (SIGPIPE or 0): {:?}",
        out.status
    );
}

/// `chum` with `args`, run in `dir` with no CHUM_CONFIG: (exit code, stdout, stderr).
fn chum_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chum"));
    command.current_dir(dir).args(args).env_remove("CHUM_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("chum runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small backlog: one closed bead, one ready, one waiting for the ready one.
fn small_project(dir: &Path) -> std::path::PathBuf {
    let config = project_with_a_long_backlog(dir);
    let beads = concat!(
        "{\"id\":\"tk-a\",\"title\":\"Done\",\"status\":\"closed\",\"priority\":1,\"issue_type\":\"task\",\"created_at\":\"2026-12-01T00:00:00Z\",\"close_reason\":\"merged in commit abcdef1\"}\n",
        "{\"id\":\"tk-b\",\"title\":\"Ready\",\"status\":\"open\",\"priority\":1,\"issue_type\":\"task\",\"created_at\":\"2026-12-01T00:00:01Z\"}\n",
        "{\"id\":\"tk-c\",\"title\":\"Waits\",\"status\":\"open\",\"priority\":2,\"issue_type\":\"task\",\"created_at\":\"2026-12-01T00:00:02Z\",\"dependencies\":[{\"depends_on_id\":\"tk-b\",\"type\":\"blocks\"}]}\n",
    );
    std::fs::write(dir.join("project/.beads/issues.jsonl"), beads).unwrap();
    config
}

#[test]
fn read_commands_print_json_and_json_lines_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_project(dir.path());
    let config = config.to_str().unwrap();
    let (code, text, _) = chum_in(dir.path(), &["--config", config, "backlog"], &[]);
    assert_eq!(code, 0);
    // The counts add up to the beads, and the hidden closed one is named as such.
    assert!(
        text.starts_with("3 beads: 1 ready, 1 blocked, 0 in progress, 1 closed.\n"),
        "{text}"
    );
    assert!(text.contains("(1 closed bead(s) not shown"), "{text}");

    let (code, json, err) = chum_in(
        dir.path(),
        &["--config", config, "--output", "json", "backlog", "--all"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
    let states: Vec<(&str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("tk-b", "ready"), ("tk-c", "blocked"), ("tk-a", "closed")]);
    assert_eq!(rows[1]["blocked_by"], "it waits for tk-b (open)");

    let (code, lines, _) = chum_in(dir.path(), &["--config", config, "-o", "jsonl", "backlog"], &[]);
    assert_eq!(code, 0);
    let ids: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON")["id"].to_string())
        .collect();
    assert_eq!(ids, ["\"tk-b\"", "\"tk-c\""], "open beads only without --all");

    // Lessons, with several words (no quoting needed), as text and as JSON.
    let (code, text, err) = chum_in(
        dir.path(),
        &["--config", config, "lessons", "search", "worktree", "lock"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(text.trim(), "no lesson mentions all of: worktree lock");
    let (code, json, _) = chum_in(
        dir.path(),
        &["--config", config, "-o", "json", "lessons", "search", "x"],
        &[],
    );
    assert_eq!((code, json.trim()), (0, "[]"));
    let (code, json, _) = chum_in(dir.path(), &["--config", config, "-o", "json", "usage"], &[]);
    assert_eq!(code, 0);
    let usage: serde_json::Value = serde_json::from_str(&json).expect("usage JSON");
    assert_eq!(usage["total"]["runs"], 0);
}

#[test]
fn exit_codes_say_what_kind_of_failure_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_project(dir.path());
    let config = config.to_str().unwrap();
    // 2: usage and configuration errors, each naming what to fix.
    let (code, _, err) = chum_in(dir.path(), &["--config", config, "--project", "nope", "backlog"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = chum_in(dir.path(), &["--config", "/nonexistent/chum.toml", "backlog"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/chum.toml"), "{err}");
    let (code, _, _) = chum_in(dir.path(), &["backlog", "--no-such-flag"], &[]);
    assert_eq!(code, 2);
    // 1: what was asked about is not there.
    let (code, _, err) = chum_in(dir.path(), &["--config", config, "lessons", "show", "42"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no lesson #42"), "{err}");
    // 3: Temporal does not answer (nothing listens on this port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let (code, _, err) = chum_in(
        dir.path(),
        &["--config", config, "status", "tk-b"],
        &[("CHUM__TEMPORAL__ADDRESS", address.as_str())],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&address), "says which server: {err}");
}

#[test]
fn the_config_is_found_where_people_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    small_project(dir.path());
    // Nowhere: the error lists where it looked and how to make one.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = chum_in(
        empty.path(),
        &["backlog"],
        &[("XDG_CONFIG_HOME", empty.path().join("xdg").to_str().unwrap())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("configs/chum.toml") && err.contains("xdg/chum/chum.toml"),
        "{err}"
    );
    // $XDG_CONFIG_HOME/chum/chum.toml (the project path in it is absolute).
    let xdg = empty.path().join("xdg");
    std::fs::create_dir_all(xdg.join("chum")).unwrap();
    let absolute = config_file(&dir.path().join("project").display().to_string());
    let text = toml::to_string(&absolute).unwrap();
    std::fs::write(xdg.join("chum/chum.toml"), &text).unwrap();
    let (code, out, err) = chum_in(
        empty.path(),
        &["backlog"],
        &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tk-b"), "{out}");
    // ./configs/chum.toml comes first.
    std::fs::create_dir_all(dir.path().join("configs")).unwrap();
    std::fs::write(dir.path().join("configs/chum.toml"), &text).unwrap();
    let (code, out, err) = chum_in(
        dir.path(),
        &["-o", "jsonl", "backlog"],
        &[("XDG_CONFIG_HOME", "/nonexistent")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn completions_and_a_man_page_come_from_the_same_definition() {
    let dir = tempfile::tempdir().unwrap();
    let (code, bash, _) = chum_in(dir.path(), &["completions", "bash"], &[]);
    assert_eq!(code, 0);
    assert!(bash.contains("complete -F _chum") && bash.contains("approve"), "{bash}");
    let (code, zsh, _) = chum_in(dir.path(), &["completions", "zsh"], &[]);
    assert_eq!(code, 0);
    assert!(zsh.starts_with("#compdef chum"), "{zsh}");
    let (code, man, _) = chum_in(dir.path(), &["man"], &[]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH chum 1") && man.contains("Exit codes"), "{man}");
    let (code, help, _) = chum_in(dir.path(), &["--help"], &[]);
    assert_eq!(code, 0);
    assert!(help.contains("3  Temporal (or a worker) did not answer"), "{help}");
}

#[test]
fn retry_opens_a_blocked_bead_again_and_refuses_the_others_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_project(dir.path());
    let beads = dir.path().join("project/.beads/issues.jsonl");
    let text = std::fs::read_to_string(&beads).unwrap().replace(
        "\"title\":\"Ready\",\"status\":\"open\"",
        "\"title\":\"Ready\",\"status\":\"blocked\",\"notes\":\"CHUM run shark-tk-b: integration failed: origin refused the push\"",
    );
    std::fs::write(&beads, text).unwrap();
    let config = config.to_str().unwrap();

    let (code, out, err) = chum_in(
        dir.path(),
        &["--config", config, "retry", "tk-b", "--note", "the hook is fixed"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("tk-b is open again (was blocked): Ready\n"), "{out}");
    let (_, listing, _) = chum_in(dir.path(), &["--config", config, "backlog"], &[]);
    assert!(listing.contains("- tk-b [P1 task] Ready (ready)"), "{listing}");
    let written = std::fs::read_to_string(&beads).unwrap();
    let bead: serde_json::Value = written
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|b| b["id"] == "tk-b")
        .unwrap();
    let notes = bead["notes"].as_str().unwrap_or_default();
    assert!(
        notes.contains("origin refused the push") && notes.contains("with `chum retry`: the hook is fixed"),
        "what blocked it stays, and who reopened it why: {notes}"
    );

    // Open already, closed, or unknown: refused (exit 1) with what to do instead.
    let (code, _, err) = chum_in(dir.path(), &["--config", config, "retry", "tk-b"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("open already"), "{err}");
    let (code, _, err) = chum_in(dir.path(), &["--config", config, "retry", "tk-a"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is closed") && err.contains("chum create"), "{err}");
    let (code, _, err) = chum_in(dir.path(), &["--config", config, "retry", "tk-zz"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no bead tk-zz"), "{err}");

    // For scripts.
    std::fs::write(
        &beads,
        std::fs::read_to_string(&beads)
            .unwrap()
            .replace("\"status\":\"open\"", "\"status\":\"blocked\""),
    )
    .unwrap();
    let (code, json, err) = chum_in(dir.path(), &["--config", config, "-o", "json", "retry", "tk-b"], &[]);
    assert_eq!(code, 0, "{err}");
    let reopened: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        (
            reopened["id"].as_str(),
            reopened["was"].as_str(),
            reopened["status"].as_str()
        ),
        (Some("tk-b"), Some("blocked"), Some("open")),
        "{json}"
    );
}
