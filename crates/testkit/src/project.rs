//! The project the end-to-end tests work on: a tiny real Python package (`calc.py` with `add`, a
//! unittest suite, a Beads backlog) in a real git repository, what a good and a bad change to it
//! look like, and the requests the activities get for its bead `tk-1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use chum_core::proto::{Bead, IntegrateRequest, Plan, RunRef};

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tiny real project: `calc.py` with `add`, a unittest suite, and one open bead.
pub fn make_project(dir: &Path) -> PathBuf {
    let repo = dir.join("project");
    std::fs::create_dir_all(repo.join(".beads")).unwrap();
    std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
    std::fs::write(
        repo.join("test_calc.py"),
        "import unittest\nfrom calc import add\n\n\nclass AddTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\nif __name__ == '__main__':\n    unittest.main()\n",
    )
    .unwrap();
    std::fs::write(
        repo.join(".beads/issues.jsonl"),
        concat!(
            r#"{"id":"tk-1","title":"Add multiply to calc","description":"calc needs multiply(a, b) with tests","status":"open","priority":1,"issue_type":"feature","created_at":"2026-11-22T00:00:00Z","updated_at":"2026-11-22T00:00:00Z","source_repo":"project","compaction_level":0}"#,
            "\n",
            r#"{"id":"tk-2","title":"Old work","status":"closed","priority":2,"issue_type":"task","created_at":"2026-11-22T00:00:00Z","updated_at":"2026-11-22T00:00:00Z","closed_at":"2026-11-22T00:00:00Z","close_reason":"done"}"#,
            "\n",
            r#"{"id":"tk-3","title":"Add parse_pairs to calc","description":"parse 'a=1 b=2' into pairs","status":"open","priority":2,"issue_type":"feature","created_at":"2026-11-22T00:00:01Z","updated_at":"2026-11-22T00:00:01Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);
    repo
}

pub const GOOD_PLAN: &str = r#"{"summary": "Add multiply(a, b) to calc with a unit test", "steps": ["add multiply to calc.py", "add test_multiply.py"], "acceptance_criteria": ["multiply(3, 4) == 12", "python3 -m unittest passes"], "files": ["calc.py", "test_multiply.py"]}"#;

pub const GOOD_CALC: &str = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n";
pub const BAD_CALC: &str = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return a + b\n";
pub const MULTIPLY_TEST: &str = "import unittest\nfrom calc import multiply\n\n\nclass MultiplyTest(unittest.TestCase):\n    def test_multiply(self):\n        self.assertEqual(multiply(3, 4), 12)\n\n\nif __name__ == '__main__':\n    unittest.main()\n";

/// A reviewer verdict that approves GOOD_PLAN's two criteria, each with evidence of its own: a
/// line the diff it is shown adds, quoted (the scripted agent fills in `{added_line:N}`).
pub const REVIEW_APPROVE: &str = r#"{"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": "multiply(3, 4) == 12", "met": true, "evidence": "`{added_line:1}`"}, {"index": 2, "criterion": "python3 -m unittest passes", "met": true, "evidence": "`{added_line:2}`"}]}"#;

/// A reviewer verdict that rejects with one error finding.
pub const REVIEW_REJECT: &str = r#"{"approved": false, "findings": [{"severity": "error", "file": "calc.py", "line": 6, "message": "multiply adds instead of multiplying"}], "criteria": [{"criterion": "multiply(3, 4) == 12", "met": false, "evidence": "multiply returns a + b"}]}"#;

/// The run every fixture request belongs to: bead `tk-1` of project `demo`.
pub fn run_ref() -> RunRef {
    RunRef {
        project: "demo".into(),
        bead_id: "tk-1".into(),
        workflow_id: "shark-demo-tk-1".into(),
        run_id: "r1".into(),
    }
}

/// Bead `tk-1` with a title.
pub fn bead(title: &str) -> Bead {
    Bead {
        id: "tk-1".into(),
        title: title.into(),
        ..Bead::default()
    }
}

/// An approved plan with its acceptance criteria.
pub fn plan(summary: &str, criteria: &[&str]) -> Plan {
    Plan {
        summary: summary.into(),
        acceptance_criteria: criteria.iter().map(|c| c.to_string()).collect(),
        ..Plan::default()
    }
}

/// Integrating attempt `attempt` of `tk-1` from `worktree`, approved by alice.
pub fn integrate_request(worktree: &Path, attempt: u32) -> IntegrateRequest {
    IntegrateRequest {
        run: Some(run_ref()),
        bead: Some(bead("Add multiply")),
        plan: Some(plan("add multiply", &["multiply(3, 4) == 12"])),
        worktree: worktree.display().to_string(),
        attempt,
        approved_by: "alice".into(),
        ..IntegrateRequest::default()
    }
}

/// Every commit on `branch`'s first-parent history, checked out afresh, passes `python3 -m
/// unittest` (the projects' DoD here).
pub fn assert_every_commit_is_green(repo: &std::path::Path, branch: &str) {
    let commits = git(repo, &["rev-list", "--first-parent", branch]);
    let scratch = tempfile::tempdir().unwrap();
    for (i, commit) in commits.lines().enumerate() {
        let dir = scratch.path().join(format!("c{i}"));
        git(
            repo,
            &["worktree", "add", "-q", "--detach", dir.to_str().unwrap(), commit],
        );
        let out = std::process::Command::new("python3")
            .args(["-m", "unittest", "-q"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{branch} at {commit} is red:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(repo, &["worktree", "remove", "--force", dir.to_str().unwrap()]);
    }
}
