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
