//! The fault suite: the factory on a real dev server, real git and the sandboxed scripted agent,
//! with things going wrong on purpose.
//!
//! - The worker binary SIGKILLed in every phase (planning, at the gate, executing, each gate,
//!   integrating, while the learner and groomer children start), restarted each time: every
//!   bead ends integrated with exactly one commit, no lesson, rule or follow-up bead twice, and no
//!   agent, DoD or git process outlives the worker that started it.
//! - The dev server stopped and started again (same database) while an agent runs: the worker
//!   reconnects and the run completes once.
//! - Agents that flood gigabytes of output, delete their worktree or exit non-zero: each fails
//!   its attempt with a reason that says so, captures stay bounded, the next attempt integrates.
//! - A full disk under the artifact store: the run fails with the device's error after its
//!   retries, nothing in the repository or the backlog is touched, and once space is back the
//!   bead integrates.
//!
//! An agent that hangs is in shark_paths.rs (`a_hanging_executor_is_killed_and_the_next_attempt_runs`).

use std::time::Duration;

use chum_core::proto::{Outcome, Phase, SharkInput, SharkResult};
use chum_testkit::*;
use chum_workflows::{LearnerRun, SharkRun, SharkWorkflow, TacticalGroomRun};
use serde_json::json;
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowSignalOptions};

/// Live processes whose command line contains `needle`.
fn processes_running(needle: &str) -> Vec<u32> {
    live_processes(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
    })
}

/// Pid, parent, state and command line of each process, for failure messages.
fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .map(|l| l[name.len()..].trim().to_string())
                    .unwrap_or_default()
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            format!("\n  {pid} (parent {}, {}): {cmdline}", field("PPid:"), field("State:"))
        })
        .collect()
}

async fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what} (waited {secs}s)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn shark(client: &Client, bead: &str) -> SharkHandle {
    client.get_workflow_handle::<SharkRun>(chum_core::ids::shark_workflow_id("demo", bead))
}

fn bead_input(h: &Harness, bead: &str) -> SharkInput {
    SharkInput {
        bead_id: bead.into(),
        ..h.input(limits())
    }
}

/// The phase of a run, or `None` while no worker answers (a killed worker's runs).
async fn phase_of(handle: &SharkHandle) -> Option<Phase> {
    let query = handle.query(SharkWorkflow::status, (), WorkflowQueryOptions::default());
    match tokio::time::timeout(Duration::from_secs(5), query).await {
        Ok(Ok(status)) => Some(status.phase()),
        _ => None,
    }
}

