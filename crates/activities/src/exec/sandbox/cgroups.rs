//! Resource limits of one sandboxed run: a cgroup per controller (pids, memory, cpu) that the
//! child joins between fork and exec, so everything it starts is counted. Made where the machine
//! lets CHUM write cgroups (root, or a delegated subtree); `chum doctor` says which limits hold.
//! Dropping a run's cgroups kills whatever is still in them.

use std::path::{Path, PathBuf};

use chum_core::config::ResourceLimits;

/// The cgroup v1 hierarchies (one per controller), and the unified v2 root.
const V1_PIDS: &str = "/sys/fs/cgroup/pids";
const V1_MEMORY: &str = "/sys/fs/cgroup/memory";
const V1_CPU: [&str; 2] = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"];
const V2_ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD_US: u64 = 100_000;

/// The limits of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLimits {
    pub max_processes: u32,
    pub resources: ResourceLimits,
}

/// Which of a run's limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Enforced {
    pub processes: bool,
    pub memory: bool,
    pub cpu: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pids,
    Memory,
    Cpu,
    /// One v2 cgroup holding every controller.
    Unified,
}

/// The cgroups of one run; dropping them kills what is left inside and removes them.
pub struct RunCgroups {
    groups: Vec<(Kind, PathBuf)>,
    enforced: Enforced,
}

fn write(dir: &Path, file: &str, value: &str) -> bool {
    std::fs::write(dir.join(file), value).is_ok()
}

fn make(root: &str, name: &str) -> Option<PathBuf> {
    let root = Path::new(root);
    if !root.join("cgroup.procs").exists() {
        return None;
    }
    let dir = root.join(name);
    std::fs::create_dir(&dir).ok().map(|()| dir)
}

