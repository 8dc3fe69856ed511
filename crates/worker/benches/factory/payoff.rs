//! The crystallization payoff on a real project: boltons, its PyPI sdist as released (pinned by
//! version and sha256 in scripts/setup.sh, which unpacks it into `.tools/`), with its own test
//! command (tox's: `pytest --doctest-modules boltons tests`, 672 tests and doctests) as the
//! definition of done, run by a pinned pytest from a `.tools/pytest` venv in the DoD's sandbox.
//!
//! The executor makes the same realistic mistake in every bead: tidying `strutils.parse_int_list`,
//! it drops the `+ 1` that makes a range like `5-8` inclusive. With no rule, the DoD catches it
//! (boltons' `test_parse_int_list` and the function's doctest fail) and the next attempt fixes it;
//! the learner turns that catch into a lesson and the lesson into a Semgrep rule (checked by CHUM
//! with real semgrep and committed). The same mistake made again is then stopped by the Semgrep
//! gate, before the review and the test suite. Measured per bead: from the end of the execution
//! that made the mistake to the start of the one that fixes it, and how many times sooner the rule
//! stops it (target: 10×).

use std::path::{Path, PathBuf};

use chum_core::proto::{GateName, Outcome, Phase, SharkResult};
use chum_testkit::*;

use crate::{Row, env_count, one_bead, percentile};

/// The release scripts/setup.sh unpacks (`BOLTONS_VERSION`).
pub const PROJECT: &str = "boltons 26.2.0";
const SDIST_DIR: &str = "boltons-26.2.0";
/// What 10× sooner means here: the rule stops the mistake at least this many times sooner.
const TARGET_RATIO: f64 = 10.0;

/// The function the executor tidies, as boltons ships it ...
const ORIGINAL: &str = "            range_limits = list(map(int, x.split(range_delim)))
            output += list(range(min(range_limits), max(range_limits)+1))
";
/// ... the tidy-up with the mistake: `range` stops before its end, so `5-8` loses its 8 ...
const MISTAKEN: &str = "            range_limits = [int(limit) for limit in x.split(range_delim)]
            output.extend(range(min(range_limits), max(range_limits)))
";
/// ... and the tidy-up done right.
const FIXED: &str = "            range_limits = [int(limit) for limit in x.split(range_delim)]
            output.extend(range(min(range_limits), max(range_limits) + 1))
";
const STRUTILS: &str = "boltons/strutils.py";

/// The rule the scripted learner writes from the lesson (CHUM checks it with real semgrep: valid,
/// matches the bad example, not the good one, silent on boltons as released).
const LEARNED_RULE: &str = "rules:
  - id: chum-1
    languages: [python]
    severity: ERROR
    message: range(min(xs), max(xs)) stops before max(xs), so an inclusive range like \"5-8\" loses its last number; use range(min(xs), max(xs) + 1)
    pattern: range(min($XS), max($XS))
";

fn plan() -> String {
    serde_json::json!({
        "summary": "parse_int_list extends one list instead of concatenating a new list per range",
        "steps": ["build the range limits with a comprehension", "extend the output in place"],
        "acceptance_criteria": [
            "parse_int_list extends its output in place",
            "boltons' test suite passes"
        ],
        "files": [STRUTILS],
    })
    .to_string()
}

/// Approves the plan's two criteria, each with a line the diff adds as evidence.
const REVIEW: &str = r#"{"approved": true, "findings": [], "criteria": [{"index": 1, "criterion": "parse_int_list extends its output in place", "met": true, "evidence": "`{added_line:2}`"}, {"index": 2, "criterion": "boltons' test suite passes", "met": true, "evidence": "`{added_line:1}`"}]}"#;

