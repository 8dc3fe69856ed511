//! The git CLI, run as a subprocess, pinned so that nothing an agent wrote runs with the worker's
//! rights. Errors carry the command and git's own stderr.
//!
//! Every CHUM git call:
//! - has no system or global configuration (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`)
//!   and an environment of its own (nothing of the worker's but PATH);
//! - runs no hook (`core.hooksPath=/dev/null`, and `--no-verify` where git has it), no fsmonitor,
//!   no clean/smudge/process filter, textconv, external diff or merge driver, no signing program,
//!   whatever the repository's configuration says (each such key is overridden on the command line);
//! - in a worktree, names the worktree's git directory and work tree explicitly, as CHUM recorded
//!   them when it made the worktree ([`WorktreeGit`]); the worktree's own `.git` file, which the
//!   agent can write, is only checked, never followed.

use std::path::{Path, PathBuf};

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not run git: {0}; is git installed and on PATH?")]
    Spawn(#[from] std::io::Error),
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed {
        args: String,
        dir: String,
        stderr: String,
        code: i32,
    },
    /// The worktree's link to its repository is not what CHUM made: an agent (or someone) changed
    /// its `.git` pointer or the git directory it names.
    #[error(
        "the worktree {worktree} was tampered with: {what}; CHUM does not run git there, the attempt's work is discarded"
    )]
    Tampered { worktree: String, what: String },
}

/// The identity CHUM commits with.
const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "CHUM"),
    ("GIT_AUTHOR_EMAIL", "chum@localhost"),
    ("GIT_COMMITTER_NAME", "CHUM"),
    ("GIT_COMMITTER_EMAIL", "chum@localhost"),
];

/// Options that switch off everything git could run on its own.
const PINNED: [&str; 14] = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=false",
    "core.pager=cat",
    "core.editor=false",
    "core.askPass=",
    "diff.external=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "merge.verifySignatures=false",
    "gpg.program=false",
    "credential.helper=",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
];

/// Driver keys a repository's configuration can point at programs (`filter.<name>.clean`, ...).
const DRIVER_KEYS: &str = r"^(filter|diff|merge)\..*\.(clean|smudge|process|textconv|command|driver)$";

fn command(dir: &Path, extra: &[String], args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
        // Messages in English: some are told apart by their text (lock contention, conflicts).
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ATTR_NOSYSTEM", "1")
        .envs(IDENTITY)
        .stdin(std::process::Stdio::null());
    for option in PINNED {
        cmd.args(["-c", option]);
    }
    cmd.args(extra).args(args);
    cmd
}

async fn run(dir: &Path, extra: &[String], args: &[&str]) -> Result<String, GitError> {
    let output = command(dir, extra, args).output().await?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_string())
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.display().to_string(),
            stderr,
            code: output.status.code().unwrap_or(-1),
        })
    }
}

/// The repository configuration file a git call in `dir` (or with `git_dir`) reads, when it can be
/// told without running git: `<dir>/.git/config`, or the common directory's of a worktree.
fn config_file(dir: &Path, git_dir: Option<&Path>) -> Option<PathBuf> {
    let git_dir = match git_dir {
        Some(g) => g.to_path_buf(),
        None => dir.join(".git"),
    };
    // A per-worktree configuration (extensions.worktreeConfig) is not in the key: read it every time.
    if !git_dir.is_dir() || git_dir.join("config.worktree").exists() {
        return None;
    }
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir,
    };
    Some(common.join("config"))
}

/// `-c <key>=` for every program-running driver the repository's own configuration defines.
/// Cached per configuration file and its modification time: it is read before every git call.
async fn neutralized_drivers(dir: &Path, git_dir: Option<&Path>) -> Result<Vec<String>, GitError> {
    type Cache = std::sync::Mutex<std::collections::HashMap<PathBuf, (std::time::SystemTime, Vec<String>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key =
        config_file(dir, git_dir).and_then(|f| std::fs::metadata(&f).and_then(|m| m.modified()).ok().map(|t| (f, t)));
    if let Some((file, modified)) = &key
        && let Some((at, options)) = cache.lock().ok().and_then(|c| c.get(file).cloned())
        && at == *modified
    {
        return Ok(options);
    }
    let options = read_drivers(dir, git_dir).await?;
    if let (Some((file, modified)), Ok(mut c)) = (key, cache.lock()) {
        c.insert(file, (modified, options.clone()));
    }
    Ok(options)
}

async fn read_drivers(dir: &Path, git_dir: Option<&Path>) -> Result<Vec<String>, GitError> {
    let mut extra = Vec::new();
    if let Some(g) = git_dir {
        extra.push(format!("--git-dir={}", g.display()));
    }
    let listing = match run(dir, &extra, &["config", "--get-regexp", DRIVER_KEYS]).await {
        Ok(listing) => listing,
        // Exit 1: no such key. Anything else (not a repository yet) has nothing to neutralize.
        Err(GitError::Failed { .. }) => String::new(),
        Err(e) => return Err(e),
    };
    let mut options = Vec::new();
    for key in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        options.extend(["-c".to_string(), format!("{key}=")]);
        if let Some(name) = key
            .strip_prefix("filter.")
            .and_then(|k| k.rsplit_once('.'))
            .map(|(n, _)| n)
        {
            options.extend(["-c".to_string(), format!("filter.{name}.required=false")]);
        }
    }
    Ok(options)
}