impl RunCgroups {
    /// Creates what the machine allows; a limit that cannot be set is simply not enforced (see
    /// [`RunCgroups::enforced`]).
    pub fn create(limits: RunLimits) -> RunCgroups {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("chum-{}-{n}", std::process::id());
        let mut groups = Vec::new();
        let mut enforced = Enforced::default();
        if Path::new(V2_ROOT).join("cgroup.controllers").exists() {
            if let Some(dir) = make(V2_ROOT, &name) {
                enforced.processes = write(&dir, "pids.max", &limits.max_processes.to_string());
                enforced.memory = limits.resources.max_memory.is_some_and(|m| {
                    let limited = write(&dir, "memory.max", &m.to_string());
                    // No swapping around the limit where swap accounting exists.
                    let _ = write(&dir, "memory.swap.max", "0");
                    limited
                });
                enforced.cpu = limits.resources.cpu_quota.is_some_and(|q| {
                    write(
                        &dir,
                        "cpu.max",
                        &format!("{} {CPU_PERIOD_US}", (q * CPU_PERIOD_US as f64) as u64),
                    )
                });
                groups.push((Kind::Unified, dir));
            }
            return RunCgroups { groups, enforced };
        }
        if let Some(dir) = make(V1_PIDS, &name) {
            if write(&dir, "pids.max", &limits.max_processes.to_string()) {
                enforced.processes = true;
                groups.push((Kind::Pids, dir));
            } else {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if let Some(max) = limits.resources.max_memory
            && let Some(dir) = make(V1_MEMORY, &name)
        {
            if write(&dir, "memory.limit_in_bytes", &max.to_string()) {
                // No swapping around the limit where swap accounting exists.
                let _ = write(&dir, "memory.memsw.limit_in_bytes", &max.to_string());
                enforced.memory = true;
                groups.push((Kind::Memory, dir));
            } else {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if let Some(quota) = limits.resources.cpu_quota
            && let Some(dir) = V1_CPU.iter().find_map(|root| make(root, &name))
        {
            let us = ((quota * CPU_PERIOD_US as f64) as u64).max(1000);
            if write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())
                && write(&dir, "cpu.cfs_quota_us", &us.to_string())
            {
                enforced.cpu = true;
                groups.push((Kind::Cpu, dir));
            } else {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        RunCgroups { groups, enforced }
    }

    pub fn enforced(&self) -> Enforced {
        self.enforced
    }

    /// The `cgroup.procs` files the child writes its pid to before it execs.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.groups.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    fn read(&self, kinds: &[Kind], file: &str) -> Option<String> {
        self.groups
            .iter()
            .find(|(k, _)| kinds.contains(k))
            .and_then(|(_, d)| std::fs::read_to_string(d.join(file)).ok())
    }

    /// Whether the process limit was hit (the kernel counts refused forks in `pids.events`).
    pub fn process_limit_hit(&self) -> bool {
        self.read(&[Kind::Pids, Kind::Unified], "pids.events")
            .and_then(|t| counter(&t, "max"))
            .is_some_and(|n| n > 0)
    }

    /// Whether the kernel killed a process of the run at its memory limit.
    pub fn memory_limit_hit(&self) -> bool {
        if !self.enforced.memory {
            return false;
        }
        let events = self
            .read(&[Kind::Memory], "memory.oom_control")
            .or_else(|| self.read(&[Kind::Unified], "memory.events"));
        events.and_then(|t| counter(&t, "oom_kill")).is_some_and(|n| n > 0)
    }
}

/// `name N` in a cgroup's key-value file.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(name)).then(|| parts.next()?.parse().ok())?
    })
}

impl Drop for RunCgroups {
    fn drop(&mut self) {
        for (_, dir) in &self.groups {
            empty_and_remove(dir);
        }
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

/// Kills what runs of a dead worker left behind: the cgroups named after a worker process that
/// no longer exists (`chum-<pid>-<n>`). bwrap's `--die-with-parent` stops a sandbox whose worker
/// dies, except in the instant while bwrap is still setting itself up; the cgroup, joined before
/// bwrap even starts, catches those too. Called when a worker starts; returns one line per cgroup
/// emptied, for the log.
pub fn reap_orphans() -> Vec<String> {
    let mut reaped = Vec::new();
    let roots = [V1_PIDS, V1_MEMORY, V1_CPU[0], V1_CPU[1], V2_ROOT];
    for root in roots {
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

    fn limits() -> RunLimits {
        RunLimits {
            max_processes: 16,
            resources: ResourceLimits {
                max_memory: Some(64 << 20),
                cpu_quota: Some(0.5),
            },
        }
    }

    #[test]
    fn cgroup_counters_are_read_by_name() {
        assert_eq!(
            counter("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
        assert_eq!(counter("max 0\n", "max"), Some(0));
        assert_eq!(counter("low 1\n", "oom_kill"), None);
    }

    #[test]
    fn a_dead_workers_cgroups_are_emptied_and_removed() {
        let cgroups = RunCgroups::create(limits());
        if !cgroups.enforced().processes {
            assert!(
                std::env::var("CHUM_REQUIRE_SANDBOX").as_deref() != Ok("1"),
                "CHUM_REQUIRE_SANDBOX=1 but no pids cgroup can be made here"
            );
            eprintln!("SKIPPED: no writable pids cgroup here");
            return;
        }
        // A pid that existed and is gone: the "dead worker" the cgroups are named after.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let mut orphans = Vec::new();
        for (_, dir) in &cgroups.groups {
            let orphan = dir.with_file_name(format!("chum-{dead}-0"));
            std::fs::rename(dir, &orphan).unwrap();
            orphans.push(orphan);
        }
        std::mem::forget(cgroups);
        let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        for orphan in &orphans {
            std::fs::write(orphan.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
        }
        let reaped = reap_orphans();
        assert!(
            reaped
                .iter()
                .any(|l| l.contains(&format!("(pid {dead})")) && l.contains("killed 1")),
            "{reaped:?}"
        );
        assert!(!sleeper.wait().unwrap().success(), "the orphan was killed");
        assert!(orphans.iter().all(|o| !o.exists()));
    }
}
