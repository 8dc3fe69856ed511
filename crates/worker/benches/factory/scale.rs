//! Scale without the agents (issue "Speed to the floor", item 4): a 1,000-bead backlog with a
//! realistic DAG read and listed the way `chum backlog`, the API's bead counts and the dispatcher's
//! ready query read it; the Dispatcher's rounds over it at concurrency 50, every claim checked; and the store with 10,000 finished runs, counted the way `/metrics` counts
//! them (SQL aggregates over every run), with its size per run.

use std::path::Path;
use std::time::Instant;

use std::collections::{BTreeMap, BTreeSet};

use chum_activities::backlog::Backlog;
use chum_activities::dispatcher::{RunningSharks, claim_ready};
use chum_activities::store::Store;
use chum_core::backlog::ready;
use chum_core::backlog::{BacklogCounts, backlog_rows, rows_listing};
use chum_core::config::ChumConfig;
use chum_core::config::ProjectConfig;
use chum_core::proto::{BeadStatus, DispatchReport};
use chum_core::proto::{GateName, GateResult, Outcome, Phase, PhaseSpan, RunRef, SharkResult};

use super::{Row, env_count, percentile};

/// The histogram bounds `/metrics` uses (seconds).
const BOUNDS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

/// `count` beads: chains of five, every tenth a diamond's join (two parents), a fifth of them
/// blocked by an open bead, a tenth closed.
fn backlog_jsonl(count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        let mut deps = Vec::new();
        if i % 5 != 0 {
            deps.push(format!("bk-{}", i - 1));
        }
        if i % 10 == 9 && i >= 7 {
            deps.push(format!("bk-{}", i - 7));
        }
        let status = if i % 10 == 3 { "closed" } else { "open" };
        let deps: Vec<String> = deps
            .iter()
            .map(|d| format!("{{\"issue_id\":\"bk-{i}\",\"depends_on_id\":\"{d}\",\"type\":\"blocks\"}}"))
            .collect();
        out.push_str(&format!(
            "{{\"id\":\"bk-{i}\",\"title\":\"Bead {i}\",\"description\":\"Work item {i} of the scale bench, with a description of ordinary length for a bead.\",\"status\":\"{status}\",\"priority\":{},\"issue_type\":\"task\",\"created_at\":\"2026-12-06T00:00:00Z\",\"updated_at\":\"2026-12-06T00:00:00Z\",\"dependencies\":[{}]}}\n",
            i % 4,
            deps.join(",")
        ));
    }
    out
}

fn median_ms(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    percentile(&times, 0.5)
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let out = f();
    (started.elapsed().as_secs_f64() * 1000.0, out)
}

/// A finished run as a Shark records it: ~10 gate results with excerpts, ~12 phase spans.
fn finished_run(i: usize) -> (RunRef, SharkResult) {
    let gate = |gate: GateName, passed: bool| GateResult {
        gate: gate as i32,
        round: 1,
        passed,
        duration_ms: 120,
        excerpt: "clean: 2 file(s), 7 rule file(s) — an excerpt of ordinary length for a gate's verdict".into(),
        artifact: format!("/var/lib/chum/artifacts/shark-demo-bk-{i}/run/semgrep-1-0.json"),
        ..GateResult::default()
    };
    let phases = [
        Phase::Loading,
        Phase::Planning,
        Phase::AwaitingApproval,
        Phase::WaitingForSlot,
        Phase::Executing,
        Phase::Semgrep,
        Phase::Review,
        Phase::Dod,
        Phase::Integrating,
        Phase::Queued,
        Phase::Integrating,
    ];
    let result = SharkResult {
        project: "demo".into(),
        bead_id: format!("bk-{i}"),
        outcome: if i.is_multiple_of(7) {
            Outcome::Escalated
        } else {
            Outcome::Integrated
        } as i32,
        reason: "integrated".into(),
        gate_results: vec![
            gate(GateName::PlanValidation, true),
            gate(GateName::Human, true),
            gate(GateName::Semgrep, !i.is_multiple_of(5)),
            gate(GateName::Semgrep, true),
            gate(GateName::Review, true),
            gate(GateName::Dod, true),
            gate(GateName::Land, true),
        ],
        phases: phases
            .iter()
            .enumerate()
            .map(|(k, phase)| PhaseSpan {
                phase: *phase as i32,
                round: 1,
                started_ms: 1_000 + k as i64 * 1_000,
                ended_ms: 1_500 + k as i64 * 1_000 + (i % 13) as i64 * 300,
            })
            .collect(),
        ..SharkResult::default()
    };
    let run = RunRef {
        project: "demo".into(),
        bead_id: format!("bk-{i}"),
        workflow_id: format!("shark-demo-bk-{i}"),
        run_id: format!("run-{i}"),
    };
    (run, result)
}

