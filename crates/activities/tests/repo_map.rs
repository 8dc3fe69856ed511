//! The ranked repo map on a real repository: humanize 4.9.0 (`fixtures/humanize-4.9.0`, see its
//! README), committed into a scratch git repository, its tags extracted with tree-sitter from
//! git's objects, cached per commit.

use std::path::{Path, PathBuf};

use chum_activities::repo::{MAX_FILE_BYTES, git, ranked_repo_map, repo_tags};
use chum_core::repo_map::{Focus, Tag, Tier, estimated_tokens, rank_definitions};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/humanize-4.9.0");

/// A bead about `naturaldelta`, in a person's words.
const BEAD: &str = "naturaldelta: say \"a moment\" for deltas under a second\n\
                    Today naturaldelta(0.5 seconds) says \"a second\"; it should say \"a moment\".";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("a fixture entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a fixture file");
        }
    }
}

/// Commits everything in `repo` and returns the commit's id.
async fn commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]).await.expect("git add");
    git(repo, &["commit", "-q", "-m", message]).await.expect("git commit");
    git(repo, &["rev-parse", "HEAD"]).await.expect("git rev-parse")
}

/// The fixture in a fresh git repository: (its directory, the cache directory, the commit).
async fn fixture_repo(dir: &Path) -> (PathBuf, PathBuf, String) {
    let repo = dir.join("humanize");
    copy_dir(Path::new(FIXTURE), &repo);
    git(&repo, &["init", "-q", "-b", "main"]).await.expect("git init");
    let commit = commit_all(&repo, "humanize 4.9.0").await;
    (repo, dir.join("cache"), commit)
}

/// The source lines of a definition's span, read from the fixture itself.
fn span_text(tag: &Tag) -> String {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join(&tag.file)).expect("read the fixture file");
    text.lines()
        .skip(tag.line as usize - 1)
        .take((tag.end_line - tag.line + 1) as usize)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_bead_about_a_function_ranks_its_definition_then_its_callers_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, cache, commit) = fixture_repo(dir.path()).await;
    let tags = repo_tags(&repo, &commit, &cache).await.expect("tags");
    let ranked = rank_definitions(&tags.tags, Focus { text: BEAD, files: &[] });

    assert_eq!(
        (ranked[0].file.as_str(), ranked[0].name.as_str()),
        ("src/humanize/time.py", "naturaldelta")
    );
    let callers: Vec<_> = ranked[1..].iter().take_while(|d| d.tier == Tier::Caller).collect();
    let names: Vec<String> = callers.iter().map(|d| format!("{}:{}", d.file, d.name)).collect();
    assert!(
        names.contains(&"src/humanize/time.py:naturaltime".to_string()),
        "naturaltime calls naturaldelta: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("tests/test_time.py:")),
        "the tests call it too: {names:?}"
    );
    // Every definition ranked as a caller does call it, by its own source text.
    for caller in &callers {
        let tag = tags
            .tags
            .iter()
            .find(|t| t.file == caller.file && t.line == caller.line && t.name == caller.name)
            .expect("the caller's tag");
        assert!(
            span_text(tag).contains("naturaldelta("),
            "{}:{} does not call it",
            tag.file,
            tag.name
        );
    }
    // And the rendered map shows them first: the function, then its callers.
    let map = ranked_repo_map(&repo, &commit, &cache, Focus { text: BEAD, files: &[] }, 512)
        .await
        .expect("map");
    assert!(map.text.starts_with("src/humanize/time.py:\n"), "{}", map.text);
    for shown in ["def naturaldelta(", "def naturaltime("] {
        assert!(map.text.contains(shown), "{shown} missing from\n{}", map.text);
    }
}

#[tokio::test]
async fn the_plans_files_steer_the_map_toward_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, cache, commit) = fixture_repo(dir.path()).await;
    let plan_files = ["src/humanize/filesize.py".to_string()];
    let map = ranked_repo_map(
        &repo,
        &commit,
        &cache,
        Focus {
            text: "Support IEC units",
            files: &plan_files,
        },
        128,
    )
    .await
    .expect("map");
    let first_file = map.text.split("\nsrc/").next().unwrap_or_default();
    assert!(
        first_file.starts_with("src/humanize/filesize.py:\n") && first_file.contains("  13: def naturalsize("),
        "{}",
        map.text
    );
    let unfocused = ranked_repo_map(&repo, &commit, &cache, Focus::default(), 128)
        .await
        .expect("map");
    assert!(
        !unfocused.text.starts_with("src/humanize/filesize.py:"),
        "{}",
        unfocused.text
    );
}

