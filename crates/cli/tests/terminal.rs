//! What a person meets at the terminal, with the real `chum` binary: a closed pipe
//! (`chum backlog | head`) ends it quietly, like every Unix tool, instead of a panic and a
//! backtrace.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
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
    git(
        &repo,
        &["-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A"],
    );
    git(
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "backlog",
        ],
    );
    let config = dir.join("chum.toml");
    std::fs::write(
        &config,
        "[projects.demo]\nrepo = \"project\"\ndod = [\"true\"]\n\n[providers.a]\ncommand = [\"true\"]\nmodel = \"a\"\n\n[providers.b]\ncommand = [\"true\"]\nmodel = \"b\"\n\n[tiers]\nfast = [\"a\"]\nother = [\"b\"]\n\n[roles]\nplanner = \"fast\"\nexecutor = \"fast\"\nreviewer = \"other\"\n",
    )
    .unwrap();
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
