//! docker-compose.yml's worker, outside Docker: no Docker engine runs where CHUM is developed, so
//! the image's own entrypoint (scripts/docker-entrypoint.sh) and configuration (configs/docker.toml)
//! are run here directly, as the container runs them, with the variables docker-compose.yml sets
//! pointing at a real dev server and the test's directories instead of the containers'. The
//! image's PATH is mirrored: the workspace's binaries (the image's /usr/local/bin) and only the
//! `semgrep` and `bwrap` commands besides the system's.
//!
//! - `chum demo init` through the entrypoint makes the demo's project; the worker comes up on
//!   docker.toml, and the compose file's healthcheck (`docker-entrypoint.sh healthcheck`) passes,
//!   with Semgrep, git and (where it can run) bubblewrap found as the image finds them;
//! - every repository under the repos directory is a git `safe.directory`, once;
//! - a bead added with `chum create` is started by the dispatcher, approved at the gate and merged:
//!   docker.toml runs the demo's project with the scripted agent, Semgrep and the real DoD;
//! - a missing configuration, one that Docker made a directory, and a state directory that cannot
//!   be made each stop the entrypoint with a message that says what to do.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chum_testkit::*;

/// The variables docker-compose.yml gives the worker, which the test sets too (with its own
/// values); checked against the file so the two stay in step.
const COMPOSE_WORKER_VARIABLES: &[&str] = &[
    "CHUM_CONFIG",
    "CHUM__TEMPORAL__ADDRESS",
    "CHUM__TEMPORAL__UI_URL",
    "CHUM__STATE_DIR",
    "HOME",
    "CHUM__API__BIND",
    "CHUM_REPOS_DIR",
    "CHUM_API_TOKENS",
];

const TOKEN: &str = "compose-test-token-0123456789abcdef";

/// The container's world, in a temporary directory: repos, state, a home, a bin directory.
struct Container {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Container {
    /// The environment docker-compose.yml sets, pointing at `temporal` and the test's directories,
    /// plus the one the container does not need: the demo project's `repo`, which docker.toml
    /// names by its place in the container (/repos/demo).
    fn new(temporal: &str) -> Container {
        let dir = tempfile::tempdir().expect("a directory");
        let root = workspace_root();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::os::unix::fs::symlink(root.join(".tools/venv/bin/semgrep"), bin.join("semgrep")).expect("semgrep link");
        if let Some(bwrap) = bwrap() {
            std::os::unix::fs::symlink(bwrap, bin.join("bwrap")).expect("bwrap link");
        }
        let binaries = worker_binary().parent().expect("target dir").to_path_buf();
        // The binaries are built (and found) where the image copies them from.
        for built in [chum_cli(), scripted_agent(), netbridge()] {
            assert_eq!(built.parent(), Some(binaries.as_path()), "{}", built.display());
        }
        let path = format!(
            "{}:{}:{}",
            bin.display(),
            binaries.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).expect("repos");
        let api = format!("127.0.0.1:{}", free_port());
        let d = |p: &str| dir.path().join(p).display().to_string();
        let env = vec![
            ("PATH".into(), path),
            // In the state directory, as docker-compose.yml has it; the entrypoint makes it.
            ("HOME".into(), d("state/home")),
            (
                "CHUM_CONFIG".into(),
                root.join("configs/docker.toml").display().to_string(),
            ),
            ("CHUM__TEMPORAL__ADDRESS".into(), temporal.to_string()),
            ("CHUM__TEMPORAL__UI_URL".into(), "http://127.0.0.1:8080".into()),
            ("CHUM__STATE_DIR".into(), d("state")),
            ("CHUM__API__BIND".into(), api),
            ("CHUM_REPOS_DIR".into(), repos.display().to_string()),
            ("CHUM_API_TOKENS".into(), format!("operator:{TOKEN}:control")),
            ("CHUM__PROJECTS__DEMO__REPO".into(), d("repos/demo")),
            ("RUST_LOG".into(), "info".into()),
        ];
        Container { dir, env }
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} is not set"))
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn entrypoint(&self, args: &[&str]) -> Command {
        let mut command = Command::new(workspace_root().join("scripts/docker-entrypoint.sh"));
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        command
    }

    /// The entrypoint with `args`, to its end: (success, stdout + stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out: Output = self.entrypoint(args).output().expect("the entrypoint runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("panicked"), "{text}");
        (out.status.success(), text)
    }

    /// `chum ARGS` through the entrypoint, as `docker compose exec worker chum ARGS` runs it.
    fn chum(&self, args: &[&str]) -> String {
        let mut all = vec!["chum"];
        all.extend_from_slice(args);
        let (ok, text) = self.run(&all);
        assert!(ok, "chum {args:?} failed:\n{text}\nworker log:\n{}", self.log());
        text
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("worker.log")).unwrap_or_default()
    }
}

