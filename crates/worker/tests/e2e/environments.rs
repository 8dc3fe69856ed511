//! Real project environments in the sandbox: a Rust project whose definition of done builds and
//! tests with cargo and a crate dependency (from the machine's registry cache, offline), and a
//! Python project whose setup makes a virtualenv and installs a package from PyPI through the
//! egress proxy, and whose DoD reads a local settings file copied in from the main checkout. Setup, the agent and the DoD all run sandboxed; the sandbox hides the worker's
//! home, so the toolchains come in by the project's `toolchains` and `caches` mounts, and without
//! them the DoD fails with an error that names the hidden path.

use chum_core::proto::GateName;
use chum_core::proto::{Outcome, Phase};
use chum_testkit::*;
use serde_json::{Value, json};

async fn run_approved(
    h: &Harness,
    name: &str,
    limits: chum_core::proto::SharkLimits,
) -> (chum_core::proto::SharkResult, Vec<Value>) {
    h.with_worker(|client| async move {
        let handle = start_shark(&client, &h.task_queue, h.input(limits)).await;
        wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
        send_approve(&handle, json!({"approved": true, "by": "sam"})).await;
        let result = finish(&handle, name).await;
        (result, activity_results(&handle, "execute").await)
    })
    .await
}

const CARGO_TOML: &str =
    "[package]\nname = \"calcrs\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"=1.0.18\"\n";
const LIB_RS: &str = "pub fn add(a: u64, b: u64) -> u64 {\n    a + b\n}\n";
const LIB_RS_DONE: &str = "pub fn add(a: u64, b: u64) -> u64 {\n    a + b\n}\n\n/// The number in decimal, by the itoa crate.\npub fn render(n: u64) -> String {\n    itoa::Buffer::new().format(n).to_string()\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn renders_a_sum() {\n        assert_eq!(super::render(super::add(40, 2)), \"42\");\n    }\n}\n";