/// boltons' sdist as scripts/setup.sh unpacked it.
fn sdist() -> PathBuf {
    let dir = workspace_root().join(".tools").join(SDIST_DIR);
    assert!(
        dir.join(STRUTILS).is_file(),
        "no {PROJECT} sdist in {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// Every file of the sdist (all text), as (path in the repository, content).
fn project_files(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let content = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {} as text: {e}", path.display()));
                let relative = path.strip_prefix(root).expect("under the sdist").display().to_string();
                files.push((relative, content));
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files
}

/// Milliseconds from the end of the first execution to the start of the second: what the
/// mistake cost before the executor heard about it and started fixing it.
fn mistake_cost_ms(result: &SharkResult) -> Option<i64> {
    let executions: Vec<_> = result.phases.iter().filter(|p| p.phase() == Phase::Executing).collect();
    match executions.as_slice() {
        [first, second, ..] => Some(second.started_ms - first.ended_ms),
        _ => None,
    }
}

/// What the review of the mistaken execution (attempt 1, before any redo) cost: tokens and
/// dollars, from the store. With the free gate first, a mistake a rule catches is never reviewed.
fn review_of_mistake(h: &Harness, workflow_id: &str) -> (f64, f64) {
    let db = rusqlite::Connection::open(h.config.state_dir.join("chum.db")).expect("store");
    db.query_row(
        "SELECT COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost_usd), 0) FROM agent_usage \
         WHERE workflow_id = ?1 AND role = 'reviewer' AND attempt = 1 AND handoff = 0",
        [workflow_id],
        |r| Ok((r.get::<_, i64>(0)? as f64, r.get::<_, f64>(1)?)),
    )
    .expect("review spend")
}

/// The review's spend on each payoff run's mistaken execution.
#[derive(Default)]
struct ReviewSpend {
    by_dod_tokens: Vec<f64>,
    by_dod_usd: Vec<f64>,
    by_rule_tokens: Vec<f64>,
    by_rule_usd: Vec<f64>,
}

/// What a repeated mistake cost, p50, caught by the DoD and by its learned rule.
pub struct Payoff {
    pub by_dod_ms: f64,
    pub by_rule_ms: f64,
}

impl Payoff {
    /// How many times sooner the rule stops the mistake than the DoD.
    pub fn ratio(&self) -> f64 {
        self.by_dod_ms / self.by_rule_ms.max(1.0)
    }
}

/// `CHUM_BENCH_PAYOFF_RUNS` (3) beads caught by the DoD, as many caught by the learned rule.
pub async fn crystallization_payoff() -> (Vec<Row>, Payoff) {
    let runs = env_count("CHUM_BENCH_PAYOFF_RUNS", 3);
    let root = sdist();
    let strutils = std::fs::read_to_string(root.join(STRUTILS)).expect("boltons/strutils.py reads");
    assert!(
        strutils.contains(ORIGINAL),
        "{STRUTILS} of {PROJECT} no longer has parse_int_list's range line: the scripted mistake needs updating"
    );
    let (venv, toolchains) = pytest_venv();
    let plan = plan();
    let mut steps = vec![planner(&plan), reviewer(REVIEW)];
    for i in 1..=runs {
        let dod = format!("pay-dod-{i}");
        let semgrep = format!("pay-semgrep-{i}");
        // A failed DoD ends the attempt: the next starts from the base in a fresh worktree. A
        // Semgrep finding is redone in the same worktree, on the mistaken file.
        steps.push(mistake(&dod).attempt(1));
        steps.push(
            Step::executor()
                .bead(&dod)
                .attempt(2)
                .replace(STRUTILS, ORIGINAL, FIXED)
                .answer("done"),
        );
        steps.push(mistake(&semgrep).handoff(0));
        steps.push(
            Step::executor()
                .bead(&semgrep)
                .handoff(1)
                .replace(STRUTILS, MISTAKEN, FIXED)
                .answer("done"),
        );
    }
    let backlog: String = (1..=runs)
        .flat_map(|i| [format!("pay-dod-{i}"), format!("pay-semgrep-{i}")])
        .map(|id| {
            format!(
                "{{\"id\":\"{id}\",\"title\":\"parse_int_list: extend one list in place ({id})\",\"description\":\"strutils.parse_int_list concatenates a new list for every range; extend one list instead\",\"status\":\"open\",\"priority\":2,\"issue_type\":\"task\",\"created_at\":\"2026-11-22T00:00:00Z\",\"updated_at\":\"2026-11-22T00:00:00Z\"}}\n"
            )
        })
        .collect();
    // The learner turns the first catch into a lesson and that into a rule; CHUM checks the rule
    // with real semgrep and commits it.
    let lesson = serde_json::json!([{
        "category": "antipattern",
        "summary": "range(min(limits), max(limits)) drops the upper bound of an inclusive range like 5-8",
        "detail": "test_parse_int_list failed: parse_int_list('5-8') gave [5, 6, 7]. Python's range stops before its end; an inclusive range needs max(limits) + 1.",
        "file_paths": [STRUTILS], "labels": ["python", "off-by-one"],
        "bad_example": "output.extend(range(min(range_limits), max(range_limits)))",
        "good_example": "output.extend(range(min(range_limits), max(range_limits) + 1))",
        "language": "python"
    }]);
    steps.push(
        Step::learner()
            .bead("pay-dod-1")
            .prompt_contains("Extract lessons")
            .answer(lesson.to_string()),
    );
    steps.push(
        Step::learner()
            .bead("pay-dod-1")
            .prompt_contains("Write one Semgrep rule")
            .answer(format!("```yaml\n{LEARNED_RULE}```")),
    );
    steps.push(Step::learner().answer("[]"));
    let h = Harness::start(
        "bench-payoff",
        HarnessOptions {
            steps,
            // boltons' own test command (its tox.ini), with no bytecode or cache left behind.
            dod: vec![format!(
                "{}/bin/python -B -m pytest -q -p no:cacheprovider --doctest-modules boltons tests",
                venv.display()
            )],
            integration: "branch",
            beads: Some(backlog),
            extra_files: project_files(&root),
            learner: true,
            ..Default::default()
        }
        .with_config(move |c| {
            c.dispatcher.enabled = Some(false);
            c.project().toolchains = toolchains.iter().map(|p| p.display().to_string()).collect();
        }),
    )
    .await;
    // The repository is boltons and its backlog: the harness's own small project goes.
    git(&h.repo, &["rm", "-q", "calc.py", "test_calc.py"]);
    git(&h.repo, &["commit", "-q", "-m", "the project is boltons"]);
    eprintln!("bench: crystallization payoff on {PROJECT}, {runs} beads caught by the DoD, {runs} by a learned rule");
    let hh = &h;
    let failed_gate_ms = |result: &SharkResult, gate: GateName| -> Vec<f64> {
        result
            .gate_results
            .iter()
            .filter(|g| g.gate() == gate && !g.passed)
            .map(|g| g.duration_ms as f64)
            .collect()
    };
    let (by_dod, by_semgrep, dod_gate, semgrep_gate, reviews, suite_size) = h
        .with_worker(|client| async move {
            let h = hh;
            let (mut by_dod, mut dod_gate) = (Vec::new(), Vec::new());
            let mut reviews = ReviewSpend::default();
            let mut rule_commit = String::new();
            let mut suite_size = None;
            for i in 1..=runs {
                let (_, result, _) = one_bead(&client, &h.task_queue, &format!("pay-dod-{i}")).await;
                assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
                let failed = failed_gate_ms(&result, GateName::Dod);
                assert!(!failed.is_empty(), "the DoD did not catch it: {result:?}");
                // Caught by boltons' own test of the function (not by the sandbox, say).
                let caught = failed_excerpts(&result, GateName::Dod);
                assert!(
                    caught.contains("test_parse_int_list"),
                    "the DoD failed, but not on parse_int_list: {caught}"
                );
                suite_size = suite_size.or_else(|| suite_passed(&result));
                by_dod.extend(mistake_cost_ms(&result).map(|ms| ms as f64));
                dod_gate.extend(failed);
                let (tokens, usd) =
                    review_of_mistake(h, &chum_core::ids::shark_workflow_id("demo", &format!("pay-dod-{i}")));
                reviews.by_dod_tokens.push(tokens);
                reviews.by_dod_usd.push(usd);
                if i == 1 {
                    // The rule the learner made of this catch, checked and committed by CHUM.
                    let learner =
                        client.get_workflow_handle::<chum_workflows::LearnerRun>(result.learner_workflow_id.clone());
                    let learned: chum_core::proto::LearnerResult = learner
                        .get_result(temporalio_client::WorkflowGetResultOptions::default())
                        .await
                        .expect("the learner ends");
                    let rule = learned
                        .rules
                        .iter()
                        .find(|r| r.accepted)
                        .unwrap_or_else(|| panic!("the learner's rule was not accepted: {learned:?}"));
                    rule_commit = rule.commit.clone();
                }
            }
            // The branch policy leaves CHUM's commits on their branches; the rule comes in once
            // every DoD-caught bead has run, as a person would take it.
            git(&h.repo, &["merge", "-q", "--ff-only", &rule_commit]);
            assert!(
                h.repo.join(".semgrep/chum-1.yaml").is_file(),
                "the learned rule is committed"
            );
            let (mut by_semgrep, mut semgrep_gate) = (Vec::new(), Vec::new());
            for i in 1..=runs {
                let (_, result, _) = one_bead(&client, &h.task_queue, &format!("pay-semgrep-{i}")).await;
                assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
                let failed = failed_gate_ms(&result, GateName::Semgrep);
                assert!(
                    !failed.is_empty()
                        && failed_gate_ms(&result, GateName::Dod).is_empty()
                        && failed_excerpts(&result, GateName::Semgrep).contains("chum-1"),
                    "the learned rule did not catch it first: {result:?}"
                );
                by_semgrep.extend(mistake_cost_ms(&result).map(|ms| ms as f64));
                semgrep_gate.extend(failed);
                let (tokens, usd) = review_of_mistake(
                    h,
                    &chum_core::ids::shark_workflow_id("demo", &format!("pay-semgrep-{i}")),
                );
                reviews.by_rule_tokens.push(tokens);
                reviews.by_rule_usd.push(usd);
            }
            (by_dod, by_semgrep, dod_gate, semgrep_gate, reviews, suite_size)
        })
        .await;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let payoff = Payoff {
        by_dod_ms: median(by_dod),
        by_rule_ms: median(by_semgrep),
    };
    let (dod_gate_ms, semgrep_gate_ms) = (median(dod_gate), median(semgrep_gate));
    let (dod_tokens, dod_usd) = (median(reviews.by_dod_tokens), median(reviews.by_dod_usd));
    let (rule_tokens, rule_usd) = (median(reviews.by_rule_tokens), median(reviews.by_rule_usd));
    let ratio = payoff.ratio();
    let met = ratio >= TARGET_RATIO;
    let rows = vec![
        Row {
            what: format!(
                "a repeated mistake in {PROJECT} caught by the DoD (its own test suite{}): execution end → fix starts, p50 of {runs}",
                suite_size.map(|n| format!(", {n} tests")).unwrap_or_default()
            ),
            measured: format!("{:.0} ms (DoD gate {dod_gate_ms:.0} ms)", payoff.by_dod_ms),
            target: "-".into(),
            met: None,
        },
        Row {
            what: format!("the same mistake caught by its learned Semgrep rule, p50 of {runs}"),
            measured: format!(
                "{:.0} ms (Semgrep gate {semgrep_gate_ms:.0} ms): {:.0} ms saved",
                payoff.by_rule_ms,
                payoff.by_dod_ms - payoff.by_rule_ms
            ),
            target: "-".into(),
            met: None,
        },
        Row {
            what: "how much sooner the learned rule stops the repeated mistake than the DoD".into(),
            measured: match met {
                true => format!("{ratio:.1}×"),
                false => format!(
                    "{ratio:.1}×: short, the test suite ran {dod_gate_ms:.0} ms against Semgrep's {semgrep_gate_ms:.0} ms and the rest is CHUM's own steps"
                ),
            },
            target: format!("≥ {TARGET_RATIO:.0}×"),
            met: Some(met),
        },
        Row {
            what: format!(
                "the review paid for the mistaken execution, p50 of {runs}: caught by the DoD → caught by its rule (the scripted model's usage)"
            ),
            measured: format!(
                "{dod_tokens:.0} tokens ${dod_usd:.4} → {rule_tokens:.0} tokens ${rule_usd:.4}: {:.0} tokens, ${:.4} saved per repeated mistake",
                dod_tokens - rule_tokens,
                dod_usd - rule_usd
            ),
            target: "no review of a mistake a rule catches".into(),
            met: Some(rule_tokens == 0.0 && dod_tokens > 0.0),
        },
    ];
    (rows, payoff)
}

/// What the run's failed `gate` results said, one excerpt after the other.
fn failed_excerpts(result: &SharkResult, gate: GateName) -> String {
    result
        .gate_results
        .iter()
        .filter(|g| g.gate() == gate && !g.passed)
        .map(|g| g.excerpt.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many tests the passing DoD ran: pytest's closing line in its log.
fn suite_passed(result: &SharkResult) -> Option<u64> {
    let passed = result
        .gate_results
        .iter()
        .find(|g| g.gate() == GateName::Dod && g.passed)?;
    let log = std::fs::read_to_string(&passed.artifact).ok()?;
    log.lines().rev().find_map(passed_count)
}

/// N of pytest's closing "672 passed in 4.97s".
fn passed_count(line: &str) -> Option<u64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(',') == "passed")
        .and_then(|w| w[0].parse().ok())
}

/// The executor's tidy-up of parse_int_list with the mistake in it.
fn mistake(bead: &str) -> Step {
    Step::executor()
        .bead(bead)
        .replace(STRUTILS, ORIGINAL, MISTAKEN)
        .answer("done")
}
