//! Many Sharks on one repository through the merge queue (`CHUM_BENCH_QUEUE` beads, 50, at
//! concurrency 10, the `merge` policy, leases on, the DoD `python3 -m unittest`): one bead in five
//! appends to a file another bead of its pair appends to as well (20% overlapping files). Measured:
//! the total time, the re-verifications run on a moved main, the redos conflicts caused, how long
//! beads waited for a lease or a slot, and the time main spent red: each commit on its first-parent
//! history checked out afresh and tested, red for as long as it was the tip (must be zero).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chum_core::proto::{GateName, Outcome, Phase, SharkInput, SharkResult};
use chum_testkit::*;

use crate::{Row, bench_limits, env_count};

const CONCURRENCY: u32 = 10;

/// Bead `i`'s id; every fifth bead and the one after it share a file.
fn bead_id(i: usize) -> String {
    format!("q-{i:03}")
}

/// The file bead `i` appends its function to: its own, or its pair's shared one.
fn file_of(i: usize) -> String {
    if i % 10 == 1 || i % 10 == 2 {
        format!("shared_{}.py", i / 10)
    } else {
        format!("own_{i:03}.py")
    }
}

fn plan(i: usize) -> String {
    let test = format!("test_q{i:03}.py");
    serde_json::json!({
        "summary": format!("add f{i:03}"),
        "steps": ["append the function", "its test"],
        "acceptance_criteria": [format!("f{i:03}() == {i}"), "python3 -m unittest passes"],
        "files": [file_of(i), test],
    })
    .to_string()
}

fn steps(count: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in 1..=count {
        let bead = bead_id(i);
        let file = file_of(i);
        let module = file.trim_end_matches(".py");
        steps.push(Step::planner().bead(&bead).answer(plan(i)));
        steps.push(
            Step::executor()
                .bead(&bead)
                .shell(&format!(r"printf '\n\ndef f{i:03}():\n    return {i}\n' >> {file}"))
                .answer(format!("Added f{i:03}."))
                .write(
                    &format!("test_q{i:03}.py"),
                    &format!(
                        "import unittest\nfrom {module} import f{i:03}\n\n\nclass T(unittest.TestCase):\n    def test_it(self):\n        self.assertEqual(f{i:03}(), {i})\n"
                    ),
                ),
        );
    }
    steps
}