#[tokio::test]
async fn the_map_holds_its_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, cache, commit) = fixture_repo(dir.path()).await;
    let focus = Focus { text: BEAD, files: &[] };
    let mut shown = 0;
    for budget in [16, 64, 256, 1024, 4096] {
        let map = ranked_repo_map(&repo, &commit, &cache, focus, budget)
            .await
            .expect("map");
        assert!(map.tokens <= budget as usize, "budget {budget}: {} tokens", map.tokens);
        assert_eq!(map.tokens, estimated_tokens(&map.text));
        assert!(map.definitions >= shown, "a larger budget shows no less");
        shown = map.definitions;
    }
    assert!(shown > 50, "4096 tokens show much of the repository: {shown}");
    let off = ranked_repo_map(Path::new("/nonexistent"), &commit, &cache, focus, 0)
        .await
        .expect("a zero budget asks nothing of git");
    assert_eq!(off.text, "");
}

#[tokio::test]
async fn a_commit_is_parsed_once_and_a_new_commit_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, cache, commit) = fixture_repo(dir.path()).await;
    let first = repo_tags(&repo, &commit, &cache).await.expect("tags");
    assert!(!first.from_cache && first.files == 10 && !first.tags.is_empty());
    let again = repo_tags(&repo, &commit, &cache).await.expect("tags");
    assert!(again.from_cache);
    assert_eq!(again.tags, first.tags);

    // What the second call returned came from the cache file, not from parsing: a tag written
    // into the file comes back.
    let file = cache.join(format!("{commit}.json"));
    let mut planted = first.clone();
    planted.tags.push(Tag::definition(
        "planted.py",
        "only_in_the_cache",
        1,
        1,
        "def only_in_the_cache()",
    ));
    std::fs::write(&file, serde_json::to_vec(&planted).expect("json")).expect("write the cache");
    let cached = repo_tags(&repo, &commit, &cache).await.expect("tags");
    assert!(cached.tags.iter().any(|t| t.name == "only_in_the_cache"));

    std::fs::write(
        repo.join("src/humanize/extra.py"),
        "def brand_new():\n    return naturaldelta(1)\n",
    )
    .expect("write a file");
    let next = commit_all(&repo, "one more function").await;
    let parsed = repo_tags(&repo, &next, &cache).await.expect("tags");
    assert!(!parsed.from_cache && parsed.files == 11);
    assert!(parsed.tags.iter().any(|t| t.name == "brand_new"));
    assert!(!parsed.tags.iter().any(|t| t.name == "only_in_the_cache"));
}

#[tokio::test]
async fn oversized_vendored_hidden_and_linked_files_are_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("project");
    std::fs::create_dir_all(repo.join("vendor/lib")).expect("mkdir");
    std::fs::write(repo.join("app.py"), "def app():\n    return 1\n").expect("write");
    std::fs::write(repo.join("vendor/lib/dep.py"), "def vendored():\n    pass\n").expect("write");
    std::fs::create_dir_all(repo.join(".semgrep")).expect("mkdir");
    std::fs::write(repo.join(".semgrep/chum-1.py"), "def rule_fixture():\n    pass\n").expect("write");
    let big = format!(
        "def generated():\n    pass\n{}",
        "# padding\n".repeat(MAX_FILE_BYTES as usize / 10 + 1)
    );
    std::fs::write(repo.join("generated.py"), big).expect("write");
    std::os::unix::fs::symlink("app.py", repo.join("link.py")).expect("symlink");
    git(&repo, &["init", "-q", "-b", "main"]).await.expect("git init");
    let commit = commit_all(&repo, "files").await;
    let tags = repo_tags(&repo, &commit, &dir.path().join("cache"))
        .await
        .expect("tags");
    let names: Vec<&str> = tags.tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["app"], "{names:?}");
    assert_eq!(
        (tags.files, tags.skipped),
        (1, 1),
        "the large file is counted as skipped"
    );
    assert!(
        repo_tags(&repo, "not-a-commit", &dir.path().join("cache"))
            .await
            .is_err(),
        "only a full commit id names a cache file"
    );
}
