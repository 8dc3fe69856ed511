//! Running an external program the way CHUM needs it: in its own process group (killed as a
//! whole on timeout, cancellation or when the caller goes away), with a wall-clock limit,
//! heartbeats while it runs, and its output streamed to artifact files with a size cap.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The whole environment of the process: it inherits nothing from the worker (see `child_env`).
    pub env: Vec<(String, String)>,
    /// Written to the process's stdin, which is then closed. `None` gives it no stdin.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    /// Bytes kept per stream; the rest is drained and counted, and a note is appended.
    pub capture_limit: u64,
    /// Cgroups' `cgroup.procs` files: the child joins them before it execs (`sandbox::RunCgroups`).
    pub cgroup_procs: Vec<PathBuf>,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessOutcome {
    /// The exit code, or `None` when it was killed by a signal.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

impl ProcessOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }

    /// The exit code for reports: -1 when killed.
    pub fn code(&self) -> i32 {
        self.exit_code.unwrap_or(-1)
    }
}

/// Kills a whole process group when dropped, so that no grandchild outlives us, whatever path
/// we leave by (timeout, cancellation, an error, or the caller's future being dropped).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: killpg only sends a signal; an already-gone group gives ESRCH, which is fine.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the process to completion, timeout or cancellation.
///
/// `heartbeat` is awaited every `heartbeat_every` while the process runs; `cancelled` resolves
/// when the caller wants it stopped. Output goes to the spec's files, capped.
pub async fn run_process<H, HF, C>(
    spec: &ProcessSpec,
    heartbeat_every: Duration,
    mut heartbeat: H,
    cancelled: C,
) -> std::io::Result<ProcessOutcome>
where
    H: FnMut() -> HF,
    HF: Future<Output = ()>,
    C: Future<Output = ()>,
{
    for path in [&spec.stdout_path, &spec.stderr_path] {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
    }
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Opened here, written by the child between fork and exec: the child is in the cgroups before
    // it can start anything.
    let cgroups = spec
        .cgroup_procs
        .iter()
        .map(|path| std::fs::OpenOptions::new().write(true).open(path))
        .collect::<std::io::Result<Vec<_>>>()?;
    if !cgroups.is_empty() {
        let fds: Vec<i32> = cgroups.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        // SAFETY: the closure runs in the forked child before exec and only calls the
        // async-signal-safe getpid and write, on a stack buffer (`fds` was allocated before fork).
        unsafe {
            command.pre_exec(move || {
                let mut digits = [0u8; 12];
                let mut pid = libc::getpid() as u32;
                let mut start = digits.len();
                loop {
                    start -= 1;
                    digits[start] = b'0' + (pid % 10) as u8;
                    pid /= 10;
                    if pid == 0 {
                        break;
                    }
                }
                for fd in &fds {
                    if libc::write(*fd, digits[start..].as_ptr().cast(), digits.len() - start) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let started = Instant::now();
    let mut child = command.spawn()?;
    drop(cgroups);
    let mut guard = GroupGuard(child.id().map(|pid| pid as i32));

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdout_task = tokio::spawn(capture(stdout, spec.stdout_path.clone(), spec.capture_limit));
    let stderr_task = tokio::spawn(capture(stderr, spec.stderr_path.clone(), spec.capture_limit));
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), spec.stdin.clone()) {
        // A program that never reads its stdin must not block us: write in the background.
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
            let _ = pipe.shutdown().await;
        });
    }

    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    tokio::pin!(cancelled);
    let mut ticker = tokio::time::interval(heartbeat_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timed_out = false;
    let mut was_cancelled = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break Some(status?),
            _ = &mut deadline => { timed_out = true; break None; }
            _ = &mut cancelled => { was_cancelled = true; break None; }
            _ = ticker.tick() => heartbeat().await,
        }
    };
    // Kill the group in every case: on timeout/cancel to stop the program, and after a normal
    // exit to stop any background process it left behind holding our pipes open.
    guard.kill();
    let status = match status {
        Some(status) => status,
        None => child.wait().await?,
    };
    let stdout_bytes = stdout_task.await.unwrap_or(Ok(0))?;
    let stderr_bytes = stderr_task.await.unwrap_or(Ok(0))?;
    Ok(ProcessOutcome {
        exit_code: if timed_out || was_cancelled {
            None
        } else {
            status.code()
        },
        timed_out,
        cancelled: was_cancelled,
        duration: started.elapsed(),
        stdout_bytes,
        stderr_bytes,
    })
}

