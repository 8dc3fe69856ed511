//! The repository keeps the shape docs/ARCHITECTURE.md describes. These checks read the source
//! tree as text; each failure says which file and what to do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lines a source file may have (its unit tests aside) before the code map must say why.
const LONG_FILE_LINES: usize = 600;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/core sits two levels under the workspace root")
        .to_path_buf()
}

fn architecture() -> String {
    std::fs::read_to_string(workspace_root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md is readable")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The crates, as their folder names under `crates/`.
fn crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace_root().join("crates"))
        .expect("crates/ is readable")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The code map's section of a crate: from its `### crates/<name>` heading to the next heading.
fn section<'a>(doc: &'a str, krate: &str) -> Option<&'a str> {
    let heading = format!("### `crates/{krate}`");
    let start = doc.find(&heading)?;
    let rest = &doc[start + heading.len()..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    Some(&rest[..end])
}

/// A file's lines without its `#[cfg(test)] mod tests` block (which sits at the end by convention).
fn code_lines(text: &str) -> usize {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    code.lines().count()
}

#[test]
fn every_module_file_is_named_in_the_code_map_under_its_crate() {
    let doc = architecture();
    let mut missing = Vec::new();
    for krate in crates() {
        let Some(section) = section(&doc, &krate) else {
            missing.push(format!("crates/{krate} (no `### `crates/{krate}`` section)"));
            continue;
        };
        let src = workspace_root().join("crates").join(&krate).join("src");
        for file in rust_files(&src) {
            let relative = file
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            if !section.contains(&format!("`{relative}`")) {
                missing.push(format!("crates/{krate}/src/{relative}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name these module files in their crate's section \
         (name each as `path/under/src.rs`, with what it holds):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_code_map_names_no_file_that_is_gone() {
    let doc = architecture();
    let mut gone = Vec::new();
    for krate in crates() {
        let Some(section) = section(&doc, &krate) else { continue };
        let src = workspace_root().join("crates").join(&krate).join("src");
        for name in section.split('`').skip(1).step_by(2) {
            // Paths from the workspace root (`crates/...`) and files beside src (`build.rs`) are
            // other references; a bare module path must exist under src.
            let module_path = name.ends_with(".rs") && !name.contains(' ') && !name.starts_with("crates/");
            if module_path && !src.join(name).is_file() && !src.parent().is_some_and(|c| c.join(name).is_file()) {
                gone.push(format!("crates/{krate}/src/{name}"));
            }
        }
    }
    assert!(
        gone.is_empty(),
        "docs/ARCHITECTURE.md names files that do not exist:\n  {}",
        gone.join("\n  ")
    );
}

#[test]
fn the_workflows_crate_depends_only_on_what_replays() {
    let manifest = std::fs::read_to_string(workspace_root().join("crates/workflows/Cargo.toml")).expect("manifest");
    let manifest: toml::Table = manifest.parse().expect("crates/workflows/Cargo.toml is TOML");
    let allowed: BTreeSet<&str> = [
        "chum-core",
        "temporalio-sdk",
        "temporalio-common",
        "temporalio-workflow",
        "futures",
        "serde_json",
    ]
    .into();
    let deps = manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .expect("[dependencies]");
    let extra: Vec<&String> = deps.keys().filter(|k| !allowed.contains(k.as_str())).collect();
    assert!(
        extra.is_empty(),
        "crates/workflows must stay deterministic; these dependencies are not on its allow-list: {extra:?}. \
         Do the I/O in an activity (crates/activities) and call it through chum_core::activity_contract."
    );
}

#[test]
fn core_and_workflows_do_no_io() {
    // Tokens that mean files, processes, databases, the environment or the wall clock.
    let forbidden = [
        "std::fs",
        "tokio::fs",
        "std::process",
        "tokio::process",
        "rusqlite",
        "std::env::var",
        "SystemTime::now",
        "Instant::now",
        "tokio::net",
    ];
    let mut found = Vec::new();
    for krate in ["core", "workflows"] {
        let src = workspace_root().join("crates").join(krate).join("src");
        for file in rust_files(&src) {
            let text = std::fs::read_to_string(&file).expect("source is readable");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for token in forbidden.iter().filter(|t| code.contains(*t)) {
                    found.push(format!("{}:{}: {token}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "core and workflows are pure (docs/ARCHITECTURE.md); move these into crates/activities:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn a_long_source_file_says_why_in_the_code_map() {
    let doc = architecture();
    let reasons = doc
        .split("## Files over 600 lines")
        .nth(1)
        .map(|s| s.split("\n## ").next().unwrap_or(s))
        .unwrap_or("");
    let mut unexplained = Vec::new();
    for krate in crates() {
        let src = workspace_root().join("crates").join(&krate).join("src");
        for file in rust_files(&src) {
            let text = std::fs::read_to_string(&file).expect("source is readable");
            let lines = code_lines(&text);
            let relative = format!(
                "crates/{krate}/src/{}",
                file.strip_prefix(&src).expect("under src").display()
            );
            if lines > LONG_FILE_LINES && !reasons.contains(&format!("`{relative}`")) {
                unexplained.push(format!("{relative} ({lines} lines)"));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "split these files, or name each in docs/ARCHITECTURE.md's \"Files over 600 lines\" with the reason:\n  {}",
        unexplained.join("\n  ")
    );
}