fn beads(count: usize) -> String {
    (1..=count)
        .map(|i| {
            serde_json::json!({
                "id": bead_id(i), "title": format!("Add f{i:03}"), "status": "open", "priority": 2,
                "issue_type": "task", "created_at": "2026-11-22T00:00:00Z", "updated_at": "2026-11-22T00:00:00Z",
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// Runs bead `bead` to its end, approving its plan the moment it waits.
async fn run_bead(client: temporalio_client::Client, task_queue: String, bead: String) -> (String, SharkResult) {
    let input = SharkInput {
        project: "demo".into(),
        bead_id: bead.clone(),
        limits: Some(bench_limits()),
        candidate: None,
    };
    let handle = start_shark(&client, &task_queue, input).await;
    loop {
        let s = status(&handle).await;
        if s.phase() == Phase::AwaitingApproval {
            break;
        }
        assert!(s.phase() != Phase::Done, "{bead} ended before its gate: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send_approve(&handle, serde_json::json!({"approved": true, "by": "bench"})).await;
    let result = handle
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await
        .expect("the run ends");
    (bead, result)
}

/// Milliseconds main spent red: each first-parent commit, checked out afresh, runs the DoD; a red
/// one counts for as long as it was the tip (until the next commit, or now). Also the commits
/// checked.
fn main_red_ms(repo: &std::path::Path) -> (u64, usize) {
    let log = git(repo, &["log", "--first-parent", "--format=%H %ct", "main"]);
    let commits: Vec<(String, u64)> = log
        .lines()
        .filter_map(|l| {
            let (hash, time) = l.split_once(' ')?;
            Some((hash.to_string(), time.parse().ok()?))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let scratch = tempfile::tempdir().expect("scratch");
    let mut red_ms = 0;
    // Newest first: the tip until the commit before it in the list (newer) came.
    for (i, (commit, time)) in commits.iter().enumerate() {
        let until = if i == 0 { now } else { commits[i - 1].1 };
        let dir = scratch.path().join(format!("c{i}"));
        git(
            repo,
            &["worktree", "add", "-q", "--detach", &dir.display().to_string(), commit],
        );
        let green = std::process::Command::new("python3")
            .args(["-m", "unittest", "-q"])
            .current_dir(&dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !green {
            red_ms += until.saturating_sub(*time) * 1000;
        }
        git(repo, &["worktree", "remove", "--force", &dir.display().to_string()]);
    }
    (red_ms, commits.len())
}

pub async fn merge_queue_rows() -> Vec<Row> {
    let count = env_count("CHUM_BENCH_QUEUE", 50);
    let h = Arc::new(
        Harness::start(
            "bench-queue",
            HarnessOptions {
                steps: steps(count),
                beads: Some(beads(count)),
                ..Default::default()
            }
            .with_config(|c| {
                c.dispatcher.enabled = Some(false);
                c.project().concurrency = Some(CONCURRENCY);
            }),
        )
        .await,
    );
    eprintln!("bench: {count} beads at concurrency {CONCURRENCY} through the merge queue");
    let hh = h.clone();
    let (elapsed, results) = h
        .with_worker(|client| async move {
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 1..=count {
                tasks.spawn(run_bead(client.clone(), hh.task_queue.clone(), bead_id(i)));
            }
            let mut results = Vec::new();
            while let Some(done) = tasks.join_next().await {
                results.push(done.expect("a bench task"));
                if results.len() % 10 == 0 {
                    eprintln!("bench: {}/{count} beads through the queue", results.len());
                }
            }
            (started.elapsed(), results)
        })
        .await;

    let lost: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.outcome() != Outcome::Integrated)
        .map(|(bead, r)| format!("{bead}: {} ({})", r.outcome().as_str_name(), r.reason))
        .collect();
    for line in &lost {
        eprintln!("bench: NOT INTEGRATED {line}");
    }
    let all_gates = || results.iter().flat_map(|(_, r)| r.gate_results.iter());
    let reverifications = all_gates()
        .filter(|g| g.gate() == GateName::Dod && g.verification > 0)
        .count();
    let conflict_redos = all_gates()
        .filter(|g| g.gate() == GateName::Land && !g.passed && g.excerpt.starts_with("conflict"))
        .count();
    let failed_reverifications = all_gates().filter(|g| g.verification > 0 && !g.passed).count();
    let waited_ms: i64 = results
        .iter()
        .flat_map(|(_, r)| r.phases.iter())
        .filter(|p| p.phase() == Phase::WaitingForSlot)
        .map(|p| p.ended_ms - p.started_ms)
        .sum();
    let (red_ms, commits) = main_red_ms(&h.repo);
    let secs = elapsed.as_secs_f64();
    vec![
        Row {
            what: format!("merge queue: {count} beads at concurrency {CONCURRENCY}, 20% overlapping files, integrated"),
            measured: match lost.is_empty() {
                true => format!("{} of {count}", results.len()),
                false => format!("{} of {count} (not: {})", count - lost.len(), lost.join("; ")),
            },
            target: "all".into(),
            met: Some(lost.is_empty()),
        },
        Row {
            what: "merge queue: total time".into(),
            measured: format!("{secs:.1} s ({:.2} beads/s)", count as f64 / secs),
            target: "-".into(),
            met: None,
        },
        Row {
            what: "merge queue: re-verifications on a moved main (DoD runs) / of them failed".into(),
            measured: format!("{reverifications} / {failed_reverifications}"),
            target: "-".into(),
            met: None,
        },
        Row {
            what: "merge queue: redos caused by conflicts".into(),
            measured: conflict_redos.to_string(),
            target: "-".into(),
            met: None,
        },
        Row {
            what: "merge queue: time approved beads waited for a slot or a lease (sum)".into(),
            measured: format!("{:.1} s", waited_ms as f64 / 1000.0),
            target: "-".into(),
            met: None,
        },
        Row {
            what: format!("merge queue: time main spent red ({commits} commits each tested afresh)"),
            measured: format!("{red_ms} ms"),
            target: "0".into(),
            met: Some(red_ms == 0),
        },
    ]
}
