//! The command line, as clap parses it: every command, option and its help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// How a read command prints what it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: aligned lines, what to do next.
    Text,
    /// One JSON document (a list is an array).
    Json,
    /// One JSON object per line (each item of a list on its own line).
    Jsonl,
}

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
        its workflow id (shark-<project>-<bead>).\n\n\
        Read commands (backlog, status, runs, rules, lessons, groom log, usage, dispatcher) take \
        --output json|jsonl for scripts.",
    after_long_help = "Exit codes:\n  \
        0  done\n  \
        1  what was asked about failed or was refused (a run that did not integrate, a decision \
        the run refused, no such run)\n  \
        2  a usage or configuration error (the message names the option, the file, the key)\n  \
        3  Temporal (or a worker) did not answer\n\n\
        Environment: CHUM_CONFIG (the configuration file), CHUM__<SECTION>__<KEY> (override one \
        key), NO_COLOR (no colours)."
)]
pub struct Cli {
    /// Configuration file (for the Temporal address and the projects). Without it: $CHUM_CONFIG,
    /// then ./configs/chum.toml, then $XDG_CONFIG_HOME/chum/chum.toml (~/.config/chum/chum.toml).
    #[arg(long, short, global = true, env = "CHUM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Project the bead belongs to (default: the only configured project).
    #[arg(long, short, global = true)]
    pub project: Option<String>,
    /// How read commands print: text for people, json (one document) or jsonl (one object per
    /// line) for scripts.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the Shark for a bead (plan, then wait for your approval).
    Submit { bead: String },
    /// Check this machine and configuration: Temporal, git, semgrep, the store, every provider's
    /// program, every project's repository and sandbox (bwrap or why not), the process limit.
    Doctor,
    /// Approve the plan waiting at the gate (the `approve` update: the run answers at once
    /// whether it took the decision).
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
        /// The same as --output json (kept for scripts written before --output).
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Show a run as `status` does; with --diff, the diff of the work at the result gate
    /// (`approve_result`): what `chum approve` would let be integrated.
    Show {
        /// Bead id or Shark workflow id.
        target: String,
        /// Print the diff of the result waiting for approval.
        #[arg(long)]
        diff: bool,
    },
    /// Stop a run: the running agent is killed, the bead reopened with a note.
    Cancel {
        /// Bead id or Shark workflow id.
        target: String,
        /// Why (kept with the run).
        #[arg(long, default_value = "cancelled with chum cancel")]
        reason: String,
    },
    /// The Shark runs Temporal knows, newest first: running ones, or with --all finished ones too.
    Runs {
        /// Finished runs too (integrated, failed, cancelled, ...).
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Clean up what finished runs left in the project: worktrees under .chum/, chum/* branches
    /// merged into the base branch, candidate refs. Beads with a running Shark are left alone;
    /// unmerged branches are kept and named; an uncommitted beads file is reported.
    Gc {
        /// The project (default: --project, or the only one configured).
        project: Option<String>,
        /// Only say what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script, e.g. `chum completions bash > ~/.local/share/bash-completion/completions/chum`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `chum man > ~/.local/share/man/man1/chum.1`.
    Man,
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
    /// Open a blocked bead again, so the dispatcher starts a new Shark for it once it is ready
    /// (what blocked it stays in its notes, with who reopened it and why).
    Retry {
        /// The bead's id.
        bead: String,
        /// Why, for the bead's notes (e.g. "the hook is fixed").
        #[arg(long, default_value = "")]
        note: String,
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
    /// The project's coordinator: who holds an execution slot and which files they lease, who
    /// waits for a slot and why, who holds the turn at the base branch, who waits for it, and
    /// what the last turns came to (landed, sent back, verified again on a moved base).
    Queue { project: Option<String> },
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
pub enum RulesCommand {
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
pub enum GroomCommand {
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
pub enum LessonsCommand {
    /// Full-text search (any words; no query syntax to get wrong). Without words: the newest.
    Search {
        /// Words a lesson should contain (`chum lessons search worktree lock`).
        words: Vec<String>,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// One lesson with its provenance.
    Show { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum DemoCommand {
    /// Create the demo project: a git repository with a Python package, its tests, and beads.
    Init {
        /// Where to create it.
        dir: PathBuf,
        /// Replace an existing directory.
        #[arg(long)]
        force: bool,
    },
}