/// Copies a stream into a file, keeping at most `limit` bytes and draining the rest.
async fn capture<R: AsyncRead + Unpin>(stream: Option<R>, path: PathBuf, limit: u64) -> std::io::Result<u64> {
    // A file that cannot be created or written (disk full, read-only) does not stop the reading:
    // a pipe nobody drains would block the process until its time limit. The error is returned
    // once the stream ends.
    let mut file = File::create(&path).await;
    let mut write_error: Option<std::io::Error> = None;
    let Some(mut stream) = stream else {
        return file.map(|_| 0);
    };
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if total < limit && write_error.is_none() {
            let keep = ((limit - total) as usize).min(n);
            if let Ok(f) = &mut file
                && let Err(e) = f.write_all(&buf[..keep]).await
            {
                write_error = Some(e);
            }
        }
        total += n as u64;
    }
    let mut file = file?;
    if let Some(e) = write_error {
        return Err(e);
    }
    if total > limit {
        let note = format!("\n[chum: output truncated: kept {limit} of {total} bytes]\n");
        file.write_all(note.as_bytes()).await?;
    }
    file.flush().await?;
    Ok(total)
}

/// Reads at most `limit` bytes of a file as (lossy) UTF-8.
pub async fn read_capped(path: &Path, limit: usize) -> std::io::Result<String> {
    let file = File::open(path).await?;
    let mut buf = Vec::new();
    file.take(limit as u64).read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads the last `limit` bytes of a file as (lossy) UTF-8.
pub async fn read_tail(path: &Path, limit: u64) -> std::io::Result<String> {
    use tokio::io::AsyncSeekExt;
    let mut file = File::open(path).await?;
    let len = file.metadata().await?.len();
    if len > limit {
        file.seek(std::io::SeekFrom::Start(len - limit)).await?;
    }
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, script: &str, timeout: Duration) -> ProcessSpec {
        ProcessSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: dir.to_path_buf(),
            env: vec![
                ("CHUM_TEST_VAR".into(), "from-env".into()),
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ],
            stdin: Some(b"prompt text".to_vec()),
            timeout,
            stdout_path: dir.join("out/stdout.log"),
            stderr_path: dir.join("out/stderr.log"),
            capture_limit: 1024,
            cgroup_procs: vec![],
        }
    }

    async fn never() {
        std::future::pending::<()>().await
    }

    #[tokio::test]
    async fn captures_output_exit_code_env_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            dir.path(),
            "cat; echo \" $CHUM_TEST_VAR\"; echo oops >&2; exit 3",
            Duration::from_secs(10),
        );
        let out = run_process(&s, Duration::from_secs(1), || async {}, never())
            .await
            .unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert!(!out.success());
        assert_eq!(
            std::fs::read_to_string(&s.stdout_path).unwrap(),
            "prompt text from-env\n"
        );
        assert_eq!(std::fs::read_to_string(&s.stderr_path).unwrap(), "oops\n");
    }

    /// Running or sleeping; a killed process whose zombie nobody reaped yet does not count
    /// (in containers, PID 1 does not always reap orphans promptly).
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => false,
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start().chars().next();
                !matches!(state, Some('Z') | Some('X'))
            }
        }
    }

    #[tokio::test]
    async fn a_hanging_program_is_killed_with_its_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        // The child starts a grandchild that would outlive a plain kill of the child.
        let s = spec(
            dir.path(),
            "sleep 300 & echo $! > grandchild.pid; wait",
            Duration::from_millis(500),
        );
        let out = run_process(&s, Duration::from_secs(1), || async {}, never())
            .await
            .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        let pid: i32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The kill is asynchronous; give it a moment.
        for _ in 0..50 {
            if !alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("grandchild {pid} survived the process-group kill");
    }

    #[tokio::test]
    async fn cancellation_stops_the_program_and_heartbeats_flow_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), "sleep 300", Duration::from_secs(60));
        let beats = std::sync::atomic::AtomicU32::new(0);
        let out = run_process(
            &s,
            Duration::from_millis(50),
            || async {
                beats.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
            tokio::time::sleep(Duration::from_millis(400)),
        )
        .await
        .unwrap();
        assert!(out.cancelled && !out.timed_out);
        assert!(out.duration < Duration::from_secs(5));
        assert!(beats.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn floods_are_capped_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            dir.path(),
            "head -c 1000000 /dev/zero | tr '\\0' 'x'",
            Duration::from_secs(20),
        );
        let out = run_process(&s, Duration::from_secs(1), || async {}, never())
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout_bytes, 1_000_000);
        let kept = std::fs::read_to_string(&s.stdout_path).unwrap();
        assert!(kept.len() < 2000);
        assert!(kept.contains("output truncated: kept 1024 of 1000000 bytes"));
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "", Duration::from_secs(5));
        s.program = "/nonexistent/agent".into();
        let err = run_process(&s, Duration::from_secs(1), || async {}, never())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
