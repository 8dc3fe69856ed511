//! The texts the Shark's gates leave behind: one line per DoD check for the status, the failing
//! commands' real output for the next attempt, and a note on what a gate's writes cost it.
//!
//! They end up in workflow state and history, so they are a function of the reports only (and
//! their wording is part of what recorded histories show; change it knowingly).

use crate::proto::{DodReport, Phase, SemgrepFinding};
use crate::text::tail_excerpt;

/// Length of the excerpts kept in workflow state and history.
pub const EXCERPT_CHARS: usize = 1500;

/// One Semgrep finding as the gate's excerpt and the executor's feedback list it.
pub fn semgrep_finding_line(f: &SemgrepFinding) -> String {
    format!("- {} {}:{}: {}\n", f.rule_id, f.file, f.line, f.message)
}

/// A finding a gate's excerpt places at a line of a file (Semgrep's `- <rule> <file>:<line>:
/// <message>` and the review's `- [<severity>] <file>:<line>: <message>`), for showing it at
/// that line of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFinding {
    /// The rule id or the review's `[severity]`.
    pub label: String,
    pub file: String,
    pub line: u32,
    pub message: String,
}

/// The findings placed at a line in a gate's excerpt (lines without a file and line are left out).
pub fn findings_at_lines(excerpt: &str) -> Vec<LineFinding> {
    excerpt
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|rest| {
            let (label, rest) = rest.split_once(' ')?;
            let (place, message) = rest.split_once(": ")?;
            let (file, line) = place.rsplit_once(':')?;
            let line = line.parse().ok()?;
            (!file.is_empty() && !file.contains(' ')).then(|| LineFinding {
                label: label.to_string(),
                file: file.to_string(),
                line,
                message: message.to_string(),
            })
        })
        .collect()
}

/// One line per check for the status, then the first failing check's output tail.
pub fn dod_summary(dod: &DodReport) -> String {
    let lines: Vec<String> = dod
        .checks
        .iter()
        .map(|c| {
            let verdict = if c.passed {
                "ok".to_string()
            } else if c.timed_out {
                "timed out".to_string()
            } else {
                format!("failed (exit {})", c.exit_code)
            };
            format!("{}: {verdict} in {} ms", c.command, c.duration_ms)
        })
        .collect();
    let mut summary = lines.join("\n");
    if let Some(failed) = dod.checks.iter().find(|c| !c.passed) {
        summary.push_str("\n---\n");
        summary.push_str(&tail_excerpt(&failed.output_excerpt, 800));
    }
    summary
}

/// The artifact a person opens first: the first failing check's, else the last check's.
pub fn dod_artifact(dod: &DodReport) -> String {
    dod.checks
        .iter()
        .find(|c| !c.passed)
        .or(dod.checks.last())
        .map(|c| c.artifact.clone())
        .unwrap_or_default()
}

/// What the next attempt's executor is told: each failing command and its real output.
pub fn dod_feedback(dod: &DodReport) -> String {
    checks_feedback("The definition of done failed.\n", dod)
}

/// What the executor (or the person, for a blocking gate) is told when a named gate fails: its
/// command and real output.
pub fn named_gate_feedback(name: &str, report: &DodReport) -> String {
    checks_feedback(&format!("The project's {name:?} gate failed.\n"), report)
}

fn checks_feedback(header: &str, dod: &DodReport) -> String {
    let mut out = String::from(header);
    for check in dod.checks.iter().filter(|c| !c.passed) {
        let why = if check.timed_out {
            "timed out".to_string()
        } else {
            format!("exited with {}", check.exit_code)
        };
        out.push_str(&format!(
            "\n$ {}\n({why})\n{}\n",
            check.command,
            tail_excerpt(&check.output_excerpt, EXCERPT_CHARS)
        ));
    }
    out
}

/// "; discarded what <who> changed in the worktree: a, b, c (+3 more)" for an excerpt, or nothing
/// (runs recorded before trees were kept discard nothing, so their excerpts are unchanged).
pub fn discarded_note(who: &str, paths: &[String]) -> String {
    if paths.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = paths.iter().take(3).map(String::as_str).collect();
    let more = if paths.len() > 3 {
        format!(" (+{} more)", paths.len() - 3)
    } else {
        String::new()
    };
    format!(
        "; discarded what {who} changed in the worktree: {}{more}",
        shown.join(", ")
    )
}

