//! Execution slots and planned-file leases end to end: waiting for a person holds no slot, a plan
//! whose files overlap an executing bead's waits for its lease, and what an executor changes
//! outside its plan is reported (or, with `leases = "strict"`, sent back).

use std::time::Duration;

use chum_core::proto::{CoordinatorStatus, GateName, Outcome, Phase, SharkInput};
use chum_testkit::*;
use chum_workflows::{CoordinatorRun, SharkRun};
use serde_json::json;
use temporalio_client::Client;

fn let_go(h: &Harness, bead: &str) {
    std::fs::write(h.prompts.join(format!("go-{bead}")), "").unwrap();
}

fn handle(client: &Client, bead: &str) -> SharkHandle {
    client.get_workflow_handle::<SharkRun>(chum_core::ids::shark_workflow_id("demo", bead))
}

/// The coordinator's status once `ready` holds (its signals are taken in turn, a moment after the
/// Shark sends them).
async fn coordinator_once(client: &Client, ready: impl Fn(&CoordinatorStatus) -> bool) -> CoordinatorStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = coordinator_status(client, "demo").await;
        if ready(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator never got there: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the dispatcher to have started the Shark of `bead`.
async fn started(client: &Client, bead: &str) -> SharkHandle {
    let handle = handle(client, bead);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handle.describe(Default::default()).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{bead} never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    handle
}

/// When a run's last phase ended (its slot is given back right after).
fn ended_ms(result: &chum_core::proto::SharkResult) -> i64 {
    result.phases.last().map_or(0, |p| p.ended_ms.max(p.started_ms))
}

fn bead_line(id: &str, priority: u32) -> String {
    json!({
        "id": id, "title": format!("Write {id}.txt"), "status": "open", "priority": priority,
        "issue_type": "task", "created_at": "2026-11-22T00:00:00Z", "updated_at": "2026-11-22T00:00:00Z",
    })
    .to_string()
}

/// `chum <args>` off the worker's thread (its queries need the worker to answer).
async fn chum(h: &Harness, args: &'static [&'static str]) -> String {
    let config = h.write_config(&h.config_file);
    let (code, out, err) = tokio::task::spawn_blocking(move || run_chum(&config, args))
        .await
        .unwrap();
    assert_eq!(code, 0, "chum {args:?}: {err}");
    out
}

