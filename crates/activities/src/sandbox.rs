//! Sandboxing agent and DoD processes with bubblewrap (`bwrap`).
//!
//! A sandboxed process sees the system read-only, the attempt's worktree as the one writable
//! place it shares with the world (plus a scratch HOME and TMPDIR of its own), no network unless
//! its provider allows it, its own PID namespace (everything in it dies with it), and at most
//! `[sandbox] max_processes` tasks where the machine lets CHUM use a pids cgroup. The worker's home
//! directory, `/tmp` and the configured `hide` paths are covered with empty directories; the paths
//! the process needs inside them (worktree, program, prompt, the repository's `.git`) are mounted
//! back.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use chum_core::config::{SandboxMode, SandboxSettings};

use crate::process::ProcessSpec;

/// Which sandbox a run gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Sandboxing {
    /// bubblewrap at this path; it was checked to work on this machine.
    Bwrap(PathBuf),
    /// No sandbox, and why (the configuration says so, or bwrap cannot run here).
    Unsandboxed(String),
}

impl Sandboxing {
    /// One line for logs, `chum doctor` and run reports.
    pub fn describe(&self) -> String {
        match self {
            Sandboxing::Bwrap(path) => format!("bwrap ({})", path.display()),
            Sandboxing::Unsandboxed(why) => format!("none: {why}"),
        }
    }

    pub fn is_sandboxed(&self) -> bool {
        matches!(self, Sandboxing::Bwrap(_))
    }
}

/// Finds the bwrap program: the configured one, `CHUM_BWRAP`, or `bwrap` on PATH.
pub fn locate_bwrap(settings: &SandboxSettings) -> Result<PathBuf, String> {
    if let Some(path) = settings
        .bwrap
        .clone()
        .or_else(|| std::env::var_os("CHUM_BWRAP").map(PathBuf::from))
    {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("bwrap {} does not exist ([sandbox] bwrap)", path.display()))
        };
    }
    which::which("bwrap").map_err(|_| {
        "`bwrap` is not on PATH; run scripts/setup.sh (it puts bubblewrap into .tools/bin), install the Debian package `bubblewrap`, or set [sandbox] bwrap".to_string()
    })
}

/// Whether bwrap can make the namespaces it needs here (user namespaces may be off, or a
/// container may forbid them). Checked once per program per worker.
fn probe(bwrap: &Path) -> Result<(), String> {
    /// What each bwrap program's probe found.
    type Probes = Vec<(PathBuf, Result<(), String>)>;
    static PROBES: OnceLock<Mutex<Probes>> = OnceLock::new();
    let probes = PROBES.get_or_init(|| Mutex::new(Vec::new()));
    let mut probes = match probes.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((_, known)) = probes.iter().find(|(p, _)| p == bwrap) {
        return known.clone();
    }
    let result = std::process::Command::new(bwrap)
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--",
            "true",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{} cannot be started: {e}", bwrap.display()))
        .and_then(|out| {
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{} cannot create its namespaces here: {}",
                    bwrap.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        });
    probes.push((bwrap.to_path_buf(), result.clone()));
    result
}

/// The sandbox for a project's `sandbox` mode. `auto` falls back to none (with the reason, which
/// callers log as a warning); `bwrap` that cannot run is an error.
pub fn resolve(mode: SandboxMode, settings: &SandboxSettings) -> Result<Sandboxing, String> {
    if mode == SandboxMode::None {
        return Ok(Sandboxing::Unsandboxed("sandbox = \"none\" for this project".into()));
    }
    let found = locate_bwrap(settings).and_then(|path| probe(&path).map(|()| path));
    match (found, mode) {
        (Ok(path), _) => Ok(Sandboxing::Bwrap(path)),
        (Err(why), SandboxMode::Bwrap) => Err(format!(
            "sandbox = \"bwrap\" but {why}; fix that, or set the project's sandbox to \"auto\" or \"none\""
        )),
        (Err(why), _) => {
            warn_fallback(&why);
            Ok(Sandboxing::Unsandboxed(format!("sandbox = \"auto\" and {why}")))
        }
    }
}

/// Logs the fallback once per worker, loudly; every run's report says it again.
fn warn_fallback(why: &str) {
    static WARNED: OnceLock<()> = OnceLock::new();
    if WARNED.set(()).is_ok() {
        tracing::warn!("AGENTS RUN UNSANDBOXED: sandbox = \"auto\" found no working bwrap: {why}");
    }
}

