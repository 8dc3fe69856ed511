//! Processes the tests start or look for: agent processes by their environment, a tiny HTTP
//! server on this machine's own address, free ports, and the worker binary with its log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::paths::worker_binary;

/// Live (not zombie) processes whose environment holds every marker (`NAME=value`).
pub fn agent_processes(markers: &[String]) -> Vec<u32> {
    live_processes(|pid| {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return false;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        markers.iter().all(|m| vars.contains(&m.as_bytes()))
    })
}

/// Live (not zombie) processes other than this one for which `wanted(pid)` holds.
pub fn live_processes(wanted: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != me && wanted(*pid) && alive(*pid))
        .collect()
}

/// Whether the process exists and is not a zombie awaiting its reaper.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit(')').next().unwrap_or("").trim_start().chars().next(),
            Some('Z' | 'X')
        )
    })
}

/// This machine's own non-loopback IPv4 address. Tests put what a sandboxed agent may reach
/// there, because the egress proxy refuses loopback whatever an allow-list says.
pub fn host_address() -> std::net::IpAddr {
    chum_activities::exec::own_addresses()
        .into_iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("the egress tests need a non-loopback IPv4 address on this machine")
}

/// A tiny HTTP server on `ip` answering every request with `body`; counts the requests.
pub struct HttpStub {
    pub addr: std::net::SocketAddr,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpStub {
    pub fn start(ip: std::net::IpAddr, body: &'static str) -> HttpStub {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind((ip, 0)).expect("stub listens");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        HttpStub { addr, requests }
    }

    pub fn hits(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An HTTP client for the tests (the workspace's reqwest needs the process's TLS provider first).
pub fn http_client() -> reqwest::Client {
    chum_activities::forge::install_crypto_provider();
    reqwest::Client::new()
}

/// A port nobody listens on right now, taken below the kernel's ephemeral range (32768-60999 on
/// Linux by default), where the OS never hands out a port for `bind(":0")`. A port the OS handed
/// out is free again once the test lets it go, and a dev server started on it picks ports for its
/// own services the OS way: CI once saw a dev server's worker service take the frontend's port
/// before the frontend bound it, and the server never answered.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let seed = u64::from(std::process::id()).wrapping_mul(2_654_435_761) ^ nanos;
    for _ in 0..500 {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(step.wrapping_mul(7_919)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The worker binary with its stderr (the log) collected line by line.
pub struct WorkerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    pub fn start(config: &Path) -> WorkerProcess {
        WorkerProcess::start_with(config, &[])
    }

    /// [`WorkerProcess::start`] with more environment variables for the worker.
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> WorkerProcess {
        let mut child = Command::new(worker_binary())
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .env("CHUM__API__BIND", format!("127.0.0.1:{}", free_port()))
            .env("CHUM__DISPATCHER__ENABLED", "false")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        WorkerProcess { child, lines }
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The worker's process id (e.g. to read its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for a log line containing `needle` that was not there before (`seen` lines).
    pub async fn wait_for_line(&self, needle: &str, seen: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.log().iter().skip(seen).find(|l| l.contains(needle)) {
                return serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().map(|s| s.is_none()).unwrap_or(false)
    }

    /// SIGKILL, as an OOM killer or a lost machine would: no drain, no cleanup.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        self.log()
    }

    pub fn stop(mut self) -> Vec<String> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the worker did not drain after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        self.log()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
