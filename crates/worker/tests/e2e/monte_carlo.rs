//! Monte Carlo execution on a real dev server, real git, the scripted agent and the sandbox: an
//! approved plan runs as several candidates at once, each in its own worktree; the winner is
//! integrated, the losers are cancelled (their agents killed) and their worktrees and branches
//! removed, and every candidate's gate results reach the learner.

use chum_core::proto::GateName;
use std::time::Duration;

use chum_core::proto::{Outcome, Phase};
use chum_testkit::*;
use serde_json::json;

/// Candidate `candidate` of attempt 1 writes `calc`.
fn candidate_executor(candidate: u32, calc: &str) -> Step {
    calc_executor(calc).attempt(1).candidate(candidate)
}

/// Live processes of one candidate's executor.
fn candidate_processes(h: &Harness, candidate: u32) -> Vec<u32> {
    agent_processes(&[
        format!("CHUM_TEST_HARNESS={}", h.prompts.display()),
        "CHUM_ROLE=executor".to_string(),
        format!("CHUM_CANDIDATE={candidate}"),
    ])
}

/// The learner's recorded prompt, once it has run.
async fn learner_prompt(h: &Harness) -> String {
    for _ in 0..400 {
        let found = std::fs::read_dir(&h.prompts)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("learner-") && n.ends_with(".prompt.md"))
            });
        if let Some(path) = found {
            return std::fs::read_to_string(path).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the learner never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_candidate_to_pass_wins_the_hanging_one_is_killed_and_the_failing_one_is_learned_from() {
    let steps = vec![
        planner(GOOD_PLAN),
        // Candidate 1 is right but slower than the failing one, so the failure is in before it wins.
        candidate_executor(1, GOOD_CALC).sleep_ms(1200),
        // Candidate 2 multiplies by adding: the definition of done fails on it.
        candidate_executor(2, BAD_CALC),
        Step::executor().candidate(3).hang(),
        Step::learner().answer(r#"{"lessons": []}"#),
    ];
    let h = &Harness::start(
        "fanout-first",
        HarnessOptions {
            steps,
            learner: true,
            ..Default::default()
        }
        .with_config(|c| c.project().fanout = Some(3)),
    )
    .await;
    let result = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "mo"})).await;
            // All three run at once: the hanging one is up while the others work.
            h.wait_for_file(&h.prompts.join("executor-tk-1-1c3-0.pids")).await;
            assert!(!candidate_processes(h, 3).is_empty(), "candidate 3 is running");
            let result = finish(&handle, "fanout_first").await;
            let run_id = handle.run_id().expect("the run id of a started Shark").to_string();
            let candidate = client.get_workflow_handle::<chum_workflows::SharkWorkflow>(
                chum_core::ids::candidate_workflow_id("demo", "tk-1", &run_id, 1, 1),
            );
            record_history(&candidate, "fanout_candidate").await;
            // The learner (a child that outlives the run) reads the whole journal.
            (result, learner_prompt(h).await)
        })
        .await;
    let (result, learner_prompt) = result;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert!(result.merged);
    assert_eq!(result.branch, "chum/tk-1-c1", "candidate 1's work was integrated");
    assert_eq!(git(&h.repo, &["show", "main:calc.py"]), GOOD_CALC.trim_end());
    assert_eq!(result.attempts, 1);

    // Candidate 2's failed definition of done is in the run's journal and the learner's prompt.
    let dod2 = result
        .gate_results
        .iter()
        .find(|g| g.candidate == 2 && g.gate() == GateName::Dod)
        .expect("candidate 2's DoD result is kept");
    assert!(!dod2.passed);
    assert!(dod2.excerpt.contains("7 != 12"), "{}", dod2.excerpt);
    assert!(
        learner_prompt.contains("7 != 12"),
        "the learner sees the losing candidate: {learner_prompt}"
    );
    assert!(
        result
            .gate_results
            .iter()
            .any(|g| g.candidate == 1 && g.gate() == GateName::Dod && g.passed),
        "{:?}",
        result.gate_results
    );
    // Candidate 3 was cancelled when candidate 1 passed, and its agent killed.
    let cancelled = result
        .gate_results
        .iter()
        .find(|g| g.candidate == 3)
        .expect("candidate 3 is accounted for");
    assert!(
        cancelled.excerpt.contains("candidate 1 passed first"),
        "{}",
        cancelled.excerpt
    );
    for _ in 0..100 {
        if candidate_processes(h, 3).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        candidate_processes(h, 3).is_empty(),
        "the hanging candidate's agent was killed"
    );

    // The losers' worktrees and branches are gone; their artifacts are not.
    let worktrees = h.repo.join(".chum/worktrees/tk-1");
    assert!(!worktrees.join("1-c2").exists() && !worktrees.join("1-c3").exists());
    let branches = git(&h.repo, &["branch", "--list", "chum/*"]);
    assert!(
        !branches.contains("tk-1-c2") && !branches.contains("tk-1-c3"),
        "{branches}"
    );
    let stderr = dod2.artifact.replace(".log", ".stderr.log");
    assert!(
        std::fs::read_to_string(&stderr).is_ok_and(|t| t.contains("7 != 12")),
        "the losing candidate's DoD output is kept: {stderr}"
    );
    let integrated = git(&h.repo, &["log", "main", "--format=%H", "--grep=^Chum-Run:"]);
    assert_eq!(integrated.lines().count(), 1, "one commit integrated: {integrated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_best_waits_for_every_candidate_and_takes_the_cleanest() {
    let steps = vec![
        planner(GOOD_PLAN),
        // Candidate 1 is quick but its first try is rejected by review; its redo passes.
        candidate_executor(1, BAD_CALC).handoff(0),
        candidate_executor(1, GOOD_CALC),
        reviewer(REVIEW_REJECT).handoff(0).candidate(1),
        // Candidate 2 takes longer and passes every gate the first time.
        candidate_executor(2, GOOD_CALC).sleep_ms(1500),
    ];
    let h = &Harness::start(
        "fanout-best",
        HarnessOptions::with_steps(steps).with_config(|c| {
            let project = c.project();
            project.fanout = Some(2);
            project.select = Some("best".into());
        }),
    )
    .await;
    let result = h.approve_plan("fanout_best", h.input(limits()), 1, "mo").await;
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.branch, "chum/tk-1-c2", "the candidate that passed cleanly wins");
    assert!(
        result
            .gate_results
            .iter()
            .any(|g| g.candidate == 1 && g.gate() == GateName::Review && !g.passed),
        "candidate 1's rejected review is in the journal"
    );
    assert!(
        result
            .gate_results
            .iter()
            .any(|g| g.candidate == 1 && g.gate() == GateName::Dod && g.passed),
        "candidate 1 passed too: best waited for it"
    );
    assert!(
        !h.repo.join(".chum/worktrees/tk-1/1-c1").exists(),
        "the loser's worktree is gone"
    );
}
