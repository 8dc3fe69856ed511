//! What the forge activities' tests share: the bead's work committed in an attempt, and the
//! requests the Shark sends.

use chum_core::config::ProjectConfig;
use chum_core::proto::{PullRequestCheck, PullRequestRequest, RunRef};

use crate::repo::prepare_worktree;

/// The bead's work committed in an attempt's worktree; returns the commit.
pub async fn work(p: &ProjectConfig, attempt: u32, file: &str) -> String {
    let wt = prepare_worktree(p, "tk-1", attempt, 0).await.unwrap();
    std::fs::write(wt.path.join(file), "mine\n").unwrap();
    wt.git.git(&["add", file]).await.unwrap();
    wt.git
        .git(&["commit", "-q", "-m", &format!("{file}\n\nChum-Bead: tk-1\n")])
        .await
        .unwrap();
    wt.git.git(&["rev-parse", "HEAD"]).await.unwrap()
}

pub fn request(commit: &str, leased: &str, body: &str) -> PullRequestRequest {
    PullRequestRequest {
        run: Some(RunRef {
            project: "demo".into(),
            bead_id: "tk-1".into(),
            ..RunRef::default()
        }),
        branch: "chum/tk-1".into(),
        commit: commit.into(),
        title: "Add multiply (tk-1)".into(),
        body: body.into(),
        leased_head: leased.into(),
    }
}

pub fn check(number: u64, head: &str) -> PullRequestCheck {
    PullRequestCheck {
        number,
        head: head.into(),
        ..PullRequestCheck::default()
    }
}
