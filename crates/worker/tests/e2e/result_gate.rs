//! The second human gate, on the result (`approve_result`): work that passed every gate waits for
//! a person before it is integrated. `chum show <bead> --diff` shows what it became; a rejection
//! with feedback is the next attempt's findings (the executor is told); a malformed decision is
//! refused and approves nothing; the approved result lands.

use chum_core::proto::{GateName, Outcome, Phase, SharkInput};
use chum_testkit::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_the_result_before_it_is_integrated_and_a_rejection_is_redone() {
    let steps = vec![
        Step::planner().bead("tk-1").answer(GOOD_PLAN),
        calc_executor(GOOD_CALC).bead("tk-1").attempt(1),
        calc_executor(GOOD_CALC)
            .bead("tk-1")
            .attempt(2)
            .expect_prompt_contains("name the test after the bug"),
        Step::reviewer().bead("tk-1").answer(REVIEW_APPROVE),
    ];
    let mut options = HarnessOptions::with_steps(steps);
    options
        .configure
        .push(Box::new(|c| c.project().approve_result = Some(true)));
    let h = &Harness::start("result-gate", options).await;
    let config = h.write_config(&h.config_file);
    let before = git(&h.repo, &["rev-parse", "main"]);
    let (result, shown, waiting_main) = h
        .with_worker(|client| async move {
            let run = start_shark(
                &client,
                &h.task_queue,
                SharkInput {
                    bead_id: "tk-1".into(),
                    ..h.input(limits())
                },
            )
            .await;
            wait_for_phase(&run, Phase::AwaitingApproval, 1).await;
            send_approve(&run, json!({"approved": true, "by": "ana"})).await;

            let first = wait_for_attempt_phase(&run, Phase::AwaitingResultApproval, 1).await;
            assert!(first.result_diff_stat.contains("calc.py"), "{first:?}");
            let waiting_main = git(&h.repo, &["rev-parse", "main"]);
            // Not a decision: refused with the reason, nothing approved.
            send_raw_approve(&run, chum_workflows::approve_payload(&json!({"approved": "yes"}))).await;
            let refused = wait_for_refusals(&run, 1).await;
            assert_eq!(refused.phase(), Phase::AwaitingResultApproval, "{refused:?}");
            let config = config.clone();
            let shown = tokio::task::spawn_blocking(move || {
                let shown = run_chum(&config, &["show", "tk-1", "--diff"]);
                let (code, _, err) = run_chum(
                    &config,
                    &[
                        "reject",
                        "tk-1",
                        "--feedback",
                        "name the test after the bug",
                        "--by",
                        "rosa",
                    ],
                );
                assert_eq!(code, 0, "{err}");
                shown
            })
            .await
            .unwrap();

            let second = wait_for_attempt_phase(&run, Phase::AwaitingResultApproval, 2).await;
            assert_eq!(second.phase(), Phase::AwaitingResultApproval);
            send_approve(&run, json!({"approved": true, "by": "rosa"})).await;
            (finish(&run, "result_gate").await, shown, waiting_main)
        })
        .await;

    // While the result waited, nothing was integrated.
    assert_eq!(waiting_main, before);
    let (code, diff, err) = shown;
    assert_eq!(code, 0, "{err}");
    assert!(
        diff.contains("+def multiply(a, b):") && diff.contains("calc.py"),
        "{diff}"
    );

    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 2);
    let verdicts = gates_of(&result, GateName::Result);
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert!(
        verdicts[0].round == 1
            && !verdicts[0].passed
            && verdicts[0].excerpt.starts_with("result rejected by rosa")
            && verdicts[0].excerpt.ends_with(": name the test after the bug"),
        "{verdicts:?}"
    );
    assert!(
        verdicts[1].round == 2 && verdicts[1].passed && verdicts[1].excerpt == "result approved by rosa",
        "{verdicts:?}"
    );
    assert_eq!(git(&h.repo, &["show", "main:calc.py"]), GOOD_CALC.trim_end());
    assert_eq!(h.read_bead("tk-1")["status"], "closed");
}