pub async fn scale_rows() -> Vec<Row> {
    let beads = env_count("CHUM_BENCH_SCALE_BEADS", 1_000);
    let runs = env_count("CHUM_BENCH_SCALE_RUNS", 10_000);
    let dir = tempfile::tempdir().expect("a scratch directory");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".beads")).expect("the backlog's directory");
    std::fs::write(repo.join(".beads/issues.jsonl"), backlog_jsonl(beads)).expect("the backlog");
    let config = ChumConfig::from_toml(
        &format!(
            "[temporal]\naddress = \"http://127.0.0.1:7233\"\n[projects.demo]\nrepo = {:?}\nconcurrency = 50\nplan_ahead = 0\n[providers.a]\ncommand = [\"a\"]\n[providers.b]\ncommand = [\"b\"]\n[tiers]\nfast = [\"a\"]\nreview = [\"b\"]\n[roles]\nplanner = \"fast\"\nexecutor = \"fast\"\nreviewer = \"review\"\n",
            repo.display().to_string()
        ),
        &dir.path().join("chum.toml"),
        Vec::new(),
    )
    .expect("the scale bench's config");
    let backlog = Backlog::of(config.project("demo").expect("the project"));
    eprintln!("bench: scale, {beads} beads and {runs} finished runs");

    let (mut listing, mut ready) = (Vec::new(), Vec::new());
    let mut shown = (0, 0);
    for _ in 0..10 {
        let started = Instant::now();
        let items = backlog.items().await.expect("the backlog reads");
        let rows = backlog_rows(&items);
        let text = rows_listing(&rows, false);
        let counts = BacklogCounts::of(&rows);
        listing.push(started.elapsed().as_secs_f64() * 1000.0);
        shown = (text.lines().count(), counts.ready);
        let started = Instant::now();
        let _ = backlog.ready().await.expect("the ready beads");
        ready.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    let project = config.project("demo").expect("the project");
    let rounds = dispatcher_rounds(project, &backlog).await;
    assert_eq!(rounds.claimed, rounds.open, "every open bead is claimed exactly once");
    let mut round_ms = rounds.ms.clone();
    round_ms.sort_by(f64::total_cmp);

    let db = dir.path().join("chum.db");
    let store = Store::open(&db).expect("the store");
    let (record_ms, ()) = timed(|| {
        for i in 0..runs {
            let (run, result) = finished_run(i);
            store.record_run(&run, &result, i as i64).expect("a run recorded");
        }
    });
    let mut scrapes = Vec::new();
    let mut counted = 0;
    for _ in 0..5 {
        let (ms, totals) = timed(|| store.run_totals(&BOUNDS).expect("the totals"));
        counted = totals.finished.iter().map(|(_, _, n)| n).sum::<u64>();
        scrapes.push(ms);
    }
    assert_eq!(counted as usize, runs, "every run is counted");
    let bytes = file_bytes(&db) + file_bytes(&dir.path().join("chum.db-wal"));
    let (list_ms, ready_ms, scrape_ms) = (median_ms(listing), median_ms(ready), median_ms(scrapes));
    vec![
        Row {
            what: format!(
                "`chum backlog` / the API's counts with {beads} beads (read, rows, listing), p50 of 10 ({} lines, {} ready)",
                shown.0, shown.1
            ),
            measured: format!("{list_ms:.1} ms"),
            target: "< 200 ms".into(),
            met: Some(list_ms < 200.0),
        },
        Row {
            what: format!("the dispatcher's ready query with {beads} beads, p50 of 10"),
            measured: format!("{ready_ms:.1} ms"),
            target: "-".into(),
            met: None,
        },
        Row {
            what: format!(
                "the dispatcher's rounds over {beads} beads at concurrency 50 until all are done ({} rounds, {} of {} open beads claimed once each, every claim checked), p50 / p95",
                round_ms.len(),
                rounds.claimed,
                rounds.open
            ),
            measured: format!(
                "{:.1} ms / {:.1} ms",
                percentile(&round_ms, 0.5),
                percentile(&round_ms, 0.95)
            ),
            target: "-".into(),
            met: None,
        },
        Row {
            what: format!("`/metrics`' run counters with {runs} finished runs in the store (SQL aggregates), p50 of 5"),
            measured: format!("{scrape_ms:.1} ms"),
            target: "-".into(),
            met: None,
        },
        Row {
            what: format!("recording a finished run (result, gates, phases), mean of {runs}"),
            measured: format!("{:.2} ms", record_ms / runs as f64),
            target: "-".into(),
            met: None,
        },
        Row {
            what: "store size per finished run".into(),
            measured: format!("{:.1} KB", bytes as f64 / runs as f64 / 1024.0),
            target: "-".into(),
            met: None,
        },
    ]
}

