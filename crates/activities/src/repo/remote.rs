//! The project's remote, for the `push` policy: its base branch read and fetched, and a verified
//! commit pushed to it. A push is never forced: git refuses one that is not a fast-forward of what
//! the remote has, which is the compare-and-swap that keeps the remote's base green.
//!
//! Credentials come only through git's own mechanisms, never through argv, logs or history: a token
//! the worker holds in the variable `remote_token_env` names reaches git's `GIT_ASKPASS` program
//! through git's environment (the program, written by CHUM, holds no secret), and SSH remotes use
//! the worker's SSH agent (`SSH_AUTH_SOCK`) in batch mode. Everything else of [`super::git`]'s
//! pinning holds: no hook, no repository-configured helper or program runs.

use std::io::Write as _;
use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use chum_core::config::ProjectConfig;
use chum_core::text::excerpt;

use super::git::{GitError, git, pinned_command};

/// Why the remote could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "the repository {repo} has no remote named `{remote}`; add it (`git remote add {remote} <url>`) or set `remote` of the project"
    )]
    NotConfigured { remote: String, repo: String },
    #[error(
        "the remote `{remote}` ({repo}) could not be reached: {reason}; check the network, the URL (`git remote -v`) and the credentials"
    )]
    Unreachable {
        remote: String,
        repo: String,
        reason: String,
    },
    #[error(
        "the remote `{remote}` has no branch `{branch}`; push it once by hand, or set `base_branch` of the project"
    )]
    NoBaseBranch { remote: String, branch: String },
    #[error(
        "remote_token_env names {name}, which is not set in the worker's environment; export it where the worker starts"
    )]
    MissingToken { name: String },
    #[error("{branch} is not a bead's branch: CHUM pushes with a lease only to its own chum/<bead> branches")]
    NotBeadBranch { branch: String },
    #[error("could not write the askpass program for git: {0}")]
    Askpass(std::io::Error),
}

impl RemoteError {
    /// A remote that did not answer may answer later; the rest needs a person.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, RemoteError::Unreachable { .. })
    }
}

/// How a push of the verified commit to the remote's base ended.
#[derive(Debug, PartialEq)]
pub enum PushOutcome {
    /// The remote's base is now the commit (or already was).
    Pushed,
    /// Not a fast-forward of the remote's base: it moved since the commit was verified.
    Moved,
    /// The remote refused it (a pre-receive hook, a protected branch): what it said.
    Refused(String),
}

/// The remote-tracking ref CHUM keeps the remote's base in.
pub fn tracking_ref(project: &ProjectConfig) -> String {
    format!("refs/remotes/{}/{}", project.remote, project.base_branch)
}

/// Fetches the remote's base branch into [`tracking_ref`] and returns its commit.
pub async fn fetch_base(project: &ProjectConfig) -> Result<String, super::RepoProblem> {
    let repo = &project.repo;
    url_of(project).await?;
    let base = format!("refs/heads/{}", project.base_branch);
    // `--exit-code`: 2 when the remote answered without the ref; anything else is not an answer.
    let listed = remote_git(project, &["ls-remote", "--exit-code", &project.remote, &base]).await?;
    match listed.status.code() {
        Some(0) => {}
        Some(2) => {
            return Err(RemoteError::NoBaseBranch {
                remote: project.remote.clone(),
                branch: project.base_branch.clone(),
            }
            .into());
        }
        _ => return Err(unreachable(project, &listed).into()),
    }
    let refspec = format!("+{base}:{}", tracking_ref(project));
    let fetched = remote_git(
        project,
        &[
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            &project.remote,
            &refspec,
        ],
    )
    .await?;
    if !fetched.status.success() {
        return Err(unreachable(project, &fetched).into());
    }
    Ok(git(
        repo,
        &[
            "rev-parse",
            "--verify",
            &format!("{}^{{commit}}", tracking_ref(project)),
        ],
    )
    .await?)
}

