//! `chum-scripted-agent`: a deterministic stand-in for a coding-agent CLI.
//!
//! It speaks the Claude Code contract (`-p --output-format json`: prompt on stdin, one JSON result
//! object on stdout) and answers from a scenario file, so CHUM's tests, its demo and production run
//! the very same code path; only the model is scripted. See `scenario.rs` for the file format.

mod server;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;

use chum_scripted_agent::scenario::{self, Action, Invocation, Scenario};

#[derive(Parser, Debug)]
#[command(
    name = "chum-scripted-agent",
    about = "A scripted coding agent: answers like `claude -p --output-format json`, from a scenario file",
    long_about = "A scripted coding agent for CHUM's tests and demo.\n\n\
        It reads the prompt from stdin (or --prompt-file), finds the first [[step]] of the scenario \
        matching its role, bead and attempt (from --role/--bead/--attempt or the CHUM_ROLE, \
        CHUM_BEAD_ID and CHUM_ATTEMPT variables CHUM sets), performs it in the current directory \
        (answer, edit files, fail, hang, print garbage) and prints one Claude Code JSON result object.",
    version
)]
struct Args {
    /// Scenario file (TOML) with the [[step]]s to play.
    #[arg(long, env = "CHUM_SCRIPTED_SCENARIO")]
    scenario: PathBuf,
    /// Directory where every received prompt is saved as <role>-<bead>-<attempt>-<handoff>.prompt.md.
    #[arg(long, env = "CHUM_SCRIPTED_RECORD_DIR")]
    record_dir: Option<PathBuf>,
    /// Read the prompt from this file instead of stdin.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    #[arg(long, env = "CHUM_ROLE", default_value = "")]
    role: String,
    #[arg(long, env = "CHUM_BEAD_ID", default_value = "")]
    bead: String,
    #[arg(long, env = "CHUM_ATTEMPT", default_value_t = 1)]
    attempt: u32,
    #[arg(long, env = "CHUM_HANDOFF", default_value_t = 0)]
    handoff: u32,
    /// The Monte Carlo candidate (`CHUM_CANDIDATE`, 0 = none).
    #[arg(long, env = "CHUM_CANDIDATE", default_value_t = 0)]
    candidate: u32,
    /// The provider name CHUM runs this program as (`CHUM_PROVIDER`).
    #[arg(long, env = "CHUM_PROVIDER", default_value = "")]
    provider: String,
    /// Serve the scenario as an Anthropic Messages API model server on this address (e.g.
    /// 127.0.0.1:0) for the real `claude` CLI, instead of answering one prompt.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// With --serve: write the port the server listens on to this file.
    #[arg(long, requires = "serve")]
    port_file: Option<PathBuf>,
    /// Accepted for command-line compatibility with Claude Code; ignored.
    #[arg(short = 'p', long = "print", hide = true)]
    print: bool,
    /// Accepted for compatibility with Claude Code; only "json" is produced.
    #[arg(long, default_value = "json", hide = true)]
    output_format: String,
    /// Accepted for compatibility with Claude Code; ignored.
    #[arg(long, default_value = "", hide = true)]
    model: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chum-scripted-agent: {err:#}");
            ExitCode::from(4)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode> {
    let started = Instant::now();
    let scenario = Scenario::load(&args.scenario)?;
    if let Some(listen) = &args.serve {
        server::serve(
            scenario,
            listen,
            args.port_file.as_deref(),
            args.provider.clone(),
            args.record_dir.clone(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let prompt = match &args.prompt_file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading prompt file {}", path.display()))?
        }
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the prompt from stdin")?;
            text
        }
    };
    let call = Invocation {
        role: args.role.clone(),
        bead: args.bead.clone(),
        attempt: args.attempt,
        handoff: args.handoff,
        provider: args.provider.clone(),
        candidate: args.candidate,
    };
    if let Some(dir) = &args.record_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = format!(
            "{}-{}-{}-{}.prompt.md",
            or_any(&call.role),
            or_any(&call.bead),
            attempt_name(&call),
            call.handoff
        );
        std::fs::write(dir.join(name), &prompt).context("recording the prompt")?;
    }
    let step = scenario.find(&call, &prompt).with_context(|| {
        format!(
            "no [[step]] in {} matches role={:?} bead={:?} attempt={} handoff={} provider={:?}",
            args.scenario.display(),
            call.role,
            call.bead,
            call.attempt,
            call.handoff,
            call.provider
        )
    })?;
    for needle in &step.expect_prompt_contains {
        if !prompt.contains(needle.as_str()) {
            bail!(
                "the prompt does not contain the expected text {needle:?} (step {})",
                step.describe()
            );
        }
    }
    if step.sleep_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(step.sleep_ms));
    }
    let shell_report = match &step.shell {
        Some(command) => {
            let out = std::process::Command::new("sh")
                .args(["-c", command])
                .stdin(std::process::Stdio::null())
                .output()
                .context("running the step's shell command")?;
            let report = format!(
                "\n[shell exit {}]\n{}{}",
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("chum-scripted-agent: shell{report}");
            report
        }
        None => String::new(),
    };
    if let Some(flood) = &step.flood {
        flood_output(flood)?;
    }
    match step.action()? {
        Action::Hang => hang(args.record_dir.as_deref(), &call),
        Action::Fail { exit_code, stderr } => {
            eprintln!("{stderr}");
            Ok(ExitCode::from(exit_code))
        }
        Action::Garbage(text) => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Action::Answer { text, edits, is_error } => {
            let cwd = std::env::current_dir().context("reading the working directory")?;
            for edit in edits {
                edit.apply(&cwd)?;
            }
            let usage = step.usage.clone().unwrap_or_else(|| scenario.usage.clone());
            let result = serde_json::json!({
                "type": "result",
                "subtype": "success",
                "is_error": is_error,
                "duration_ms": started.elapsed().as_millis() as u64,
                "num_turns": 1,
                "result": format!("{}{shell_report}", scenario::fill_from_prompt(&text, &prompt)),
                "stop_reason": "end_turn",
                "session_id": format!("scripted-{}-{}-{}", or_any(&call.role), or_any(&call.bead), call.attempt),
                "total_cost_usd": usage.cost_usd,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": usage.output_tokens,
                },
                "permission_denials": [],
                "terminal_reason": "completed",
            });
            println!("{result}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The attempt in record names: `2`, or `2c3` for Monte Carlo candidate 3.
fn attempt_name(call: &Invocation) -> String {
    if call.candidate == 0 {
        call.attempt.to_string()
    } else {
        format!("{}c{}", call.attempt, call.candidate)
    }
}

fn or_any(s: &str) -> &str {
    if s.is_empty() { "any" } else { s }
}

/// Hangs like a stuck agent: with a child process of its own, so tests can check that the whole
/// process group is killed, not just this process. Both pids go to `<record dir>/<call>.pids`.
fn hang(record_dir: Option<&std::path::Path>, call: &Invocation) -> Result<ExitCode> {
    let child = std::process::Command::new("sleep")
        .arg("86400")
        .spawn()
        .context("spawning the hanging child")?;
    eprintln!("chum-scripted-agent: hanging on purpose (child pid {})", child.id());
    if let Some(dir) = record_dir {
        let name = format!(
            "{}-{}-{}-{}.pids",
            or_any(&call.role),
            or_any(&call.bead),
            attempt_name(call),
            call.handoff
        );
        std::fs::write(dir.join(name), format!("{} {}\n", std::process::id(), child.id())).context("recording pids")?;
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Writes `flood.bytes` of `x` to the flood's stream in 1 MiB writes.
fn flood_output(flood: &scenario::Flood) -> Result<()> {
    use std::io::Write as _;
    let chunk = vec![b'x'; 1 << 20];
    let mut out: Box<dyn std::io::Write> = match flood.stream.as_str() {
        "stdout" => Box::new(std::io::stdout().lock()),
        "stderr" => Box::new(std::io::stderr().lock()),
        other => bail!("flood stream {other:?} is not stdout or stderr"),
    };
    let mut left = flood.bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n]).context("flooding")?;
        left -= n as u64;
    }
    out.flush().context("flooding")?;
    Ok(())
}
