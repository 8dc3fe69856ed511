//! A project's own gates, end to end: a `typecheck` gate running the real mypy (pinned, from
//! PyPI, installed by scripts/setup.sh) at its place among the gates, and a `proof` gate that is a
//! script in the repository, run only before integration. A failing typecheck sends mypy's output
//! to the executor's redo; a failing proof with `fail = "block"` stops the run with the bead
//! blocked.

use chum_core::config::RawNamedGate;
use chum_core::proto::{GateName, Outcome, Phase};
use chum_testkit::paths::mypy_venv;
use chum_testkit::*;
use serde_json::json;

/// calc.py with type hints, and one lie in them: multiply says it returns an int.
const MISTYPED_CALC: &str = "def add(a: int, b: int) -> int:\n    return a + b\n\n\ndef multiply(a: int, b: int) -> int:\n    return str(a * b)\n";
const TYPED_CALC: &str =
    "def add(a: int, b: int) -> int:\n    return a + b\n\n\ndef multiply(a: int, b: int) -> int:\n    return a * b\n";
/// What mypy says about MISTYPED_CALC.
const MYPY_ERROR: &str = "Incompatible return value type (got \"str\", expected \"int\")";

const PROOF_HOLDS: &str = "#!/bin/sh\n# The proof: multiply really multiplies, without the test suite.\npython3 -c 'from calc import multiply; assert multiply(6, 7) == 42' && echo 'proof: multiply(6, 7) == 42'\n";
const PROOF_FAILS: &str = "#!/bin/sh\necho 'proof: CHANGELOG.md does not mention multiply' >&2\nexit 1\n";

fn executor(calc: &str) -> Step {
    Step::executor()
        .answer("Implemented multiply.")
        .write("calc.py", calc)
        .write("test_multiply.py", MULTIPLY_TEST)
}

/// The project's two gates: how each fails, and the proof script committed in the repository.
struct Gates {
    typecheck_fails: &'static str,
    proof_fails: &'static str,
    proof: &'static str,
}

/// The usual gates: a typecheck that sends the work back, a proof that blocks.
const USUAL: Gates = Gates {
    typecheck_fails: "redo",
    proof_fails: "block",
    proof: PROOF_HOLDS,
};

/// The project orders semgrep, typecheck, review, dod, proof; mypy runs sandboxed like the DoD,
/// its venv mounted as a toolchain.
fn options(steps: Vec<Step>, gates: Gates) -> HarnessOptions {
    let (venv, toolchains) = mypy_venv();
    let mut options = HarnessOptions::with_steps(steps).with_config(move |c| {
        let project = c.project();
        project.gates = Some(
            ["semgrep", "typecheck", "review", "dod", "proof"]
                .map(String::from)
                .to_vec(),
        );
        project.gate = vec![
            RawNamedGate {
                name: Some("typecheck".into()),
                command: Some(format!("{}/bin/mypy --cache-dir=/dev/null calc.py", venv.display())),
                timeout: Some("3m".into()),
                fail: Some(gates.typecheck_fails.into()),
                ..RawNamedGate::default()
            },
            RawNamedGate {
                name: Some("proof".into()),
                command: Some("sh prove.sh".into()),
                when: Some("before_integration".into()),
                fail: Some(gates.proof_fails.into()),
                ..RawNamedGate::default()
            },
        ];
        project.toolchains = toolchains.iter().map(|p| p.display().to_string()).collect();
    });
    options.extra_files = vec![("prove.sh".into(), gates.proof.into())];
    options
}

/// Approves the plan and waits for the run's end (recording its history as `name`).
async fn approve_and_finish(h: &Harness, name: &str) -> chum_core::proto::SharkResult {
    h.with_worker(|client| async move {
        let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
        wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
        send_approve(&handle, json!({"approved": true, "by": "alice"})).await;
        finish(&handle, name).await
    })
    .await
}