/// What one sandboxed process may touch.
#[derive(Debug, Clone, Default)]
pub struct SandboxPolicy {
    /// Where it runs and writes: the attempt's worktree (or the agent's scratch directory).
    pub workdir: PathBuf,
    /// A directory of its own for HOME and TMPDIR (created, writable).
    pub scratch: PathBuf,
    /// Paths shown read-only even when they are inside a hidden directory.
    pub readable: Vec<PathBuf>,
    /// More writable paths (a provider's `writable`).
    pub writable: Vec<PathBuf>,
    pub network: bool,
}

/// The directories covered with an empty tmpfs: the worker's home, `/tmp`, and `[sandbox] hide`.
pub fn hidden_paths(settings: &SandboxSettings) -> Vec<PathBuf> {
    let mut hidden = vec![PathBuf::from("/tmp")];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && home.is_absolute()
        && home != Path::new("/")
    {
        hidden.push(home);
    }
    hidden.extend(settings.hide.iter().cloned());
    hidden
}

/// The program's own files: its directory and, when it is a link (npm's `bin/`), the directory
/// of what it links to. A program installed by npm gets its whole `node_modules` tree: its
/// dependencies (Codex's native binary is a sibling package) live beside it, not under it.
pub fn program_paths(program: &Path) -> Vec<PathBuf> {
    let mut candidates = vec![program.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(program) {
        candidates.push(real);
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    for path in candidates {
        let node_modules = path
            .ancestors()
            .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
            .last()
            .map(Path::to_path_buf);
        for dir in [path.parent().map(Path::to_path_buf), node_modules]
            .into_iter()
            .flatten()
        {
            if !paths.contains(&dir) {
                paths.push(dir);
            }
        }
    }
    paths
}

/// Absolute paths among the arguments that exist (a prompt file, a scenario, a config file):
/// shown read-only, so a command template keeps working when they live in a hidden directory.
pub fn argument_paths(args: &[String]) -> Vec<PathBuf> {
    args.iter()
        .filter(|a| a.starts_with('/'))
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// Rewrites `spec` to run inside bwrap with `policy`. Creates the scratch directories.
pub fn wrap(
    spec: ProcessSpec,
    bwrap: &Path,
    settings: &SandboxSettings,
    policy: &SandboxPolicy,
) -> std::io::Result<ProcessSpec> {
    let home = policy.scratch.join("home");
    let tmp = policy.scratch.join("tmp");
    std::fs::create_dir_all(&home)?;
    std::fs::create_dir_all(&tmp)?;
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    push(&["--die-with-parent", "--new-session", "--unshare-all"]);
    if policy.network {
        push(&["--share-net"]);
    }
    push(&["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
    let path_arg = |p: &Path| p.display().to_string();
    let hidden: Vec<PathBuf> = hidden_paths(settings).into_iter().filter(|h| h.is_dir()).collect();
    for dir in &hidden {
        args.extend(["--tmpfs".to_string(), path_arg(dir)]);
    }
    let mut readable = policy.readable.clone();
    readable.extend(program_paths(&spec.program));
    readable.extend(argument_paths(&spec.args));
    for path in readable {
        if path.exists() {
            args.extend(["--ro-bind".to_string(), path_arg(&path), path_arg(&path)]);
        }
    }
    let mut writable = vec![policy.scratch.clone(), policy.workdir.clone()];
    writable.extend(policy.writable.iter().cloned());
    for path in writable {
        if path.exists() {
            args.extend(["--bind".to_string(), path_arg(&path), path_arg(&path)]);
        }
    }
    // The empty directories over hidden paths are read-only too (what is mounted back in them
    // keeps its own mode), so a write there fails instead of vanishing with the sandbox.
    for dir in &hidden {
        args.extend(["--remount-ro".to_string(), path_arg(dir)]);
    }
    args.extend([
        "--setenv".into(),
        "HOME".into(),
        path_arg(&home),
        "--setenv".into(),
        "TMPDIR".into(),
        path_arg(&tmp),
        "--chdir".into(),
        path_arg(&spec.cwd),
        "--".into(),
        path_arg(&spec.program),
    ]);
    args.extend(spec.args.iter().cloned());
    Ok(ProcessSpec {
        program: bwrap.to_path_buf(),
        args,
        ..spec
    })
}

/// A process ready to run: sandboxed or not (and why), with its task limit.
pub struct Prepared {
    pub spec: ProcessSpec,
    pub sandboxing: Sandboxing,
    /// Keep it until the process has ended: dropping it kills what is left in the cgroup.
    pub pids: Option<PidsLimit>,
}

/// Puts `spec` in the sandbox `mode` asks for. An error only when `mode` is `bwrap` and it cannot
/// run, or the scratch directory cannot be made.
pub fn prepare(
    spec: ProcessSpec,
    mode: SandboxMode,
    settings: &SandboxSettings,
    policy: &SandboxPolicy,
) -> Result<Prepared, String> {
    let sandboxing = resolve(mode, settings)?;
    let Sandboxing::Bwrap(bwrap) = &sandboxing else {
        return Ok(Prepared {
            spec,
            sandboxing,
            pids: None,
        });
    };
    let mut spec = wrap(spec, bwrap, settings, policy).map_err(|e| {
        format!(
            "cannot make the sandbox's scratch directory {}: {e}",
            policy.scratch.display()
        )
    })?;
    let pids = PidsLimit::create(settings.max_processes);
    spec.cgroup_procs = pids.as_ref().map(PidsLimit::procs_file);
    Ok(Prepared { spec, sandboxing, pids })
}

/// A pids cgroup bounding the tasks of one sandboxed run (a fork bomb stops at the limit), when
/// the machine lets CHUM create one (cgroup v1 `pids` or v2 with the pids controller, writable).
/// Dropping it kills whatever is still in it and removes it.
pub struct PidsLimit {
    dir: PathBuf,
}

impl PidsLimit {
    /// `None` when no writable pids cgroup hierarchy is found; the run then relies on its PID
    /// namespace and the timeout.
    pub fn create(max: u32) -> Option<PidsLimit> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("chum-{}-{n}", std::process::id());
        for root in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
            let root = Path::new(root);
            if !root.join("cgroup.procs").exists() {
                continue;
            }
            let dir = root.join(&name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            if std::fs::write(dir.join("pids.max"), max.to_string()).is_ok() {
                return Some(PidsLimit { dir });
            }
            let _ = std::fs::remove_dir(&dir);
        }
        None
    }

    /// The file the child writes its pid to before it execs (`ProcessSpec::cgroup_procs`).
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Whether the limit was hit (the kernel counts refused forks in `pids.events`).
    pub fn was_hit(&self) -> bool {
        std::fs::read_to_string(self.dir.join("pids.events"))
            .ok()
            .and_then(|t| t.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
            .is_some_and(|n| n > 0)
    }
}

impl Drop for PidsLimit {
    fn drop(&mut self) {
        empty_and_remove(&self.dir);
    }
}

/// Kills every process in a cgroup (until it stays empty, at most ~1 s) and removes it.
/// Returns how many distinct processes were signalled.
fn empty_and_remove(dir: &Path) -> usize {
    let mut killed = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill only sends a signal; a pid that is already gone gives ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            killed.insert(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir(dir);
    killed.len()
}

/// Kills what runs of a dead worker left behind: the pids cgroups named after a worker process
/// that no longer exists (`chum-<pid>-<n>`). bwrap's `--die-with-parent` stops a sandbox whose
/// worker dies, except in the instant while bwrap is still setting itself up; the cgroup, joined
/// before bwrap even starts, catches those too. Called when a worker starts; returns one line
/// per cgroup emptied, for the log.
pub fn reap_orphans() -> Vec<String> {
    let mut reaped = Vec::new();
    for root in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
        let Ok(entries) = std::fs::read_dir(root) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = name
                .strip_prefix("chum-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            let killed = empty_and_remove(&entry.path());
            if killed == 0 {
                continue;
            }
            reaped.push(format!(
                "killed {killed} process(es) an earlier worker (pid {owner}) left in {}",
                entry.path().display()
            ));
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_workers_cgroup_is_emptied_and_removed() {
        let Some(limit) = PidsLimit::create(16) else {
            eprintln!("SKIPPED: no writable pids cgroup here");
            return;
        };
        // A pid that existed and is gone: the "dead worker" the cgroup is named after.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let orphan_dir = limit.dir.with_file_name(format!("chum-{dead}-0"));
        std::fs::rename(&limit.dir, &orphan_dir).unwrap();
        std::mem::forget(limit);
        let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(orphan_dir.join("cgroup.procs"), sleeper.id().to_string()).unwrap();

        let reaped = reap_orphans();
        assert!(
            reaped
                .iter()
                .any(|l| l.contains(&format!("(pid {dead})")) && l.contains("killed 1")),
            "{reaped:?}"
        );
        let status = sleeper.wait().unwrap();
        assert!(!status.success(), "the orphan was killed");
        assert!(!orphan_dir.exists());
    }

    fn settings() -> SandboxSettings {
        SandboxSettings {
            bwrap: None,
            max_processes: 512,
            hide: vec![PathBuf::from("/srv/secrets")],
        }
    }

    #[test]
    fn an_npm_program_brings_its_whole_node_modules_tree() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("npm/node_modules/.bin");
        let pkg = dir.path().join("npm/node_modules/@openai/codex/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("codex.js"), "").unwrap();
        std::os::unix::fs::symlink(pkg.join("codex.js"), bin.join("codex")).unwrap();
        let paths = program_paths(&bin.join("codex"));
        let root = std::fs::canonicalize(dir.path().join("npm/node_modules")).unwrap();
        assert!(paths.contains(&dir.path().join("npm/node_modules")), "{paths:?}");
        assert!(
            paths.contains(&root) || paths.contains(&dir.path().join("npm/node_modules")),
            "{paths:?}"
        );
        let plain = program_paths(Path::new("/usr/bin/git"));
        assert_eq!(plain[0], PathBuf::from("/usr/bin"));
    }

    #[test]
    fn none_is_unsandboxed_and_says_why() {
        let s = resolve(SandboxMode::None, &settings()).unwrap();
        assert!(!s.is_sandboxed());
        assert!(s.describe().contains("sandbox = \"none\""));
    }

    #[test]
    fn a_required_bwrap_that_does_not_exist_is_an_error_naming_the_key() {
        let mut s = settings();
        s.bwrap = Some(PathBuf::from("/nonexistent/bwrap"));
        let err = resolve(SandboxMode::Bwrap, &s).unwrap_err();
        assert!(
            err.contains("/nonexistent/bwrap") && err.contains("[sandbox] bwrap"),
            "{err}"
        );
        let auto = resolve(SandboxMode::Auto, &s).unwrap();
        assert!(!auto.is_sandboxed());
        assert!(auto.describe().contains("/nonexistent/bwrap"), "{}", auto.describe());
    }

    #[test]
    fn the_wrapped_command_hides_then_mounts_back_what_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let workdir = dir.path().join("wt");
        std::fs::create_dir_all(&workdir).unwrap();
        let prompt = dir.path().join("prompt.md");
        std::fs::write(&prompt, "x").unwrap();
        let spec = ProcessSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), "true".into(), prompt.display().to_string()],
            cwd: workdir.clone(),
            env: vec![],
            stdin: None,
            timeout: std::time::Duration::from_secs(1),
            stdout_path: dir.path().join("out"),
            stderr_path: dir.path().join("err"),
            capture_limit: 1024,
            cgroup_procs: None,
        };
        let policy = SandboxPolicy {
            workdir: workdir.clone(),
            scratch: dir.path().join("scratch"),
            readable: vec![],
            writable: vec![],
            network: false,
        };
        let wrapped = wrap(spec, Path::new("/usr/bin/bwrap"), &settings(), &policy).unwrap();
        let args = wrapped.args.join(" ");
        assert_eq!(wrapped.program, PathBuf::from("/usr/bin/bwrap"));
        assert!(!args.contains("--share-net"), "{args}");
        let tmpfs = args.find("--tmpfs /tmp").expect("tmp hidden");
        let back = args
            .find(&format!("--ro-bind {p} {p}", p = prompt.display()))
            .expect("prompt shown");
        let work = args
            .find(&format!("--bind {p} {p}", p = workdir.display()))
            .expect("worktree writable");
        assert!(tmpfs < back && back < work, "hide first, then mount back: {args}");
        assert!(
            args.ends_with(&format!("-- /bin/sh -c true {}", prompt.display())),
            "{args}"
        );
        assert!(dir.path().join("scratch/home").is_dir() && dir.path().join("scratch/tmp").is_dir());
    }
}
