//! `chum`: the command line for people working with CHUM.
//!
//! `args` is what clap parses, `output` how results and failures are printed (text or JSON, the
//! exit codes), `reports` the read commands that need only the store, `session` the commands that
//! talk to Temporal, `intake` the backlog and grooming, `render` the text people read.

mod args;
mod coordination;
mod demo;
mod doctor;
mod intake;
mod output;
mod render;
mod reports;
mod session;

use std::process::ExitCode;

use anyhow::Result;
use chum_core::proto::{EnumName, Phase};
use clap::{CommandFactory, Parser};

use args::{Cli, Command, DemoCommand, GroomCommand, OutputFormat};
use output::{Out, usage};
use reports::only_project;
use session::Session;

#[tokio::main]
async fn main() -> ExitCode {
    // `chum backlog | head`: a closed pipe ends chum quietly, as it ends every Unix tool (Rust
    // ignores SIGPIPE, so println! would panic on the write error instead).
    // SAFETY: setting one signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // clap's own usage errors end with 2, as documented.
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chum: error: {err:#}");
            output::exit_of(&err).into()
        }
    }
}

fn parse_timeout(text: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(text).map_err(|e| usage(format!("--timeout {text:?}: {e} (e.g. 90s, 10m, 2h)")))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let out = Out { format: cli.output };
    match &cli.command {
        Command::Demo {
            command: DemoCommand::Init { dir, force },
        } => {
            demo::init(dir, *force)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "chum", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let path = chum_client::settings::discover_config(cli.config.as_deref())?;
    let config = chum_client::settings::load_config(&path)?;
    let project = cli.project.as_deref();
    match &cli.command {
        Command::Rules { command } => return reports::rules(&config, out, project, command.as_ref()).await,
        Command::Lessons { command } => return reports::lessons(&config, out, project, command),
        Command::Create {
            title,
            description,
            acceptance,
            id,
            priority,
            issue_type,
            depends_on,
            labels,
        } => {
            let project = only_project(&config, project)?;
            let args = intake::CreateArgs {
                id: id.as_deref(),
                acceptance,
                title,
                description,
                priority: *priority,
                issue_type,
                depends_on,
                labels,
            };
            return intake::create(&config, &project, args).await;
        }
        Command::Usage { by, days } => return reports::usage(&config, out, project, by, *days),
        Command::Doctor => return doctor::doctor(&config).await,
        Command::Retry { bead, note } => {
            let project = only_project(&config, project)?;
            return intake::retry(&config, out, &project, bead, note).await;
        }
        Command::Backlog { all } => {
            let project = only_project(&config, project)?;
            return intake::show_backlog(&config, out, &project, *all).await;
        }
        Command::Groom {
            command: None | Some(GroomCommand::Log { .. }),
        } => {
            let limit = match &cli.command {
                Command::Groom {
                    command: Some(GroomCommand::Log { limit }),
                } => *limit,
                _ => 20,
            };
            let project = only_project(&config, project)?;
            return intake::groom_log(&config, out, &project, limit);
        }
        _ => {}
    }
    // `status --json` is the same as `--output json` (scripts written before --output use it).
    let out = match &cli.command {
        Command::Status { json: true, .. } => Out {
            format: OutputFormat::Json,
        },
        _ => out,
    };
    let session = Session::connect(config, cli.project.clone(), out).await?;
    match cli.command {
        Command::Submit { bead } => session.submit(&bead).await,
        Command::Approve { target, by, feedback } => session.decide(&target, true, feedback, by).await,
        Command::Reject { target, feedback, by } => {
            if feedback.trim().is_empty() {
                return Err(usage("--feedback must say what the planner should change"));
            }
            session.decide(&target, false, feedback, by).await
        }
        Command::Status {
            target: Some(target), ..
        } => session.status(&target).await,
        Command::Status { target: None, .. } => session.list().await,
        Command::Show { target, diff: false } => session.status(&target).await,
        Command::Show { target, diff: true } => session.show_diff(&target).await,
        Command::Cancel { target, reason } => session.cancel(&target, &reason).await,
        Command::Runs { all, limit } => session.runs(all, limit).await,
        Command::Gc { project, dry_run } => {
            let project = session.named_project(project)?;
            session.gc(&project, dry_run).await
        }
        Command::Watch { target, until, timeout } => {
            let until = match until {
                None => None,
                Some(name) => Some(Phase::from_name(&name).ok_or_else(|| {
                    usage(format!(
                        "unknown phase {name:?}; phases are loading, planning, awaiting_approval, executing, review, semgrep, dod, integrating, queued, done"
                    ))
                })?),
            };
            session.watch(&target, until, parse_timeout(&timeout)?).await
        }
        Command::Learned { target, timeout } => session.learned(&target, parse_timeout(&timeout)?).await,
        Command::Dispatcher { project } => {
            let project = session.named_project(project)?;
            let status = intake::dispatcher_status(&session.client, &session.config, &project).await?;
            if out.text() {
                // The Sharks it started last: who executes, who waits for a person, who for a slot.
                let recent: Vec<String> = status.started.iter().rev().take(32).cloned().collect();
                let runs = coordination::states_of_runs(&session.client, &project, &recent).await;
                print!("{}", intake::render_dispatcher(&status, &runs));
            } else {
                out.one(&status)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Queue { project } => {
            let project = session.named_project(project)?;
            let status = coordination::queue_status(&session.client, &project).await?;
            if out.text() {
                print!("{}", coordination::render_queue(&status));
            } else {
                out.one(&status)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { project } => {
            let project = session.named_project(project)?;
            intake::pause_or_resume(&session.client, &session.config, &project, true).await
        }
        Command::Resume { project } => {
            let project = session.named_project(project)?;
            intake::pause_or_resume(&session.client, &session.config, &project, false).await
        }
        Command::Groom {
            command: Some(GroomCommand::Now { timeout }),
        } => intake::groom_now(&session.client, &session.project_name()?, parse_timeout(&timeout)?).await,
        Command::Demo { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Rules { .. }
        | Command::Lessons { .. }
        | Command::Create { .. }
        | Command::Backlog { .. }
        | Command::Retry { .. }
        | Command::Usage { .. }
        | Command::Doctor
        | Command::Groom { .. } => unreachable!("handled above"),
    }
}

/// The OS user running this command, from the password database (not `$USER`, which anyone can
/// set); the numeric uid when it has no entry.
pub(crate) fn os_user() -> String {
    // SAFETY: getpwuid_r writes the entry into `entry` and its strings into `buf`, both ours and
    // alive for the call; `found` is null or points at `entry`.
    unsafe {
        let uid = libc::geteuid();
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc == 0 && !found.is_null() && !entry.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(entry.pw_name).to_string_lossy().into_owned();
        }
        format!("uid {uid}")
    }
}