/// The labels of the checks a run passed through, in order (the Shark's own steps left out).
fn checks(result: &chum_core::proto::SharkResult) -> Vec<(String, bool)> {
    result
        .gate_results
        .iter()
        .filter(|g| {
            matches!(
                g.gate(),
                GateName::Semgrep | GateName::Review | GateName::Dod | GateName::Named
            )
        })
        .map(|g| (g.label(), g.passed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_typecheck_sends_mypys_output_to_the_redo_and_the_proof_runs_before_integration() {
    let steps = vec![
        planner(GOOD_PLAN),
        executor(MISTYPED_CALC).handoff(0),
        executor(TYPED_CALC)
            .handoff(1)
            .expect_prompt_contains("The project's \"typecheck\" gate failed")
            .expect_prompt_contains(MYPY_ERROR),
    ];
    let h = &Harness::start("named-gates", options(steps, USUAL)).await;
    let result = approve_and_finish(h, "named_gates_redo_then_proof").await;

    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 1);
    let on = |label: &str, passed: bool| (label.to_string(), passed);
    assert_eq!(
        checks(&result),
        [
            on("semgrep", true),
            on("typecheck", false),
            // The redo: mypy is satisfied, and the paid review comes after the free checks.
            on("semgrep", true),
            on("typecheck", true),
            on("review", true),
            on("dod", true),
            // Once, on the work about to be integrated.
            on("proof", true),
        ]
    );
    let typecheck = result
        .gate_results
        .iter()
        .find(|g| g.label() == "typecheck" && !g.passed)
        .expect("a failed typecheck");
    assert!(typecheck.excerpt.contains(MYPY_ERROR), "{}", typecheck.excerpt);
    assert!(typecheck.excerpt.contains("calc.py:6"), "{}", typecheck.excerpt);
    assert_eq!((typecheck.round, typecheck.handoff), (1, 0));
    let redo = h.prompt("executor", 1, 1);
    assert!(
        redo.contains(MYPY_ERROR) && redo.contains("mypy --cache-dir=/dev/null calc.py"),
        "{redo}"
    );
    let proof = result
        .gate_results
        .iter()
        .find(|g| g.label() == "proof")
        .expect("proved");
    assert!(proof.excerpt.contains("sh prove.sh: ok"), "{}", proof.excerpt);
    assert!(std::path::Path::new(&proof.artifact).is_file(), "{proof:?}");
    assert!(result.phases.iter().any(|p| p.phase() == Phase::Gate));
    assert_eq!(std::fs::read_to_string(h.repo.join("calc.py")).unwrap(), TYPED_CALC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_gate_that_fails_stops_the_run_and_blocks_the_bead_with_its_output() {
    let steps = vec![planner(GOOD_PLAN), executor(TYPED_CALC)];
    let gates = Gates {
        proof: PROOF_FAILS,
        ..USUAL
    };
    let h = &Harness::start("named-gate-blocks", options(steps, gates)).await;
    let base_before = h.commits_on("main");
    let result = approve_and_finish(h, "named_gate_blocks").await;

    assert_eq!(result.outcome(), Outcome::Escalated, "{result:?}");
    assert!(
        result.reason.contains("\"proof\" gate blocked the work"),
        "{}",
        result.reason
    );
    assert_eq!(result.attempts, 1, "a blocking gate does not start another attempt");
    assert!(!result.merged);
    assert_eq!(h.commits_on("main"), base_before, "nothing was integrated");
    let wip = git(&h.repo, &["log", "-1", "--format=%s", "chum/tk-1"]);
    assert!(
        wip.starts_with("WIP tk-1"),
        "the work is kept on the bead's branch: {wip}"
    );
    let bead = h.read_bead("tk-1");
    assert_eq!(bead["status"], "blocked");
    let notes = bead["notes"].as_str().unwrap_or_default();
    assert!(
        notes.contains("blocked by the project's \"proof\" gate")
            && notes.contains("CHANGELOG.md does not mention multiply"),
        "{notes}"
    );
    let proofs: Vec<bool> = result
        .gate_results
        .iter()
        .filter(|g| g.label() == "proof")
        .map(|g| g.passed)
        .collect();
    assert_eq!(proofs, [false]);
}

/// The proof wants a module docstring in calc.py.
const PROOF_WANTS_DOCSTRING: &str = "#!/bin/sh\nhead -n 1 calc.py | grep -q '^\"\"\"' || { echo 'proof: calc.py has no module docstring' >&2; exit 1; }\necho 'proof: documented'\n";
const DOCUMENTED_CALC: &str = "\"\"\"Arithmetic.\"\"\"\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n\n\ndef multiply(a: int, b: int) -> int:\n    return a * b\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gate_before_integration_that_redoes_gives_the_next_attempt_its_output() {
    let steps = vec![
        planner(GOOD_PLAN),
        executor(TYPED_CALC).attempt(1),
        executor(DOCUMENTED_CALC)
            .attempt(2)
            .expect_prompt_contains("calc.py has no module docstring"),
    ];
    let gates = Gates {
        proof: PROOF_WANTS_DOCSTRING,
        proof_fails: "redo",
        ..USUAL
    };
    let h = &Harness::start("named-gate-proof-redo", options(steps, gates)).await;
    let result = approve_and_finish(h, "named_gate_before_integration_redo").await;

    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    assert_eq!(result.attempts, 2);
    let proofs: Vec<(u32, bool)> = result
        .gate_results
        .iter()
        .filter(|g| g.label() == "proof")
        .map(|g| (g.round, g.passed))
        .collect();
    assert_eq!(
        proofs,
        [(1, false), (2, true)],
        "once per attempt, after every other gate"
    );
    assert!(
        h.prompt("executor", 2, 0)
            .contains("The project's \"proof\" gate failed")
    );
    assert_eq!(
        std::fs::read_to_string(h.repo.join("calc.py")).unwrap(),
        DOCUMENTED_CALC
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_gate_of_every_attempt_stops_the_first_attempt() {
    let steps = vec![planner(GOOD_PLAN), executor(MISTYPED_CALC)];
    let gates = Gates {
        typecheck_fails: "block",
        ..USUAL
    };
    let h = &Harness::start("named-gate-typecheck-blocks", options(steps, gates)).await;
    let result = approve_and_finish(h, "named_gate_blocks_an_attempt").await;

    assert_eq!(result.outcome(), Outcome::Escalated, "{result:?}");
    assert_eq!(result.attempts, 1);
    assert!(result.reason.contains(MYPY_ERROR), "{}", result.reason);
    let on = |label: &str, passed: bool| (label.to_string(), passed);
    assert_eq!(
        checks(&result),
        [on("semgrep", true), on("typecheck", false)],
        "no review is paid for"
    );
    assert_eq!(h.read_bead("tk-1")["status"], "blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_merge_queues_turn_named_gates_check_the_work_again_on_a_moved_base() {
    let steps = vec![planner(GOOD_PLAN), held(executor(TYPED_CALC), "tk-1")];
    let h = &Harness::start("named-gates-moved-base", options(steps, USUAL)).await;
    let result = h
        .with_worker(|client| async move {
            let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
            wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
            send_approve(&handle, json!({"approved": true, "by": "alice"})).await;
            wait_for_phase(&handle, Phase::Executing, 1).await;
            // The attempt's worktree is checked out from main (the phase is set just before the
            // execute activity makes it): only then is a new commit on main a moved base.
            let worktree = h.repo.join(".chum/worktrees/tk-1/1/calc.py");
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            while !worktree.exists() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the attempt's worktree never appeared"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            // A person moves main while the work is being done.
            std::fs::write(h.repo.join("NOTES.md"), "release notes\n").unwrap();
            git(&h.repo, &["add", "NOTES.md"]);
            git(&h.repo, &["commit", "-q", "-m", "notes"]);
            std::fs::write(h.prompts.join("go-tk-1"), "").unwrap();
            finish(&handle, "named_gates_reverified").await
        })
        .await;

    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    let again: Vec<String> = result
        .gate_results
        .iter()
        .filter(|g| g.verification > 0)
        .map(|g| g.label())
        .collect();
    // In the project's order; the review is not asked again (rereview_on_update is off).
    assert_eq!(again, ["semgrep", "typecheck", "dod", "proof"], "{result:?}");
    assert!(
        result
            .gate_results
            .iter()
            .filter(|g| g.verification > 0)
            .all(|g| g.passed),
        "{result:?}"
    );
    assert!(h.repo.join("NOTES.md").is_file());
    assert_eq!(std::fs::read_to_string(h.repo.join("calc.py")).unwrap(), TYPED_CALC);
}
