//! The scripted agent's usual parts in the calc project, as typed scenario steps
//! (`chum_scripted_agent::scenario::Step`; the harness writes them as the scenario file).

use chum_scripted_agent::scenario::Step;

use crate::project::{GOOD_CALC, GOOD_PLAN, MULTIPLY_TEST};

/// The planner answers `answer` (a plan, or what a test wants it to say).
pub fn planner(answer: &str) -> Step {
    Step::planner().answer(answer)
}

/// The executor writes `calc` as calc.py, with the multiply test beside it.
pub fn calc_executor(calc: &str) -> Step {
    Step::executor()
        .answer("Implemented multiply.")
        .write("calc.py", calc)
        .write("test_multiply.py", MULTIPLY_TEST)
}

/// The reviewer answers `verdict`.
pub fn reviewer(verdict: &str) -> Step {
    Step::reviewer().answer(verdict)
}

/// The common scenario: the planner answers GOOD_PLAN, the executor writes GOOD_CALC with its
/// test.
pub fn good_work() -> Vec<Step> {
    good_work_with(|executor| executor)
}

/// [`good_work`] with the executor's step changed, e.g. `good_work_with(|s| s.sleep_ms(3000))`.
pub fn good_work_with(executor: impl FnOnce(Step) -> Step) -> Vec<Step> {
    vec![planner(GOOD_PLAN), executor(calc_executor(GOOD_CALC))]
}

/// A plan with one criterion ("the files exist") that names exactly `files` (what its leases
/// cover).
pub fn plan_of(files: &[&str]) -> String {
    serde_json::json!({
        "summary": "do it",
        "steps": ["write the files"],
        "acceptance_criteria": ["the files exist"],
        "files": files,
    })
    .to_string()
}

/// A reviewer verdict that meets [`plan_of`]'s one criterion, with a line of the diff as evidence.
pub const REVIEW_ONE: &str = r#"{"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": "the files exist", "met": true, "evidence": "`{added_line:1}`"}]}"#;

/// `step` waits until the test creates `go-<bead>` in the harness directory (so a test holds an
/// executor where it wants it).
pub fn held(step: Step, bead: &str) -> Step {
    step.shell(&format!(
        r#"while [ ! -e "$CHUM_TEST_HARNESS/go-{bead}" ]; do sleep 0.1; done"#
    ))
}
