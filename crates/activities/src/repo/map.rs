//! The ranked repo map of a project at a commit, for the agents' prompts: every tracked source
//! file's tags (`tags.rs`), read from git's objects at exactly that commit and cached per commit
//! under the worker's state directory (a commit never changes, so it is parsed once), then ranked
//! for the work and trimmed to the role's budget by `chum_core::repo_map`.
//!
//! Bounded, so a huge repository cannot stall an activity: files over [`MAX_FILE_BYTES`] (generated
//! or minified, as a rule), vendored and hidden directories are left out, and at most
//! [`MAX_FILES`] files and [`MAX_TOTAL_BYTES`] are parsed.

use std::path::{Path, PathBuf};

use chum_core::repo_map::{Focus, RenderedMap, Tag, repo_map};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::git::pinned_command;
use super::tags::{Lang, extract_tags};
use crate::repo::{GitError, git};

/// Files parsed at most, in path order.
pub const MAX_FILES: usize = 5_000;
/// A larger file is left out.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// Bytes parsed at most, over all files.
pub const MAX_TOTAL_BYTES: u64 = 48 * 1024 * 1024;
/// Commits whose tags are kept per project; older ones are removed as new ones are written.
const CACHED_COMMITS: usize = 32;
/// Bumped when what is extracted changes, so older cache files are parsed again.
const CACHE_VERSION: u32 = 1;

/// Files that are someone else's code (vendored, minified) or no one's program: anything under a
/// hidden directory or hidden itself (`.github/`, `.semgrep/` with CHUM's rule fixtures, `.chum/`).
fn left_out(path: &str) -> bool {
    path.split('/')
        .any(|part| part.starts_with('.') || ["vendor", "node_modules", "third_party"].contains(&part))
        || path.ends_with(".min.js")
}

/// The tags of every source file at one commit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepoTags {
    pub version: u32,
    pub commit: String,
    pub tags: Vec<Tag>,
    /// Source files parsed, and those left out for the bounds.
    pub files: usize,
    pub skipped: usize,
    /// Read from the cache rather than parsed now (never written to the cache itself).
    #[serde(skip)]
    pub from_cache: bool,
}

/// Where the tags of `project`'s commits are cached.
pub fn tags_cache_dir(state_dir: &Path, project: &str) -> PathBuf {
    state_dir.join("repo-map").join(project)
}

fn is_commit_id(commit: &str) -> bool {
    matches!(commit.len(), 40 | 64) && commit.chars().all(|c| c.is_ascii_hexdigit())
}

/// One source file to parse: its path, blob and size.
struct SourceFile {
    path: String,
    blob: String,
    lang: Lang,
}

/// The source files at `commit` within the bounds, and how many were left out.
async fn source_files(repo: &Path, commit: &str) -> Result<(Vec<SourceFile>, usize), GitError> {
    let listing = git(repo, &["ls-tree", "-r", "-z", "--long", commit]).await?;
    let mut files = Vec::new();
    let mut skipped = 0;
    let mut total = 0u64;
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        // `<mode> SP <type> SP <object> SP+ <size> TAB <path>`
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let (Some(lang), [mode, "blob", blob, size]) = (Lang::of(path), fields.as_slice()) else {
            continue;
        };
        // A symbolic link's blob is the link's target, not source.
        if *mode == "120000" || left_out(path) {
            continue;
        }
        let size: u64 = size.parse().unwrap_or(u64::MAX);
        if size > MAX_FILE_BYTES || files.len() >= MAX_FILES || total + size > MAX_TOTAL_BYTES {
            skipped += 1;
            continue;
        }
        total += size;
        files.push(SourceFile {
            path: path.to_string(),
            blob: blob.to_string(),
            lang,
        });
    }
    Ok((files, skipped))
}

/// The contents of `blobs`, in order, from one `git cat-file --batch`.
async fn read_blobs(repo: &Path, blobs: &[&str]) -> Result<Vec<Vec<u8>>, GitError> {
    let mut command = pinned_command(repo, &[], &["cat-file", "--batch"]).await?;
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("git cat-file has no stdin"))?;
    let request: String = blobs.iter().map(|b| format!("{b}\n")).collect();
    // Written while the answer is read: git stops reading once its output pipe is full.
    let writer = tokio::spawn(async move {
        let written = stdin.write_all(request.as_bytes()).await;
        drop(stdin);
        written
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("git cat-file has no stdout"))?
        .read_to_end(&mut out)
        .await?;
    writer.await.map_err(std::io::Error::other)??;
    let status = child.wait().await?;
    let failed = |why: &str| GitError::Failed {
        args: "cat-file --batch".into(),
        dir: repo.display().to_string(),
        stderr: why.to_string(),
        code: status.code().unwrap_or(-1),
    };
    if !status.success() {
        return Err(failed("git cat-file --batch failed"));
    }
    // Each answer: `<object> SP blob SP <size> LF <content> LF`.
    let mut contents = Vec::with_capacity(blobs.len());
    let mut rest = out.as_slice();
    for blob in blobs {
        let header_end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| failed("the answer ended early"))?;
        let header = String::from_utf8_lossy(&rest[..header_end]).to_string();
        let size: usize = match header.split(' ').collect::<Vec<_>>().as_slice() {
            [object, "blob", size] if object == blob => size.parse().map_err(|_| failed(&header))?,
            _ => return Err(failed(&format!("unexpected answer for {blob}: {header}"))),
        };
        let start = header_end + 1;
        let content = rest
            .get(start..start + size)
            .ok_or_else(|| failed("the answer ended early"))?;
        contents.push(content.to_vec());
        rest = rest.get(start + size + 1..).unwrap_or_default();
    }
    Ok(contents)
}

