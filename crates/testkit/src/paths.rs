//! Where the tools the tests run are: the workspace's own binaries (built once per test process
//! when `cargo test` did not build them), and what `scripts/setup.sh` installed into `.tools/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The `temporal` CLI installed by scripts/setup.sh (or given by CHUM_TEMPORAL_BIN).
pub fn temporal_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CHUM_TEMPORAL_BIN") {
        return PathBuf::from(path);
    }
    let local = workspace_root().join(".tools/venv/bin/temporal");
    if local.exists() {
        return local;
    }
    which::which("temporal")
        .unwrap_or_else(|_| panic!("no `temporal` binary: run scripts/setup.sh (it installs one into .tools/)"))
}

/// The scripted agent binary.
pub fn scripted_agent() -> PathBuf {
    // The benchmark (a release build) names its own.
    if let Some(agent) = std::env::var_os("CHUM_SCRIPTED_AGENT") {
        return PathBuf::from(agent);
    }
    workspace_binary("chum-scripted-agent")
}

/// The bridge that carries a sandbox's traffic to its egress proxy.
pub fn netbridge() -> PathBuf {
    if let Some(bridge) = std::env::var_os("CHUM_NETBRIDGE") {
        return PathBuf::from(bridge);
    }
    workspace_binary("chum-netbridge")
}

/// The `chum` CLI (package chum-cli).
pub fn chum_cli() -> PathBuf {
    workspace_binary("chum")
}

/// The `worker` binary.
pub fn worker_binary() -> PathBuf {
    workspace_binary("worker")
}

/// `chum --config <config> <args>`: (exit code, stdout, stderr).
pub fn run_chum(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(chum_cli())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("chum runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary `bin` of this workspace next to the test executables; the workspace's binaries are
/// built (or found up to date) once per test process, when `cargo test` did not build them.
fn workspace_binary(bin: &'static str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let exe = std::env::current_exe().expect("test exe");
    let target_dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    let binary = target_dir.join(bin);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !*built {
        // The profile of this executable (the benchmark is a release build).
        let release = target_dir.file_name().is_some_and(|d| d == "release");
        // The whole workspace's binaries, as `make test` builds them: a `-p` build would unify
        // features differently and compile the Temporal crates a second time.
        let mut cargo = Command::new(env!("CARGO"));
        // Without the variables cargo set for this test (CARGO_PKG_*, CARGO_MANIFEST_DIR, ...):
        // build scripts that watch them would see a change and rebuild, twice per run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR" {
                cargo.env_remove(&key);
            }
        }
        let status = cargo
            .args(["build", "-q", "--workspace", "--bins"])
            .args(release.then_some("--release"))
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("running cargo build for {bin}: {e}"));
        assert!(status.success(), "building the workspace's binaries failed");
        *built = true;
    }
    assert!(binary.exists(), "{} missing after build", binary.display());
    binary
}

/// The bubblewrap setup installs (or the one on PATH); `None` where there is none, and then
/// `CHUM_REQUIRE_SANDBOX=1` (set by CI) makes that a failure instead of unsandboxed tests.
pub fn bwrap() -> Option<PathBuf> {
    let local = workspace_root().join(".tools/bin/bwrap");
    let found = if local.is_file() {
        Some(local)
    } else {
        which::which("bwrap").ok()
    };
    if found.is_none() && std::env::var("CHUM_REQUIRE_SANDBOX").is_ok_and(|v| v == "1") {
        panic!("CHUM_REQUIRE_SANDBOX=1 but there is no bwrap: run scripts/setup.sh");
    }
    found
}

/// The semgrep-core engine inside the semgrep that scripts/setup.sh installed.
pub fn semgrep_core() -> PathBuf {
    let lib = workspace_root().join(".tools/venv/lib");
    std::fs::read_dir(&lib)
        .unwrap_or_else(|_| panic!("{} missing: run scripts/setup.sh", lib.display()))
        .flatten()
        .map(|e| e.path().join("site-packages/semgrep/bin/semgrep-core"))
        .find(|p| p.is_file())
        .expect("semgrep-core in .tools/venv: run scripts/setup.sh")
}

/// The venv with the pinned mypy that scripts/setup.sh installs (the named-gate tests' type
/// checker), and the directories a sandbox must show for it to run: the venv and the Python
/// installation its interpreter links to (which may sit in the hidden home, e.g. pyenv's).
pub fn mypy_venv() -> (PathBuf, Vec<PathBuf>) {
    tool_venv("mypy", "bin/mypy")
}

/// The venv with the pinned pytest that scripts/setup.sh installs (the payoff benchmark's test
/// runner), and the directories a sandbox must show for it, as [`mypy_venv`].
pub fn pytest_venv() -> (PathBuf, Vec<PathBuf>) {
    tool_venv("pytest", "bin/pytest")
}

/// `.tools/<name>`, a venv with `program`, and what a sandbox must show for it.
fn tool_venv(name: &str, program: &str) -> (PathBuf, Vec<PathBuf>) {
    let venv = workspace_root().join(".tools").join(name);
    assert!(
        venv.join(program).is_file(),
        "no {program} in {}: run scripts/setup.sh",
        venv.display()
    );
    let interpreter = std::fs::canonicalize(venv.join("bin/python3"))
        .unwrap_or_else(|e| panic!("the {name} venv's python3 does not resolve ({e}): run scripts/setup.sh"));
    let prefix = interpreter
        .parent()
        .and_then(Path::parent)
        .expect("the interpreter sits in <prefix>/bin")
        .to_path_buf();
    (venv.clone(), vec![venv, prefix])
}