/// The worker the entrypoint execs (so this is its process, as PID 1's child under `init`).
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_images_entrypoint_runs_the_demo_project_on_docker_toml() {
    let compose = std::fs::read_to_string(workspace_root().join("docker-compose.yml")).expect("docker-compose.yml");
    for variable in COMPOSE_WORKER_VARIABLES {
        assert!(
            compose.contains(&format!("      {variable}: ")),
            "docker-compose.yml no longer sets {variable}"
        );
    }
    assert!(
        compose.contains(r#"test: ["CMD", "docker-entrypoint.sh", "healthcheck"]"#),
        "the worker's healthcheck is not the entrypoint's"
    );

    let harness = Harness::with_steps("compose", Vec::new()).await;
    let container = Container::new(&harness.address);

    let repo = container.path("repos/demo");
    let (ok, text) = container.run(&["chum", "demo", "init", &repo.display().to_string()]);
    assert!(ok && text.contains("created the demo project"), "{text}");

    let log = std::fs::File::create(container.path("worker.log")).expect("log file");
    let child = container
        .entrypoint(&[])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the worker starts");
    let mut worker = Worker(child);

    // The compose file's healthcheck, until it passes (the container's start_period is 60 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    let health = loop {
        let (ok, text) = container.run(&["healthcheck"]);
        if ok {
            break text;
        }
        assert!(
            worker.0.try_wait().expect("wait").is_none(),
            "the worker exited:\n{}",
            container.log()
        );
        assert!(
            Instant::now() < deadline,
            "never healthy: {text}\nworker log:\n{}",
            container.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(health.starts_with("healthy: http://127.0.0.1:"), "{health}");

    // What it read: Temporal, the store, Semgrep (found beside the `semgrep` on PATH, as in the
    // image), git, and the demo project's sandbox: bubblewrap wherever it can run.
    let report: serde_json::Value = http_client()
        .get(format!("http://{}/health", container.var("CHUM__API__BIND")))
        .send()
        .await
        .expect("GET /health")
        .json()
        .await
        .expect("JSON");
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no {name} check: {report}"))
            .clone()
    };
    for name in ["temporal", "store", "semgrep", "git"] {
        assert_eq!(check(name)["ok"], true, "{report}");
    }
    assert!(
        check("semgrep")["detail"]
            .as_str()
            .is_some_and(|d| d.ends_with("semgrep-core")),
        "{report}"
    );
    if harness.sandbox_works() {
        let sandbox = check("sandbox:demo");
        assert!(
            sandbox["detail"].as_str().is_some_and(|d| d.starts_with("bwrap (")),
            "{report}"
        );
    }

    let gitconfig = std::fs::read_to_string(container.path("state/home/.gitconfig")).expect("the global git config");
    let safe = format!("directory = {}", repo.display());
    assert_eq!(gitconfig.matches(&safe).count(), 1, "{gitconfig}");

    // The demo's first bead, as `make demo` adds it; the dispatcher starts its Shark.
    container.chum(&[
        "create",
        "Add slugify() to textkit",
        "--id",
        "tk-1a",
        "--priority",
        "1",
        "--type",
        "feature",
        "-d",
        "Blog titles need URL slugs. Add textkit.slug.slugify(title) -> str.",
    ]);
    container.chum(&["watch", "tk-1a", "--until", "awaiting_approval", "--timeout", "3m"]);
    container.chum(&["approve", "tk-1a", "--by", "operator", "--feedback", "go"]);
    container.chum(&["watch", "tk-1a", "--timeout", "8m"]);

    let merged = git(&repo, &["log", "--format=%s", "main"]);
    assert!(merged.contains("tk-1a"), "main does not have tk-1a:\n{merged}");
    assert!(git(&repo, &["show", "main:textkit/slug.py"]).contains("def slugify"));

    // A restart marks no repository twice.
    let _ = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the worker did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, text) = container.run(&["--check"]);
    assert!(ok && text.contains("docker.toml: ok (1 project(s)"), "{text}");
    let gitconfig = std::fs::read_to_string(container.path("state/home/.gitconfig")).expect("the global git config");
    assert_eq!(gitconfig.matches(&safe).count(), 1, "{gitconfig}");
}

#[test]
fn the_entrypoint_says_what_to_do_about_a_missing_config_or_state_dir() {
    let mut container = Container::new("http://127.0.0.1:1");
    let set = |container: &mut Container, key: &str, value: String| {
        container.env.retain(|(k, _)| k != key);
        container.env.push((key.into(), value));
    };

    set(&mut container, "CHUM_CONFIG", "/etc/chum/nothing-here.toml".into());
    let (ok, text) = container.run(&[]);
    assert!(!ok);
    assert!(
        text.contains("/etc/chum/nothing-here.toml does not exist") && text.contains("set CHUM_CONFIG"),
        "{text}"
    );

    // What Docker leaves when the host file of a bind mount is missing.
    let made_by_docker = container.path("chum.toml");
    std::fs::create_dir_all(&made_by_docker).expect("a directory");
    set(&mut container, "CHUM_CONFIG", made_by_docker.display().to_string());
    let (ok, text) = container.run(&[]);
    assert!(!ok);
    assert!(
        text.contains("is a directory, not a file") && text.contains("cp configs/chum.example.toml configs/chum.toml"),
        "{text}"
    );

    // A state directory that cannot be made (here a file is in its way; in a container, most
    // often a volume owned by another user).
    set(
        &mut container,
        "CHUM_CONFIG",
        workspace_root().join("configs/docker.toml").display().to_string(),
    );
    std::fs::write(container.path("volume"), "").expect("a file");
    let state = container.path("volume/state");
    set(&mut container, "CHUM__STATE_DIR", state.display().to_string());
    let (ok, text) = container.run(&[]);
    assert!(!ok);
    assert!(
        text.contains(&format!("cannot create the state directory {}", state.display()))
            && text.contains("Not a directory")
            && text.contains("CHUM_UID"),
        "{text}"
    );
}
