//! Several workers on several hosts (`[worker] several_hosts`), end to end: three worker binaries
//! ("hosts" a, b and c), each with its own clone of the project and its own state directory, on
//! one dev server, one bare remote (`integration = "push"`), one Postgres store and one backlog
//! file. Their Dispatcher runs 30 beads at concurrency 6; every attempt runs on the host that
//! claimed it. Host b is SIGKILLed while it executes a bead and never comes back: the beads it
//! had move to a and c, which start them over from the remote. Every bead integrates exactly once
//! (one commit per bead on the remote's main, whose every commit passes the DoD afresh), and
//! `/metrics` counts the finished runs per host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chum_core::config::{RawConfig, RawWorker};
use chum_core::proto::{Outcome, Phase, SharkResult, SharkStatus};
use chum_testkit::postgres::postgres;
use chum_testkit::*;
use chum_workflows::{SharkRun, SharkWorkflow};
use serde_json::json;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowSignalOptions};

const BEADS: usize = 30;
const HOSTS: [&str; 3] = ["a", "b", "c"];
const PASSWORD_ENV: &str = "CHUM_TEST_STORE_PASSWORD";

fn bead(i: usize) -> String {
    format!("tk-h{i}")
}

fn beads() -> Vec<String> {
    (1..=BEADS).map(bead).collect()
}

/// Each bead adds a module of its own and its test; the executor takes a moment, so some are
/// always executing when a host dies.
fn steps() -> Vec<Step> {
    let mut steps = Vec::new();
    for id in beads() {
        let m = id.replace('-', "_");
        steps.push(
            Step::planner()
                .bead(&id)
                .answer(plan_of(&[&format!("{m}.py"), &format!("test_{m}.py")])),
        );
        steps.push(
            Step::executor()
                .bead(&id)
                .shell("sleep 2")
                .answer(format!("Added {m}."))
                .write(&format!("{m}.py"), &format!("def {m}():\n    return '{id}'\n"))
                .write(
                    &format!("test_{m}.py"),
                    &format!(
                        "import unittest\nfrom {m} import {m}\n\n\nclass T(unittest.TestCase):\n    def test_it(self):\n        self.assertEqual({m}(), '{id}')\n"
                    ),
                ),
        );
    }
    steps.push(Step::reviewer().answer(REVIEW_ONE));
    steps
}