/// Pushes `commit` to the remote's base branch, not forced.
pub async fn push_base(project: &ProjectConfig, commit: &str) -> Result<PushOutcome, super::RepoProblem> {
    let refspec = format!("{commit}:refs/heads/{}", project.base_branch);
    let pushed = remote_git(
        project,
        &["push", "--porcelain", "--no-verify", &project.remote, &refspec],
    )
    .await?;
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    // `--porcelain`: one line per ref, `<flag>\t<from>:<to>\t<summary>`; `!` is rejected.
    let status = stdout.lines().find(|l| {
        l.split('\t')
            .nth(1)
            .is_some_and(|r| r.ends_with(&format!(":refs/heads/{}", project.base_branch)))
    });
    let Some(status) = status else {
        return Err(unreachable(project, &pushed).into());
    };
    let flag = status.chars().next().unwrap_or(' ');
    let summary = status.split('\t').nth(2).unwrap_or_default();
    if flag != '!' {
        let _ = git(&project.repo, &["update-ref", &tracking_ref(project), commit]).await;
        return Ok(PushOutcome::Pushed);
    }
    if summary.starts_with("[remote rejected]") {
        return Ok(PushOutcome::Refused(remote_said(&pushed, summary)));
    }
    // `[rejected] (fetch first)`, `(non-fast-forward)`: the remote's base is not where it was.
    Ok(PushOutcome::Moved)
}

/// How a push of a bead's own branch (`chum/<bead>`, the `pr` policy) ended.
#[derive(Debug, PartialEq)]
pub enum BranchPush {
    /// The remote's branch is now the commit (or already was).
    Pushed,
    /// Someone else changed the branch on the remote since CHUM pushed it last: it holds `found`
    /// ("" when it was deleted), and CHUM does not overwrite it.
    ChangedByOthers { found: String },
    /// The remote refused it (a hook, a protected pattern): what it said.
    Refused(String),
}

/// Pushes `commit` to the bead's own branch on the remote, forced only with a lease: the branch
/// must hold `leased` (what CHUM pushed last; "" = the branch must not exist yet). Never a base
/// branch: anything but a `chum/<bead>` branch is refused before git runs.
pub async fn push_branch(
    project: &ProjectConfig,
    branch: &str,
    commit: &str,
    leased: &str,
) -> Result<BranchPush, super::RepoProblem> {
    if chum_core::pull_request::bead_of_branch(branch).is_none() || branch == project.base_branch {
        return Err(RemoteError::NotBeadBranch {
            branch: branch.to_string(),
        }
        .into());
    }
    url_of(project).await?;
    let target = format!("refs/heads/{branch}");
    // What the remote holds now: a retried push finds its work done, and a branch changed by
    // someone else is reported, not overwritten.
    let listed = remote_git(project, &["ls-remote", "--exit-code", &project.remote, &target]).await?;
    let found = match listed.status.code() {
        Some(0) => String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        Some(2) => String::new(),
        _ => return Err(unreachable(project, &listed).into()),
    };
    if found == commit {
        return Ok(BranchPush::Pushed);
    }
    if found != leased {
        return Ok(BranchPush::ChangedByOthers { found });
    }
    let lease = format!("--force-with-lease={target}:{leased}");
    let refspec = format!("{commit}:{target}");
    let pushed = remote_git(
        project,
        &["push", "--porcelain", "--no-verify", &lease, &project.remote, &refspec],
    )
    .await?;
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    let Some(status) = stdout
        .lines()
        .find(|l| l.split('\t').nth(1).is_some_and(|r| r.ends_with(&format!(":{target}"))))
    else {
        return Err(unreachable(project, &pushed).into());
    };
    let summary = status.split('\t').nth(2).unwrap_or_default();
    if !status.starts_with('!') {
        return Ok(BranchPush::Pushed);
    }
    if summary.starts_with("[remote rejected]") {
        return Ok(BranchPush::Refused(remote_said(&pushed, summary)));
    }
    // `[rejected] (stale info)`: the branch moved between the look and the push.
    Ok(BranchPush::ChangedByOthers {
        found: String::from("(changed while CHUM pushed)"),
    })
}

