//! `chum`: the command line for people working with CHUM.

mod demo;
mod doctor;
mod intake;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chum_core::config::ChumConfig;
use chum_core::ids::{check_bead_id, shark_workflow_id};
use chum_core::proto::{EnumName, Outcome, Phase, SharkStatus};
use chum_workflows::SharkRun;
use clap::{Parser, Subcommand};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowHandle};

#[derive(Parser, Debug)]
#[command(
    name = "chum",
    version,
    about = "CHUM: turn a backlog of beads into merged, verified code",
    long_about = "CHUM runs one durable Shark workflow per bead: plan, human gate, execute in a git \
        worktree, definition of done, integrate.\n\n\
        Typical session:\n  \
        chum create \"Add slugify()\" --id tk-1a   # a bead; the dispatcher starts its Shark when it is ready\n  \
        chum watch tk-1a --until awaiting_approval\n  \
        chum approve tk-1a         # or: chum reject tk-1a --feedback \"...\"\n  \
        chum watch tk-1a           # follow it to the end and print the summary\n  \
        chum backlog               # what is ready, blocked, in progress; chum groom log: the groomer's work\n\n\
        `chum submit <bead>` starts a Shark by hand (with the dispatcher off, or to jump the queue).\n\n\
        A bead is named by its id (the project is the only configured one, or --project) or by \
        its workflow id (shark-<project>-<bead>)."
)]
struct Cli {
    /// Configuration file (for the Temporal address and the projects).
    #[arg(long, short, global = true, env = "CHUM_CONFIG", default_value = "configs/chum.toml")]
    config: PathBuf,
    /// Project the bead belongs to (default: the only configured project).
    #[arg(long, short, global = true)]
    project: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the Shark for a bead (plan, then wait for your approval).
    Submit { bead: String },
    /// Check this machine and configuration: Temporal, git, semgrep, the store, every provider's
    /// program, every project's repository and sandbox (bwrap or why not), the process limit.
    Doctor,
    /// Approve the plan waiting at the gate (sends the `approve` signal).
    Approve {
        /// Bead id or workflow id.
        target: String,
        /// Who approves, when not the OS user running `chum` (that user is recorded either way).
        #[arg(long)]
        by: Option<String>,
        /// A note for the record.
        #[arg(long, default_value = "")]
        feedback: String,
    },
    /// Reject the plan waiting at the gate; the planner gets your feedback and tries again.
    Reject {
        /// Bead id (e.g. tk-1a) or Shark workflow id (shark-demo-tk-1a).
        target: String,
        /// What the planner should change (required).
        #[arg(long)]
        feedback: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Show a run's phase, plan, gate results and outcome (or list running Sharks).
    Status {
        /// Bead id or Shark workflow id; without it, every running Shark with its phase.
        target: Option<String>,
        /// Print the raw status JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow a run live until it ends (or reaches --until), then print its summary.
    Watch {
        /// Bead id (e.g. tk-1a) or Shark workflow id (shark-demo-tk-1a).
        target: String,
        /// Stop when the run reaches this phase, e.g. awaiting_approval.
        #[arg(long)]
        until: Option<String>,
        /// Give up after this long, e.g. 10m.
        #[arg(long, default_value = "2h")]
        timeout: String,
    },
    /// The Semgrep rules: the files the gate uses, and the rules CHUM learned.
    Rules {
        #[command(subcommand)]
        command: Option<RulesCommand>,
    },
    /// The lessons CHUM learned from its runs.
    Lessons {
        #[command(subcommand)]
        command: LessonsCommand,
    },
    /// Wait for the ContinuousLearner of a bead's latest run and show what it learned.
    Learned {
        /// Bead id or Shark workflow id.
        target: String,
        /// Give up waiting after this long.
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// Add a bead to the project's backlog; the dispatcher starts its Shark once it is ready.
    Create {
        /// What the work is.
        title: String,
        #[arg(long, short, default_value = "")]
        description: String,
        /// How to tell it is done (the planner turns it into acceptance criteria).
        #[arg(long, default_value = "")]
        acceptance: String,
        /// Use this id instead of a generated `<prefix>-<base36>` one (like `bd create --id`).
        #[arg(long)]
        id: Option<String>,
        /// 0 (most urgent) to 4.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i64).range(0..=4))]
        priority: i64,
        /// task, bug, feature, chore, ...
        #[arg(long = "type", default_value = "task")]
        issue_type: String,
        /// A bead this one waits for (repeat for several); it is ready only once they are closed.
        #[arg(long = "depends-on", value_name = "BEAD")]
        depends_on: Vec<String>,
        /// A label (repeat for several). `fanout:N` runs N Monte Carlo candidates per attempt,
        /// `select:first` / `select:best` picks how the winner is chosen.
        #[arg(long = "label", value_name = "LABEL")]
        labels: Vec<String>,
    },
    /// The backlog as the dispatcher sees it: ready, blocked (and by what), in progress.
    Backlog {
        /// Closed beads too, each with the evidence it was closed with.
        #[arg(long)]
        all: bool,
    },
    /// Stop the project's dispatcher from starting Sharks (running ones go on).
    Pause {
        /// The project (default: --project, or the only one configured).
        project: Option<String>,
    },
    /// Let the project's dispatcher start Sharks again (a round runs right away).
    Resume { project: Option<String> },
    /// The project's dispatcher: paused or not, its last round, the Sharks it started.
    Dispatcher { project: Option<String> },
    /// Backlog grooming: what the groomers changed and refused, or run the strategic groom now.
    Groom {
        #[command(subcommand)]
        command: Option<GroomCommand>,
    },
    /// What the agents cost, as they reported it: totals and a breakdown, with the [budget] caps.
    Usage {
        /// Break it down by provider, role (the phase), project or bead.
        #[arg(long, default_value = "provider", value_parser = ["provider", "role", "project", "bead"])]
        by: String,
        /// Only the last N days (UTC, today included); default: everything.
        #[arg(long)]
        days: Option<u32>,
    },
    /// Demo helpers (used by `make demo`).
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Every rule file (CHUM's pack and the project's .semgrep/), validated, and every learned rule
    /// with its fate (accepted, rejected with the reason, retired). The default.
    List,
    /// One learned rule: its checks, its reason, its YAML, the lesson it came from.
    Show { rule_id: String },
    /// Remove a learned rule from the project, in a commit that says why.
    Retire {
        rule_id: String,
        /// Why (it goes into the commit message).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
enum GroomCommand {
    /// The latest groom outcomes, newest first: applied changes and refused ones with the reason.
    /// The default.
    Log {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Trigger the project's StrategicGroom schedule now and wait for its result.
    Now {
        #[arg(long, default_value = "15m")]
        timeout: String,
    },
}

#[derive(Subcommand, Debug)]
enum LessonsCommand {
    /// Full-text search (any words; no query syntax to get wrong). Without words: the newest.
    Search {
        #[arg(default_value = "")]
        query: String,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// One lesson with its provenance.
    Show { id: u64 },
}

#[derive(Subcommand, Debug)]
enum DemoCommand {
    /// Create the demo project: a git repository with a Python package, its tests, and beads.
    Init {
        /// Where to create it.
        dir: PathBuf,
        /// Replace an existing directory.
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // `chum backlog | head`: a closed pipe ends chum quietly, as it ends every Unix tool (Rust
    // ignores SIGPIPE, so println! would panic on the write error instead).
    // SAFETY: setting one signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chum: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Demo {
        command: DemoCommand::Init { dir, force },
    } = &cli.command
    {
        demo::init(dir, *force)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = chum_activities::settings::load_config(&cli.config)?;
    match &cli.command {
        Command::Rules { command } => return rules(&config, cli.project.as_deref(), command.as_ref()).await,
        Command::Lessons { command } => return lessons(&config, cli.project.as_deref(), command),
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
            let project = only_project(&config, cli.project.as_deref())?;
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
        Command::Usage { by, days } => return usage(&config, cli.project.as_deref(), by, *days),
        Command::Doctor => return doctor::doctor(&config).await,
        Command::Backlog { all } => {
            let project = only_project(&config, cli.project.as_deref())?;
            return intake::show_backlog(&config, &project, *all).await;
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
            let project = only_project(&config, cli.project.as_deref())?;
            return intake::groom_log(&config, &project, limit);
        }
        _ => {}
    }
    let session = Session::connect(config, cli.project.clone()).await?;
    match cli.command {
        Command::Submit { bead } => session.submit(&bead).await,
        Command::Approve { target, by, feedback } => session.decide(&target, true, feedback, by).await,
        Command::Reject { target, feedback, by } => {
            if feedback.trim().is_empty() {
                bail!("--feedback must say what the planner should change");
            }
            session.decide(&target, false, feedback, by).await
        }
        Command::Status {
            target: Some(target),
            json,
        } => session.status(&target, json).await,
        Command::Status { target: None, .. } => session.list().await,
        Command::Watch { target, until, timeout } => {
            let until = match until {
                None => None,
                Some(name) => Some(Phase::from_name(&name).with_context(|| {
                    format!("unknown phase {name:?}; phases are loading, planning, awaiting_approval, executing, dod, integrating, done")
                })?),
            };
            let timeout = humantime::parse_duration(&timeout).with_context(|| format!("--timeout {timeout:?}"))?;
            session.watch(&target, until, timeout).await
        }
        Command::Learned { target, timeout } => {
            let timeout = humantime::parse_duration(&timeout).with_context(|| format!("--timeout {timeout:?}"))?;
            session.learned(&target, timeout).await
        }
        Command::Dispatcher { project } => {
            let project = session.named_project(project)?;
            let status = intake::dispatcher_status(&session.client, &session.config, &project).await?;
            print!("{}", intake::render_dispatcher(&status));
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
        } => {
            let timeout = humantime::parse_duration(&timeout).with_context(|| format!("--timeout {timeout:?}"))?;
            intake::groom_now(&session.client, &session.project_name()?, timeout).await
        }
        Command::Demo { .. }
        | Command::Rules { .. }
        | Command::Lessons { .. }
        | Command::Create { .. }
        | Command::Backlog { .. }
        | Command::Usage { .. }
        | Command::Doctor
        | Command::Groom { .. } => unreachable!("handled above"),
    }
}

fn only_project(config: &ChumConfig, project: Option<&str>) -> Result<String> {
    match project {
        Some(p) => Ok(p.to_string()),
        None if config.projects.len() == 1 => Ok(config.projects.keys().next().cloned().unwrap_or_default()),
        None => bail!(
            "{} configures several projects; say which with --project <name>",
            config.source.display()
        ),
    }
}

fn open_store(config: &ChumConfig) -> Result<chum_activities::store::LessonStore> {
    Ok(chum_activities::store::LessonStore::open(
        &config.state_dir.join("chum.db"),
    )?)
}

/// `chum usage`: spend from the store, against the caps.
fn usage(config: &ChumConfig, project: Option<&str>, by: &str, days: Option<u32>) -> Result<ExitCode> {
    use chum_activities::budget::utc_day_start;
    use chum_activities::store::UsageFilter;
    let store = open_store(config)?;
    let now = chum_activities::shark::now_ms();
    let since = days.map(|d| utc_day_start(now) - i64::from(d.saturating_sub(1)) * 86_400_000);
    let filter = UsageFilter {
        project,
        bead_id: None,
        since_ms: since,
    };
    let total = store.spent(filter)?;
    let span = match days {
        Some(1) => "today (UTC)".to_string(),
        Some(d) => format!("the last {d} days (UTC)"),
        None => "all time".to_string(),
    };
    let scope = project.map(|p| format!("project {p}, ")).unwrap_or_default();
    let estimated = if total.estimated > 0 {
        format!(
            " ({} run(s) estimated from their time: their provider reports no cost)",
            total.estimated
        )
    } else {
        String::new()
    };
    println!(
        "{scope}{span}: ${:.4}, {} tokens, {} agent run(s){estimated}",
        total.cost_usd, total.tokens, total.runs
    );
    let column = if by == "bead" { "bead_id" } else { by };
    for (key, spent) in store.spent_by(column, filter)? {
        let estimated = if spent.estimated > 0 {
            format!("  ({} estimated)", spent.estimated)
        } else {
            String::new()
        };
        println!(
            "  {:<24} ${:>10.4}  {:>10} tokens  {:>5} run(s){estimated}",
            key, spent.cost_usd, spent.tokens, spent.runs
        );
    }
    let b = &config.budget;
    if chum_activities::budget::has_caps(b) {
        let today = store.spent(UsageFilter {
            since_ms: Some(utc_day_start(now)),
            ..UsageFilter::default()
        })?;
        println!(
            "caps ([budget]): per bead ${:.2} / {} tokens; per project per day ${:.2} / {} tokens; all projects per day ${:.2} / {} tokens (0 = none)",
            b.per_bead_usd,
            b.per_bead_tokens,
            b.project_daily_usd,
            b.project_daily_tokens,
            b.global_daily_usd,
            b.global_daily_tokens
        );
        println!(
            "spent today, all projects: ${:.4}, {} tokens",
            today.cost_usd, today.tokens
        );
    } else {
        println!("no spending caps are set ([budget] in the config)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `chum lessons search|show`.
fn lessons(config: &ChumConfig, project: Option<&str>, command: &LessonsCommand) -> Result<ExitCode> {
    let store = open_store(config)?;
    match command {
        LessonsCommand::Search { query, limit } => {
            let found = if query.trim().is_empty() {
                store.recent(project, *limit)?
            } else {
                store.search(project, query, *limit, None)?
            };
            if found.is_empty() {
                println!("no lessons match; runs add lessons when a learner role is configured");
            }
            for l in &found {
                println!(
                    "#{:<5} [{}] {} (bead {}, used {}x)",
                    l.id, l.category, l.summary, l.bead_id, l.use_count
                );
            }
        }
        LessonsCommand::Show { id } => {
            let l = store.lesson(*id)?.with_context(|| format!("no lesson #{id}"))?;
            print!("{}", render::lesson(&l));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `chum rules [list|show|retire]`.
async fn rules(config: &ChumConfig, project: Option<&str>, command: Option<&RulesCommand>) -> Result<ExitCode> {
    match command {
        None | Some(RulesCommand::List) => rule_files_and_learned(config, project).await,
        Some(RulesCommand::Show { rule_id }) => {
            let store = open_store(config)?;
            let rule = store
                .rule(rule_id)?
                .with_context(|| format!("no learned rule {rule_id}; `chum rules` lists them"))?;
            let lesson = store.lesson(rule.lesson_id)?;
            print!("{}", render::rule(&rule, lesson.as_ref()));
            Ok(ExitCode::SUCCESS)
        }
        Some(RulesCommand::Retire { rule_id, reason }) => {
            let done = chum_activities::learner::retire_rule(config, rule_id, reason)
                .await
                .map_err(anyhow::Error::msg)?;
            let short = &done.commit[..done.commit.len().min(12)];
            if done.merged {
                println!("retired {rule_id} in commit {short}");
            } else {
                println!(
                    "retired {rule_id} in commit {short} on branch chum/rules/retire-{rule_id} {}",
                    done.problem
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every rule file with its rule ids, validated with the engine the gate uses, then the learned rules.
async fn rule_files_and_learned(config: &ChumConfig, project: Option<&str>) -> Result<ExitCode> {
    use chum_activities::semgrep::{locate_core, rule_files, validate_rule_file};
    let name = only_project(config, project)?;
    let project = config.project(&name).map_err(anyhow::Error::msg)?;
    let core = locate_core(&config.semgrep).map_err(anyhow::Error::msg)?;
    let files = rule_files(&config.state_dir, &project.repo)?;
    let scratch = tempfile::tempdir()?;
    let mut quarantined = 0;
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- id:").or_else(|| l.trim().strip_prefix("id:")))
            .map(str::trim)
            .collect();
        let origin = if file.starts_with(&project.repo) {
            "project"
        } else {
            "chum pack"
        };
        let verdict =
            validate_rule_file(&core, file, &scratch.path().join(i.to_string()), config.semgrep.timeout).await;
        match verdict {
            None => println!("ok           [{origin}] {} ({})", file.display(), ids.join(", ")),
            Some(reason) => {
                quarantined += 1;
                println!("QUARANTINED  [{origin}] {}: {reason}", file.display());
            }
        }
    }
    println!(
        "{} rule file(s), {quarantined} quarantined (left out of scans; they never fail a bead)",
        files.len()
    );
    let learned = open_store(config)?.rules(Some(&name))?;
    if !learned.is_empty() {
        println!("\nlearned rules:");
        for r in &learned {
            println!(
                "{:<10} {:<9} lesson #{:<4} {}",
                r.rule_id, r.status, r.lesson_id, r.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Session {
    config: ChumConfig,
    project: Option<String>,
    client: Client,
}

type SharkHandle = WorkflowHandle<Client, SharkRun>;

impl Session {
    async fn connect(config: ChumConfig, project: Option<String>) -> Result<Session> {
        let client = chum_activities::temporal_client::connect(
            &config.temporal,
            "chum-cli",
            Duration::from_secs(5),
            |_, _, _| {},
        )
        .await?;
        Ok(Session {
            config,
            project,
            client,
        })
    }

    fn project_name(&self) -> Result<String> {
        if let Some(p) = &self.project {
            self.config.project(p).map_err(anyhow::Error::msg)?;
            return Ok(p.clone());
        }
        let mut names = self.config.projects.keys();
        match (names.next(), names.next()) {
            (Some(only), None) => Ok(only.clone()),
            _ => bail!(
                "{} configures several projects; say which with --project <name>",
                self.config.source.display()
            ),
        }
    }

    /// A project named on the command line (checked), or the default one.
    fn named_project(&self, project: Option<String>) -> Result<String> {
        match project {
            Some(p) => {
                self.config.project(&p).map_err(anyhow::Error::msg)?;
                Ok(p)
            }
            None => self.project_name(),
        }
    }

    /// A bead id or a workflow id, as a workflow id.
    fn workflow_id(&self, target: &str) -> Result<String> {
        if target.starts_with("shark-") {
            return Ok(target.to_string());
        }
        check_bead_id(target).map_err(anyhow::Error::msg)?;
        Ok(shark_workflow_id(&self.project_name()?, target))
    }

    fn handle(&self, target: &str) -> Result<SharkHandle> {
        Ok(self.client.get_workflow_handle::<SharkRun>(self.workflow_id(target)?))
    }

    async fn query(&self, handle: &SharkHandle) -> Result<SharkStatus> {
        let id = &handle.info().workflow_id;
        worker::control::status(&self.client, id)
            .await
            .map_err(|e| self.explain(e))
    }

    /// A control error with what to do next, for a person at a terminal.
    fn explain(&self, e: worker::control::ControlError) -> anyhow::Error {
        use worker::control::ControlErrorKind;
        match e.kind {
            ControlErrorKind::NotFound => anyhow::anyhow!("{}; start one with `chum submit <bead>`", e.message),
            ControlErrorKind::Unavailable => anyhow::anyhow!(
                "{} (task queue `{}`, Temporal at {}; `make up` starts both)",
                e.message,
                self.config.temporal.task_queue,
                self.config.temporal.address
            ),
            _ => anyhow::Error::new(e),
        }
    }

    async fn submit(&self, bead: &str) -> Result<ExitCode> {
        check_bead_id(bead).map_err(anyhow::Error::msg)?;
        let project = self.project_name()?;
        // Refuse early what the Shark would refuse anyway, with the reason.
        let project_config = self.config.project(&project).map_err(anyhow::Error::msg)?;
        let found = chum_activities::backlog::Backlog::of(project_config)
            .get(bead)
            .await
            .map_err(anyhow::Error::msg)?;
        if found.status == "closed" {
            bail!("bead {bead} is already closed; nothing to do");
        }
        let id = worker::control::start(&self.client, &self.config, &project, bead)
            .await
            .map_err(|e| match e.kind {
                worker::control::ControlErrorKind::Conflict => {
                    anyhow::anyhow!("{}; follow it with `chum watch {bead}`", e.message)
                }
                _ => anyhow::anyhow!("{}; is the Temporal server up (`make up`)?", e.message),
            })?;
        println!("started {id}");
        println!("  watch:   chum watch {bead}");
        println!("  approve: chum approve {bead}   (once the plan is at the gate)");
        println!("  UI:      {}", render::ui_link(&self.config, &id));
        Ok(ExitCode::SUCCESS)
    }

    async fn decide(&self, target: &str, approved: bool, feedback: String, by: Option<String>) -> Result<ExitCode> {
        let id = self.workflow_id(target)?;
        // The OS account deciding is on record whatever --by says (it is free text).
        let user = os_user();
        let by = match by.map(|b| b.trim().to_string()).filter(|b| !b.is_empty()) {
            Some(name) if name != user => format!("{name} (OS user {user})"),
            _ => user,
        };
        let decision = worker::control::Decision {
            approved,
            feedback,
            by: by.clone(),
        };
        let receipt = worker::control::decide(&self.client, &id, &decision)
            .await
            .map_err(|e| self.explain(e))?;
        if receipt.confirmed {
            let verb = if approved { "approved" } else { "rejected" };
            println!("{verb} the plan of {id} (round {}) as {by}", receipt.round);
        } else {
            println!("sent; the run has not processed it yet (is a worker running?)");
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn status(&self, target: &str, json: bool) -> Result<ExitCode> {
        let handle = self.handle(target)?;
        let status = self.query(&handle).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", render::status(&self.config, &handle.info().workflow_id, &status));
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn list(&self) -> Result<ExitCode> {
        let running = worker::control::running(&self.client)
            .await
            .map_err(|e| self.explain(e))?;
        for (id, status) in &running {
            match status {
                Ok(s) => println!(
                    "{id:<32} {:<18} plan round {} attempt {}/{}",
                    s.phase().name(),
                    s.plan_round,
                    s.attempt,
                    s.max_attempts
                ),
                Err(e) => println!("{id:<32} (status unavailable: {e})"),
            }
        }
        if running.is_empty() {
            println!(
                "no Shark is running; the dispatcher starts ready beads (`chum backlog`), or `chum submit <bead>`"
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Waits for the learner of the bead's latest run and prints what it learned.
    async fn learned(&self, target: &str, timeout: Duration) -> Result<ExitCode> {
        let handle = self.handle(target)?;
        let status = self.query(&handle).await?;
        if status.learner_workflow_id.is_empty() {
            bail!(
                "{} started no learner (phase {}; learning needs a learner role, and a run that was integrated, escalated or rejected)",
                handle.info().workflow_id,
                status.phase()
            );
        }
        println!("waiting for {} ...", status.learner_workflow_id);
        let learner = self
            .client
            .get_workflow_handle::<chum_workflows::LearnerRun>(status.learner_workflow_id.clone());
        let result = tokio::time::timeout(timeout, learner.get_result(WorkflowGetResultOptions::default()))
            .await
            .with_context(|| format!("the learner did not finish within {}s", timeout.as_secs()))?
            .with_context(|| format!("reading the result of {}", status.learner_workflow_id))?;
        print!("{}", render::learned(&result));
        Ok(ExitCode::SUCCESS)
    }

    /// Waits until the run exists: with the dispatcher on, a ready bead's Shark appears within a
    /// round or two of the bead becoming ready.
    async fn wait_for_run(&self, handle: &SharkHandle, target: &str, deadline: Instant) -> Result<()> {
        let id = &handle.info().workflow_id;
        let mut announced = false;
        loop {
            match handle.describe(Default::default()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.to_string().to_lowercase().contains("not found") => {
                    if !self.config.dispatcher.enabled {
                        bail!("there is no run {id}; start one with `chum submit {target}`");
                    }
                    if !announced {
                        println!(
                            "waiting for the dispatcher to start {id} (it starts ready beads every {}; `chum backlog` shows what waits for what)",
                            humantime::format_duration(self.config.dispatcher.interval)
                        );
                        announced = true;
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "{id} was not started in time; is the worker running, and is the bead ready (`chum backlog`, `chum dispatcher`)?"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot look up {id}; is the Temporal server at {} up?",
                        self.config.temporal.address
                    )));
                }
            }
        }
    }

    async fn watch(&self, target: &str, until: Option<Phase>, timeout: Duration) -> Result<ExitCode> {
        let handle = self.handle(target)?;
        let id = handle.info().workflow_id.clone();
        self.wait_for_run(&handle, target, Instant::now() + timeout).await?;
        let started = Instant::now();
        let mut printer = render::Progress::default();
        loop {
            let status = self.query(&handle).await?;
            printer.update(&status, started.elapsed());
            if until == Some(status.phase()) {
                if status.phase() == Phase::AwaitingApproval {
                    print!("{}", render::plan(&status));
                    println!(
                        "  approve: chum approve {}   reject: chum reject {} --feedback \"...\"",
                        target, target
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            if status.phase() == Phase::Done {
                break;
            }
            if started.elapsed() > timeout {
                bail!(
                    "{id} did not finish within {}s; it keeps running; check `chum status {target}`",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let result = handle
            .get_result(WorkflowGetResultOptions::default())
            .await
            .with_context(|| format!("reading the result of {id}"))?;
        print!(
            "{}",
            render::summary(
                &self.config,
                &id,
                &handle.info().run_id.clone().unwrap_or_default(),
                &result
            )
        );
        Ok(if result.outcome() == Outcome::Integrated {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
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