fn backlog() -> String {
    beads()
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id, "title": format!("Work {id}"), "status": "open", "priority": 2,
                "issue_type": "task", "created_at": format!("2026-12-06T00:{:02}:{:02}Z", i / 60, i % 60),
                "updated_at": "2026-12-06T00:00:00Z",
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// Host `host`'s configuration: its own clone and state directory; the shared remote, store and
/// backlog; its name, and attempts bound to hosts.
fn host_config(h: &Harness, host: &str, clone: &Path, backlog: &Path, store_url: &str) -> PathBuf {
    let mut file: RawConfig = h.config_file.clone();
    let top = h.dir.path();
    file.state_dir = Some(top.join(format!("state-{host}")).display().to_string());
    file.store.url = Some(store_url.to_string());
    file.store.password_env = Some(PASSWORD_ENV.to_string());
    file.worker = RawWorker {
        host: Some(host.to_string()),
        several_hosts: Some(true),
        host_wait: Some("10s".into()),
    };
    file.dispatcher.interval = Some("1s".into());
    let project = file.projects.get_mut("demo").expect("project demo");
    project.repo = Some(clone.display().to_string());
    project.beads_file = Some(backlog.display().to_string());
    project.concurrency = Some(6);
    let path = top.join(format!("chum-{host}.toml"));
    std::fs::write(&path, toml::to_string(&file).expect("the config serializes")).unwrap();
    path
}

fn shark(client: &Client, bead: &str) -> SharkHandle {
    client.get_workflow_handle::<SharkRun>(chum_core::ids::shark_workflow_id("demo", bead))
}

/// A run's status, or `None` while it has not started or no worker answers.
async fn status_of(client: &Client, bead: &str) -> Option<SharkStatus> {
    let handle = shark(client, bead);
    let query = handle.query(SharkWorkflow::status, (), WorkflowQueryOptions::default());
    match tokio::time::timeout(Duration::from_secs(5), query).await {
        Ok(Ok(status)) => Some(status),
        _ => None,
    }
}

/// Every started run's status, asked at once (a run on a dead host's cache answers late).
async fn statuses(client: &Client) -> BTreeMap<String, SharkStatus> {
    let asked = beads().into_iter().map(|b| {
        let client = client.clone();
        async move { (b.clone(), status_of(&client, &b).await) }
    });
    futures::future::join_all(asked)
        .await
        .into_iter()
        .filter_map(|(b, s)| s.map(|s| (b, s)))
        .collect()
}

/// A person who approves each plan that waits at its gate, until every bead is closed.
fn approver(client: Client, backlog: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut approved: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
        while closed(&backlog).len() < BEADS {
            for (bead, status) in statuses(&client).await {
                let again = approved
                    .get(&bead)
                    .is_none_or(|at| at.elapsed() > Duration::from_secs(5));
                if status.phase() == Phase::AwaitingApproval && again {
                    let payload = chum_workflows::approve_payload(&json!({"approved": true, "by": "ops"}));
                    let _ = shark(&client, &bead)
                        .signal(SharkWorkflow::approve, payload, WorkflowSignalOptions::default())
                        .await;
                    approved.insert(bead, tokio::time::Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// The closed beads in the shared backlog.
fn closed(backlog: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(backlog).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["status"] == "closed")
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect()
}

/// `chum_sharks_finished_by_host_total` from a worker's /metrics, by host (outcome integrated).
async fn finished_by_host(port: u16) -> BTreeMap<String, f64> {
    let text = http_client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    let mut by_host = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("chum_sharks_finished_by_host_total{"))
    {
        if !line.contains("outcome=\"integrated\"") {
            continue;
        }
        let host = line
            .split("host=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_default();
        *by_host.entry(host.to_string()).or_default() += value;
    }
    by_host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_beads_on_three_hosts_integrate_once_though_one_host_dies() {
    let Some(server) = postgres() else {
        eprintln!("skipped: no Postgres in .tools/postgres (run scripts/setup.sh)");
        return;
    };
    let db = server.fresh_database();
    let options = HarnessOptions {
        steps: steps(),
        beads: Some(backlog()),
        integration: "push",
        ..Default::default()
    };
    let h = &Harness::start("several-hosts", options).await;
    let top = h.dir.path();
    // One bare remote; each host clones it. The backlog is one file all of them see.
    let forge = top.join("forge.git");
    let url = h.bare_copy(&forge);
    let backlog = h.repo.join(".beads/issues.jsonl");
    let mut workers = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for host in HOSTS {
        let clone = top.join(format!("host-{host}"));
        git(top, &["clone", "-q", &url, &clone.display().to_string()]);
        let config = host_config(h, host, &clone, &backlog, &db.url);
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let worker = WorkerProcess::start_with(
            &config,
            &[
                (PASSWORD_ENV, db.password),
                ("CHUM__API__BIND", &bind),
                ("CHUM__DISPATCHER__ENABLED", "true"),
            ],
        );
        let polling = worker.wait_for_line("worker polling", 0).await;
        assert_eq!(
            polling["fields"]["host_queue"],
            format!("{}@{host}", h.task_queue),
            "{polling}"
        );
        workers.insert(host, worker);
        ports.insert(host, port);
    }
    let client = h.client();
    let approvals = approver(client.clone(), backlog.clone());

    // Host b dies while it executes a bead, and never comes back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let on_b = loop {
        let now = statuses(&client).await;
        let executing_on_b: Vec<String> = now
            .iter()
            .filter(|(_, s)| s.host == "b" && s.phase() == Phase::Executing)
            .map(|(b, _)| b.clone())
            .collect();
        if !executing_on_b.is_empty() {
            break executing_on_b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no bead ever executed on host b"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log_b = workers.remove("b").expect("host b").kill();

    // Every bead closes on the hosts that are left.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    while closed(&backlog).len() < BEADS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every bead closed: {:?} of {BEADS}",
            closed(&backlog)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    approvals.await.expect("the approver");
    let mut results: BTreeMap<String, SharkResult> = BTreeMap::new();
    for id in beads() {
        let result = shark(&client, &id)
            .get_result(WorkflowGetResultOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{id}'s result: {e}"));
        results.insert(id, result);
    }

    // Every bead integrated; the ones host b was executing finished elsewhere and say so.
    for (id, result) in &results {
        assert_eq!(result.outcome(), Outcome::Integrated, "{id}: {result:?}");
        assert!(HOSTS.contains(&result.host.as_str()), "{id} ran on no host: {result:?}");
    }
    for id in &on_b {
        let result = &results[id];
        assert!(
            result.hosts_lost.contains(&"b".to_string()) && result.host != "b",
            "{id} was executing on b when it died: {result:?}"
        );
    }
    // The replay tests' histories: a run that moved from the dead host, and one that did not.
    record_history(&shark(&client, &on_b[0]), "several_hosts_moved").await;
    if let Some((id, _)) = results.iter().find(|(_, r)| r.hosts_lost.is_empty()) {
        record_history(&shark(&client, id), "several_hosts_integrated").await;
    }
    let mut by_host: BTreeMap<String, f64> = BTreeMap::new();
    for result in results.values() {
        *by_host.entry(result.host.clone()).or_default() += 1.0;
    }

    // Exactly once: one commit per bead on the remote's main, each passing the DoD afresh.
    let log = git(
        &forge,
        &[
            "log",
            "--first-parent",
            "--format=%H %(trailers:key=Chum-Bead,valueonly,separator=)",
            "main",
        ],
    );
    let mut commits_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in log.lines() {
        let mut parts = line.split_whitespace();
        let (Some(commit), Some(bead)) = (parts.next(), parts.next()) else {
            continue;
        };
        commits_of.entry(bead.to_string()).or_default().push(commit.to_string());
    }
    assert_eq!(commits_of.len(), BEADS, "{commits_of:#?}");
    assert!(
        commits_of.values().all(|c| c.len() == 1),
        "a bead landed twice: {commits_of:#?}"
    );
    let fresh = top.join("fresh");
    git(top, &["clone", "-q", &url, &fresh.display().to_string()]);
    for commits in commits_of.values() {
        git(&fresh, &["checkout", "-q", &commits[0]]);
        let dod = std::process::Command::new("python3")
            .args(["-m", "unittest", "-q"])
            .current_dir(&fresh)
            .output()
            .unwrap();
        assert!(dod.status.success(), "{} fails the DoD: {dod:?}", commits[0]);
    }

    // /metrics (one shared store) counts each host's integrated runs, as the results do.
    for host in ["a", "c"] {
        assert_eq!(finished_by_host(ports[host]).await, by_host, "host {host}'s /metrics");
    }
    assert!(by_host.keys().all(|h| HOSTS.contains(&h.as_str())), "{by_host:?}");
    assert!(
        by_host.get("a").is_some_and(|n| *n > 0.0) && by_host.get("c").is_some_and(|n| *n > 0.0),
        "{by_host:?}"
    );
    assert!(
        log_b.iter().any(|l| l.contains("attempt claimed")),
        "host b claimed no attempt before it died"
    );
    for host in ["a", "c"] {
        workers.remove(host).expect("host").stop();
    }
}