/// What the dispatcher's rounds did over the whole backlog.
struct Rounds {
    /// Each round's time: the ready query and the claims, as `dispatch_round` does them after it
    /// asked Temporal which Sharks run (here: the simulated Sharks).
    ms: Vec<f64>,
    claimed: usize,
    /// Beads open at the start, every one of which must be claimed exactly once.
    open: usize,
}

/// The dispatcher's rounds at the project's concurrency (50) until the backlog is done: each claimed bead's Shark
/// "runs" for two rounds, then closes its bead, which readies what it blocked. Every round's claims
/// are checked: the first ready beads in order, as many as there is room for, each with every
/// blocker closed, none claimed twice.
async fn dispatcher_rounds(project: &ProjectConfig, backlog: &Backlog) -> Rounds {
    let open = backlog
        .items()
        .await
        .expect("the backlog reads")
        .iter()
        .filter(|i| i.state() == BeadStatus::Open)
        .count();
    let mut running: BTreeMap<String, u32> = BTreeMap::new();
    let mut claimed = BTreeSet::new();
    let mut ms = Vec::new();
    for _ in 0..10_000 {
        let before = backlog.items().await.expect("the backlog reads");
        let closed: BTreeSet<&str> = before
            .iter()
            .filter(|i| i.state() == BeadStatus::Closed)
            .map(|i| i.id.as_str())
            .collect();
        let ready_before: Vec<String> = ready(&before).iter().map(|i| i.id.clone()).collect();
        if ready_before.is_empty() && running.is_empty() {
            break;
        }
        let sharks = RunningSharks {
            beads: running.keys().cloned().collect(),
            ..RunningSharks::default()
        };
        let mut report = DispatchReport::default();
        let started = Instant::now();
        let ready_now = backlog.ready().await.expect("the ready beads");
        claim_ready(project, backlog, ready_now, &sharks, &mut report)
            .await
            .expect("the claims");
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        // Sharks execute in `concurrency` slots; up to `plan_ahead` more plan and wait at gates.
        let room = ((project.concurrency + project.plan_ahead) as usize).saturating_sub(running.len());
        let expected: Vec<String> = ready_before.iter().take(room).cloned().collect();
        assert_eq!(
            report.to_start, expected,
            "a round claimed other beads than the first ready ones"
        );
        for id in &report.to_start {
            assert!(claimed.insert(id.clone()), "{id} was claimed twice");
            let item = before.iter().find(|i| &i.id == id).expect("a claimed bead exists");
            for (blocker, kind) in &item.dependencies {
                assert!(
                    kind != "blocks" || closed.contains(blocker.as_str()),
                    "{id} was claimed while {blocker} was open"
                );
            }
        }
        // Each running Shark takes two rounds, then closes its bead.
        for left in running.values_mut() {
            *left -= 1;
        }
        let done: Vec<String> = running
            .iter()
            .filter(|(_, left)| **left == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            running.remove(&id);
            backlog
                .update(&id, BeadStatus::Closed, "done", "done")
                .await
                .expect("the bead closes");
        }
        running.extend(report.to_start.iter().map(|id| (id.clone(), 2)));
    }
    Rounds {
        ms,
        claimed: claimed.len(),
        open,
    }
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
