//! A real Postgres for the shared-store tests: Debian's server that `scripts/setup.sh` unpacks
//! into `.tools/postgres`, started once per test binary on a temporary directory and a free port
//! (as `nobody` when the tests run as root: Postgres refuses root), with a fresh database per
//! test. Nothing global: no system service, no port or socket outside the temporary directory.
//! A watcher process stops the server and removes its directory when the test binary exits.
//!
//! Without the server the tests that need it skip; `CHUM_REQUIRE_POSTGRES=1` (set by CI) makes
//! that a failure.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::paths::workspace_root;
use crate::processes::free_port;

/// The test server's superuser and its password (scram-sha-256 over TCP, as a real deployment).
pub const POSTGRES_USER: &str = "chum";
pub const POSTGRES_PASSWORD: &str = "chum-test-password";

/// The running test server.
pub struct TestPostgres {
    pub port: u16,
    pub dir: PathBuf,
}

/// One test's own database on the shared server.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// `postgres://chum@127.0.0.1:<port>/<name>`: the password comes from the environment.
    pub url: String,
    /// The same with the password in it.
    pub url_with_password: String,
    pub password: &'static str,
    pub name: String,
}

fn postgres_bin() -> PathBuf {
    workspace_root().join(".tools/postgres/bin")
}

/// The test server, started on first use; `None` (the test skips) when setup did not install
/// it, unless `CHUM_REQUIRE_POSTGRES=1`.
pub fn postgres() -> Option<&'static TestPostgres> {
    static SERVER: OnceLock<Option<TestPostgres>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let bin = postgres_bin();
        if !bin.join("postgres").is_file() || !bin.join("initdb").is_file() {
            return None;
        }
        Some(start(&bin).unwrap_or_else(|e| panic!("the test Postgres did not start: {e}")))
    });
    if server.is_none() && std::env::var("CHUM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("CHUM_REQUIRE_POSTGRES=1 but .tools/postgres has no postgres and initdb: run scripts/setup.sh");
    }
    server.as_ref()
}

/// Runs a program as the server's user: `nobody` when this process is root, else as it is.
fn as_server_user(program: &Path) -> Command {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn start(bin: &Path) -> Result<TestPostgres, String> {
    let dir = tempfile::Builder::new()
        .prefix("chum-test-postgres-")
        .tempdir()
        .map_err(|e| format!("no temporary directory: {e}"))?
        .keep();
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let pwfile = dir.join("password");
    std::fs::write(&pwfile, POSTGRES_PASSWORD).map_err(|e| format!("{}: {e}", pwfile.display()))?;
    if root {
        let chown = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !chown.success() {
            return Err(format!("chown nobody {} failed", dir.display()));
        }
    }
    let data = dir.join("data");
    let initdb = as_server_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", POSTGRES_USER, "-E", "UTF8", "--locale=C", "--no-sync"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&initdb.stderr)));
    }
    let port = free_port();
    let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| format!("the server's log: {e}"))?;
    let server = as_server_user(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        // A throwaway server: durability costs time and buys nothing here.
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("postgres: {e}"))?;
    // Stops the server (and removes its directory) when this test binary is gone.
    let watcher = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -QUIT {pg} 2>/dev/null; sleep 2; rm -rf '{dir}'",
        me = std::process::id(),
        pg = server.id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("the server's watcher: {e}"))?;
    let server = TestPostgres { port, dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match server.admin(|c| c.simple_query("SELECT 1").map(|_| ())) {
            Ok(()) => return Ok(server),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(server.dir.join("postgres.log")).unwrap_or_default();
                return Err(format!("not answering after 60 s: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

impl TestPostgres {
    /// The server's URL for database `name`, without the password.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{POSTGRES_USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `call` connected to the `postgres` database as the superuser, on a thread of its own
    /// (the synchronous client runs a runtime, which cannot start inside a test's).
    pub fn admin<T: Send>(
        &self,
        call: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, postgres::Error> {
        let url = format!(
            "postgres://{POSTGRES_USER}:{POSTGRES_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        );
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                call(&mut client)
            })
            .join()
            .unwrap_or_else(|_| panic!("the Postgres admin call panicked"))
        })
    }

    /// A new, empty database for one test.
    pub fn fresh_database(&self) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let create = format!("CREATE DATABASE {name}");
        self.admin(|c| c.batch_execute(&create))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = self.url(&name);
        TestDatabase {
            url_with_password: url.replacen(
                &format!("{POSTGRES_USER}@"),
                &format!("{POSTGRES_USER}:{POSTGRES_PASSWORD}@"),
                1,
            ),
            url,
            password: POSTGRES_PASSWORD,
            name,
        }
    }
}
