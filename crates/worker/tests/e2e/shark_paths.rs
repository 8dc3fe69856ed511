//! Every path of the Shark, end to end: a real Temporal dev server, the real worker, real git, a
//! real Python test suite as the definition of done, and the scripted agent. Each test asserts on
//! what a user would see: the workflow result, the repository and the bead.
//!
//! With `CHUM_RECORD_HISTORIES=1` (scripts/record-histories.sh) each test also saves its run's
//! history for the replay tests in crates/workflows/tests/replay.rs.

use chum_core::proto::GateName;
use chum_core::proto::{Outcome, Phase};
use chum_testkit::*;
use serde_json::json;
use temporalio_client::WorkflowGetResultOptions;
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::common::v1::Payload;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_plan_is_executed_verified_and_merged_once() {
    // The planner is told not to edit files; this one tries anyway (an edit and a shell write).
    let steps = vec![
        planner(GOOD_PLAN)
            .shell("echo planner >> test_calc.py")
            .write("calc.py", "planner was here\n"),
        calc_executor(GOOD_CALC),
    ];
    let h = &Harness::with_steps("approved", steps).await;
    let base_before = h.commits_on("main");
    let result = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            let at_gate = wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            assert_eq!(at_gate.plan.as_ref().map(|p| p.acceptance_criteria.len()), Some(2));
            // The planner edited calc.py and test_calc.py; it ran in a throwaway checkout, gone now.
            h.assert_code_untouched();
            assert!(
                !h.repo.join(".chum/plans/tk-1/1").exists(),
                "the planning checkout is removed"
            );
            send_approve(&handle, json!({"approved": true, "feedback": "ship it", "by": "alice"})).await;
            finish(&handle, "approved_pass").await
        })
        .await;

    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert!(result.merged);
    assert_eq!(result.approved_by, "alice");
    assert_eq!(result.attempts, 1);
    assert_eq!(h.commits_on("main"), base_before + 1, "exactly one commit");
    assert_eq!(git(&h.repo, &["rev-parse", "main"]), result.commit);
    let message = git(&h.repo, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains("tk-1: Add multiply to calc") && message.contains("Plan: Add multiply"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(h.repo.join("calc.py")).unwrap(),
        GOOD_CALC,
        "the main checkout has the work"
    );
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "closed");
    assert!(bead["close_reason"].as_str().unwrap().contains(&result.commit[..12]));
    assert_eq!(bead["source_repo"], "project", "unknown bead fields survive");
    let phases: Vec<Phase> = result.phases.iter().map(|p| p.phase()).collect();
    assert_eq!(
        phases,
        [
            Phase::Loading,
            Phase::Planning,
            Phase::AwaitingApproval,
            // An execution slot from the project's coordinator (free at once here).
            Phase::WaitingForSlot,
            Phase::Executing,
            // The project's default order: the free check before the paid one.
            Phase::Semgrep,
            Phase::Review,
            Phase::Dod,
            // The commit, the merge queue's turn, the landing.
            Phase::Integrating,
            Phase::Queued,
            Phase::Integrating,
        ]
    );
    assert!(
        result
            .phases
            .iter()
            .all(|p| p.ended_ms >= p.started_ms && p.started_ms > 0)
    );
    // Cross-model: the reviewer is not the executor.
    let executor = h.prompt("executor", 1, 0);
    assert!(!executor.is_empty());
    // Each role's prompt carries the ranked repo map (tree-sitter tags of the base commit): the
    // planner's for the bead, the executor's and the reviewer's around the plan's files too.
    for (role, prompt) in [
        ("planner", h.prompt("planner", 1, 0)),
        ("executor", executor.clone()),
        ("reviewer", h.prompt("reviewer", 1, 0)),
    ] {
        assert!(
            prompt.contains("## Repository map\n")
                && prompt.contains("calc.py:\n  1: def add(a, b)\n")
                && prompt.contains("test_calc.py:\n"),
            "{role}'s prompt has no repo map:\n{prompt}"
        );
    }
    let review = first_gate(&result, GateName::Review).expect("reviewed");
    assert!(review.passed && review.provider == "scripted-b", "{review:?}");
    let scan = first_gate(&result, GateName::Semgrep).expect("scanned");
    assert!(scan.passed && scan.excerpt.contains("2 file(s)"), "{scan:?}");
    let usage = result.usage.expect("usage recorded");
    assert!(usage.input_tokens > 0 && usage.cost_usd > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_plan_is_replanned_with_the_feedback_then_approved() {
    let steps = vec![
        planner(GOOD_PLAN).attempt(1),
        planner(GOOD_PLAN)
            .attempt(2)
            .expect_prompt_contains("please name the test file"),
        calc_executor(GOOD_CALC),
    ];
    let h = &Harness::with_steps("reject", steps).await;
    let result = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(
                &handle,
                json!({"approved": false, "feedback": "please name the test file", "by": "bob"}),
            )
            .await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 2).await;
            send_approve(&handle, json!({"approved": true, "by": "bob"})).await;
            finish(&handle, "reject_replan_approve").await
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert!(
        h.prompt("planner", 2, 0)
            .contains("A person (bob) rejected the previous plan: please name the test file")
    );
    let human: Vec<bool> = result
        .gate_results
        .iter()
        .filter(|g| g.gate() == GateName::Human)
        .map(|g| g.passed)
        .collect();
    assert_eq!(human, [false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_decision_before_the_gate_timeout_ends_the_run_without_touching_code() {
    let h = &Harness::with_steps("timeout", good_work()).await;
    let input = h.input(chum_core::proto::SharkLimits {
        gate_timeout_secs: 2,
        ..limits()
    });
    let result = h.run_unattended("gate_timeout", input).await;
    assert_eq!(result.outcome(), Outcome::GateTimeout, "{result:?}");
    h.assert_code_untouched();
    assert_eq!(h.commits_on("main"), 1);
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked");
    assert!(bead["notes"].as_str().unwrap().contains("gate_timeout"), "{bead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_definition_of_done_is_retried_with_its_real_output() {
    let steps = vec![
        planner(GOOD_PLAN),
        calc_executor(BAD_CALC).attempt(1),
        calc_executor(GOOD_CALC)
            .attempt(2)
            .expect_prompt_contains("AssertionError: 7 != 12"),
    ];
    let h = &Harness::with_steps("dodretry", steps).await;
    let result = h
        .approve_plan("dod_fail_retry_pass", h.input(limits()), 1, "carol")
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 2);
    let dod: Vec<bool> = result
        .gate_results
        .iter()
        .filter(|g| g.gate() == GateName::Dod)
        .map(|g| g.passed)
        .collect();
    assert_eq!(dod, [false, true]);
    let failed = result
        .gate_results
        .iter()
        .find(|g| g.gate() == GateName::Dod && !g.passed)
        .unwrap();
    assert!(failed.excerpt.contains("AssertionError"), "{}", failed.excerpt);
    assert!(
        std::path::Path::new(&failed.artifact).exists(),
        "full DoD output kept as an artifact"
    );
    assert!(h.prompt("executor", 2, 0).contains("python3 -m unittest -q"));
    assert_eq!(h.commits_on("main"), 2, "one commit, from the passing attempt");
    assert_eq!(std::fs::read_to_string(h.repo.join("calc.py")).unwrap(), GOOD_CALC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_failing_escalates_blocks_the_bead_and_keeps_the_branch() {
    let h = &Harness::with_steps("escalate", vec![planner(GOOD_PLAN), calc_executor(BAD_CALC)]).await;
    let input = h.input(chum_core::proto::SharkLimits {
        max_attempts: 2,
        ..limits()
    });
    let result = h.approve_plan("escalated", input, 1, "dave").await;
    assert_eq!(result.outcome(), Outcome::Escalated, "{result:?}");
    assert_eq!(result.attempts, 2);
    assert!(!result.merged);
    assert_eq!(h.commits_on("main"), 1, "the base branch is untouched");
    assert_eq!(
        h.commits_on("chum/tk-1"),
        2,
        "the partial work is kept on the bead's branch"
    );
    let wip = git(&h.repo, &["log", "-1", "--format=%s", "chum/tk-1"]);
    assert!(wip.starts_with("WIP tk-1"), "{wip}");
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked");
    let notes = bead["notes"].as_str().unwrap();
    assert!(
        notes.contains("escalated after 2 attempts") && notes.contains("AssertionError"),
        "{notes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_plan_is_replanned_with_the_validation_error() {
    let no_criteria =
        r#"{"summary": "Add multiply", "steps": ["do it"], "acceptance_criteria": [], "files": ["calc.py"]}"#;
    let steps = vec![
        planner("I think we should add multiply.").attempt(1),
        planner(no_criteria).attempt(2).expect_prompt_contains("no JSON object"),
        planner(GOOD_PLAN)
            .attempt(3)
            .expect_prompt_contains("no criteria, no execution"),
        calc_executor(GOOD_CALC),
    ];
    let h = &Harness::with_steps("badplan", steps).await;
    let result = h.approve_plan("bad_plan_replan", h.input(limits()), 3, "erin").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let validations: Vec<bool> = result
        .gate_results
        .iter()
        .filter(|g| g.gate() == GateName::PlanValidation)
        .map(|g| g.passed)
        .collect();
    assert_eq!(validations, [false, false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_plan_within_the_bound_fails_the_run_with_the_reason() {
    let h = &Harness::with_steps("planfail", vec![Step::planner().garbage("no plan today")]).await;
    let input = h.input(chum_core::proto::SharkLimits {
        max_plan_rounds: 2,
        ..limits()
    });
    let result = h.run_unattended("plan_failed", input).await;
    assert_eq!(result.outcome(), Outcome::PlanFailed, "{result:?}");
    assert!(
        result.reason.contains("no valid plan after 2 rounds"),
        "{}",
        result.reason
    );
    assert_eq!(h.read_bead("tk-1")["status"], "blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signals_never_approve_and_do_not_wedge_the_run() {
    let h = &Harness::with_steps("badsignal", good_work()).await;
    let result = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            for bad in [
                json!("yes"),
                json!({}),
                json!({"approved": "true"}),
                json!([true]),
                json!(null),
                json!({"approved": true, "extra": 1}),
            ] {
                send_approve(&handle, bad).await;
            }
            // No payload at all, as `temporal workflow signal --name approve` without --input sends,
            // and a payload that is not JSON.
            send_raw_approve(&handle, RawValue::new(vec![])).await;
            let mut protobuf = Payload {
                data: vec![8, 1],
                ..Payload::default()
            };
            protobuf.metadata.insert("encoding".into(), b"binary/protobuf".to_vec());
            send_raw_approve(&handle, RawValue::new(vec![protobuf])).await;
            // The run stays at the gate, healthy: queries answer and every payload is on record.
            let s = wait_for_refusals(&handle, 8).await;
            assert_eq!(s.phase(), Phase::AwaitingApproval);
            assert_eq!(s.rejected_signals.len(), 8, "{:?}", s.rejected_signals);
            assert!(s.rejected_signals[1].reason.contains("\"approved\" is missing"));
            assert!(
                s.rejected_signals[6].reason.contains("carried no payload"),
                "{:?}",
                s.rejected_signals[6]
            );
            assert!(
                s.rejected_signals[7].reason.contains("binary/protobuf"),
                "{:?}",
                s.rejected_signals[7]
            );
            assert!(s.decisions.is_empty(), "nothing was approved");
            send_approve(&handle, json!({"approved": true, "by": "frank"})).await;
            let result = handle
                .get_result(WorkflowGetResultOptions::default())
                .await
                .expect("result");
            // Approving again after the gate closed is refused, not an error.
            record_history(&handle, "bad_signals_then_approve").await;
            result
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.approved_by, "frank");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approve_update_is_answered_at_once_and_a_refused_one_leaves_no_trace() {
    use chum_client::control::{ControlErrorKind, Decision, decide};
    use chum_workflows::{SharkWorkflow, json_payload};
    use temporalio_client::WorkflowExecuteUpdateOptions;
    use temporalio_client::errors::WorkflowUpdateError;

    let h = &Harness::with_steps("update", good_work()).await;
    let (result, events) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            let at_gate = wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            assert!(at_gate.approve_update, "a new run takes decisions as an update");
            // A malformed decision is refused by the validator, with the reason, to the caller.
            for (bad, reason) in [
                (json!({"approved": "yes"}), "\"approved\" must be true or false"),
                (json!({"approved": true, "extra": 1}), "unknown field \"extra\""),
                (json!(null), "must be a JSON object"),
            ] {
                let refused = handle
                    .execute_update(
                        SharkWorkflow::decide,
                        json_payload(&bad),
                        WorkflowExecuteUpdateOptions::default(),
                    )
                    .await;
                match refused {
                    Err(WorkflowUpdateError::Failed(failure)) => {
                        assert!(failure.message.contains(reason), "{bad}: {}", failure.message)
                    }
                    other => panic!("{bad}: expected a refusal, got {other:?}"),
                }
            }
            let s = status(&handle).await;
            assert_eq!(s.phase(), Phase::AwaitingApproval);
            assert!(s.decisions.is_empty() && s.rejected_signals.is_empty(), "{s:?}");
            // `chum approve` and the API: the receipt says the run took it, and which round.
            let decision = Decision {
                approved: true,
                feedback: "ship it".into(),
                by: "uma".into(),
            };
            let receipt = decide(&client, handle.info().workflow_id.as_str(), &decision)
                .await
                .expect("taken");
            assert!(receipt.confirmed);
            assert_eq!(receipt.round, 1);
            // A second decision: the gate has closed (or is closing) — refused, with the reason.
            let again = decide(&client, handle.info().workflow_id.as_str(), &decision)
                .await
                .expect_err("refused");
            assert_eq!(again.kind, ControlErrorKind::Conflict, "{again}");
            let result = finish(&handle, "approved_by_update").await;
            let json = handle
                .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
                .to_json()
                .await
                .expect("history");
            let history: serde_json::Value = serde_json::from_slice(&json).expect("history JSON");
            let events: Vec<String> = history["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["attributes"].as_object()?.keys().next().cloned())
                .collect();
            (result, events)
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.approved_by, "uma");
    // Only the decision taken is in the history; the refusals never reached it.
    let accepted = events
        .iter()
        .filter(|e| e.as_str() == "WorkflowExecutionUpdateAcceptedEventAttributes")
        .count();
    assert_eq!(accepted, 1, "{events:?}");
    assert!(!events.iter().any(|e| e.contains("UpdateRejected")), "{events:?}");

    // The worker is gone now. A closed run's state comes from the server (its result and
    // history), so `chum` still answers at once, and with the documented exit codes.
    let config = h.write_config(&h.config_file);
    chum_cli(); // built before the clock starts
    let started = std::time::Instant::now();
    let (code, json, err) = run_chum(&config, &["status", "tk-1", "--output", "json"]);
    assert_eq!(code, 0, "an integrated run: {err}");
    let shown: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    assert_eq!(shown["outcome"], "integrated", "{json}");
    assert_eq!(shown["approved_by"], "uma", "{json}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "no query to a worker that is not there"
    );
    let (code, text, _) = run_chum(&config, &["status", "tk-1"]);
    assert_eq!(code, 0);
    assert!(text.contains("integrated"), "{text}");
    let (code, lines, err) = run_chum(&config, &["runs", "--all", "-o", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    let runs: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(runs.len(), 1, "{lines}");
    assert_eq!(runs[0]["workflow_id"], "shark-demo-tk-1");
    assert_eq!(runs[0]["status"], "completed");
    let (code, text, _) = run_chum(&config, &["runs"]);
    assert_eq!(code, 0);
    assert!(text.contains("no Shark runs running"), "{text}");
    // Cancelling a run that has ended is refused (1), with what to do instead.
    let (code, _, err) = run_chum(&config, &["cancel", "tk-1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already ended"), "{err}");
    // Approving it is refused too: there is no plan waiting.
    let (code, _, err) = run_chum(&config, &["approve", "tk-1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already ended"), "{err}");
    // This harness starts no dispatcher: pausing one says why there is none and what to check.
    let (code, _, err) = run_chum(&config, &["pause"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("there is no dispatcher dispatcher-demo"), "{err}");
    assert!(err.contains("is the worker running"), "{err}");

    // The run cleaned up after itself: its worktree, its merged branch, the refs that kept the
    // reviewed trees.
    assert!(
        !h.repo.join(".chum/worktrees/tk-1").exists(),
        "the attempt's worktree is gone"
    );
    assert!(!git(&h.repo, &["branch", "--list", "chum/*"]).contains("chum/tk-1"));
    assert!(git(&h.repo, &["for-each-ref", "refs/chum/candidates/"]).is_empty());

    // What runs that never finished left (a killed worker, a cancelled run) goes with `chum gc`:
    // worktrees and merged branches; an unmerged branch stays, named; --dry-run only says.
    let worktree = h.repo.join(".chum/worktrees/tk-7/1");
    git(
        &h.repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "chum/tk-7",
            worktree.to_str().unwrap(),
            "main",
        ],
    );
    git(&h.repo, &["branch", "chum/tk-9", "main"]);
    std::fs::write(h.repo.join("wip.txt"), "wip").unwrap();
    git(&h.repo, &["checkout", "-q", "-b", "chum/tk-8"]);
    git(&h.repo, &["add", "wip.txt"]);
    git(&h.repo, &["commit", "-q", "-m", "escalated work"]);
    git(&h.repo, &["checkout", "-q", "main"]);
    let (code, text, err) = run_chum(&config, &["gc", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains(&format!("would remove worktree {}", worktree.display())),
        "{text}"
    );
    assert!(text.contains("would remove branch chum/tk-9 (merged)"), "{text}");
    assert!(worktree.is_dir(), "--dry-run removes nothing");
    let (code, json, err) = run_chum(&config, &["gc", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("gc JSON");
    let removed: Vec<&str> = report["plan"]["merged_branches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b.as_str())
        .collect();
    assert_eq!(removed, ["chum/tk-7", "chum/tk-9"], "{json}");
    assert_eq!(report["plan"]["kept_branches"][0]["branch"], "chum/tk-8", "{json}");
    assert!(!worktree.exists(), "the worktree is gone");
    let branches = git(&h.repo, &["branch", "--list", "chum/*"]);
    assert!(
        !branches.contains("chum/tk-7") && !branches.contains("chum/tk-9"),
        "{branches}"
    );
    assert!(branches.contains("chum/tk-8"), "unmerged work is kept: {branches}");
    assert!(
        !git(&h.repo, &["worktree", "list"]).contains(".chum/worktrees"),
        "git forgot the worktree too"
    );
    let (code, text, _) = run_chum(&config, &["gc"]);
    assert_eq!(code, 0);
    assert!(text.contains("kept branch chum/tk-8"), "{text}");
    assert!(!text.contains("removed"), "a second gc finds nothing: {text}");
    // CHUM closed the bead in the beads file and never commits it; gc says so, and how.
    assert!(text.contains(".beads/issues.jsonl has uncommitted changes"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_executor_is_killed_and_the_next_attempt_runs() {
    let steps = vec![
        planner(GOOD_PLAN),
        Step::executor().attempt(1).hang(),
        calc_executor(GOOD_CALC)
            .attempt(2)
            .expect_prompt_contains("did not finish within 2s"),
    ];
    let h = &Harness::with_steps("hang", steps).await;
    let input = h.input(chum_core::proto::SharkLimits {
        agent_timeout_secs: 2,
        ..limits()
    });
    let result = h.approve_plan("hang_then_pass", input, 1, "gina").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let execute = first_gate(&result, GateName::Execute).expect("the hang is recorded");
    assert!(
        !execute.passed && execute.excerpt.contains("killed with its process group"),
        "{}",
        execute.excerpt
    );
    // The hanging agent held a `sleep` child; the process-group kill took it too.
    h.assert_agent_processes_gone("executor", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_kills_the_running_agent_and_reopens_the_bead() {
    let h = &Harness::with_steps("cancel", vec![planner(GOOD_PLAN), Step::executor().hang()]).await;
    let outcome = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "ivy"})).await;
            wait_for_phase(&handle, Phase::Executing, 0).await;
            h.wait_for_file(&h.prompts.join("executor-tk-1-1-0.pids")).await;
            // The check below can fail: while the agent hangs, its processes are found.
            let markers = [
                format!("CHUM_TEST_HARNESS={}", h.prompts.display()),
                "CHUM_ROLE=executor".to_string(),
            ];
            assert!(
                agent_processes(&markers).len() >= 2,
                "the agent and its child are running"
            );
            handle.cancel(Default::default()).await.expect("cancel delivered");
            let outcome = handle.get_result(WorkflowGetResultOptions::default()).await;
            record_history(&handle, "cancelled_while_executing").await;
            outcome
        })
        .await;
    assert!(
        matches!(
            outcome,
            Err(temporalio_client::errors::WorkflowGetResultError::Cancelled { .. })
        ),
        "{outcome:?}"
    );
    // The run waited for the activity to stop its agent before it closed.
    h.assert_agent_processes_gone("executor", 1).await;
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "open", "a cancelled bead can be picked up again");
    assert!(bead["notes"].as_str().unwrap().contains("was cancelled"));
    assert_eq!(h.commits_on("main"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_agent_program_fails_the_run_with_a_clear_reason() {
    let h = &Harness::start(
        "missing",
        HarnessOptions {
            steps: good_work(),
            agent_program: Some("/nonexistent/claude".into()),
            ..Default::default()
        },
    )
    .await;
    let result = h.run_unattended("agent_missing", h.input(limits())).await;
    assert_eq!(result.outcome(), Outcome::Failed, "{result:?}");
    assert!(
        result
            .reason
            .contains("no agent program for role `planner` is installed"),
        "{}",
        result.reason
    );
    assert!(result.reason.contains("/nonexistent/claude"), "{}", result.reason);
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_bead_is_not_worked_on() {
    let h = &Harness::with_steps("closed", good_work()).await;
    let mut input = h.input(limits());
    input.bead_id = "tk-2".into();
    let result = h.run_unattended("bead_unavailable", input).await;
    assert_eq!(result.outcome(), Outcome::BeadUnavailable, "{result:?}");
    assert!(result.reason.contains("already closed"), "{}", result.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_rejections_end_the_run_as_gate_rejected() {
    let h = &Harness::with_steps("rejected", good_work()).await;
    let result = h
        .with_worker(|client| async move {
            let input = h.input(chum_core::proto::SharkLimits {
                max_gate_rejections: 2,
                ..limits()
            });
            let handle = start_shark(&client, &h.task_queue, input).await;
            for round in 1..=2 {
                wait_for_phase(&handle, Phase::AwaitingApproval, round).await;
                send_approve(
                    &handle,
                    json!({"approved": false, "feedback": "not like this", "by": "hal"}),
                )
                .await;
            }
            finish(&handle, "gate_rejected").await
        })
        .await;
    assert_eq!(result.outcome(), Outcome::GateRejected, "{result:?}");
    h.assert_code_untouched();
    assert_eq!(h.read_bead("tk-1")["status"], "blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_when_landing_sends_the_work_back_and_the_redo_lands_on_the_new_base() {
    // While the attempt is being verified, someone lands a conflicting calc.py on main (once): the
    // DoD's second command plays that person.
    let conflicting = String::from(
        "cd {repo} && if [ ! -e .git/someone-was-here ]; then \
         printf 'def add(x, y):\\n    return x + y\\n\\n\\ndef multiply(x, y):\\n    return y * x\\n' > calc.py \
         && git -c user.name=Someone -c user.email=s@localhost commit -qam 'someone else adds multiply' \
         && touch .git/someone-was-here; fi",
    );
    let mut steps = good_work();
    // The redo is told what conflicted, and with what.
    steps.insert(
        1,
        calc_executor(GOOD_CALC)
            .attempt(2)
            .expect_prompt_contains("Conflicting files: calc.py")
            .expect_prompt_contains("return y * x"),
    );
    let h = &Harness::start(
        "conflict",
        HarnessOptions {
            steps,
            dod: vec!["python3 -m unittest -q".into(), conflicting],
            ..Default::default()
        }
        // The DoD plays a person committing to the main checkout, which a sandbox forbids.
        .with_config(|c| c.project().sandbox = Some("none".into())),
    )
    .await;
    let result = h.approve_plan("land_conflict_redo", h.input(limits()), 1, "jo").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 2);
    let lands = gates_of(&result, GateName::Land);
    assert_eq!(lands.len(), 2, "{lands:?}");
    assert!(
        !lands[0].passed && lands[0].excerpt.contains("conflict with main"),
        "{:?}",
        lands[0]
    );
    assert!(lands[1].passed && lands[1].round == 2, "{:?}", lands[1]);
    // Main is the other person's commit, then the bead's, redone on top of it.
    let log = git(&h.repo, &["log", "--first-parent", "--format=%s", "main"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(
        subjects[..2],
        ["tk-1: Add multiply to calc", "someone else adds multiply"],
        "{log}"
    );
    assert_eq!(git(&h.repo, &["show", "main:calc.py"]), GOOD_CALC.trim_end());
    assert_eq!(h.read_bead("tk-1")["status"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_checkout_with_local_changes_keeps_the_branch_and_blocks_the_bead() {
    // While the attempt is being verified, someone edits calc.py in the main checkout and does not
    // commit: the base cannot be fast-forwarded there without losing their edit.
    let edit = String::from("printf '# my local edit\\n' >> {repo}/calc.py");
    let h = &Harness::start(
        "integration-failed",
        HarnessOptions {
            steps: good_work(),
            dod: vec!["python3 -m unittest -q".into(), edit],
            ..Default::default()
        }
        // The DoD plays a person editing the main checkout, which a sandbox forbids.
        .with_config(|c| c.project().sandbox = Some("none".into())),
    )
    .await;
    let result = h.approve_plan("integration_failed", h.input(limits()), 1, "jo").await;
    assert_eq!(result.outcome(), Outcome::IntegrationFailed, "{result:?}");
    assert!(
        result.reason.contains("Commit or stash the local changes"),
        "{}",
        result.reason
    );
    assert!(!result.merged);
    assert_eq!(h.commits_on("main"), 1, "main did not move");
    assert!(
        std::fs::read_to_string(h.repo.join("calc.py"))
            .unwrap()
            .contains("# my local edit")
    );
    let kept = git(&h.repo, &["log", "-1", "--format=%B", "chum/tk-1"]);
    assert!(kept.contains("Chum-Bead: tk-1"), "the work stays on its branch: {kept}");
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked");
    assert!(bead["notes"].as_str().unwrap().contains("integration failed"));
}

// ---- the review and Semgrep gates ---------------------------------------------------------------

fn gate_results(result: &chum_core::proto::SharkResult, gate: GateName) -> Vec<(u32, u32, bool, String)> {
    result
        .gate_results
        .iter()
        .filter(|g| g.gate() == gate)
        .map(|g| (g.round, g.handoff, g.passed, g.provider.clone()))
        .collect()
}

/// An executor step for one provider and redo.
fn executor_as(provider: &str, handoff: u32, calc: &str) -> Step {
    calc_executor(calc).provider(provider).handoff(handoff)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_rejection_swaps_roles_and_the_redo_is_reviewed_again() {
    let steps = vec![
        planner(GOOD_PLAN),
        executor_as("scripted-a", 0, BAD_CALC),
        reviewer(REVIEW_REJECT).provider("scripted-b").handoff(0),
        // After the swap the former reviewer executes, with the findings in its prompt.
        executor_as("scripted-b", 1, GOOD_CALC).expect_prompt_contains("multiply adds instead of multiplying"),
    ];
    let h = &Harness::with_steps("reviewswap", steps).await;
    let result = h
        .approve_plan("review_swap_redo_approve", h.input(limits()), 1, "kim")
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 1);
    assert_eq!(
        gate_results(&result, GateName::Review),
        [
            (1, 0, false, "scripted-b".to_string()),
            (1, 1, true, "scripted-a".to_string())
        ],
        "the redo was reviewed by the other model"
    );
    let redo = h.prompt("executor", 1, 1);
    assert!(
        redo.contains("Redo 1 of attempt 1") && redo.contains("[error] calc.py:6"),
        "{redo}"
    );
    assert!(
        h.prompt("reviewer", 1, 0).contains("-    return a + b")
            || h.prompt("reviewer", 1, 0).contains("+def multiply")
    );
    assert_eq!(std::fs::read_to_string(h.repo.join("calc.py")).unwrap(), GOOD_CALC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_review_is_retried_then_counts_as_a_rejection() {
    let mut steps = good_work();
    steps.push(Step::reviewer().handoff(0).garbage("looks fine to me"));
    let h = &Harness::with_steps("reviewgone", steps).await;
    let result = h.approve_plan("review_unavailable", h.input(limits()), 1, "lee").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let reviews: Vec<&chum_core::proto::GateResult> = gates_of(&result, GateName::Review);
    assert_eq!(reviews.len(), 2);
    assert!(
        !reviews[0].passed && reviews[0].excerpt.starts_with("review unavailable"),
        "{:?}",
        reviews[0]
    );
    assert!(reviews[1].passed && reviews[1].handoff == 1);
    // The retry was told why its first answer could not be used.
    assert!(
        h.prompt("reviewer", 1, 0)
            .contains("Your previous answer could not be used")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_fail_open_lets_an_unusable_review_pass_and_says_so() {
    let mut steps = good_work();
    steps.push(Step::reviewer().garbage("looks fine to me"));
    let options = HarnessOptions::with_steps(steps).with_config(|c| c.project().review_fail_open = Some(true));
    let h = &Harness::start("failopen", options).await;
    let result = h.approve_plan("review_fail_open", h.input(limits()), 1, "max").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let review = first_gate(&result, GateName::Review).unwrap();
    assert!(
        review.passed && review.excerpt.contains("review_fail_open = true"),
        "{review:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausting_the_redos_moves_on_to_the_next_attempt() {
    let mut steps = good_work();
    steps.push(reviewer(REVIEW_REJECT).attempt(1));
    let h = &Harness::with_steps("handoffs", steps).await;
    let input = h.input(chum_core::proto::SharkLimits {
        max_handoffs: 2,
        ..limits()
    });
    let result = h.approve_plan("handoffs_exhausted", input, 1, "ned").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 2);
    let reviews: Vec<(u32, u32, bool)> = gate_results(&result, GateName::Review)
        .into_iter()
        .map(|(a, h, p, _)| (a, h, p))
        .collect();
    assert_eq!(reviews, [(1, 0, false), (1, 1, false), (1, 2, false), (2, 0, true)]);
    assert!(h.prompt("executor", 2, 0).contains("used all 2 redos"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semgrep_findings_send_the_work_back_and_the_redo_is_clean() {
    let eval_calc = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return eval(f\"{a} * {b}\")\n";
    let steps = vec![
        planner(GOOD_PLAN),
        executor_as("scripted-a", 0, eval_calc),
        // Semgrep findings do not swap roles: the same executor fixes them.
        executor_as("scripted-a", 1, GOOD_CALC).expect_prompt_contains("chum.python.eval-exec calc.py:6"),
    ];
    let h = &Harness::with_steps("semgrep", steps).await;
    let result = h.approve_plan("semgrep_redo", h.input(limits()), 1, "oli").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let scans: Vec<&chum_core::proto::GateResult> = gates_of(&result, GateName::Semgrep);
    assert_eq!(scans.len(), 2);
    assert!(
        !scans[0].passed && scans[0].excerpt.contains("chum.python.eval-exec"),
        "{:?}",
        scans[0]
    );
    assert!(scans[1].passed, "{:?}", scans[1]);
    // Semgrep ran before the definition of done on the first execution, and stopped it.
    let first_dod = result
        .gate_results
        .iter()
        .position(|g| g.gate() == GateName::Dod)
        .unwrap();
    let first_scan = result
        .gate_results
        .iter()
        .position(|g| g.gate() == GateName::Semgrep)
        .unwrap();
    assert!(first_scan < first_dod);
    assert_eq!(
        result.gate_results.iter().filter(|g| g.gate() == GateName::Dod).count(),
        1
    );
    assert!(
        !std::fs::read_to_string(h.repo.join("calc.py"))
            .unwrap()
            .contains("eval")
    );
}

/// What merges is exactly what was reviewed and tested: a reviewer and a DoD command that each
/// change a file and leave one behind get their changes discarded (and the run says so), and
/// main holds the executor's work only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_reviewer_or_the_dod_writes_never_reaches_main() {
    let mut steps = good_work();
    steps.push(reviewer(REVIEW_APPROVE).shell("echo '# the reviewer was here' >> calc.py; echo x > reviewer_junk.py"));
    let h = &Harness::start(
        "tree-integrity",
        HarnessOptions {
            steps,
            dod: vec![
                "python3 -m unittest -q".into(),
                "echo '# the DoD was here' >> test_multiply.py && echo x > dod_junk.txt".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    let result = h.approve_plan("tree_integrity", h.input(limits()), 1, "ivy").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(git(&h.repo, &["show", "main:calc.py"]), GOOD_CALC.trim_end());
    assert_eq!(
        git(&h.repo, &["show", "main:test_multiply.py"]),
        MULTIPLY_TEST.trim_end()
    );
    let files = git(&h.repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains("junk"), "{files}");
    let review = first_gate(&result, GateName::Review).unwrap();
    assert!(
        review.passed
            && review
                .excerpt
                .contains("discarded what the reviewer changed in the worktree: calc.py, reviewer_junk.py"),
        "{review:?}"
    );
    let dod = first_gate(&result, GateName::Dod).unwrap();
    assert!(
        dod.passed
            && dod.excerpt.contains("discarded what the DoD changed in the worktree")
            && dod.excerpt.contains("test_multiply.py"),
        "{dod:?}"
    );
}

/// A mistake that was in a file before the bead touched it is not the bead's: Semgrep counts only
/// findings on lines the attempt added or changed (a baseline against its base commit), and the
/// gate says how many it left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_that_were_there_before_the_bead_do_not_bounce_it() {
    let legacy = "def add(a, b):\n    return a + b\n\n\ndef legacy(x):\n    return eval(x)\n";
    let with_multiply = format!("{legacy}\n\ndef multiply(a, b):\n    return a * b\n");
    let options = HarnessOptions {
        steps: vec![planner(GOOD_PLAN), calc_executor(&with_multiply)],
        extra_files: vec![("calc.py".into(), legacy.into())],
        ..Default::default()
    };
    let h = &Harness::start("semgrep-baseline", options).await;
    let result = h.approve_plan("semgrep_baseline", h.input(limits()), 1, "oli").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let scan = first_gate(&result, GateName::Semgrep).unwrap();
    assert!(
        scan.passed
            && scan
                .excerpt
                .contains("1 pre-existing finding(s) on untouched lines ignored"),
        "{scan:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_rule_file_is_quarantined_and_the_bead_still_passes() {
    let broken = "rules:\n  - id: broken\n    languages: [python]\n    severity: ERROR\n    message: m\n    pattern: multiply(\n";
    let fine = "rules:\n  - id: no-subtract\n    languages: [python]\n    severity: ERROR\n    message: no subtraction here\n    pattern: $A - $B\n";
    let options = HarnessOptions {
        steps: good_work(),
        extra_files: vec![
            (".semgrep/broken.yaml".into(), broken.into()),
            (".semgrep/fine.yaml".into(), fine.into()),
        ],
        ..Default::default()
    };
    let h = &Harness::start("quarantine", options).await;
    let (result, status) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "pat"})).await;
            let result = finish(&handle, "semgrep_quarantine").await;
            (result, status(&handle).await)
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(status.quarantined_rules.len(), 1, "{:?}", status.quarantined_rules);
    let q = &status.quarantined_rules[0];
    assert!(
        q.file.ends_with(".semgrep/broken.yaml") && q.reason.contains("broken"),
        "{q:?}"
    );
    let scan = first_gate(&result, GateName::Semgrep).unwrap();
    assert!(
        scan.passed && scan.excerpt.contains("1 rule file(s) quarantined"),
        "{scan:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_stops_the_run_before_the_next_agent_call_and_keeps_the_work() {
    // Every scripted answer reports $0.01. The cap lets the planner and the executor run; the
    // reviewer's call would go over it.
    let options = HarnessOptions::with_steps(good_work()).with_config(|c| c.budget.per_bead_usd = Some(0.015));
    let h = &Harness::start("budget", options).await;
    let result = h.approve_plan("budget_exhausted", h.input(limits()), 1, "erin").await;
    assert_eq!(result.outcome(), Outcome::BudgetExhausted, "{result:?}");
    assert!(
        result.reason.contains("bead tk-1 has spent $0.0200 of its $0.01 cap")
            && result.reason.contains("per_bead_usd"),
        "{}",
        result.reason
    );
    // No reviewer ran: the cap was checked before its call.
    assert!(!h.prompts.join("reviewer-tk-1-1-0.prompt.md").exists());
    assert!(
        !result
            .gate_results
            .iter()
            .any(|g| g.gate() == GateName::Review && g.passed)
    );
    // The partial work is on the bead's branch; the base branch is untouched.
    assert!(!result.merged);
    assert_eq!(h.commits_on("main"), 1);
    let wip = git(&h.repo, &["log", "-1", "--format=%s", "chum/tk-1"]);
    assert!(wip.starts_with("WIP tk-1"), "{wip}");
    assert_eq!(git(&h.repo, &["show", "chum/tk-1:calc.py"]), GOOD_CALC.trim_end());
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked");
    assert!(
        bead["notes"].as_str().unwrap().contains("Raise the cap in [budget]"),
        "{bead}"
    );
    // Spend is what the agents reported, per run.
    let store = chum_activities::store::Store::open(&h.config.state_dir.join("chum.db")).unwrap();
    let spent = store
        .spent(chum_activities::store::UsageFilter {
            project: Some("demo"),
            bead_id: Some("tk-1"),
            since_ms: None,
        })
        .unwrap();
    assert_eq!(spent.runs, 2, "planner and executor");
    assert!((spent.cost_usd - 0.02).abs() < 1e-9);
    assert_eq!(spent.tokens, 2400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_in_planning_stops_the_replan_and_touches_no_code() {
    let options = HarnessOptions::with_steps(good_work()).with_config(|c| c.budget.per_bead_tokens = Some(1000));
    let h = &Harness::start("budget-plan", options).await;
    let result = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(
                &handle,
                json!({"approved": false, "feedback": "smaller steps", "by": "hal"}),
            )
            .await;
            finish(&handle, "budget_exhausted_while_planning").await
        })
        .await;
    assert_eq!(result.outcome(), Outcome::BudgetExhausted, "{result:?}");
    assert!(result.reason.contains("1200 of its 1000 tokens"), "{}", result.reason);
    assert!(
        !h.prompts.join("planner-tk-1-2-0.prompt.md").exists(),
        "no second planner call"
    );
    h.assert_code_untouched();
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked");
    assert!(
        bead["notes"].as_str().unwrap().contains("no partial work to keep"),
        "{bead}"
    );
}

/// Twenty Sharks started together on one repository all plan and wait at their gates: their
/// throwaway planning checkouts (git worktrees) are made and removed at the same time, which git
/// does not make safe by itself (`make bench` lost beads to it). A correctness test, not a timed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sharks_started_at_once_on_one_repository_all_plan() {
    let beads: String = (1..=20)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("many-{i:02}"), "title": format!("Task {i}"), "status": "open",
                       "priority": 2, "issue_type": "task", "created_at": "2026-12-01T00:00:00Z",
                       "updated_at": "2026-12-01T00:00:00Z"})
            )
        })
        .collect();
    let h = &Harness::start(
        "twenty-at-once",
        HarnessOptions {
            steps: vec![planner(GOOD_PLAN)],
            beads: Some(beads),
            ..Default::default()
        },
    )
    .await;
    h.with_worker(|client| async move {
        let starts = (1..=20).map(|i| {
            let input = chum_core::proto::SharkInput {
                bead_id: format!("many-{i:02}"),
                ..h.input(limits())
            };
            start_shark(&client, &h.task_queue, input)
        });
        let handles = futures::future::join_all(starts).await;
        for handle in &handles {
            let at_gate = wait_for_phase(handle, Phase::AwaitingApproval, 1).await;
            assert_eq!(
                at_gate.plan.as_ref().map(|p| p.summary.as_str()),
                Some("Add multiply(a, b) to calc with a unit test"),
                "{at_gate:?}"
            );
        }
        for handle in &handles {
            handle
                .terminate(temporalio_client::WorkflowTerminateOptions::default())
                .await
                .expect("terminated");
        }
    })
    .await;
    let listed = git(&h.repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("worktree ")).count(),
        1,
        "every planning checkout is gone again: {listed}"
    );
}

/// A step that waits longer than its heartbeat timeout (10 s) before its agent starts is still
/// one try: here its execute step waits 15 s for the repository's worktree lock (at concurrency 50
/// in `make bench`, 49 other Sharks held it in turn). It heartbeats while it waits, so the server
/// neither times it out nor starts a second try beside it; such a second try once remade the
/// worktree under the run, and 4 of 100 beads ended `integration_failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_waits_for_the_worktree_lock_past_the_heartbeat_timeout_is_tried_once() {
    let h = &Harness::with_steps("lock-wait", good_work()).await;
    let (result, tries) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            // Held as CHUM's own lock is (an advisory lock on the file in `.git`).
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(h.repo.join(".git/chum-worktrees.lock"))
                .unwrap();
            lock.lock().unwrap();
            send_approve(&handle, json!({"approved": true, "by": "alice"})).await;
            wait_for_phase(&handle, Phase::Executing, 0).await;
            tokio::time::sleep(std::time::Duration::from_secs(15)).await;
            drop(lock);
            let result = finish(&handle, "lock_wait").await;
            (result, activity_tries(&handle, "execute").await)
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(tries, [1], "the execute step started once, in its first try");
    assert!(h.repo.join("calc.py").exists());
}

/// A follow-up that cannot start never fails the run, and the run says so: here the
/// ContinuousLearner's workflow id is already taken (started by hand with the real `temporal`
/// CLI while the Shark waits at its gate), so the integrated run's result and status name it.
/// Before the Shark got rooms, the run's own reason overwrote that message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_that_cannot_start_is_named_in_the_result_and_the_status() {
    let options = HarnessOptions {
        steps: good_work(),
        learner: true,
        ..Default::default()
    };
    let h = &Harness::start("learner-taken", options).await;
    let address = h.address.trim_start_matches("http://").to_string();
    let (result, after) = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            let run_id = handle.run_id().expect("the run id of a started Shark").to_string();
            let learner_id = chum_core::ids::learner_workflow_id("demo", "tk-1", &run_id);
            let out = std::process::Command::new(temporal_binary())
                .args(["workflow", "start", "--address", &address, "--workflow-id", &learner_id])
                .args(["--type", "SomethingElse", "--task-queue", "nobody-polls-this"])
                .output()
                .expect("the temporal CLI runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            send_approve(&handle, json!({"approved": true, "by": "olga"})).await;
            let result = finish(&handle, "learner_did_not_start").await;
            (result, status(&handle).await)
        })
        .await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert!(result.reason.starts_with("commit "), "{}", result.reason);
    assert!(
        result.reason.contains("(the learner did not start: "),
        "the result names the learner that did not start: {}",
        result.reason
    );
    assert!(result.learner_workflow_id.is_empty(), "{result:?}");
    assert_eq!(after.reason, result.reason, "the status says the same");
    assert_eq!(h.read_bead("tk-1")["status"], "closed");
}