async fn wait_for(handle: &SharkHandle, phase: Phase) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let now = phase_of(handle).await;
        if now == Some(phase) {
            return;
        }
        assert!(now != Some(Phase::Done), "the run ended before {phase}");
        assert!(tokio::time::Instant::now() < deadline, "never reached {phase}: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A person who approves the run's plan whenever it waits at the gate, through worker deaths
/// (queries that time out are tried again).
fn approver(client: Client, bead: &str) -> tokio::task::JoinHandle<()> {
    let handle = shark(&client, bead);
    tokio::spawn(async move {
        loop {
            match phase_of(&handle).await {
                Some(Phase::Done) => return,
                Some(Phase::AwaitingApproval) => {
                    let payload = chum_workflows::approve_payload(&json!({"approved": true, "by": "ops"}));
                    let _ = handle
                        .signal(SharkWorkflow::approve, payload, WorkflowSignalOptions::default())
                        .await;
                    // Give the workflow time to take it before asking again.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// The executor of `bead` adds a module named after it (after writing `marker`, if any).
fn executor_writes(bead: &str, marker: Option<&str>) -> Step {
    let module = bead.replace('-', "_");
    let step = Step::executor().bead(bead).answer(format!("Added {module}."));
    let step = match marker {
        Some(marker) => step.write(marker, ""),
        None => step,
    };
    step.write(
        &format!("{module}.py"),
        &format!("FAULT_SUITE_VALUE = 1\nFAULT_SUITE_MODULE = '{module}'\n"),
    )
}

const KILL_POINTS: [(&str, Phase); 7] = [
    ("fk-plan", Phase::Planning),
    ("fk-gate", Phase::AwaitingApproval),
    ("fk-exec", Phase::Executing),
    ("fk-review", Phase::Review),
    ("fk-semgrep", Phase::Semgrep),
    ("fk-merge", Phase::Integrating),
    ("fk-dod", Phase::Dod),
];
/// Killed right after its run ends, while its learner and groomer children start.
const KIDS: &str = "fk-kids";

fn fault_beads() -> String {
    KILL_POINTS
        .iter()
        .map(|(b, _)| *b)
        .chain([KIDS])
        .map(|id| {
            format!(
                "{}\n",
                json!({"id": id, "title": format!("Work item {id}"), "description": "add a module", "status": "open",
                       "priority": 2, "issue_type": "task", "created_at": "2026-11-22T00:00:00Z", "updated_at": "2026-11-22T00:00:00Z"})
            )
        })
        .collect()
}

fn fault_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    let slow = 4000;
    for (bead, _) in KILL_POINTS.iter().chain([&(KIDS, Phase::Done)]) {
        let planner = Step::planner().bead(bead).answer(GOOD_PLAN);
        steps.push(if *bead == "fk-plan" {
            planner.sleep_ms(slow)
        } else {
            planner
        });
        steps.push(match *bead {
            "fk-exec" => executor_writes(bead, None).sleep_ms(slow),
            // fk-dod's DoD is slow: its executor leaves the marker the DoD command looks for.
            "fk-dod" => executor_writes(bead, Some("slow_dod")),
            _ => executor_writes(bead, None),
        });
    }
    steps.push(reviewer(REVIEW_APPROVE).bead("fk-review").sleep_ms(slow));
    // Only fk-kids teaches something and files a follow-up; its learner is slow to answer.
    let lesson = json!([{
        "category": "antipattern",
        "summary": "str.split(\" \") keeps empty strings when words are separated by several spaces",
        "detail": "Split on any whitespace with str.split().",
        "file_paths": ["fk_kids.py"], "labels": ["python"],
        "bad_example": "parts = line.split(\" \")",
        "good_example": "parts = line.split()",
        "language": "python"
    }]);
    let rule = "```yaml\nrules:\n  - id: chum-1\n    languages: [python]\n    severity: ERROR\n    message: split(\" \") keeps empty strings for repeated spaces; use split() with no argument\n    pattern: $S.split(\" \")\n```\n";
    steps.push(
        Step::learner()
            .bead(KIDS)
            .prompt_contains("Extract lessons")
            .sleep_ms(3000)
            .answer(lesson.to_string()),
    );
    steps.push(
        Step::learner()
            .bead(KIDS)
            .prompt_contains("Write one Semgrep rule")
            .answer(rule),
    );
    steps.push(Step::learner().answer("[]"));
    let follow_up = json!([{"op": "create", "title": "Follow-up found by fk-kids", "description": "found while adding fk_kids", "priority": 3, "issue_type": "task"}]);
    steps.push(Step::groomer().bead(KIDS).answer(follow_up.to_string()));
    steps.push(Step::groomer().answer("[]"));
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_in_every_phase_finishes_every_bead_exactly_once() {
    let markers = tempfile::tempdir().unwrap();
    let slow_semgrep = markers.path().join("slow-semgrep");
    let slow_merge = markers.path().join("slow-merge");
    let options = HarnessOptions {
        steps: fault_steps(),
        dod: vec!["sh -c 'if [ -e slow_dod ]; then sleep 4; fi; python3 -m unittest -q'".to_string()],
        beads: Some(fault_beads()),
        learner: true,
        groomer: true,
        // A rule for the Semgrep gate to run (it never matches).
        extra_files: vec![(
            ".semgrep/never.yaml".to_string(),
            "rules:\n  - id: never\n    languages: [python]\n    severity: ERROR\n    message: never\n    pattern: chum_fault_suite_never_called()\n"
                .to_string(),
        )],
        ..Default::default()
    };
    let h = &Harness::start("faults-kill", options).await;
    // Agents die with a killed worker because they run in bwrap (--die-with-parent, a pids cgroup
    // the next worker reaps); unsandboxed, they would outlive it. CI requires the sandbox.
    if !h.sandbox_works() {
        return;
    }

    // Semgrep and the merge are quick; markers make them slow enough to be killed in.
    let wrapper = h.dir.path().join("semgrep-core-slow");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {m} ]; then sleep 6; fi\nexec {core} \"$@\"\n",
            m = slow_semgrep.display(),
            core = semgrep_core().display()
        ),
    )
    .unwrap();
    // CHUM runs no repository hook, so the merge is slowed by a `git` first on the worker's PATH.
    let slow_git_dir = h.dir.path().join("slow-git");
    std::fs::create_dir_all(&slow_git_dir).unwrap();
    let slow_git = slow_git_dir.join("git");
    let real_git = which::which("git").unwrap();
    std::fs::write(
        &slow_git,
        format!(
            "#!/bin/sh\ncase \"$*\" in *--ff-only*) if [ -e {m} ]; then sleep 6; fi;; esac\nexec {git} \"$@\"\n",
            m = slow_merge.display(),
            git = real_git.display()
        ),
    )
    .unwrap();
    for script in [&wrapper, &slow_git] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The CLI (which the learner validates rules with) is named, since it is no longer beside core.
    let mut config_file = h.config_file.clone();
    config_file.semgrep.core = Some(wrapper.display().to_string());
    config_file.semgrep.cli = Some(workspace_root().join(".tools/venv/bin/semgrep").display().to_string());
    let config = h.write_config(&config_file);
    let harness_marker = format!("CHUM_TEST_HARNESS={}", h.prompts.display());

    let client = h.client();
    let path = format!(
        "{}:{}",
        slow_git_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut worker = WorkerProcess::start_with(&config, &[("PATH", path.as_str())]);
    worker.wait_for_line("worker polling", 0).await;
    let mut approvers = Vec::new();
    for (bead, phase) in KILL_POINTS {
        match phase {
            Phase::Semgrep => std::fs::write(&slow_semgrep, "").unwrap(),
            Phase::Integrating => std::fs::write(&slow_merge, "").unwrap(),
            _ => {}
        }
        let handle = start_shark(&client, &h.task_queue, bead_input(h, bead)).await;
        if phase != Phase::AwaitingApproval {
            approvers.push(approver(client.clone(), bead));
        }
        // Semgrep and the integration run as local activities: the status query answers between
        // workflow tasks, so it may never show their phase; the process in flight tells instead.
        if !matches!(phase, Phase::Semgrep | Phase::Integrating) {
            wait_for(&handle, phase).await;
        }
        // What is in flight when the worker dies: the phase's agent, tool, command or hook.
        let bead_marker = format!("CHUM_BEAD_ID={bead}");
        let in_flight: Box<dyn Fn() -> Vec<u32>> = match phase {
            Phase::Planning | Phase::Executing | Phase::Review => {
                let markers = [harness_marker.clone(), bead_marker];
                Box::new(move || agent_processes(&markers))
            }
            Phase::Semgrep => {
                let needle = wrapper.display().to_string();
                Box::new(move || processes_running(&needle))
            }
            Phase::Integrating => {
                let needle = slow_git.display().to_string();
                Box::new(move || processes_running(&needle))
            }
            Phase::Dod => Box::new(|| processes_running("if [ -e slow_dod ]")),
            _ => Box::new(Vec::new),
        };
        if phase != Phase::AwaitingApproval {
            eventually(&format!("{bead}: nothing running in {phase}"), 60, || {
                !in_flight().is_empty()
            })
            .await;
        }
        // Exactly these must go: a retry by the next worker starts new ones.
        let doomed = in_flight();
        worker.kill();
        let _ = std::fs::remove_file(&slow_semgrep);
        let _ = std::fs::remove_file(&slow_merge);
        if phase == Phase::AwaitingApproval {
            approvers.push(approver(client.clone(), bead));
        }
        worker = WorkerProcess::start_with(&config, &[("PATH", path.as_str())]);
        worker.wait_for_line("worker polling", 0).await;
        // Agents and DoD commands run sandboxed and die with the worker (or, killed in the
        // instant bwrap sets itself up, are reaped from their cgroup by the next worker);
        // semgrep-core and git are not sandboxed and may finish what they were doing
        // (never more than the 6 s the markers make them sleep).
        let grace = if matches!(phase, Phase::Semgrep | Phase::Integrating) {
            15
        } else {
            5
        };
        let survivors = || -> Vec<u32> { doomed.iter().copied().filter(|pid| alive(*pid)).collect() };
        eventually(
            &format!(
                "{bead}: processes of {phase} outlived the killed worker: {}",
                describe(&survivors())
            ),
            grace,
            || survivors().is_empty(),
        )
        .await;
        // One kill per bead: the next worker takes this bead past the phase it died in before
        // the next kill. (Killing the same agent run over and over would use up its retries:
        // each kill is one of the activity's attempts.)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            match phase_of(&handle).await {
                Some(now) if now != phase => break,
                _ => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{bead} stuck in {phase} after the restart"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // fk-kids: killed the moment its run ends, as the learner and groomer start.
    let kids = start_shark(&client, &h.task_queue, bead_input(h, KIDS)).await;
    approvers.push(approver(client.clone(), KIDS));
    let kids_result = kids
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("fk-kids ends");
    worker.kill();
    let worker = WorkerProcess::start(&config);
    worker.wait_for_line("worker polling", 0).await;

    let mut results: Vec<(String, SharkResult)> = Vec::new();
    for bead in KILL_POINTS.iter().map(|(b, _)| *b) {
        let result = tokio::time::timeout(
            Duration::from_secs(300),
            shark(&client, bead).get_result(WorkflowGetResultOptions::default()),
        )
        .await
        .unwrap_or_else(|_| panic!("{bead} did not finish"))
        .expect("the run ends");
        results.push((bead.to_string(), result));
    }
    results.push((KIDS.to_string(), kids_result));
    for (bead, result) in &results {
        assert!(
            !result.learner_workflow_id.is_empty() && !result.groom_workflow_id.is_empty(),
            "{bead}: {result:?}"
        );
        let learner = client.get_workflow_handle::<LearnerRun>(result.learner_workflow_id.clone());
        let learned = learner.get_result(WorkflowGetResultOptions::default());
        let learned = tokio::time::timeout(Duration::from_secs(300), learned)
            .await
            .unwrap_or_else(|_| panic!("{bead}'s learner did not finish"))
            .expect("learner result");
        let groomer = client.get_workflow_handle::<TacticalGroomRun>(result.groom_workflow_id.clone());
        let groomed = groomer.get_result(WorkflowGetResultOptions::default());
        let groomed = tokio::time::timeout(Duration::from_secs(300), groomed)
            .await
            .unwrap_or_else(|_| panic!("{bead}'s groomer did not finish"))
            .expect("groom result");
        assert!(
            learned.error.is_empty(),
            "{bead}: {learned:?}\n{:#?}",
            worker
                .log()
                .iter()
                .filter(|l| l.contains("\"ERROR\""))
                .collect::<Vec<_>>()
        );
        assert!(groomed.error.is_empty(), "{bead}: {groomed:?}");
    }
    let log = worker.stop();
    for handle in approvers {
        handle.abort();
    }

    // Every bead integrated once: one commit each on main, closed in the backlog.
    let subjects = git(&h.repo, &["log", "main", "--format=%s"]);
    for (bead, result) in &results {
        assert_eq!(result.outcome(), Outcome::Integrated, "{bead}: {result:?}");
        let commits = subjects.lines().filter(|s| s.starts_with(&format!("{bead}: "))).count();
        assert_eq!(commits, 1, "{bead} has {commits} commits on main:\n{subjects}");
        assert_eq!(h.read_bead(bead)["status"], "closed", "{bead}");
        let module = h.repo.join(format!("{}.py", bead.replace('-', "_")));
        assert!(module.is_file(), "{} not merged", module.display());
    }
    // fk-kids taught one lesson and one rule, and filed one follow-up: each exactly once.
    let store = chum_activities::store::Store::open(&h.config.state_dir.join("chum.db")).unwrap();
    let lessons = store.search(Some("demo"), "split", 50, None).unwrap();
    assert_eq!(lessons.len(), 1, "{lessons:#?}");
    let rules = store.rules(Some("demo")).unwrap();
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let rule_files: Vec<_> = std::fs::read_dir(h.repo.join(".semgrep"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chum-") && n.ends_with(".yaml"))
        .collect();
    assert_eq!(rule_files.len(), 1, "{rule_files:?}");
    let backlog = std::fs::read_to_string(h.repo.join(".beads/issues.jsonl")).unwrap();
    assert_eq!(backlog.matches("Follow-up found by fk-kids").count(), 1, "{backlog}");
    // Nothing any worker started is left, and the repository is sound.
    assert!(agent_processes(std::slice::from_ref(&harness_marker)).is_empty());
    git(&h.repo, &["fsck", "--no-progress"]);
    assert!(
        log.iter().any(|l| l.contains("worker polling")),
        "the last worker's log: {log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_server_restarted_mid_run_loses_nothing() {
    let options = HarnessOptions {
        steps: good_work_with(|s| s.sleep_ms(6000)),
        persistent_server: true,
        ..Default::default()
    };
    let mut h = Harness::start("faults-server", options).await;
    let config = h.write_config(&h.config_file);
    let mut worker = WorkerProcess::start(&config);
    worker.wait_for_line("worker polling", 0).await;
    let handle = start_shark(&h.client(), &h.task_queue, h.input(limits())).await;
    wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    send_approve(&handle, json!({"approved": true, "by": "ops"})).await;
    wait_for_phase(&handle, Phase::Executing, 0).await;
    let executor = [
        format!("CHUM_TEST_HARNESS={}", h.prompts.display()),
        "CHUM_ROLE=executor".to_string(),
    ];
    eventually("the executor never started", 30, || {
        !agent_processes(&executor).is_empty()
    })
    .await;

    // Down for a few seconds while the agent works; the worker keeps running and reconnects.
    h.restart_server(tokio::time::sleep(Duration::from_secs(3))).await;
    assert!(worker.is_running(), "the worker exited while the server was down");

    let handle = shark(&h.client(), "tk-1");
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        handle.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .expect("the run finishes after the restart")
    .expect("the run ends");
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let subjects = git(&h.repo, &["log", "main", "--format=%s"]);
    assert_eq!(
        subjects.lines().filter(|s| s.starts_with("tk-1: ")).count(),
        1,
        "{subjects}"
    );
    assert_eq!(h.read_bead("tk-1")["status"], "closed");
    assert!(worker.is_running(), "the worker exited after the restart");
    worker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_flood_delete_their_worktree_or_exit_non_zero_fail_only_their_attempt() {
    let flood_bytes: u64 = 2_000_000_000;
    let steps = vec![
        planner(GOOD_PLAN),
        calc_executor(GOOD_CALC).attempt(1).flood(flood_bytes, "stdout"),
        calc_executor(GOOD_CALC)
            .attempt(2)
            .shell(r#"rm -rf "$PWD"/* "$PWD"/.[!.]*"#),
        Step::executor().attempt(3).fail(3, "agent crashed: segmentation fault"),
        calc_executor(GOOD_CALC).attempt(4),
    ];
    let h = &Harness::with_steps("faults-agents", steps).await;
    let mut lim = limits();
    lim.max_attempts = 4;
    let (result, executes) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(lim)).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "ops"})).await;
            let result = finish(&handle, "agent_faults").await;
            (result, activity_results(&handle, "execute").await)
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 4, "{result:?}");
    let problems: Vec<&str> = executes.iter().map(|e| e["problem"].as_str().unwrap_or("")).collect();
    assert_eq!(problems.len(), 4, "{executes:#?}");
    // The flood, then the answer (a few hundred bytes) the flood pushed out of the capture.
    let wrote: u64 = problems[0]
        .strip_prefix("the agent wrote ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!((flood_bytes..flood_bytes + 4096).contains(&wrote), "{problems:?}");
    assert!(problems[0].contains("answer was lost"), "{problems:?}");
    assert!(problems[1].contains("the agent deleted its worktree"), "{problems:?}");
    assert!(
        problems[2].contains("exited with code 3") && problems[2].contains("segmentation fault"),
        "{problems:?}"
    );
    assert_eq!(problems[3], "", "{problems:?}");
    // The flood's capture is bounded and says what it dropped.
    let stdout = std::path::PathBuf::from(executes[0]["agent"]["stdout_artifact"].as_str().unwrap());
    let size = std::fs::metadata(&stdout).unwrap().len();
    assert!(size < 17 * 1024 * 1024, "{} is {size} bytes", stdout.display());
    let tail = chum_activities::exec::read_tail(&stdout, 200).await.unwrap();
    assert!(
        tail.contains(&format!("[chum: output truncated: kept 16777216 of {wrote} bytes]")),
        "{tail}"
    );
    assert_eq!(
        h.commits_on("main"),
        2,
        "one commit for the bead on top of the initial one"
    );
    git(&h.repo, &["fsck", "--no-progress"]);
}

/// A tmpfs of `kib` KiB mounted on `path`, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &std::path::Path, kib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(path.to_path_buf()))
    }

    /// Writes a file until the device is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let junk = self.0.join("junk");
        let mut file = std::fs::File::create(&junk).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        junk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_artifact_disk_fails_the_run_clearly_and_loses_nothing() {
    let h = &Harness::with_steps("faults-disk", good_work()).await;
    // Mounted before the worker starts and dropped (unmounted) at the end, also on failure.
    let Some(disk) = SmallDisk::mount(&h.config.state_dir.join("artifacts"), 256) else {
        assert!(
            std::env::var("CHUM_REQUIRE_SANDBOX").as_deref() != Ok("1"),
            "cannot mount a small tmpfs (needs root); CI requires it"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let junk = disk.fill();
    let artifacts = disk.0.clone();

    let (failed, history, integrated) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            let failed = finish(&handle, "disk_full").await;
            let history = handle
                .fetch_history(Default::default())
                .to_json()
                .await
                .expect("history");
            let history = String::from_utf8_lossy(&history).into_owned();

            // Space is back: the same bead, started again, goes through.
            std::fs::remove_file(&junk).unwrap();
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "ops"})).await;
            let integrated = finish(&handle, "after_disk_full").await;

            // A read-only artifact store: the same clear failure, for another bead.
            let remounted = std::process::Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(&artifacts)
                .status()
                .is_ok_and(|s| s.success());
            assert!(remounted, "remounting the tmpfs read-only");
            let input = SharkInput {
                bead_id: "tk-3".into(),
                ..h.input(limits())
            };
            let read_only = finish(&start_shark(&client, &h.task_queue, input).await, "read_only_artifacts").await;
            (failed, history, (integrated, read_only))
        })
        .await;
    let (integrated, read_only) = integrated;
    assert_eq!(read_only.outcome(), Outcome::Failed, "{read_only:?}");
    assert!(
        read_only.reason.contains("cannot write to the artifact store")
            && read_only.reason.contains("Read-only file system"),
        "{read_only:?}"
    );
    assert_eq!(h.read_bead("tk-3")["status"], "blocked", "the bead says why it stopped");

    assert_eq!(failed.outcome(), Outcome::Failed, "{failed:?}");
    assert!(
        failed.reason.contains("cannot write to the artifact store")
            && failed.reason.contains("No space left on device"),
        "{failed:?}"
    );
    // Retried (by Temporal, with backoff) before giving up: the last try was the third.
    assert!(history.contains("\"attempt\":3"), "no third attempt in the history");
    assert!(failed.approved_by.is_empty(), "{failed:?}");
    assert_eq!(integrated.outcome(), Outcome::Integrated, "{integrated:?}");
    assert_eq!(h.commits_on("main"), 2, "exactly the one commit of the second run");
    git(&h.repo, &["fsck", "--no-progress"]);
    drop(disk);
}