/// The first 12 characters of a commit id, as people quote them.
pub fn short_commit(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// What the next attempt's executor is told when its work conflicted with what landed on the
/// base meanwhile: the files, the conflicting hunks, and to redo the plan on the base as it is now.
pub fn conflict_feedback(base_branch: &str, files: &[String], hunks: &str) -> String {
    let mut out = format!(
        "Your work conflicted with changes that landed on {base_branch} while it waited to be merged; \
         it was not merged. Redo the plan on top of {base_branch} as it is now, keeping those changes.\n\
         Conflicting files: {}\n",
        files.join(", ")
    );
    if !hunks.trim().is_empty() {
        out.push_str("The conflicting hunks (yours and theirs):\n");
        out.push_str(hunks.trim_end());
        out.push('\n');
    }
    out
}

/// What the next attempt's executor is told when its work, brought up to a base that had moved,
/// failed a gate there: the gate's own feedback, said to be about the combination.
pub fn reverification_feedback(base_branch: &str, base_tip: &str, gate_feedback: &str) -> String {
    format!(
        "Your work passed its gates, but {base_branch} moved on (to {}) while it waited to be merged, \
         and on top of it the work fails. Redo the plan on top of {base_branch} as it is now.\n{gate_feedback}",
        short_commit(base_tip)
    )
}

/// The line the Temporal UI shows for a run (its "current details", answered by the SDK to the
/// UI's metadata query): where the run is, and at the gate what a person can do. Not part of the
/// history: it writes no command.
pub fn phase_details(phase: Phase, round: u32, bead_id: &str) -> String {
    match phase {
        Phase::Planning => format!("planning (round {round})"),
        Phase::AwaitingApproval => format!(
            "waiting for a person: the plan of round {round} is at the gate. `chum approve {bead_id}` or `chum reject {bead_id} --feedback ...`; or the `approve` update or signal with {{\"approved\": true, \"by\": \"name\"}}; the plan is in the `status` query"
        ),
        Phase::Loading => "loading the bead and the project's gates".to_string(),
        Phase::Executing => format!("executing attempt {round} in its worktree"),
        Phase::Done => "done; the result says how it ended".to_string(),
        Phase::Queued => format!("attempt {round} passed its gates; waiting for the merge queue's turn"),
        Phase::WaitingForSlot => {
            "approved; waiting for an execution slot (and leases on the planned files): `chum queue` says why"
                .to_string()
        }
        other => format!("{other} (attempt {round})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_in_semgrep_and_review_excerpts_are_placed_at_their_lines() {
        let semgrep = SemgrepFinding {
            rule_id: "chum.no-eval".into(),
            file: "src/calc.py".into(),
            line: 7,
            message: "eval: a string runs as code".into(),
            severity: "ERROR".into(),
        };
        let excerpt = format!(
            "1 finding(s)\nSemgrep found known mistakes; fix each one:\n{}",
            semgrep_finding_line(&semgrep)
        );
        assert_eq!(
            findings_at_lines(&excerpt),
            vec![LineFinding {
                label: "chum.no-eval".into(),
                file: "src/calc.py".into(),
                line: 7,
                message: "eval: a string runs as code".into(),
            }]
        );
        let verdict = crate::proto::ReviewVerdict {
            findings: vec![
                crate::proto::ReviewFinding {
                    severity: "error".into(),
                    file: "calc.py".into(),
                    line: 3,
                    message: "divides by zero: see a: b".into(),
                },
                crate::proto::ReviewFinding {
                    severity: "info".into(),
                    file: "calc.py".into(),
                    line: 0,
                    message: "whole file".into(),
                },
            ],
            ..Default::default()
        };
        let review = crate::review::findings_for_redo(&verdict, &["criterion 2 is not met: x: y".to_string()]);
        let found = findings_at_lines(&review);
        assert_eq!(found.len(), 1, "{review}");
        assert_eq!((found[0].label.as_str(), found[0].line), ("[error]", 3));
        assert_eq!(found[0].message, "divides by zero: see a: b");
    }
    use crate::proto::DodCheck;

    #[test]
    fn a_conflict_names_the_files_and_shows_the_hunks() {
        let text = conflict_feedback(
            "main",
            &["calc.py".into()],
            "<<<<<<< ours\na\n=======\nb\n>>>>>>> theirs\n",
        );
        assert!(
            text.contains("Conflicting files: calc.py") && text.contains("<<<<<<< ours"),
            "{text}"
        );
        assert!(text.contains("on top of main as it is now"), "{text}");
        let text = reverification_feedback("main", "0123456789abcdef", "AssertionError: 7 != 12");
        assert!(
            text.contains("(to 0123456789ab)") && text.ends_with("AssertionError: 7 != 12"),
            "{text}"
        );
    }

    fn check(command: &str, exit_code: i32, timed_out: bool, output: &str) -> DodCheck {
        DodCheck {
            command: command.into(),
            exit_code,
            passed: exit_code == 0 && !timed_out,
            timed_out,
            duration_ms: 12,
            output_excerpt: output.into(),
            artifact: format!("{command}.log"),
        }
    }

    fn report(checks: Vec<DodCheck>) -> DodReport {
        DodReport {
            passed: checks.iter().all(|c| c.passed),
            checks,
            ..DodReport::default()
        }
    }

    #[test]
    fn the_summary_has_a_line_per_check_and_the_first_failures_output() {
        let dod = report(vec![
            check("make lint", 0, false, "fine"),
            check("make test", 2, false, "assertion failed: 1 == 2"),
            check("make slow", 0, true, "still going"),
        ]);
        let summary = dod_summary(&dod);
        assert_eq!(
            summary,
            "make lint: ok in 12 ms\nmake test: failed (exit 2) in 12 ms\nmake slow: timed out in 12 ms\n---\nassertion failed: 1 == 2"
        );
        assert_eq!(dod_artifact(&dod), "make test.log");
        assert_eq!(
            dod_artifact(&report(vec![check("a", 0, false, ""), check("b", 0, false, "")])),
            "b.log"
        );
        assert_eq!(dod_artifact(&report(vec![])), "");
    }

    #[test]
    fn the_feedback_quotes_every_failing_command_with_its_output() {
        let dod = report(vec![
            check("make lint", 0, false, "fine"),
            check("make test", 2, false, "assertion failed"),
            check("make slow", 0, true, "still going"),
        ]);
        let feedback = dod_feedback(&dod);
        assert!(feedback.starts_with("The definition of done failed.\n"));
        assert!(
            feedback.contains("$ make test\n(exited with 2)\nassertion failed\n"),
            "{feedback}"
        );
        assert!(
            feedback.contains("$ make slow\n(timed out)\nstill going\n"),
            "{feedback}"
        );
        assert!(
            !feedback.contains("make lint"),
            "a passing check is not feedback: {feedback}"
        );
    }

    #[test]
    fn the_discarded_note_names_three_paths_and_counts_the_rest() {
        assert_eq!(discarded_note("the DoD", &[]), "");
        let paths: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|p| p.to_string()).collect();
        assert_eq!(
            discarded_note("the reviewer", &paths),
            "; discarded what the reviewer changed in the worktree: a, b, c (+2 more)"
        );
        assert_eq!(
            discarded_note("the DoD", &paths[..1]),
            "; discarded what the DoD changed in the worktree: a"
        );
    }

    #[test]
    fn a_short_commit_is_twelve_characters_or_the_whole_id() {
        assert_eq!(short_commit("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_commit("abc"), "abc");
        assert_eq!(short_commit(""), "");
    }

    #[test]
    fn the_ui_line_at_the_gate_says_what_a_person_can_do() {
        let line = phase_details(Phase::AwaitingApproval, 2, "tk-1");
        assert!(line.contains("round 2") && line.contains("chum approve tk-1"), "{line}");
        assert_eq!(phase_details(Phase::Dod, 1, "tk-1"), "dod (attempt 1)");
    }
}
