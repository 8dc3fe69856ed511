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
use chum_core::egress::{AllowList, Surroundings};

use crate::exec::ProcessSpec;
use crate::exec::program::{ProgramError, given_path};
use crate::exec::{EgressClient, EgressProxy};

pub mod cgroups;
pub use cgroups::{Enforced, RunCgroups, RunLimits, reap_orphans};

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

/// Why a run cannot have the sandbox its project asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// `sandbox = "bwrap"` and no working bwrap.
    #[error("sandbox = \"bwrap\" but {0}; fix that, or set the project's sandbox to \"auto\" or \"none\"")]
    Required(ProgramError),
    /// The run may reach hosts, and the bridge to its egress proxy is missing.
    #[error("{0}")]
    Bridge(ProgramError),
    /// A piece of the sandbox could not be made (its scratch directory, the egress proxy).
    #[error("cannot {what} {}: {reason}", path.display())]
    Setup {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Finds the bwrap program: the configured one, `CHUM_BWRAP`, or `bwrap` on PATH.
pub fn locate_bwrap(settings: &SandboxSettings) -> Result<PathBuf, ProgramError> {
    if let Some(given) = given_path("bwrap", settings.bwrap.clone(), "[sandbox] bwrap", Some("CHUM_BWRAP")) {
        return given;
    }
    which::which("bwrap").map_err(|_| {
        ProgramError::not_found(
            "`bwrap`",
            "is not on PATH",
            "run scripts/setup.sh (it puts bubblewrap into .tools/bin), install the Debian package `bubblewrap`, or set [sandbox] bwrap",
        )
    })
}

/// Whether bwrap can make the namespaces it needs here (user namespaces may be off, or a
/// container may forbid them). Checked once per program per worker.
fn probe(bwrap: &Path) -> Result<(), ProgramError> {
    /// What each bwrap program's probe found.
    type Probes = Vec<(PathBuf, Result<(), ProgramError>)>;
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
        .map_err(|e| ProgramError::Unusable {
            path: bwrap.to_path_buf(),
            reason: format!("cannot be started: {e}"),
        })
        .and_then(|out| {
            if out.status.success() {
                Ok(())
            } else {
                Err(ProgramError::Unusable {
                    path: bwrap.to_path_buf(),
                    reason: format!(
                        "cannot create its namespaces here: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                })
            }
        });
    probes.push((bwrap.to_path_buf(), result.clone()));
    result
}

/// The sandbox for a project's `sandbox` mode. `auto` falls back to none (with the reason, which
/// callers log as a warning); `bwrap` that cannot run is an error.
pub fn resolve(mode: SandboxMode, settings: &SandboxSettings) -> Result<Sandboxing, SandboxError> {
    if mode == SandboxMode::None {
        return Ok(Sandboxing::Unsandboxed("sandbox = \"none\" for this project".into()));
    }
    let found = locate_bwrap(settings).and_then(|path| probe(&path).map(|()| path));
    match (found, mode) {
        (Ok(path), _) => Ok(Sandboxing::Bwrap(path)),
        (Err(why), SandboxMode::Bwrap) => Err(SandboxError::Required(why)),
        (Err(why), _) => {
            warn_fallback(&why.to_string());
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
    /// A directory of its own for HOME and TMPDIR (see [`scratch_dirs`]).
    pub scratch: PathBuf,
    /// Paths shown read-only even when they are inside a hidden directory.
    pub readable: Vec<PathBuf>,
    /// More writable paths (a provider's `writable`).
    pub writable: Vec<PathBuf>,
    /// Machine paths shown read-only (a project's `toolchains`); those under the worker's home
    /// also appear at the same place under the sandbox's HOME, where tools look for them.
    pub toolchains: Vec<PathBuf>,
    /// Machine paths writable and shared between runs (a project's `caches`), mirrored the same way.
    pub caches: Vec<PathBuf>,
}

/// Who may be reached from the sandbox: the allow-list and what the proxy needs to enforce it.
pub struct Network<'a> {
    pub allow: &'a AllowList,
    pub around: Surroundings,
    pub client: EgressClient,
}

/// The run's own HOME and TMPDIR under its scratch directory, created. Sandboxed or not, a
/// child's HOME is never the worker's.
pub fn scratch_dirs(scratch: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let home = scratch.join("home");
    let tmp = scratch.join("tmp");
    std::fs::create_dir_all(&home)?;
    std::fs::create_dir_all(&tmp)?;
    Ok((home, tmp))
}

fn worker_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h != Path::new("/"))
}

/// A `toolchains`/`caches` entry as a path on this machine: `~/x` is under the worker's home.
pub fn machine_path(entry: &str) -> PathBuf {
    match (entry.strip_prefix("~/"), worker_home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(entry),
    }
}

/// The directories covered with an empty tmpfs: the worker's home, `/tmp`, and `[sandbox] hide`.
pub fn hidden_paths(settings: &SandboxSettings) -> Vec<PathBuf> {
    let mut hidden = vec![PathBuf::from("/tmp")];
    hidden.extend(worker_home());
    hidden.extend(settings.hide.iter().cloned());
    hidden
}

/// A project's `toolchains` (read-only) and `caches` (writable) as paths on this machine. Caches
/// are made when missing, so the first run has somewhere to put what it downloads.
pub fn project_mounts(env: &chum_core::config::ProjectEnvironment) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let toolchains = env.toolchains.iter().map(|t| machine_path(t)).collect();
    let caches = env
        .caches
        .iter()
        .map(|c| machine_path(c))
        .inspect(|c| {
            if let Err(e) = std::fs::create_dir_all(c) {
                tracing::warn!(cache = %c.display(), "cannot make the cache directory: {e}");
            }
        })
        .collect();
    (toolchains, caches)
}

/// Why a command the shell could not find (exit 127) is missing in the sandbox, when it exists
/// outside it: its program sits in a directory the sandbox hides and nothing mounts back.
pub fn explain_not_found(command: &str, settings: &SandboxSettings, policy: &SandboxPolicy) -> Option<String> {
    let word = command
        .split_whitespace()
        .find(|w| !w.contains('=') || w.starts_with('/') || w.starts_with('.'))?;
    let program = if word.contains('/') {
        let path = PathBuf::from(word);
        path.is_absolute().then_some(path)?
    } else {
        which::which(word).ok()?
    };
    let mut mounted = policy.readable.clone();
    mounted.extend(policy.toolchains.iter().cloned());
    mounted.extend(policy.caches.iter().cloned());
    mounted.extend(policy.writable.iter().cloned());
    mounted.push(policy.workdir.clone());
    if !is_hidden(&program, settings, &mounted) {
        return None;
    }
    let dir = program.parent().unwrap_or(&program).to_path_buf();
    let under_home = worker_home()
        .and_then(|h| dir.strip_prefix(&h).ok().map(|rest| format!("~/{}", rest.display())))
        .unwrap_or_else(|| dir.display().to_string());
    Some(format!(
        "`{word}` is {}, which the sandbox hides; add its directory to the project's toolchains (e.g. toolchains = [\"{under_home}\"]) so sandboxed commands can run it",
        program.display()
    ))
}

/// Whether `path` is out of a sandbox's sight: inside a hidden directory and not mounted back.
pub fn is_hidden(path: &Path, settings: &SandboxSettings, mounted: &[PathBuf]) -> bool {
    hidden_paths(settings).iter().any(|h| path.starts_with(h)) && !mounted.iter().any(|m| path.starts_with(m))
}

/// The program's own files: its directory and, when it is a link (npm's `bin/`), the directory
/// of what it links to. A program installed by npm gets its whole `node_modules` tree: its
/// dependencies (Codex's native binary is a sibling package) live beside it, not under it. A
/// script in a Python venv (aider) gets the venv (its `site-packages`) and the Python
/// installation the venv was made from (`pyvenv.cfg`'s `home`), which may sit in a hidden
/// directory (pyenv's, under the home).
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
        let venv = path
            .parent()
            .and_then(Path::parent)
            .filter(|v| v.join("pyvenv.cfg").is_file())
            .map(Path::to_path_buf);
        let python = venv.as_deref().and_then(python_installation);
        for dir in [path.parent().map(Path::to_path_buf), node_modules, venv, python]
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

/// The installation a Python venv was made from: `pyvenv.cfg`'s `home` is its `bin`.
fn python_installation(venv: &Path) -> Option<PathBuf> {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    let home = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home").then(|| PathBuf::from(value.trim()))
    })?;
    let installation = home.parent()?.to_path_buf();
    installation.is_dir().then_some(installation)
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

/// Finds `chum-netbridge`: `[sandbox] netbridge`, `CHUM_NETBRIDGE`, beside the running binary (or
/// one directory up, where cargo puts binaries next to the test executables' `deps/`), or PATH.
pub fn locate_netbridge(settings: &SandboxSettings) -> Result<PathBuf, ProgramError> {
    if let Some(given) = given_path(
        "chum-netbridge",
        settings.netbridge.clone(),
        "[sandbox] netbridge",
        Some("CHUM_NETBRIDGE"),
    ) {
        return given;
    }
    if let Ok(exe) = std::env::current_exe() {
        let near = exe.parent().into_iter().flat_map(|d| [Some(d), d.parent()]).flatten();
        for dir in near {
            let candidate = dir.join("chum-netbridge");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    which::which("chum-netbridge").map_err(|_| {
        ProgramError::not_found(
            "chum-netbridge (it carries a sandbox's traffic to the egress proxy)",
            "is not beside the worker or on PATH",
            "build it with `cargo build -p chum-netbridge` or set [sandbox] netbridge",
        )
    })
}

/// Where a path under the worker's home appears under the sandbox's own HOME.
fn home_mirror(path: &Path, sandbox_home: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix(worker_home()?).ok()?;
    (!rest.as_os_str().is_empty()).then(|| sandbox_home.join(rest))
}

/// Rewrites `spec` to run inside bwrap with `policy`; with `egress` (the proxy's socket and the
/// bridge program) the process is started by the bridge, which gives the sandbox its only way out.
pub fn wrap(
    spec: ProcessSpec,
    bwrap: &Path,
    settings: &SandboxSettings,
    policy: &SandboxPolicy,
    egress: Option<(&Path, &Path)>,
) -> std::io::Result<ProcessSpec> {
    let (home, tmp) = scratch_dirs(&policy.scratch)?;
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    // --unshare-all includes the network: the sandbox has its own namespace with only loopback.
    push(&["--die-with-parent", "--new-session", "--unshare-all"]);
    push(&["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
    let path_arg = |p: &Path| p.display().to_string();
    let hidden: Vec<PathBuf> = hidden_paths(settings).into_iter().filter(|h| h.is_dir()).collect();
    for dir in &hidden {
        args.extend(["--tmpfs".to_string(), path_arg(dir)]);
    }
    let mut readable = policy.readable.clone();
    readable.extend(program_paths(&spec.program));
    readable.extend(argument_paths(&spec.args));
    readable.extend(policy.toolchains.iter().cloned());
    if let Some((_, bridge)) = egress {
        readable.extend(program_paths(bridge));
    }
    let bind = |args: &mut Vec<String>, flag: &str, from: &Path, to: &Path| {
        args.extend([flag.to_string(), path_arg(from), path_arg(to)]);
    };
    for path in readable.iter().filter(|p| p.exists()) {
        bind(&mut args, "--ro-bind", path, path);
    }
    let mut writable = vec![policy.scratch.clone(), policy.workdir.clone()];
    writable.extend(policy.writable.iter().cloned());
    writable.extend(policy.caches.iter().cloned());
    if let Some((socket, _)) = egress {
        writable.push(socket.to_path_buf());
    }
    for path in writable.iter().filter(|p| p.exists()) {
        bind(&mut args, "--bind", path, path);
    }
    // Toolchains and caches under the worker's home also where tools look with the sandbox's
    // HOME (rustup's proxies find ~/.rustup through $HOME), after the scratch mount they sit in.
    for (flag, paths) in [("--ro-bind", &policy.toolchains), ("--bind", &policy.caches)] {
        for path in paths.iter().filter(|p| p.exists()) {
            if let Some(mirror) = home_mirror(path, &home) {
                bind(&mut args, flag, path, &mirror);
            }
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
    ]);
    if let Some((socket, bridge)) = egress {
        args.extend([
            path_arg(bridge),
            "--listen".into(),
            format!("127.0.0.1:{}", crate::exec::BRIDGE_PORT),
            "--connect".into(),
            path_arg(socket),
            "--".into(),
        ]);
    }
    args.push(path_arg(&spec.program));
    args.extend(spec.args.iter().cloned());
    Ok(ProcessSpec {
        program: bwrap.to_path_buf(),
        args,
        ..spec
    })
}

/// A process ready to run: sandboxed or not (and why), with its limits and its network.
pub struct Prepared {
    pub spec: ProcessSpec,
    pub sandboxing: Sandboxing,
    /// Keep it until the process has ended: dropping it kills what is left in the cgroups.
    pub cgroups: Option<RunCgroups>,
    /// The run's egress proxy; keep it until the process has ended.
    pub egress: Option<EgressProxy>,
    /// What the process can reach, for logs and reports.
    pub network: String,
}

impl Prepared {
    pub fn process_limit_hit(&self) -> bool {
        self.cgroups.as_ref().is_some_and(RunCgroups::process_limit_hit)
    }

    pub fn memory_limit_hit(&self) -> bool {
        self.cgroups.as_ref().is_some_and(RunCgroups::memory_limit_hit)
    }

    /// The connections its proxy refused ("host:port: reason").
    pub fn egress_refused(&self) -> Vec<String> {
        self.egress.as_ref().map(EgressProxy::refused).unwrap_or_default()
    }
}

/// Puts `spec` in `sandboxing` with `policy`: its cgroups, and with a non-empty allow-list an
/// egress proxy and the bridge to it. An error when the scratch directory, the proxy or the
/// bridge cannot be had.
pub fn prepare(
    mut spec: ProcessSpec,
    sandboxing: &Sandboxing,
    settings: &SandboxSettings,
    policy: &SandboxPolicy,
    network: Option<Network<'_>>,
) -> Result<Prepared, SandboxError> {
    let Sandboxing::Bwrap(bwrap) = sandboxing else {
        return Ok(Prepared {
            spec,
            sandboxing: sandboxing.clone(),
            cgroups: None,
            egress: None,
            network: "not restricted (unsandboxed)".into(),
        });
    };
    let network = network.filter(|n| !n.allow.is_empty());
    let (egress, description) = match network {
        None => (None, "none".to_string()),
        Some(net) => {
            let bridge = locate_netbridge(settings).map_err(SandboxError::Bridge)?;
            let socket = crate::exec::socket_path(&net.client.name).map_err(|e| SandboxError::Setup {
                what: "make the egress proxy's socket directory under",
                path: std::env::temp_dir(),
                reason: e.to_string(),
            })?;
            let described = if net.allow.allows_any() {
                tracing::warn!(client = %net.client.name, "allow_hosts = [\"*\"]: this agent may reach ANY host (not loopback, this machine or the control plane)");
                "any host, through the egress proxy (allow_hosts = [\"*\"])".to_string()
            } else {
                let hosts: Vec<String> = net.allow.rules().iter().map(ToString::to_string).collect();
                format!("egress proxy: {}", hosts.join(", "))
            };
            let proxy = EgressProxy::start(&socket, net.allow.clone(), net.around, net.client).map_err(|e| {
                SandboxError::Setup {
                    what: "start the egress proxy on",
                    path: socket.clone(),
                    reason: e.to_string(),
                }
            })?;
            spec.env.extend(crate::exec::proxy_vars(&crate::exec::proxy_url()));
            (Some((proxy, bridge)), described)
        }
    };
    let mounts = egress
        .as_ref()
        .map(|(proxy, bridge)| (proxy.socket().to_path_buf(), bridge.clone()));
    let mut spec = wrap(
        spec,
        bwrap,
        settings,
        policy,
        mounts.as_ref().map(|(s, b)| (s.as_path(), b.as_path())),
    )
    .map_err(|e| SandboxError::Setup {
        what: "make the sandbox's scratch directory",
        path: policy.scratch.clone(),
        reason: e.to_string(),
    })?;
    let cgroups = RunCgroups::create(RunLimits {
        max_processes: settings.max_processes,
        resources: settings.limits,
    });
    spec.cgroup_procs = cgroups.procs_files();
    Ok(Prepared {
        spec,
        sandboxing: sandboxing.clone(),
        cgroups: Some(cgroups),
        egress: egress.map(|(proxy, _)| proxy),
        network: description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SandboxSettings {
        SandboxSettings {
            bwrap: None,
            max_processes: 512,
            hide: vec![PathBuf::from("/srv/secrets")],
            limits: Default::default(),
            netbridge: None,
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
    fn a_venv_script_brings_its_venv_and_the_python_it_was_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let python = dir.path().join("pyenv/versions/3.11.7");
        std::fs::create_dir_all(python.join("bin")).unwrap();
        let venv = dir.path().join("tools/aider-venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::create_dir_all(venv.join("lib/python3.11/site-packages/aider")).unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!(
                "home = {}\ninclude-system-site-packages = false\n",
                python.join("bin").display()
            ),
        )
        .unwrap();
        std::fs::write(venv.join("bin/aider"), "#!/usr/bin/env python3\n").unwrap();
        let paths = program_paths(&venv.join("bin/aider"));
        assert!(paths.contains(&venv.join("bin")), "{paths:?}");
        assert!(paths.contains(&venv), "the venv's site-packages: {paths:?}");
        assert!(paths.contains(&python), "the installation it was made from: {paths:?}");
        // Not a venv: only the program's directory.
        assert_eq!(program_paths(&python.join("bin/python3")), [python.join("bin")]);
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
        let err = resolve(SandboxMode::Bwrap, &s).unwrap_err().to_string();
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
            cgroup_procs: vec![],
        };
        let policy = SandboxPolicy {
            workdir: workdir.clone(),
            scratch: dir.path().join("scratch"),
            ..SandboxPolicy::default()
        };
        let wrapped = wrap(spec, Path::new("/usr/bin/bwrap"), &settings(), &policy, None).unwrap();
        let args = wrapped.args.join(" ");
        assert_eq!(wrapped.program, PathBuf::from("/usr/bin/bwrap"));
        assert!(!args.contains("--share-net"), "never the host's network: {args}");
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

    #[test]
    fn with_egress_the_bridge_starts_the_program_and_toolchains_appear_under_the_sandbox_home() {
        let dir = tempfile::tempdir().unwrap();
        let workdir = dir.path().join("wt");
        std::fs::create_dir_all(&workdir).unwrap();
        let home = worker_home().expect("a HOME for the test");
        let spec = ProcessSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), "true".into()],
            cwd: workdir.clone(),
            env: vec![],
            stdin: None,
            timeout: std::time::Duration::from_secs(1),
            stdout_path: dir.path().join("out"),
            stderr_path: dir.path().join("err"),
            capture_limit: 1024,
            cgroup_procs: vec![],
        };
        let socket = dir.path().join("egress.sock");
        std::fs::write(&socket, "").unwrap();
        let bridge = dir.path().join("chum-netbridge");
        std::fs::write(&bridge, "").unwrap();
        let toolchain = home.join(".chum-wrap-test-toolchain");
        std::fs::create_dir_all(&toolchain).unwrap();
        let policy = SandboxPolicy {
            workdir,
            scratch: dir.path().join("scratch"),
            toolchains: vec![machine_path("~/.chum-wrap-test-toolchain")],
            ..SandboxPolicy::default()
        };
        let wrapped = wrap(
            spec,
            Path::new("/usr/bin/bwrap"),
            &settings(),
            &policy,
            Some((&socket, &bridge)),
        )
        .unwrap();
        std::fs::remove_dir_all(&toolchain).unwrap();
        let args = wrapped.args.join(" ");
        assert!(
            args.contains(&format!(
                "-- {} --listen 127.0.0.1:3128 --connect {} -- /bin/sh -c true",
                bridge.display(),
                socket.display()
            )),
            "{args}"
        );
        assert!(
            args.contains(&format!("--bind {s} {s}", s = socket.display())),
            "{args}"
        );
        let mirror = dir.path().join("scratch/home/.chum-wrap-test-toolchain");
        assert!(
            args.contains(&format!("--ro-bind {} {}", toolchain.display(), mirror.display())),
            "~/ toolchains also under the sandbox's HOME: {args}"
        );
        assert!(!args.contains("--share-net"), "{args}");
    }

    #[test]
    fn a_path_is_hidden_unless_mounted_back() {
        let s = settings();
        assert!(is_hidden(Path::new("/srv/secrets/key"), &s, &[]));
        assert!(!is_hidden(
            Path::new("/srv/secrets/key"),
            &s,
            &[PathBuf::from("/srv/secrets")]
        ));
        assert!(!is_hidden(Path::new("/usr/bin/cargo"), &s, &[]));
    }
}