/// What the remote printed (its `remote:` lines) with git's summary of the refusal.
fn remote_said(pushed: &Output, summary: &str) -> String {
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    let said: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let said = if said.is_empty() {
        summary.to_string()
    } else {
        format!("{} {summary}", said.join(" / "))
    };
    excerpt(&said, 2000)
}

async fn url_of(project: &ProjectConfig) -> Result<String, super::RepoProblem> {
    let got = super::git_ok(&project.repo, &["remote", "get-url", &project.remote]).await?;
    got.ok_or_else(|| {
        RemoteError::NotConfigured {
            remote: project.remote.clone(),
            repo: project.repo.display().to_string(),
        }
        .into()
    })
}

fn unreachable(project: &ProjectConfig, output: &Output) -> RemoteError {
    let mut reason = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if reason.is_empty() {
        reason = format!("git exited with {}", output.status);
    }
    RemoteError::Unreachable {
        remote: project.remote.clone(),
        repo: project.repo.display().to_string(),
        reason: excerpt(&reason, 1000),
    }
}

/// Runs git against the remote with the credentials the project allows; the output is returned
/// whatever git's exit status (the caller tells the answers apart).
async fn remote_git(project: &ProjectConfig, args: &[&str]) -> Result<Output, super::RepoProblem> {
    let mut cmd = pinned_command(&project.repo, &[], &[]).await?;
    // Batch mode: a host key or a passphrase nobody can type fails at once instead of waiting.
    cmd.args(["-c", "core.sshCommand=ssh -o BatchMode=yes"]);
    for name in ["SSH_AUTH_SOCK", "HOME"] {
        if let Ok(value) = std::env::var(name) {
            cmd.env(name, value);
        }
    }
    if let Some(name) = &project.remote_token_env {
        let token = std::env::var(name).map_err(|_| RemoteError::MissingToken { name: name.clone() })?;
        cmd.env("GIT_ASKPASS", askpass_program()?).env("CHUM_GIT_TOKEN", token);
    }
    cmd.args(args);
    Ok(cmd.output().await.map_err(GitError::Spawn)?)
}