fn read_cache(path: &Path, commit: &str) -> Option<RepoTags> {
    let text = std::fs::read(path).ok()?;
    let cached: RepoTags = serde_json::from_slice(&text).ok()?;
    (cached.version == CACHE_VERSION && cached.commit == commit).then_some(RepoTags {
        from_cache: true,
        ..cached
    })
}

/// Writes the cache file whole (a temporary file renamed), then removes all but the newest
/// [`CACHED_COMMITS`]. Only logged when it fails: the map is there, the next one parses again.
fn write_cache(dir: &Path, path: &Path, tags: &RepoTags) {
    // Two activities of one worker may write the same commit at once: each its own temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let written = std::fs::create_dir_all(dir).and_then(|_| {
        let temporary = path.with_extension(format!("json.tmp-{}-{write}", std::process::id()));
        std::fs::write(&temporary, serde_json::to_vec(tags).map_err(std::io::Error::other)?)?;
        std::fs::rename(&temporary, path)
    });
    if let Err(e) = written {
        tracing::warn!("could not cache the repo map's tags in {}: {e}", path.display());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut cached: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    cached.sort();
    let excess = cached.len().saturating_sub(CACHED_COMMITS);
    for (_, old) in cached.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}

/// The tags of every source file of `repo` at `commit` (a full commit id), from the cache in
/// `cache_dir` when this commit was parsed before.
pub async fn repo_tags(repo: &Path, commit: &str, cache_dir: &Path) -> Result<RepoTags, GitError> {
    if !is_commit_id(commit) {
        return Err(GitError::Failed {
            args: "repo map".into(),
            dir: repo.display().to_string(),
            stderr: format!("{commit:?} is not a full commit id"),
            code: -1,
        });
    }
    let cache = cache_dir.join(format!("{commit}.json"));
    if let Some(cached) = read_cache(&cache, commit) {
        return Ok(cached);
    }
    let (files, skipped) = source_files(repo, commit).await?;
    let blobs: Vec<&str> = files.iter().map(|f| f.blob.as_str()).collect();
    let contents = read_blobs(repo, &blobs).await?;
    let count = files.len();
    // Parsing is CPU work: off the async threads, so heartbeats keep going.
    let parsed = tokio::task::spawn_blocking(move || {
        files
            .iter()
            .zip(contents)
            .flat_map(|(file, bytes)| extract_tags(file.lang, &file.path, &String::from_utf8_lossy(&bytes)))
            .collect::<Vec<Tag>>()
    });
    let tags = parsed.await.map_err(std::io::Error::other)?;
    let result = RepoTags {
        version: CACHE_VERSION,
        commit: commit.to_string(),
        tags,
        files: count,
        skipped,
        from_cache: false,
    };
    write_cache(cache_dir, &cache, &result);
    Ok(result)
}

/// The map of `repo` at `commit` for `focus`, within `budget_tokens` (0: an empty map, and git is
/// not asked).
pub async fn ranked_repo_map(
    repo: &Path,
    commit: &str,
    cache_dir: &Path,
    focus: Focus<'_>,
    budget_tokens: u32,
) -> Result<RenderedMap, GitError> {
    if budget_tokens == 0 {
        return Ok(RenderedMap::default());
    }
    let tags = repo_tags(repo, commit, cache_dir).await?;
    Ok(repo_map(&tags.tags, focus, budget_tokens as usize))
}

/// The map for a prompt. A map is an aid: when it cannot be made the agent goes without one
/// (an empty map), and the reason is logged.
pub async fn map_for_prompt(
    repo: &Path,
    commit: &str,
    cache_dir: &Path,
    focus: Focus<'_>,
    budget_tokens: u32,
) -> RenderedMap {
    match ranked_repo_map(repo, commit, cache_dir, focus, budget_tokens).await {
        Ok(map) => {
            tracing::debug!(
                definitions = map.definitions,
                files = map.files,
                tokens = map.tokens,
                omitted = map.omitted,
                "repo map"
            );
            map
        }
        Err(e) => {
            tracing::warn!("no repo map for {} at {commit}: {e}", repo.display());
            RenderedMap::default()
        }
    }
}
