//! The factory benchmark (`make bench`): real dev server, real git, the sandboxed scripted agent
//! answering at once, a trivial definition of done (`true`), the human gate approved by the
//! benchmark as soon as it opens. Prints a table and writes it to `target/bench/factory.md`.
//!
//! - overhead per bead: wall time from start to integrated, minus the agents' own run time (as
//!   they reported it, from the store), minus the Semgrep and DoD gate commands' time, minus the
//!   time the plan waited at the human gate; p50/p95 over `CHUM_BENCH_BEADS` (50) beads, one at a
//!   time;
//! - throughput: `CHUM_BENCH_THROUGHPUT` (100) beads, 10 at once;
//! - history events per Shark, activity schedule-to-start latency (the SDK's metric), the process's
//!   peak RSS (worker + the benchmark driver), Semgrep time per attempt;
//! - `CHUM_BENCH_FIFTY` (100) beads 50 at once on the worker binary: Sharks per hour and the
//!   worker process's own peak RSS; `CHUM_BENCH_LOAD` (100) beads 10 at once on the worker binary
//!   beside a busy loop pinned to each core: every bead must integrate;
//! - many Sharks on one repository through the merge queue (`queue.rs`): total time,
//!   re-verifications, redos caused by conflicts, time main spent red (must be zero);
//! - the crystallization payoff on a real project (`payoff.rs`: boltons from its PyPI sdist, its
//!   own test suite as the definition of done): what one repeated mistake costs (from the end of
//!   the execution that made it to the start of the one that fixes it) when the DoD catches it,
//!   and when a learned Semgrep rule catches it first, how many times sooner the rule stops it;
//!   and the review tokens and dollars the rule saves (the free gate runs first, so a mistake it
//!   catches is never reviewed).

mod components;
mod payoff;
mod plots;
mod queue;
mod scale;

use chum_core::proto::{EnumName, GateName};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chum_core::proto::{Outcome, Phase, SharkInput, SharkLimits, SharkResult};
use chum_testkit::*;

