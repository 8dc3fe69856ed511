//! `chum demo init`: the demo project, a real git repository with a small Python package, its
//! unit tests, a Semgrep rule and an empty Beads backlog (`make demo` adds the beads with
//! `chum create`, as a person would).
//! The files live in configs/demo/project/ and are compiled in, so the binary needs nothing else.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// (path in the project, content). `gitignore` files become `.gitignore`.
const FILES: [(&str, &str); 11] = [
    ("README.md", include_str!("../../../configs/demo/project/README.md")),
    (
        ".semgrep/textkit.yaml",
        include_str!("../../../configs/demo/project/.semgrep/textkit.yaml"),
    ),
    (".gitignore", include_str!("../../../configs/demo/project/gitignore")),
    (
        "textkit/__init__.py",
        include_str!("../../../configs/demo/project/textkit/__init__.py"),
    ),
    (
        "textkit/words.py",
        include_str!("../../../configs/demo/project/textkit/words.py"),
    ),
    (
        "tests/__init__.py",
        include_str!("../../../configs/demo/project/tests/__init__.py"),
    ),
    (
        "tests/test_words.py",
        include_str!("../../../configs/demo/project/tests/test_words.py"),
    ),
    (
        ".beads/issues.jsonl",
        include_str!("../../../configs/demo/project/.beads/issues.jsonl"),
    ),
    (
        ".beads/config.yaml",
        include_str!("../../../configs/demo/project/.beads/config.yaml"),
    ),
    (
        ".beads/metadata.json",
        include_str!("../../../configs/demo/project/.beads/metadata.json"),
    ),
    (
        ".beads/.gitignore",
        include_str!("../../../configs/demo/project/.beads/gitignore"),
    ),
];

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "CHUM demo")
        .env("GIT_AUTHOR_EMAIL", "demo@localhost")
        .env("GIT_COMMITTER_NAME", "CHUM demo")
        .env("GIT_COMMITTER_EMAIL", "demo@localhost")
        .output()
        .context("running git; is it installed?")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn init(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        if !force {
            bail!("{} already exists; pass --force to replace it", dir.display());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    for (path, content) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, content).with_context(|| format!("writing {}", target.display()))?;
    }
    git(dir, &["init", "-q", "-b", "main"])?;
    git(dir, &["add", "-A"])?;
    git(
        dir,
        &["commit", "-q", "-m", "textkit: word_count, tests, an empty backlog"],
    )?;
    println!(
        "created the demo project in {} (empty backlog; add beads with `chum create`)",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_committed_repository_whose_tests_pass() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("demo");
        init(&project, false).unwrap();
        assert!(project.join(".beads/issues.jsonl").exists());
        let status = Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(status.stdout.is_empty(), "everything is committed");
        let tests = Command::new("python3")
            .args(["-m", "unittest", "discover", "-s", "tests", "-q"])
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(tests.status.success(), "{}", String::from_utf8_lossy(&tests.stderr));
        assert!(init(&project, false).is_err(), "refuses to overwrite without --force");
        init(&project, true).unwrap();
    }
}