/// The Rust project, sandboxed, with these toolchain and cache mounts and setup commands.
fn rust_project(toolchains: &[&str], caches: &[&str], setup: &[&str]) -> HarnessOptions {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (toolchains, caches, setup) = (strings(toolchains), strings(caches), strings(setup));
    HarnessOptions {
        steps: vec![
            planner(GOOD_PLAN),
            Step::executor()
                .shell("cargo --version")
                .answer("Added render.")
                .write("src/lib.rs", LIB_RS_DONE),
        ],
        dod: vec!["cargo build --offline -q".into(), "cargo test --offline -q".into()],
        extra_files: vec![
            ("Cargo.toml".into(), CARGO_TOML.into()),
            ("src/lib.rs".into(), LIB_RS.into()),
            (".gitignore".into(), "/target\n".into()),
        ],
        ..Default::default()
    }
    .with_config(move |c| {
        let project = c.project();
        project.sandbox = Some("bwrap".into());
        project.toolchains = toolchains;
        project.caches = caches;
        project.setup = setup;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_project_builds_and_tests_in_its_sandbox_with_the_toolchain_mounted() {
    let h = &Harness::start(
        "env-rust",
        rust_project(
            &["~/.cargo/bin", "~/.rustup"],
            &["~/.cargo/registry"],
            &["cargo fetch --offline"],
        ),
    )
    .await;
    if !h.sandbox_works() {
        return;
    }
    let (result, executions) = run_approved(h, "env_rust", limits()).await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let dod = first_gate(&result, GateName::Dod).expect("the DoD ran");
    assert!(dod.passed, "{dod:?}");
    // The agent found cargo too (its shell's output is in its answer).
    let answer = std::fs::read_to_string(executions[0]["agent"]["stdout_artifact"].as_str().unwrap()).unwrap();
    assert!(answer.contains("cargo 1."), "{answer}");
    assert!(
        executions[0]["agent"]["sandbox"]
            .as_str()
            .unwrap()
            .starts_with("bwrap (")
    );
    // Setup ran in the worktree before the agent; its output is an artifact of the run.
    let setup_log = std::path::Path::new(&dod.artifact).with_file_name("setup-1-1.log");
    assert!(setup_log.exists(), "{}", setup_log.display());
    assert!(git(&h.repo, &["show", "main:src/lib.rs"]).contains("itoa::Buffer"));
    let files = git(&h.repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains("target/"), "build output was committed: {files}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_toolchain_mount_the_dod_fails_naming_the_hidden_path() {
    let h = &Harness::start("env-rust-hidden", rust_project(&[], &[], &[])).await;
    if !h.sandbox_works() {
        return;
    }
    let limits = chum_core::proto::SharkLimits {
        max_attempts: 1,
        ..limits()
    };
    let (result, _) = run_approved(h, "env_rust_hidden", limits).await;
    assert_eq!(result.outcome(), Outcome::Escalated, "{result:?}");
    let dod = first_gate(&result, GateName::Dod).expect("the DoD ran");
    assert!(!dod.passed);
    let cargo = which::which("cargo").expect("cargo on PATH");
    assert!(
        dod.excerpt
            .contains(&format!("`cargo` is {}, which the sandbox hides", cargo.display()))
            && dod.excerpt.contains("toolchains"),
        "{}",
        dod.excerpt
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_project_gets_its_virtualenv_from_setup_through_the_egress_proxy() {
    let test_six = "import unittest\n\nimport six\n\n\nclass SixTest(unittest.TestCase):\n    def test_six_is_in_the_venv(self):\n        self.assertEqual(six.__version__, \"1.16.0\")\n\n\nif __name__ == '__main__':\n    unittest.main()\n";
    let h = &Harness::start(
        "env-python",
        HarnessOptions {
            steps: good_work_with(|s| s.shell(".venv/bin/python -c 'import six; print(\"six\", six.__version__)'")),
            dod: vec![
                ".venv/bin/python -m unittest -q".into(),
                "grep -q 'SETTING=from-the-main-checkout' .env.local".into(),
            ],
            extra_files: vec![
                (".gitignore".into(), ".venv/\n__pycache__/\n".into()),
                ("test_six.py".into(), test_six.into()),
            ],
            ..Default::default()
        }
        .with_config(|c| {
            let project = c.project();
            project.sandbox = Some("bwrap".into());
            project.setup = vec![
                "python3 -m venv .venv".into(),
                ".venv/bin/pip install --no-cache-dir --disable-pip-version-check -q six==1.16.0".into(),
            ];
            project.setup_allow_hosts = vec!["pypi.org".into(), "files.pythonhosted.org".into()];
            project.setup_timeout = Some("5m".into());
            project.copy_files = vec![".env.local".into()];
        }),
    )
    .await;
    if !h.sandbox_works() {
        return;
    }
    // A local settings file of the main checkout that the DoD needs; nothing ignores it in git,
    // CHUM keeps it out of the commit.
    std::fs::write(h.repo.join(".env.local"), "SETTING=from-the-main-checkout\n").unwrap();
    let (result, executions) = run_approved(h, "env_python", limits()).await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let answer = std::fs::read_to_string(executions[0]["agent"]["stdout_artifact"].as_str().unwrap()).unwrap();
    assert!(answer.contains("six 1.16.0"), "the agent used the venv: {answer}");
    // Setup went out through the proxy, to PyPI and nowhere else.
    let dod = first_gate(&result, GateName::Dod).expect("the DoD ran");
    assert!(dod.passed, "{dod:?}");
    let egress = std::path::Path::new(&dod.artifact).with_file_name("setup-1-2.egress.log");
    let log = std::fs::read_to_string(&egress).unwrap_or_else(|e| panic!("{}: {e}", egress.display()));
    assert!(
        log.contains("allowed pypi.org:443") && !log.contains("refused"),
        "{log}"
    );
    let files = git(&h.repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains(".venv"), "the venv was committed: {files}");
    assert!(!files.contains(".env.local"), "the copied file was committed: {files}");
}