/// A git command in `dir` pinned like every CHUM git call, for a caller that reads git's raw
/// output and exit status itself (the remote's answers).
pub(super) async fn pinned_command(dir: &Path, extra: &[String], args: &[&str]) -> Result<Command, GitError> {
    let mut options = neutralized_drivers(dir, None).await?;
    options.extend_from_slice(extra);
    Ok(command(dir, &options, args))
}

/// Runs `git <args>` in `dir` (a repository or its main checkout) and returns its trimmed stdout.
pub async fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let drivers = neutralized_drivers(dir, None).await?;
    run(dir, &drivers, args).await
}

/// Like [`git`], but a failure is an answer (`None`), not an error.
pub async fn git_ok(dir: &Path, args: &[&str]) -> Result<Option<String>, GitError> {
    match git(dir, args).await {
        Ok(out) => Ok(Some(out)),
        Err(GitError::Failed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The commit a ref points at, if it exists.
pub async fn resolve(dir: &Path, rev: &str) -> Result<Option<String>, GitError> {
    git_ok(dir, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).await
}

/// A worktree CHUM made, and the git directory git keeps for it in the repository
/// (`.git/worktrees/<name>/`), found from the repository's side. CHUM's git calls in a worktree go
/// through this, naming both explicitly, so a `.git` file an agent rewrote is never followed.
#[derive(Debug, Clone, PartialEq)]
pub struct WorktreeGit {
    pub work_tree: PathBuf,
    pub git_dir: PathBuf,
}

/// The file in a worktree's git directory listing paths CHUM never stages there (files copied
/// from the main checkout, what setup commands made): its `core.excludesFile`.
const EXCLUDES: &str = "chum-excludes";

impl WorktreeGit {
    /// The worktree at `work_tree` of `repo`, checked: some git directory of the repository must
    /// claim it (its `gitdir` file names `<work_tree>/.git`), and the worktree's `.git` must be
    /// the plain file git wrote, pointing back at that directory. Anything else is
    /// [`GitError::Tampered`], saying what changed.
    pub async fn open(repo: &Path, work_tree: &Path) -> Result<WorktreeGit, GitError> {
        let tampered = |what: String| GitError::Tampered {
            worktree: work_tree.display().to_string(),
            what,
        };
        let common = common_dir(repo).await?;
        let pointer = work_tree.join(".git");
        let claimed = std::fs::read_dir(common.join("worktrees"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|admin| {
                std::fs::read_to_string(admin.join("gitdir")).is_ok_and(|g| same_path(&admin.join(g.trim()), &pointer))
            });
        let Some(git_dir) = claimed else {
            return Err(tampered(format!(
                "no git directory of {} belongs to it any more",
                repo.display()
            )));
        };
        let meta = std::fs::symlink_metadata(&pointer).map_err(|e| tampered(format!("its .git is gone ({e})")))?;
        if !meta.file_type().is_file() {
            let kind = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a directory"
            };
            return Err(tampered(format!("its .git is {kind}, not the file git wrote")));
        }
        let text = std::fs::read_to_string(&pointer).map_err(|e| tampered(format!("its .git cannot be read ({e})")))?;
        let target = text
            .trim()
            .strip_prefix("gitdir:")
            .map(str::trim)
            .unwrap_or(text.trim());
        if !same_path(&work_tree.join(target), &git_dir) {
            return Err(tampered(format!(
                "its .git points to {target:?} instead of {}",
                git_dir.display()
            )));
        }
        Ok(WorktreeGit {
            work_tree: work_tree.to_path_buf(),
            git_dir,
        })
    }

    fn pinned(&self) -> Vec<String> {
        let mut extra = vec![
            format!("--git-dir={}", self.git_dir.display()),
            format!("--work-tree={}", self.work_tree.display()),
        ];
        let excludes = self.git_dir.join(EXCLUDES);
        if excludes.is_file() {
            extra.extend(["-c".to_string(), format!("core.excludesFile={}", excludes.display())]);
        }
        extra
    }

    /// Runs `git <args>` in the worktree, pinned to its recorded git directory.
    pub async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let mut extra = self.pinned();
        extra.extend(neutralized_drivers(&self.work_tree, Some(&self.git_dir)).await?);
        run(&self.work_tree, &extra, args).await
    }

    /// Like [`WorktreeGit::git`], but a failure is an answer (`None`), not an error.
    pub async fn git_ok(&self, args: &[&str]) -> Result<Option<String>, GitError> {
        match self.git(args).await {
            Ok(out) => Ok(Some(out)),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds `paths` (relative to the worktree) to what git never stages in this worktree.
    pub fn exclude(&self, paths: &[String]) -> std::io::Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.git_dir.join(EXCLUDES))?;
        for path in paths {
            // Anchored at the worktree's root, literal (no glob characters are special here).
            let escaped: String = path
                .chars()
                .flat_map(|c| match c {
                    '*' | '?' | '[' | '\\' | '!' | '#' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            writeln!(file, "/{escaped}")?;
        }
        Ok(())
    }
}

/// Whether two paths name the same file (links and relative parts resolved; as written when one
/// does not exist).
fn same_path(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    real(a) == real(b)
}

/// The repository's common git directory (its `.git`).
pub async fn common_dir(repo: &Path) -> Result<PathBuf, GitError> {
    // A main checkout's is its `.git` (no git process needed).
    let dot_git = repo.join(".git");
    if dot_git.is_dir() {
        return Ok(std::fs::canonicalize(&dot_git).unwrap_or(dot_git));
    }
    let common = run(repo, &[], &["rev-parse", "--git-common-dir"]).await?;
    let path = PathBuf::from(&common);
    let absolute = if path.is_absolute() { path } else { repo.join(path) };
    Ok(std::fs::canonicalize(&absolute).unwrap_or(absolute))
}

/// A worktree as listed by `git worktree list --porcelain`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorktreeEntry {
    pub path: PathBuf,
    /// Full ref name, e.g. `refs/heads/main`, if a branch is checked out.
    pub branch: Option<String>,
}

pub async fn worktrees(repo: &Path) -> Result<Vec<WorktreeEntry>, GitError> {
    let listing = git(repo, &["worktree", "list", "--porcelain"]).await?;
    let mut entries = Vec::new();
    let mut current: Option<WorktreeEntry> = None;
    for line in listing.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            if let Some(done) = current.take() {
                entries.push(done);
            }
            current = Some(WorktreeEntry {
                path: PathBuf::from(path),
                branch: None,
            });
        } else if let (Some(branch), Some(entry)) = (line.strip_prefix("branch "), current.as_mut()) {
            entry.branch = Some(branch.to_string());
        }
    }
    entries.extend(current);
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A repository with one commit on `main`.
    pub async fn init_repo(dir: &Path) {
        git(dir, &["init", "-q", "-b", "main"]).await.unwrap();
        std::fs::write(dir.join("README.md"), "hello\n").unwrap();
        git(dir, &["add", "."]).await.unwrap();
        git(dir, &["commit", "-q", "-m", "initial"]).await.unwrap();
    }

    /// A bare "forge" repository `remote.git` seeded with one commit on main, and `work`, a clone
    /// of it (the project's checkout; its origin is `url`, or the bare repository by `file://`).
    pub async fn remote_and_clone(dir: &Path, url: Option<&str>) -> (std::path::PathBuf, std::path::PathBuf) {
        let seed = dir.join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        init_repo(&seed).await;
        let bare = dir.join("remote.git");
        let (seed, bare_path) = (seed.display().to_string(), bare.display().to_string());
        git(dir, &["clone", "-q", "--bare", &seed, &bare_path]).await.unwrap();
        let work = dir.join("work");
        let origin = url.map(String::from).unwrap_or_else(|| format!("file://{bare_path}"));
        git(dir, &["clone", "-q", &origin, &work.display().to_string()])
            .await
            .unwrap();
        (bare, work)
    }

    /// A project on `repo` with base branch `main` and the given integration policy.
    pub fn project(repo: &Path, integration: chum_core::config::IntegrationPolicy) -> chum_core::config::ProjectConfig {
        chum_core::config::ProjectConfig {
            name: "demo".into(),
            repo: repo.to_path_buf(),
            base_branch: "main".into(),
            dod: vec![],
            integration,
            remote: "origin".into(),
            remote_token_env: None,
            forge: None,
            intake: None,
            beads_file: ".beads/issues.jsonl".into(),
            enabled: true,
            gates: chum_core::config::GateName::DEFAULT_ORDER.to_vec(),
            named_gates: Vec::new(),
            review_fail_open: false,
            backlog: chum_core::config::BacklogBackend::Native,
            concurrency: 1,
            sandbox: chum_core::config::SandboxMode::None,
            fanout: 1,
            select: chum_core::config::SelectMode::First,
            update: chum_core::config::UpdateMode::Rebase,
            rereview_on_update: false,
            approve_result: false,
            leases: chum_core::config::LeaseMode::On,
            plan_ahead: 3,
            environment: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_carry_gits_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let err = git(dir.path(), &["rev-parse", "HEAD"]).await.unwrap_err();
        assert!(err.to_string().contains("not a git repository"), "{err}");
    }

    #[tokio::test]
    async fn lists_worktrees_with_their_branches() {
        let dir = tempfile::tempdir().unwrap();
        testing::init_repo(dir.path()).await;
        let wt = dir.path().join("wt");
        git(
            dir.path(),
            &["worktree", "add", "-q", "-b", "feature", wt.to_str().unwrap()],
        )
        .await
        .unwrap();
        let list = worktrees(dir.path()).await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].branch.as_deref(), Some("refs/heads/main"));
        assert_eq!(list[1].branch.as_deref(), Some("refs/heads/feature"));
        assert!(resolve(dir.path(), "main").await.unwrap().is_some());
        assert!(resolve(dir.path(), "nope").await.unwrap().is_none());
    }
}