/// The executor writes one Python file, so the Semgrep gate has something to scan (two lines:
/// the reviewer quotes one per acceptance criterion).
fn executor() -> Step {
    Step::executor()
        .shell(r#"printf "NAME = \"%s\"\nKIND = \"bench bead\"\n" "$CHUM_BEAD_ID" > "out_$(echo $CHUM_BEAD_ID | tr - _).py""#)
        .answer("done")
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn beads(count: usize) -> String {
    (1..=count)
        .map(|i| {
            format!(
                r#"{{"id":"bench-{i:03}","title":"Bench bead {i}","description":"write out-bench-{i:03}.txt","status":"open","priority":2,"issue_type":"task","created_at":"2026-11-22T00:00:00Z","updated_at":"2026-11-22T00:00:00Z"}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn bench_limits() -> SharkLimits {
    SharkLimits {
        gate_timeout_secs: 120,
        ..limits()
    }
}

/// One bead through the factory, approved the moment its plan waits; (wall time, result).
async fn one_bead(
    client: &temporalio_client::Client,
    task_queue: &str,
    bead: &str,
) -> (Duration, SharkResult, SharkHandle) {
    let input = SharkInput {
        project: "demo".into(),
        bead_id: bead.into(),
        limits: Some(bench_limits()),
        candidate: None,
    };
    let started = Instant::now();
    let handle = start_shark(client, task_queue, input).await;
    loop {
        let s = status(&handle).await;
        if s.phase() == Phase::AwaitingApproval {
            break;
        }
        assert!(s.phase() != Phase::Done, "{bead} ended before its gate: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    send_approve(&handle, serde_json::json!({"approved": true, "by": "bench"})).await;
    let result = handle
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await
        .expect("the run ends");
    (started.elapsed(), result, handle)
}

/// What starting one sandboxed process costs here (bubblewrap, its mounts, the cgroups): the
/// median of 20 sandboxed `/bin/true` runs, through the same code agents and DoD commands use.
async fn sandbox_startup_ms(h: &Harness) -> f64 {
    use chum_activities::exec::{self as sandbox, SandboxPolicy};
    use chum_activities::exec::{ProcessSpec, run_process};
    let Ok(sandboxing) = sandbox::resolve(chum_core::config::SandboxMode::Auto, &h.config.sandbox) else {
        return 0.0;
    };
    if !sandboxing.is_sandboxed() {
        return 0.0;
    }
    let mut times = Vec::new();
    for i in 0..20 {
        let scratch = h.dir.path().join(format!("startup-{i}"));
        let spec = ProcessSpec {
            program: "/bin/true".into(),
            args: vec![],
            cwd: h.repo.clone(),
            env: vec![],
            stdin: None,
            timeout: Duration::from_secs(10),
            stdout_path: scratch.join("out"),
            stderr_path: scratch.join("err"),
            capture_limit: 1024,
            cgroup_procs: vec![],
        };
        let policy = SandboxPolicy {
            workdir: h.repo.clone(),
            scratch: scratch.clone(),
            ..SandboxPolicy::default()
        };
        let prepared = sandbox::prepare(spec, &sandboxing, &h.config.sandbox, &policy, None).expect("sandbox");
        let out = run_process(
            &prepared.spec,
            Duration::from_secs(5),
            || async {},
            std::future::pending::<()>(),
        )
        .await
        .expect("runs");
        times.push(out.duration.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    percentile(&times, 0.5)
}

/// Sandboxed processes of a run: its agent runs and its DoD commands.
fn sandboxed_runs(h: &Harness, workflow_id: &str, result: &SharkResult) -> u64 {
    let db = rusqlite::Connection::open(h.config.state_dir.join("chum.db")).expect("store");
    let agents: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM agent_usage WHERE workflow_id = ?1",
            [workflow_id],
            |r| r.get(0),
        )
        .expect("agent runs");
    let dods = result.gate_results.iter().filter(|g| g.gate() == GateName::Dod).count();
    agents.max(0) as u64 + dods as u64
}

/// Milliseconds of the run spent outside CHUM: agents (from the store), Semgrep and DoD commands,
/// and the plan's wait at the human gate. The agents' and commands' times include starting their
/// sandbox, which is CHUM's work: the caller adds it back (see `sandbox_startup_ms`).
fn outside_ms(h: &Harness, workflow_id: &str, result: &SharkResult) -> u64 {
    let db = rusqlite::Connection::open(h.config.state_dir.join("chum.db")).expect("store");
    let agents: i64 = db
        .query_row(
            "SELECT COALESCE(SUM(duration_ms), 0) FROM agent_usage WHERE workflow_id = ?1",
            [workflow_id],
            |r| r.get(0),
        )
        .expect("agent time");
    let commands: u64 = result
        .gate_results
        .iter()
        .filter(|g| g.gate() == GateName::Semgrep || g.gate() == GateName::Dod)
        .map(|g| g.duration_ms)
        .sum();
    let waiting: i64 = result
        .phases
        .iter()
        .filter(|p| p.phase() == Phase::AwaitingApproval)
        .map(|p| p.ended_ms - p.started_ms)
        .sum();
    agents as u64 + commands + waiting.max(0) as u64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn peak_rss_mb() -> f64 {
    peak_rss_mb_of("self")
}

/// `VmHWM` of process `pid` ("self" for this one), in MB.
fn peak_rss_mb_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Mean of a Prometheus histogram (sum / count) across its label sets, in the metric's unit.
fn histogram_mean(text: &str, name: &str) -> Option<f64> {
    let value = |suffix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{suffix}")))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    let count = value("_count");
    (count > 0.0).then(|| value("_sum") / count)
}

struct Row {
    what: String,
    measured: String,
    target: String,
    met: Option<bool>,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let run_started = Instant::now();
    components::install();
    // `CHUM_BENCH_ONLY=queue` / `payoff` / `scale` / `fifty`: only that part (`fifty`: concurrency
    // 50 on the worker binary).
    match std::env::var("CHUM_BENCH_ONLY").as_deref() {
        Ok("queue") => return print_table(&queue::merge_queue_rows().await),
        Ok("payoff") => {
            let (rows, payoff) = payoff::crystallization_payoff().await;
            let drawn = plots::payoff(&payoff, &plots::caption(&chrono_like_now()));
            print_table(&rows);
            return println!("drawn: {}", plots::shown(&drawn));
        }
        Ok("scale") => return print_table(&scale::scale_rows().await),
        Ok("fifty") => {
            let fifty = env_count("CHUM_BENCH_FIFTY", 100);
            let h = factory_harness(fifty).await;
            return print_table(&fifty_on_the_worker_binary(&h, 1, fifty).await);
        }
        Ok("load") => {
            let loaded = env_count("CHUM_BENCH_LOAD", 100);
            let h = factory_harness(loaded).await;
            return print_table(&under_load(&h, 1, loaded).await);
        }
        _ => {}
    }
    let sequential = env_count("CHUM_BENCH_BEADS", 50);
    let parallel = env_count("CHUM_BENCH_THROUGHPUT", 100);
    let concurrency = 10;
    // Throughput against concurrency: this many beads at each of CURVE_LEVELS (and the main run's
    // `concurrency`).
    let curve = env_count("CHUM_BENCH_CURVE", 20);
    // Sharks per hour and the worker's own memory at concurrency 50, on the worker binary alone.
    let fifty = env_count("CHUM_BENCH_FIFTY", 100);
    // The throughput run again with both cores kept busy by other processes.
    let loaded = env_count("CHUM_BENCH_LOAD", 100);
    let h = Arc::new(factory_harness(sequential + parallel + curve * CURVE_LEVELS.len() + fifty + loaded).await);
    eprintln!("bench: dev server up; {sequential} beads one at a time, then {parallel} beads {concurrency} at once");
    let hh = h.clone();
    let worker_part = Instant::now();
    let rows = h
        .with_metrics_worker(|client, sdk_metrics| async move {
            let inner = Instant::now();
            let h = hh;
            // Warm-up: the first run pays for process and connection start-up.
            let (_, warm, _) = one_bead(&client, &h.task_queue, "bench-001").await;
            assert_eq!(warm.outcome(), Outcome::Integrated, "{warm:?}");

            let startup = sandbox_startup_ms(&h).await;
            let mut overheads = Vec::new();
            let mut walls = Vec::new();
            let mut events = Vec::new();
            let mut semgrep_ms = Vec::new();
            let mut bead_phases = Vec::new();
            components::reset();
            for i in 2..=sequential {
                let bead = format!("bench-{i:03}");
                let (wall, result, handle) = one_bead(&client, &h.task_queue, &bead).await;
                assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
                let id = chum_core::ids::shark_workflow_id("demo", &bead);
                // Sandbox start-up is CHUM's overhead, not the agent's or the DoD's time.
                let outside = outside_ms(&h, &id, &result) as f64 - startup * sandboxed_runs(&h, &id, &result) as f64;
                overheads.push(wall.as_millis() as f64 - outside);
                walls.push(wall.as_millis() as f64);
                bead_phases.push(plots::BeadPhases {
                    phases: result
                        .phases
                        .iter()
                        .filter(|p| p.phase() != Phase::AwaitingApproval && p.ended_ms >= p.started_ms)
                        .map(|p| (p.phase().name(), (p.ended_ms - p.started_ms) as f64))
                        .collect(),
                });
                semgrep_ms.extend(
                    result
                        .gate_results
                        .iter()
                        .filter(|g| g.gate() == GateName::Semgrep)
                        .map(|g| g.duration_ms as f64),
                );
                let history = handle
                    .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
                    .into_events()
                    .await
                    .expect("history");
                events.push(history.len() as f64);
                if i % 10 == 0 {
                    eprintln!("bench: {i}/{sequential} sequential beads");
                }
            }

            let component_row = components::row(overheads.len());
            let first = sequential + 1;
            let (throughput_s, integrated, lost) =
                run_concurrently(&client, &h.task_queue, first..first + parallel, concurrency).await;
            let mut curve_points = vec![(concurrency, parallel as f64 / throughput_s)];
            let mut next = first + parallel;
            for level in CURVE_LEVELS {
                let (seconds, integrated_here, lost_here) =
                    run_concurrently(&client, &h.task_queue, next..next + curve, level).await;
                for line in &lost_here {
                    eprintln!("bench: NOT INTEGRATED at concurrency {level}: {line}");
                }
                curve_points.push((level, integrated_here as f64 / seconds));
                next += curve;
            }
            curve_points.sort_by_key(|(level, _)| *level);
            for line in &lost {
                eprintln!("bench: NOT INTEGRATED {line}");
            }

            let sdk = worker::metrics::sdk_metrics(sdk_metrics).await;
            let names: std::collections::BTreeSet<&str> = sdk
                .lines()
                .filter(|l| l.contains("schedule_to_start"))
                .filter_map(|l| l.split(['{', ' ']).next())
                .collect();
            eprintln!("bench: SDK schedule-to-start series: {names:?}");
            let schedule_to_start = histogram_mean(&sdk, "temporal_activity_schedule_to_start_latency");

            overheads.sort_by(f64::total_cmp);
            walls.sort_by(f64::total_cmp);
            semgrep_ms.sort_by(f64::total_cmp);
            let max_events = events.iter().cloned().fold(0.0, f64::max);
            let rss = peak_rss_mb();
            let p50 = percentile(&overheads, 0.5);
            let p95 = percentile(&overheads, 0.95);
            let semgrep_p50 = percentile(&semgrep_ms, 0.5);
            let rows = vec![
                Row {
                    what: naming_lost("throughput beads integrated".into(), &lost),
                    measured: format!("{integrated} of {parallel}"),
                    target: "all".into(),
                    met: Some(lost.is_empty()),
                },
                Row {
                    what: format!("orchestration overhead per bead, p50 ({} beads)", overheads.len()),
                    measured: format!("{p50:.0} ms"),
                    target: "≤ 50 ms".into(),
                    met: Some(p50 <= 50.0),
                },
                Row {
                    what: "orchestration overhead per bead, p95".into(),
                    measured: format!("{p95:.0} ms"),
                    target: "≤ 100 ms".into(),
                    met: Some(p95 <= 100.0),
                },
                Row {
                    what: "wall time per bead, p50 (agents + gates + overhead)".into(),
                    measured: format!("{:.0} ms", percentile(&walls, 0.5)),
                    target: "-".into(),
                    met: None,
                },
                component_row,
                Row {
                    what: format!("throughput: {parallel} beads, {concurrency} at once"),
                    measured: format!("{throughput_s:.1} s ({:.2} beads/s)", parallel as f64 / throughput_s),
                    target: "≤ 10 s".into(),
                    met: Some(throughput_s <= 10.0),
                },
                Row {
                    what: format!(
                        "throughput against concurrency ({curve} beads per level; {parallel} at {concurrency})"
                    ),
                    measured: curve_points
                        .iter()
                        .map(|(level, rate)| format!("{level}: {rate:.2}/s"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    target: "-".into(),
                    met: None,
                },
                Row {
                    what: "history events per Shark (max)".into(),
                    measured: format!("{max_events:.0}"),
                    target: "≤ 50".into(),
                    met: Some(max_events <= 50.0),
                },
                Row {
                    what: "sandbox start-up per sandboxed process (bwrap; counted in the overhead above)".into(),
                    measured: format!("{startup:.1} ms"),
                    target: "-".into(),
                    met: None,
                },
                Row {
                    what: "activity schedule-to-start latency (mean, SDK metric)".into(),
                    measured: schedule_to_start
                        .map(|v| format!("{v:.3} ms"))
                        .unwrap_or_else(|| "not reported".into()),
                    target: "-".into(),
                    met: None,
                },
                Row {
                    what: "peak RSS (worker + benchmark driver, one process)".into(),
                    measured: format!("{rss:.0} MB"),
                    target: "≤ 40 MB (the worker alone)".into(),
                    met: Some(rss <= 40.0),
                },
                Row {
                    what: "Semgrep gate per attempt, p50 / max".into(),
                    measured: format!(
                        "{semgrep_p50:.0} ms / {:.0} ms",
                        semgrep_ms.last().copied().unwrap_or(f64::NAN)
                    ),
                    target: "≤ 100 ms".into(),
                    met: Some(semgrep_p50 <= 100.0),
                },
            ];
            (rows, overheads, bead_phases, curve_points, inner.elapsed())
        })
        .await;
    let (mut rows, overheads, bead_phases, curve_points, worked) = rows;
    let mut laps = Laps {
        // The dev server starts with the first worker, so the project's set-up is in here.
        parts: vec![
            ("sequential, throughput, curve", worked),
            (
                "the in-process worker's start and shutdown",
                worker_part.elapsed().saturating_sub(worked),
            ),
        ],
        since: Instant::now(),
    };
    let first = sequential + parallel + curve * CURVE_LEVELS.len() + 1;
    rows.extend(fifty_on_the_worker_binary(&h, first, fifty).await);
    laps.lap("concurrency 50");
    rows.extend(under_load(&h, first + fifty, loaded).await);
    laps.lap("under load");
    rows.extend(queue::merge_queue_rows().await);
    laps.lap("merge queue");
    let (payoff_rows, payoff) = payoff::crystallization_payoff().await;
    rows.extend(payoff_rows);
    laps.lap("payoff");
    rows.extend(scale::scale_rows().await);
    laps.lap("scale");
    rows.push(Row {
        what: "the benchmark's own run time (its build not counted), by part".into(),
        measured: format!(
            "{:.0} s: {}{}",
            run_started.elapsed().as_secs_f64(),
            match worker_part.duration_since(run_started).as_secs() {
                0 => String::new(),
                n => format!("set-up {n} s, "),
            },
            laps.parts
                .iter()
                .map(|(name, took)| format!("{name} {:.0} s", took.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        target: "~10 min".into(),
        met: None,
    });
    let caption = plots::caption(&chrono_like_now());
    let drawn = [
        plots::overhead_distribution(&overheads, &caption),
        plots::phases_per_bead(&bead_phases, &caption),
        plots::throughput_curve(&curve_points, &caption),
        plots::payoff(&payoff, &caption),
    ];
    print_table(&rows);
    for path in &drawn {
        println!("drawn: {}", plots::shown(path));
    }
}

/// The project every factory row runs on: `beads` beads, a zero-time scripted planner and
/// executor, a trivial DoD, the `branch` policy, no Dispatcher.
async fn factory_harness(beads_count: usize) -> Harness {
    Harness::start(
        "bench",
        HarnessOptions {
            steps: vec![planner(GOOD_PLAN), executor()],
            dod: vec!["true".into()],
            integration: "branch",
            beads: Some(beads(beads_count)),
            ..Default::default()
        }
        .with_config(move |c| {
            c.dispatcher.enabled = Some(false);
            // Every bead plans the same files: execution slots only, no leases. Slots for the
            // curve's widest level; the benchmark's semaphore sets each level.
            c.project().concurrency = Some(CURVE_LEVELS.iter().copied().fold(FIFTY, usize::max) as u32);
            c.project().leases = Some("off".into());
        }),
    )
    .await
}

/// The widest run: Sharks per hour and the worker's memory with this many in flight.
const FIFTY: usize = 50;

/// `count` beads from number `first`, at most [`FIFTY`] at once, on the worker *binary* (release)
/// alone in its process: Sharks per hour, and the worker's peak RSS (`VmHWM` of its process,
/// without the benchmark driver) with 50 Sharks in flight.
async fn fifty_on_the_worker_binary(h: &Harness, first: usize, count: usize) -> Vec<Row> {
    let run = on_the_worker_binary(h, first..first + count, FIFTY, &format!("at concurrency {FIFTY}")).await;
    let (seconds, integrated, rss) = (run.seconds, run.integrated, run.peak_rss_mb);
    vec![
        Row {
            what: format!(
                "Sharks per hour at concurrency {FIFTY} ({integrated} of {count} integrated, the worker binary alone)"
            ),
            measured: format!("{:.0} per hour ({seconds:.1} s)", integrated as f64 / seconds * 3600.0),
            target: "-".into(),
            met: None,
        },
        Row {
            what: format!("peak RSS of the worker process alone, {FIFTY} Sharks in flight"),
            measured: format!("{rss:.0} MB"),
            target: "≤ 40 MB".into(),
            met: Some(rss <= 40.0),
        },
    ]
}

/// `count` beads 10 at once on the worker binary while a busy loop runs pinned to each core (other
/// processes taking the machine: a build, a browser). Every bead must integrate; each one that
/// does not is listed with its outcome and reason.
async fn under_load(h: &Harness, first: usize, count: usize) -> Vec<Row> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let hogs = BusyLoops::start(cores);
    let what = format!("under load, beside {} busy loops", hogs.0.len());
    let run = on_the_worker_binary(h, first..first + count, 10, &what).await;
    drop(hogs);
    vec![Row {
        what: naming_lost(
            format!("under load: {count} beads 10 at once beside a busy loop on each of {cores} cores, integrated"),
            &run.lost,
        ),
        measured: format!("{} of {count} ({:.1} s)", run.integrated, run.seconds),
        target: "all".into(),
        met: Some(run.lost.is_empty()),
    }]
}

/// What one run of beads on the worker binary gave.
struct BinaryRun {
    seconds: f64,
    integrated: usize,
    /// Each bead that did not integrate, with its outcome and reason.
    lost: Vec<String>,
    /// `VmHWM` of the worker's process, read before it stops.
    peak_rss_mb: f64,
}

/// Runs the beads `range` at most `concurrency` at once on the worker *binary* (release), alone in
/// its process, started for this run and stopped after it; `what` says how in the log lines.
async fn on_the_worker_binary(h: &Harness, range: std::ops::Range<usize>, concurrency: usize, what: &str) -> BinaryRun {
    let config = h.write_config(&h.config_file);
    let worker = WorkerProcess::start(&config);
    worker.wait_for_line("worker polling", 0).await;
    let client = h.client();
    eprintln!(
        "bench: {} beads {concurrency} at once on the worker binary (pid {}), {what}",
        range.len(),
        worker.pid()
    );
    let (seconds, integrated, lost) = run_concurrently(&client, &h.task_queue, range, concurrency).await;
    let peak_rss_mb = peak_rss_mb_of(&worker.pid().to_string());
    let _ = worker.stop();
    for line in &lost {
        eprintln!("bench: NOT INTEGRATED {what}: {line}");
    }
    BinaryRun {
        seconds,
        integrated,
        lost,
        peak_rss_mb,
    }
}

/// A row's label naming every bead that did not integrate, with its outcome and reason.
fn naming_lost(what: String, lost: &[String]) -> String {
    match lost.is_empty() {
        true => what,
        false => format!("{what} (not: {})", lost.join("; ")),
    }
}

/// How long each part of the benchmark took, in order.
struct Laps {
    parts: Vec<(&'static str, Duration)>,
    since: Instant,
}

impl Laps {
    /// Ends the part `name` (it began where the previous one ended).
    fn lap(&mut self, name: &'static str) {
        self.parts.push((name, self.since.elapsed()));
        self.since = Instant::now();
    }
}

/// A shell busy loop pinned to each core (`taskset`; unpinned where it is missing), killed when
/// dropped, also when the benchmark panics.
struct BusyLoops(Vec<std::process::Child>);

impl BusyLoops {
    fn start(cores: usize) -> BusyLoops {
        let spin = "while :; do :; done";
        BusyLoops(
            (0..cores)
                .filter_map(|core| {
                    std::process::Command::new("taskset")
                        .args(["-c", &core.to_string(), "sh", "-c", spin])
                        .spawn()
                        .or_else(|_| std::process::Command::new("sh").args(["-c", spin]).spawn())
                        .ok()
                })
                .collect(),
        )
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// Concurrency levels of the throughput curve besides the main run's.
const CURVE_LEVELS: [usize; 4] = [1, 2, 5, 20];

/// Runs the beads `range` (by number) at most `concurrency` at once: seconds taken, how many
/// integrated, and every bead that did not (with its outcome and reason: a lost bead is a finding
/// to act on, not a bare count).
async fn run_concurrently(
    client: &temporalio_client::Client,
    task_queue: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> (f64, usize, Vec<String>) {
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in range {
        let client = client.clone();
        let task_queue = task_queue.to_string();
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        tasks.spawn(async move {
            let bead = format!("bench-{i:03}");
            let (_, result, _) = one_bead(&client, &task_queue, &bead).await;
            drop(permit);
            (bead, result)
        });
    }
    let mut integrated = 0;
    let mut lost = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, result)) if result.outcome() == Outcome::Integrated => integrated += 1,
            Ok((bead, result)) => lost.push(format!(
                "{bead}: outcome {}, reason: {:?}",
                result.outcome().as_str_name(),
                result.reason
            )),
            Err(e) => lost.push(format!("a bench task failed: {e}")),
        }
    }
    (started.elapsed().as_secs_f64(), integrated, lost)
}

/// Prints the table and writes it to `target/bench/factory.md`.
fn print_table(rows: &[Row]) {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "CHUM factory benchmark, {} ({} cores)\n",
        chrono_like_now(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let _ = writeln!(table, "| measure | result | target | met |\n|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(table, "| {} | {} | {} | {met} |", r.what, r.measured, r.target);
    }
    println!("{table}");
    let out = workspace_root().join("target/bench");
    let _ = std::fs::create_dir_all(&out);
    let path = out.join("factory.md");
    match std::fs::write(&path, &table) {
        Ok(()) => println!("written to {}", path.display()),
        Err(e) => eprintln!("bench: could not write {}: {e}", path.display()),
    }
}

/// The date for the table's title, from `date` (no time crate for one line).
fn chrono_like_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