/// The `GIT_ASKPASS` program: it answers git's username prompt with `x-access-token` (what GitHub
/// and GitLab take with a token) and its password prompt with the token git's environment holds.
/// Written once per worker into a private temporary file; it holds no secret.
fn askpass_program() -> Result<&'static Path, RemoteError> {
    static PROGRAM: OnceLock<tempfile::TempPath> = OnceLock::new();
    if let Some(path) = PROGRAM.get() {
        return Ok(path);
    }
    let mut file = tempfile::Builder::new()
        .prefix("chum-askpass-")
        .suffix(".sh")
        .tempfile()
        .map_err(RemoteError::Askpass)?;
    file.write_all(
        b"#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' x-access-token ;;\n  *) printf '%s\\n' \"$CHUM_GIT_TOKEN\" ;;\nesac\n",
    )
    .map_err(RemoteError::Askpass)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o700)).map_err(RemoteError::Askpass)?;
    }
    let path = file.into_temp_path();
    Ok(PROGRAM.get_or_init(|| path))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chum_core::config::IntegrationPolicy;
    use chum_core::proto::{LandRequest, UpdateMode, UpdateToBaseRequest};

    use super::*;
    use crate::repo::testing::{init_repo, project, remote_and_clone};
    use crate::repo::{RepoProblem, WorktreeGit, land, prepare_worktree, update_to_base};

    /// Someone else pushes a commit to the remote's main; returns it.
    async fn push_from_elsewhere(dir: &Path, bare: &Path, file: &str) -> String {
        let other = dir.join(format!("other-{file}"));
        git(
            dir,
            &[
                "clone",
                "-q",
                &format!("file://{}", bare.display()),
                &other.display().to_string(),
            ],
        )
        .await
        .unwrap();
        std::fs::write(other.join(file), "theirs\n").unwrap();
        git(&other, &["add", file]).await.unwrap();
        git(&other, &["commit", "-q", "-m", file]).await.unwrap();
        git(&other, &["push", "-q", "origin", "main"]).await.unwrap();
        git(&other, &["rev-parse", "HEAD"]).await.unwrap()
    }

    async fn commit_in(wt: &WorktreeGit, file: &str) -> String {
        std::fs::write(wt.work_tree.join(file), "mine\n").unwrap();
        wt.git(&["add", file]).await.unwrap();
        // With CHUM's trailer, as the bead's held commit has it.
        let message = format!("{file}\n\nChum-Bead: tk-1\n");
        wt.git(&["commit", "-q", "-m", &message]).await.unwrap();
        wt.git(&["rev-parse", "HEAD"]).await.unwrap()
    }

    fn update(wt: &Path, commit: &str) -> UpdateToBaseRequest {
        UpdateToBaseRequest {
            branch: "chum/tk-1".into(),
            worktree: wt.display().to_string(),
            commit: commit.into(),
            mode: UpdateMode::Rebase as i32,
            ..UpdateToBaseRequest::default()
        }
    }

    fn landing(commit: &str, base_tip: &str) -> LandRequest {
        LandRequest {
            branch: "chum/tk-1".into(),
            commit: commit.into(),
            base_tip: base_tip.into(),
            ..LandRequest::default()
        }
    }

    /// Lands one bead's work on the remote (updated to the remote's tip first), as the merge
    /// queue's turn does; returns the landed commit.
    async fn land_work(p: &ProjectConfig, bead: &str, file: &str) -> String {
        let attempt = prepare_worktree(p, bead, 1, 0).await.unwrap();
        let commit = commit_in(&attempt.git, file).await;
        let updated = update_to_base(p, &update(&attempt.path, &commit)).await.unwrap();
        assert!(
            updated.problem.is_empty() && updated.conflict_files.is_empty(),
            "{updated:?}"
        );
        let landed = land(p, &landing(&updated.commit, &updated.base_tip)).await.unwrap();
        assert!(landed.landed, "{landed:?}");
        updated.commit
    }

    #[tokio::test]
    async fn another_host_finds_the_work_a_lost_host_had_landed_by_its_run() {
        let dir = tempfile::tempdir().unwrap();
        let (bare, host_a) = remote_and_clone(dir.path(), None).await;
        let host_b = dir.path().join("host-b");
        let url = format!("file://{}", bare.display());
        git(dir.path(), &["clone", "-q", &url, &host_b.display().to_string()])
            .await
            .unwrap();
        let (a, b) = (
            project(&host_a, IntegrationPolicy::Push),
            project(&host_b, IntegrationPolicy::Push),
        );
        // Host A lands run r7's work (its commit carries the run's trailer), then is lost.
        let attempt = prepare_worktree(&a, "tk-1", 2, 0).await.unwrap();
        std::fs::write(attempt.path.join("one.txt"), "mine\n").unwrap();
        attempt.git.git(&["add", "one.txt"]).await.unwrap();
        let message = "one\n\nChum-Bead: tk-1\nChum-Run: shark-demo-tk-1/r7/2\n";
        attempt.git.git(&["commit", "-q", "-m", message]).await.unwrap();
        let commit = attempt.git.git(&["rev-parse", "HEAD"]).await.unwrap();
        let updated = update_to_base(&a, &update(&attempt.path, &commit)).await.unwrap();
        assert!(
            land(&a, &landing(&updated.commit, &updated.base_tip))
                .await
                .unwrap()
                .landed
        );
        push_from_elsewhere(dir.path(), &bare, "later.txt").await;

        // Host B, whose checkout never saw it, finds it on the remote; another run finds nothing.
        let found = crate::repo::landed_by_run(&b, "shark-demo-tk-1", "r7").await.unwrap();
        assert_eq!(found.as_deref(), Some(updated.commit.as_str()));
        let other = crate::repo::landed_by_run(&b, "shark-demo-tk-1", "r8").await.unwrap();
        assert_eq!(other, None);
        // Nothing is looked for where the base is not the remote's.
        let local = project(&host_b, IntegrationPolicy::Merge);
        assert_eq!(
            crate::repo::landed_by_run(&local, "shark-demo-tk-1", "r7")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn the_remotes_base_moves_only_to_the_commit_verified_on_its_tip_never_forced() {
        let dir = tempfile::tempdir().unwrap();
        let (bare, work) = remote_and_clone(dir.path(), None).await;
        let p = project(&work, IntegrationPolicy::Push);

        let first = land_work(&p, "tk-1", "one.txt").await;
        assert_eq!(git(&bare, &["rev-parse", "main"]).await.unwrap(), first);
        assert_eq!(
            git(&work, &["rev-parse", "main"]).await.unwrap(),
            first,
            "the local base follows"
        );

        // The remote moved after the work was made: the update brings it onto the remote's tip.
        let attempt = prepare_worktree(&p, "tk-2", 1, 0).await.unwrap();
        let commit = commit_in(&attempt.git, "two.txt").await;
        let theirs = push_from_elsewhere(dir.path(), &bare, "theirs.txt").await;
        let updated = update_to_base(&p, &update(&attempt.path, &commit)).await.unwrap();
        assert!(!updated.up_to_date && updated.base_tip == theirs, "{updated:?}");
        assert_eq!(updated.changed_files, ["two.txt"]);

        // It moves again before the push: not landed, the caller verifies again.
        let later = push_from_elsewhere(dir.path(), &bare, "later.txt").await;
        let refused = land(&p, &landing(&updated.commit, &updated.base_tip)).await.unwrap();
        assert!(refused.base_moved && !refused.landed, "{refused:?}");
        assert_eq!(
            git(&bare, &["rev-parse", "main"]).await.unwrap(),
            later,
            "nothing was forced"
        );

        // Even a push that skipped the check is refused by git: only fast-forwards go through.
        assert_eq!(push_base(&p, &updated.commit).await.unwrap(), PushOutcome::Moved);

        let fresh = update_to_base(&p, &update(&attempt.path, &updated.commit))
            .await
            .unwrap();
        let landed = land(&p, &landing(&fresh.commit, &fresh.base_tip)).await.unwrap();
        assert!(landed.landed, "{landed:?}");
        assert_eq!(git(&bare, &["rev-parse", "main"]).await.unwrap(), fresh.commit);
        let history = git(&bare, &["log", "--format=%s", "main"]).await.unwrap();
        assert_eq!(
            history.lines().collect::<Vec<_>>(),
            ["two.txt", "later.txt", "theirs.txt", "one.txt", "initial"]
        );
        assert!(
            land(&p, &landing(&fresh.commit, &fresh.base_tip)).await.unwrap().landed,
            "a retry finds it pushed"
        );
    }

    #[tokio::test]
    async fn a_beads_branch_is_pushed_with_a_lease_on_what_chum_pushed_last_and_never_a_base() {
        let dir = tempfile::tempdir().unwrap();
        let (bare, work) = remote_and_clone(dir.path(), None).await;
        let p = project(&work, IntegrationPolicy::PullRequest);
        let first_try = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        let first = commit_in(&first_try.git, "one.txt").await;

        // The first push needs the branch not to exist; a retry finds it done.
        assert_eq!(
            push_branch(&p, "chum/tk-1", &first, "").await.unwrap(),
            BranchPush::Pushed
        );
        assert_eq!(git(&bare, &["rev-parse", "chum/tk-1"]).await.unwrap(), first);
        assert_eq!(
            push_branch(&p, "chum/tk-1", &first, "").await.unwrap(),
            BranchPush::Pushed
        );

        // The next attempt's commit (not a descendant) replaces it: forced, with the lease.
        let second_try = prepare_worktree(&p, "tk-1", 2, 0).await.unwrap();
        let second = commit_in(&second_try.git, "two.txt").await;
        assert_eq!(
            push_branch(&p, "chum/tk-1", &second, &first).await.unwrap(),
            BranchPush::Pushed
        );
        assert_eq!(git(&bare, &["rev-parse", "chum/tk-1"]).await.unwrap(), second);

        // A person pushed a fixup to the branch: CHUM does not overwrite it.
        let other = dir.path().join("person");
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                "--branch",
                "chum/tk-1",
                &format!("file://{}", bare.display()),
                &other.display().to_string(),
            ],
        )
        .await
        .unwrap();
        std::fs::write(other.join("fixup.txt"), "theirs\n").unwrap();
        git(&other, &["add", "fixup.txt"]).await.unwrap();
        git(&other, &["commit", "-q", "-m", "fixup"]).await.unwrap();
        git(&other, &["push", "-q", "origin", "chum/tk-1"]).await.unwrap();
        let theirs = git(&other, &["rev-parse", "HEAD"]).await.unwrap();
        let third_try = prepare_worktree(&p, "tk-1", 3, 0).await.unwrap();
        let third = commit_in(&third_try.git, "three.txt").await;
        assert_eq!(
            push_branch(&p, "chum/tk-1", &third, &second).await.unwrap(),
            BranchPush::ChangedByOthers { found: theirs.clone() }
        );
        assert_eq!(git(&bare, &["rev-parse", "chum/tk-1"]).await.unwrap(), theirs);

        // Never a base branch, whatever the caller asks.
        let refused = push_branch(&p, "main", &third, "").await.unwrap_err();
        assert!(
            matches!(refused, RepoProblem::Remote(RemoteError::NotBeadBranch { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn commits_someone_left_unpushed_on_the_local_base_are_not_published_with_a_bead() {
        let dir = tempfile::tempdir().unwrap();
        let (bare, work) = remote_and_clone(dir.path(), None).await;
        let before = git(&bare, &["rev-parse", "main"]).await.unwrap();
        std::fs::write(work.join("draft.txt"), "not ready\n").unwrap();
        git(&work, &["add", "draft.txt"]).await.unwrap();
        git(&work, &["commit", "-q", "-m", "draft of the release notes"])
            .await
            .unwrap();
        let p = project(&work, IntegrationPolicy::Push);
        let attempt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        // CHUM's own commit carries its trailer; the draft does not.
        let commit = commit_in(&attempt.git, "one.txt").await;
        let report = update_to_base(&p, &update(&attempt.path, &commit)).await.unwrap();
        assert!(
            report
                .problem
                .contains("1 commit(s) that are not CHUM's work (draft of the release notes)")
                && report.problem.contains("chum retry"),
            "{report:?}"
        );
        assert_eq!(
            git(&bare, &["rev-parse", "main"]).await.unwrap(),
            before,
            "nothing pushed"
        );
    }

    #[tokio::test]
    async fn a_push_the_remote_refuses_says_what_its_hook_said_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (bare, work) = remote_and_clone(dir.path(), None).await;
        let hook = bare.join("hooks/pre-receive");
        std::fs::write(
            &hook,
            "#!/bin/sh\necho 'main is frozen until Monday: ask #release' >&2\nexit 1\n",
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let before = git(&bare, &["rev-parse", "main"]).await.unwrap();
        let p = project(&work, IntegrationPolicy::Push);
        let attempt = prepare_worktree(&p, "tk-1", 1, 0).await.unwrap();
        let commit = commit_in(&attempt.git, "one.txt").await;
        let updated = update_to_base(&p, &update(&attempt.path, &commit)).await.unwrap();
        let report = land(&p, &landing(&updated.commit, &updated.base_tip)).await.unwrap();
        assert!(!report.landed && !report.base_moved, "{report:?}");
        assert!(
            report.problem.contains("main is frozen until Monday: ask #release")
                && report.problem.contains("origin refused the push to main")
                && report.problem.contains("chum/tk-1"),
            "{report:?}"
        );
        assert_eq!(git(&bare, &["rev-parse", "main"]).await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_remote_that_does_not_answer_is_worth_retrying_and_a_missing_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (bare, work) = remote_and_clone(dir.path(), None).await;
        let p = project(&work, IntegrationPolicy::Push);
        std::fs::rename(&bare, dir.path().join("gone.git")).unwrap();
        let err = fetch_base(&p).await.unwrap_err();
        assert!(
            matches!(err, RepoProblem::Remote(RemoteError::Unreachable { .. })),
            "{err}"
        );
        assert!(!err.is_permanent(), "{err}");
        assert!(err.to_string().contains("could not be reached"), "{err}");

        let mut elsewhere = p.clone();
        elsewhere.remote = "upstream".into();
        let err = fetch_base(&elsewhere).await.unwrap_err();
        assert!(
            matches!(err, RepoProblem::Remote(RemoteError::NotConfigured { .. })),
            "{err}"
        );
        assert!(
            err.is_permanent() && err.to_string().contains("git remote add upstream"),
            "{err}"
        );

        let mut with_token = p.clone();
        with_token.remote_token_env = Some("CHUM_TEST_SURELY_UNSET_TOKEN".into());
        let err = fetch_base(&with_token).await.unwrap_err();
        assert!(
            matches!(err, RepoProblem::Remote(RemoteError::MissingToken { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_askpass_program_answers_with_the_token_from_gits_environment_only() {
        let program = askpass_program().unwrap();
        let text = std::fs::read_to_string(program).unwrap();
        assert!(!text.contains("s3cret"), "the program holds no secret");
        let ask = |prompt: &str| {
            let out = std::process::Command::new(program)
                .arg(prompt)
                .env("CHUM_GIT_TOKEN", "s3cret-token")
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(ask("Username for 'https://example.com': "), "x-access-token\n");
        assert_eq!(
            ask("Password for 'https://x-access-token@example.com': "),
            "s3cret-token\n"
        );
    }

    #[tokio::test]
    async fn beads_land_on_a_remote_served_by_git_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("git://127.0.0.1:{port}/remote.git");
        // Seeded first (the daemon serves what is there), cloned once it answers.
        let seed_dir = dir.path().join("serve");
        std::fs::create_dir_all(&seed_dir).unwrap();
        let seed = seed_dir.join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        init_repo(&seed).await;
        let bare = seed_dir.join("remote.git");
        git(&seed_dir, &["clone", "-q", "--bare", "seed", "remote.git"])
            .await
            .unwrap();
        // git-daemon itself, not `git daemon`: killing the `git` front end on drop would leave the
        // daemon it started running (and holding the test harness's output open).
        let exec_path = git(dir.path(), &["--exec-path"]).await.unwrap();
        let _daemon = tokio::process::Command::new(std::path::Path::new(exec_path.trim()).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", seed_dir.display()),
                "--export-all",
                "--enable=receive-pack",
            ])
            .arg(&seed_dir)
            .kill_on_drop(true)
            .spawn()
            .expect("git daemon starts");
        let work = dir.path().join("work");
        let mut cloned = false;
        for _ in 0..100 {
            if git(dir.path(), &["clone", "-q", &url, &work.display().to_string()])
                .await
                .is_ok()
            {
                cloned = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(cloned, "git daemon answered on {url}");
        let p = project(&work, IntegrationPolicy::Push);
        let landed = land_work(&p, "tk-1", "one.txt").await;
        assert_eq!(git(&bare, &["rev-parse", "main"]).await.unwrap(), landed);
    }

    /// An HTTP forge: `git http-backend` behind Python's CGI server, answering only requests with
    /// HTTP basic auth `x-access-token:<token>` (401 otherwise, as GitHub does).
    const HTTP_FORGE: &str = r#"
import base64, http.server, os, sys
port, root, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
want = "Basic " + base64.b64encode(("x-access-token:" + token).encode()).decode()
class Forge(http.server.CGIHTTPRequestHandler):
    cgi_directories = ["/cgi-bin"]
    def allowed(self):
        if self.headers.get("Authorization") == want:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="forge"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False
    def do_GET(self):
        if self.allowed():
            self.run_cgi_at_git()
    def do_POST(self):
        if self.allowed():
            self.run_cgi_at_git()
    def run_cgi_at_git(self):
        self.path = "/cgi-bin/git" + self.path
        self.cgi_info = ("/cgi-bin", "git" + self.path[len("/cgi-bin/git"):])
        self.run_cgi()
# The CGI runs as this process's user (Python would switch a root server's CGI to nobody).
http.server.nobody_uid = os.getuid
os.chdir(root)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Forge).serve_forever()
"#;

    #[tokio::test]
    async fn a_token_reaches_an_http_remote_only_through_askpass() {
        let dir = tempfile::tempdir().unwrap();
        let serve = dir.path().join("serve");
        std::fs::create_dir_all(serve.join("cgi-bin")).unwrap();
        let seed = serve.join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        init_repo(&seed).await;
        git(&serve, &["clone", "-q", "--bare", "seed", "remote.git"])
            .await
            .unwrap();
        let backend = serve.join("cgi-bin/git");
        std::fs::write(
            &backend,
            format!(
                "#!/bin/sh\nGIT_PROJECT_ROOT='{}' GIT_HTTP_EXPORT_ALL=1 exec git http-backend\n",
                serve.display()
            ),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = dir.path().join("forge.py");
        std::fs::write(&script, HTTP_FORGE).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = "forge-token-5f3a9c";
        let _forge = tokio::process::Command::new("python3")
            .arg(&script)
            .args([&port.to_string(), &serve.display().to_string(), token])
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 serves the forge");
        let url = format!("http://127.0.0.1:{port}/remote.git");
        // The checkout: cloned from the seed, then pointed at the forge (no credential in the URL).
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["clone", "-q", &seed.display().to_string(), &work.display().to_string()],
        )
        .await
        .unwrap();
        git(&work, &["remote", "set-url", "origin", &url]).await.unwrap();
        let mut p = project(&work, IntegrationPolicy::Push);
        p.remote_token_env = Some("CHUM_TEST_FORGE_TOKEN_FOR_ASKPASS".into());
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::set_var("CHUM_TEST_FORGE_TOKEN_FOR_ASKPASS", "not-the-token") };
        let mut listening = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                listening = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(listening, "the forge listens on {port}");
        // A wrong token: the forge says no, and the error does not carry the token.
        let err = fetch_base(&p).await.unwrap_err();
        assert!(
            matches!(err, RepoProblem::Remote(RemoteError::Unreachable { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains("Authentication failed"),
            "the forge said no: {err}"
        );
        assert!(!err.to_string().contains("not-the-token"), "{err}");

        unsafe { std::env::set_var("CHUM_TEST_FORGE_TOKEN_FOR_ASKPASS", token) };
        let landed = land_work(&p, "tk-1", "one.txt").await;
        let bare = serve.join("remote.git");
        assert_eq!(git(&bare, &["rev-parse", "main"]).await.unwrap(), landed);
        // Nothing of the token stays in the repository's configuration.
        let config = std::fs::read_to_string(work.join(".git/config")).unwrap();
        assert!(!config.contains(token), "{config}");
    }
}