/// The line of `text` that names `bead`.
fn line_of<'a>(text: &'a str, bead: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(&format!("{bead} ")) || l.contains(&format!("{bead}:")))
        .unwrap_or_else(|| panic!("no line for {bead} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_execution_slot_three_plans_wait_at_their_gates_while_a_fourth_executes() {
    let beads: Vec<&str> = vec!["tk-p1", "tk-p2", "tk-p3", "tk-p4"];
    let mut steps = Vec::new();
    for bead in &beads {
        let file = format!("{bead}.txt");
        steps.push(Step::planner().bead(bead).answer(plan_of(&[&file])));
        let executor = Step::executor()
            .bead(bead)
            .answer("done")
            .write(&file, &format!("{bead}\n"));
        steps.push(if *bead == "tk-p1" {
            held(executor, bead)
        } else {
            executor
        });
    }
    let backlog: String = beads
        .iter()
        .enumerate()
        .map(|(i, b)| bead_line(b, i as u32 + 1) + "\n")
        .collect();
    let options = HarnessOptions {
        steps,
        beads: Some(backlog),
        dod: vec!["true".into()],
        ..Default::default()
    }
    .with_config(|c| {
        let project = c.project();
        project.gates = Some(vec!["dod".into()]);
        project.concurrency = Some(1);
        project.plan_ahead = Some(3);
        c.dispatcher.interval = Some("1s".into());
    });
    let h = &Harness::start("slots", options).await;
    h.with_worker(|client| async move {
        worker::start_dispatchers(&client, &h.config).await;
        // One execution slot, three more planning ahead: the dispatcher starts all four.
        for bead in &beads {
            wait_for_phase(&started(&client, bead).await, Phase::AwaitingApproval, 1).await;
        }
        send_approve(&handle(&client, "tk-p1"), json!({"approved": true, "by": "ana"})).await;
        wait_for_phase(&handle(&client, "tk-p1"), Phase::Executing, 0).await;
        // Three plans wait at their gates while the fourth bead executes.
        for bead in ["tk-p2", "tk-p3", "tk-p4"] {
            assert_eq!(
                status(&handle(&client, bead)).await.phase(),
                Phase::AwaitingApproval,
                "{bead}"
            );
        }
        // An approved plan waits for the slot, and says why.
        send_approve(&handle(&client, "tk-p2"), json!({"approved": true, "by": "ana"})).await;
        wait_for_phase(&handle(&client, "tk-p2"), Phase::WaitingForSlot, 0).await;
        let coordinator = coordinator_once(&client, |c| !c.waiting_for_slot.is_empty()).await;
        let executing: Vec<&str> = coordinator.executing.iter().map(|e| e.bead_id.as_str()).collect();
        assert_eq!(executing, ["tk-p1"], "{coordinator:?}");
        assert_eq!(coordinator.executing[0].files, ["tk-p1.txt"], "its lease");
        assert_eq!(coordinator.waiting_for_slot.len(), 1, "{coordinator:?}");
        assert_eq!(
            coordinator.waiting_why,
            ["all 1 execution slot(s) are taken (tk-p1)"],
            "{coordinator:?}"
        );

        // People see who waits for them and who for a slot: `chum backlog`, `chum dispatcher`,
        // `chum queue`.
        let backlog = chum(h, &["backlog"]).await;
        assert!(
            line_of(&backlog, "tk-p1").contains("in_progress: executing (attempt 1/"),
            "{backlog}"
        );
        assert!(
            line_of(&backlog, "tk-p2")
                .contains("waiting for an execution slot: all 1 execution slot(s) are taken (tk-p1)"),
            "{backlog}"
        );
        for bead in ["tk-p3", "tk-p4"] {
            assert!(
                line_of(&backlog, bead).contains("waiting for a person: plan round 1 is at the gate"),
                "{backlog}"
            );
        }
        let rows: serde_json::Value = serde_json::from_str(&chum(h, &["-o", "json", "backlog"]).await).unwrap();
        let p3 = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "tk-p3")
            .unwrap()
            .clone();
        assert!(p3["run"].as_str().unwrap().starts_with("waiting for a person"), "{p3}");
        let dispatcher = chum(h, &["dispatcher"]).await;
        assert!(
            line_of(&dispatcher, "shark-demo-tk-p2").contains("waiting for an execution slot"),
            "{dispatcher}"
        );
        let queue = chum(h, &["queue"]).await;
        assert!(queue.contains("1 of 1 execution slot(s) taken"), "{queue}");
        assert!(
            queue.contains("executing: tk-p1 (shark-demo-tk-p1) leases tk-p1.txt"),
            "{queue}"
        );
        assert!(queue.contains("waiting for a slot: tk-p2"), "{queue}");

        // tk-p1 ends: its slot goes to tk-p2, which executes only then.
        let_go(h, "tk-p1");
        let first = finish(&handle(&client, "tk-p1"), "shark_held_a_slot").await;
        assert_eq!(first.outcome(), Outcome::Integrated, "{first:?}");
        let second = finish(&handle(&client, "tk-p2"), "shark_waited_for_slot").await;
        assert_eq!(second.outcome(), Outcome::Integrated, "{second:?}");
        let waited = second
            .phases
            .iter()
            .find(|p| p.phase() == Phase::WaitingForSlot)
            .expect("tk-p2 waited for its slot");
        let first_ended = ended_ms(&first);
        assert!(
            waited.ended_ms >= first_ended,
            "tk-p2 got its slot at {} before tk-p1 ended at {first_ended}",
            waited.ended_ms
        );
        for bead in ["tk-p3", "tk-p4"] {
            send_approve(&handle(&client, bead), json!({"approved": true, "by": "ana"})).await;
            let result = finish(&handle(&client, bead), &format!("slots_{bead}")).await;
            assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
        }
        let coordinator = coordinator_status(&client, "demo").await;
        assert!(
            coordinator.executing.is_empty() && coordinator.waiting_for_slot.is_empty(),
            "every slot given back: {coordinator:?}"
        );
        let handle = client.get_workflow_handle::<CoordinatorRun>("merge-queue-demo");
        record_history(&handle, "coordinator_slots").await;
    })
    .await;
    for bead in ["tk-p1", "tk-p2", "tk-p3", "tk-p4"] {
        assert_eq!(h.read_bead(bead)["status"], "closed", "{bead}");
        assert_eq!(git(&h.repo, &["show", &format!("main:{bead}.txt")]), bead);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_overlaps_an_executing_beads_files_waits_for_its_lease() {
    const SUBTRACT: &str = "\n\ndef subtract(a, b):\n    return a - b\n";
    let steps = vec![
        Step::planner().bead("tk-1").answer(GOOD_PLAN),
        // tk-3 plans the same calc.py, written as `./calc.py`.
        Step::planner().bead("tk-3").answer(plan_of(&["./calc.py"])),
        // tk-1 also writes notes.txt, which its plan does not name: reported, not refused.
        held(calc_executor(GOOD_CALC).bead("tk-1"), "tk-1").write("notes.txt", "thoughts\n"),
        // tk-3 executes only after tk-1 has landed, on the base it moved: it adds subtract.
        Step::executor()
            .bead("tk-3")
            .answer("Added subtract.")
            .write("calc.py", &format!("{}{SUBTRACT}", GOOD_CALC.trim_end())),
        Step::reviewer().bead("tk-3").answer(REVIEW_ONE),
    ];
    // Two execution slots: only the lease keeps tk-3 from executing beside tk-1.
    let h = &Harness::start(
        "leases",
        HarnessOptions::with_steps(steps).with_config(|c| c.project().concurrency = Some(2)),
    )
    .await;
    let (first, second) = h
        .with_worker(|client| async move {
            let input = |bead: &str| SharkInput {
                bead_id: bead.into(),
                ..h.input(limits())
            };
            let one = start_shark(&client, &h.task_queue, input("tk-1")).await;
            let three = start_shark(&client, &h.task_queue, input("tk-3")).await;
            wait_for_phase(&one, Phase::AwaitingApproval, 1).await;
            wait_for_phase(&three, Phase::AwaitingApproval, 1).await;
            send_approve(&one, json!({"approved": true, "by": "ana"})).await;
            wait_for_phase(&one, Phase::Executing, 0).await;
            send_approve(&three, json!({"approved": true, "by": "ana"})).await;
            wait_for_phase(&three, Phase::WaitingForSlot, 0).await;
            let coordinator = coordinator_once(&client, |c| !c.waiting_for_slot.is_empty()).await;
            assert_eq!(
                coordinator.waiting_why,
                ["./calc.py overlaps calc.py, leased by tk-1 until its run ends"],
                "{coordinator:?}"
            );
            // It stays waiting while tk-1 works (a slot is free: only the lease holds it).
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(status(&three).await.phase(), Phase::WaitingForSlot);
            let_go(h, "tk-1");
            let first = finish(&one, "lease_holder").await;
            let second = finish(&three, "lease_waiter").await;
            (first, second)
        })
        .await;
    assert_eq!(first.outcome(), Outcome::Integrated, "{first:?}");
    assert_eq!(second.outcome(), Outcome::Integrated, "{second:?}");
    assert_eq!(second.attempts, 1, "no conflict to redo: {second:?}");
    let waited = second
        .phases
        .iter()
        .find(|p| p.phase() == Phase::WaitingForSlot)
        .expect("tk-3 waited for its lease");
    let first_ended = ended_ms(&first);
    assert!(waited.ended_ms >= first_ended, "tk-3 executed before tk-1 ended");
    // tk-1's change outside its plan is in its run, as a passed (reported) check.
    let outside = gates_of(&first, GateName::Execute);
    assert!(
        outside
            .iter()
            .any(|g| g.passed && g.excerpt.contains("outside its plan") && g.excerpt.contains("notes.txt")),
        "{outside:?}"
    );
    assert_eq!(
        git(&h.repo, &["show", "main:calc.py"]),
        format!("{}{SUBTRACT}", GOOD_CALC.trim_end()).trim_end()
    );
    assert_every_commit_is_green(&h.repo, "main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_strict_leases_a_change_outside_the_plan_is_sent_back() {
    let steps = vec![
        planner(GOOD_PLAN),
        calc_executor(GOOD_CALC).handoff(0).write("notes.txt", "thoughts\n"),
        // The redo is told which files the plan does not name, and undoes them.
        calc_executor(GOOD_CALC)
            .handoff(1)
            .expect_prompt_contains("You changed files the plan does not name: notes.txt")
            .delete("notes.txt"),
    ];
    let h = &Harness::start(
        "leases-strict",
        HarnessOptions::with_steps(steps).with_config(|c| c.project().leases = Some("strict".into())),
    )
    .await;
    let result = h.approve_plan("strict_lease_redo", h.input(limits()), 1, "jo").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let checks = gates_of(&result, GateName::Execute);
    assert!(
        checks
            .iter()
            .any(|g| !g.passed && g.excerpt.contains("outside its plan") && g.excerpt.contains("notes.txt")),
        "{checks:?}"
    );
    assert!(
        git(&h.repo, &["ls-tree", "--name-only", "main"])
            .lines()
            .all(|f| f != "notes.txt"),
        "the change outside the plan did not land"
    );
}

/// A signal that reaches the Coordinator with its start (the first Shark's `acquire` often comes in
/// the same workflow task) is kept, not overwritten by the run's own start: CI once saw a Shark
/// wait for good. Signal-with-start delivers it that way every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_comes_with_the_coordinators_start_gets_its_slot() {
    let h = &Harness::start("coordinator-early", HarnessOptions::with_steps(good_work())).await;
    let (executing, result) = h
        .with_worker(|client| async move {
            let shark = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&shark, Phase::AwaitingApproval, 1).await;
            let run_id = shark.info().run_id.clone().expect("the started run's id");
            let request = chum_core::proto::SlotRequest {
                entry: Some(chum_core::proto::QueueEntry {
                    workflow_id: shark.info().workflow_id.clone(),
                    run_id,
                    bead_id: "tk-1".into(),
                    files: vec!["calc.py".into()],
                    ..Default::default()
                }),
                concurrency: 1,
                leases: chum_core::proto::LeaseMode::On as i32,
            };
            let coordinator = chum_core::ids::coordinator_workflow_id("demo");
            client
                .signal_with_start_workflow(
                    chum_workflows::CoordinatorWorkflow::run,
                    chum_core::proto::CoordinatorInput {
                        project: "demo".into(),
                        ..Default::default()
                    },
                    chum_workflows::CoordinatorWorkflow::acquire,
                    request,
                    temporalio_client::WorkflowStartOptions::new(&h.task_queue, &coordinator).build(),
                )
                .await
                .expect("signal with start");
            let mut executing = Vec::new();
            for _ in 0..100 {
                executing = coordinator_status(&client, "demo").await.executing;
                if !executing.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The Shark, granted its slot before it asked, goes on once approved.
            send_approve(&shark, json!({"approved": true, "by": "ana"})).await;
            let result = finish(&shark, "shark_granted_early").await;
            let handle = client.get_workflow_handle::<CoordinatorRun>(&coordinator);
            record_history(&handle, "coordinator_early_signal").await;
            (executing, result)
        })
        .await;
    assert_eq!(
        executing.iter().map(|e| e.bead_id.as_str()).collect::<Vec<_>>(),
        ["tk-1"],
        "the request that came with the start holds the slot"
    );
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
}
