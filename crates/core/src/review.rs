//! Cross-model review: reading a reviewer's verdict and deciding whether it approves.
//!
//! Fail-closed: a verdict approves only when it says so *and* confirms every acceptance criterion
//! of the plan with evidence. Anything unreadable is an error the caller treats as a rejection.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::plan::extract_json_object;
use crate::proto::{CriterionCheck, Plan, ReviewFinding, ReviewVerdict};

const SEVERITIES: [&str; 3] = ["error", "warning", "info"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictAnswer {
    approved: bool,
    #[serde(default)]
    findings: Vec<FindingAnswer>,
    #[serde(default)]
    criteria: Vec<CriterionAnswer>,
    /// Reviewers like to add a summary; it is allowed and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    summary: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingAnswer {
    severity: String,
    #[serde(default)]
    file: String,
    #[serde(default)]
    line: u32,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CriterionAnswer {
    /// The criterion's number in the plan (1-based); 0 = matched by its text.
    #[serde(default)]
    index: u32,
    #[serde(default)]
    criterion: String,
    met: bool,
    #[serde(default)]
    evidence: String,
}

/// Parses a reviewer's answer into a verdict. The error says what to fix, for the retry.
pub fn parse_verdict(answer: &str) -> Result<ReviewVerdict, String> {
    let json = extract_json_object(answer).ok_or_else(|| {
        format!(
            "the answer contains no JSON object; answer with {{\"approved\": bool, \"findings\": [...], \"criteria\": [...]}} (got: {})",
            crate::text::excerpt(answer, 200)
        )
    })?;
    let parsed: VerdictAnswer =
        serde_json::from_str(json).map_err(|e| format!("the verdict JSON does not parse: {e}"))?;
    let mut findings = Vec::new();
    for f in parsed.findings {
        let severity = f.severity.trim().to_ascii_lowercase();
        if !SEVERITIES.contains(&severity.as_str()) {
            return Err(format!(
                "finding severity {:?} is not one of \"error\", \"warning\", \"info\"",
                f.severity
            ));
        }
        if f.message.trim().is_empty() {
            return Err("a finding has an empty message".to_string());
        }
        findings.push(ReviewFinding {
            severity,
            file: f.file.trim().to_string(),
            line: f.line,
            message: f.message.trim().to_string(),
        });
    }
    let criteria = parsed
        .criteria
        .into_iter()
        .map(|c| CriterionCheck {
            index: c.index,
            criterion: c.criterion.trim().to_string(),
            met: c.met,
            evidence: c.evidence.trim().to_string(),
            evidence_problem: String::new(),
        })
        .collect();
    Ok(ReviewVerdict {
        approved: parsed.approved,
        findings,
        criteria,
    })
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The lines a diff adds, by file (its new path) and line number in the new version.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AddedLines {
    files: BTreeMap<String, BTreeMap<u32, String>>,
}

impl AddedLines {
    /// Reads a unified diff (`git diff`, any context).
    pub fn from_diff(diff: &str) -> AddedLines {
        let mut out = AddedLines::default();
        let mut file: Option<String> = None;
        let mut line = 0u32;
        for text in diff.lines() {
            if let Some(path) = text.strip_prefix("+++ ") {
                file = path.strip_prefix("b/").map(str::to_string);
            } else if text.starts_with("--- ") || text.starts_with("diff --git") {
                continue;
            } else if let Some(hunk) = text.strip_prefix("@@ ") {
                line = hunk
                    .split_whitespace()
                    .find_map(|p| p.strip_prefix('+'))
                    .and_then(|p| p.split(',').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            } else if let Some(added) = text.strip_prefix('+') {
                if let Some(f) = &file {
                    out.files.entry(f.clone()).or_default().insert(line, added.to_string());
                }
                line += 1;
            } else if text.starts_with(' ') {
                line += 1;
            }
        }
        out
    }

    fn has_line_in(&self, file: &str, first: u32, last: u32) -> bool {
        self.files
            .get(file)
            .is_some_and(|lines| lines.range(first..=last).next().is_some())
    }

    fn contains_text(&self, quote: &str) -> bool {
        self.files.values().flat_map(|l| l.values()).any(|l| l.contains(quote))
    }
}

/// `path:12` and `path:12-20` references in a piece of evidence (the path has a `.` or a `/`).
fn line_references(evidence: &str) -> Vec<(String, u32, u32)> {
    let mut refs = Vec::new();
    for token in evidence.split(|c: char| c.is_whitespace() || "()[],;`'\"".contains(c)) {
        let token = token.trim_end_matches(['.', ':']);
        let Some((path, lines)) = token.rsplit_once(':') else {
            continue;
        };
        if path.is_empty() || !(path.contains('.') || path.contains('/')) {
            continue;
        }
        let (first, last) = match lines.split_once('-') {
            Some((a, b)) => (a.parse().ok(), b.parse().ok()),
            None => (lines.parse().ok(), lines.parse().ok()),
        };
        if let (Some(first), Some(last)) = (first, last)
            && first <= last
        {
            refs.push((path.trim_start_matches("./").to_string(), first, last));
        }
    }
    refs
}

/// Text quoted in backticks or double quotes, at least 8 characters once trimmed.
fn quotes(evidence: &str) -> Vec<String> {
    let mut out = Vec::new();
    for mark in ['`', '"'] {
        let parts: Vec<&str> = evidence.split(mark).collect();
        for quoted in parts.iter().skip(1).step_by(2).take(parts.len().saturating_sub(1) / 2) {
            let q = quoted.trim();
            if q.chars().filter(|c| !c.is_whitespace()).count() >= 8 {
                out.push(q.to_string());
            }
        }
    }
    out
}

/// Why `evidence` does not show anything in the diff, or `None` when it does: a `file:line` the
/// diff adds or changes, or a quote of one of its added lines.
fn evidence_problem(evidence: &str, added: &AddedLines) -> Option<String> {
    if evidence.trim().is_empty() {
        return Some("no evidence given".into());
    }
    let refs = line_references(evidence);
    if refs.iter().any(|(f, a, b)| added.has_line_in(f, *a, *b)) {
        return None;
    }
    let quoted = quotes(evidence);
    if quoted.iter().any(|q| added.contains_text(q)) {
        return None;
    }
    if let Some((f, a, b)) = refs.first() {
        let place = if a == b {
            format!("{f}:{a}")
        } else {
            format!("{f}:{a}-{b}")
        };
        return Some(format!(
            "the evidence names {place}, which the diff does not add or change"
        ));
    }
    if let Some(q) = quoted.first() {
        return Some(format!(
            "the evidence quotes {:?}, which no line the diff adds contains",
            crate::text::excerpt(q, 80)
        ));
    }
    Some("the evidence names no file:line of the diff and quotes none of its added lines".into())
}

/// The verdict with its criteria checked against the real diff: each plan criterion exactly once,
/// in order (matched by its `index`, else by its exact text), and a criterion claimed met whose
/// evidence names nothing the diff adds, or repeats another criterion's evidence, is not met and
/// says why. What the reviewer said about anything else is dropped.
pub fn check_evidence(verdict: ReviewVerdict, plan: &Plan, added: &AddedLines) -> ReviewVerdict {
    let mut criteria = Vec::new();
    let mut used: Vec<(String, usize)> = Vec::new();
    for (i, text) in plan.acceptance_criteria.iter().enumerate() {
        let index = i as u32 + 1;
        let wanted = normalize(text);
        let claim = verdict.criteria.iter().find(|c| c.index == index).or_else(|| {
            verdict
                .criteria
                .iter()
                .find(|c| c.index == 0 && normalize(&c.criterion) == wanted)
        });
        let mut check = CriterionCheck {
            index,
            criterion: text.clone(),
            ..CriterionCheck::default()
        };
        match claim {
            None => check.evidence_problem = "the verdict does not check this criterion".into(),
            Some(c) => {
                check.evidence = c.evidence.clone();
                check.met = c.met;
                if c.met {
                    let same = normalize(&c.evidence);
                    let problem = match used.iter().find(|(e, _)| *e == same) {
                        Some((_, other)) => Some(format!(
                            "the same evidence as criterion {other}; each criterion needs its own"
                        )),
                        None => evidence_problem(&c.evidence, added),
                    };
                    if let Some(problem) = problem {
                        check.met = false;
                        check.evidence_problem = problem;
                    } else {
                        used.push((same, index as usize));
                    }
                }
            }
        }
        criteria.push(check);
    }
    ReviewVerdict { criteria, ..verdict }
}

/// Why a verdict does not approve the work; empty when it does. Every plan criterion must be
/// confirmed met with evidence, and an approval with error findings is a contradiction, not a pass.
pub fn rejection_reasons(verdict: &ReviewVerdict, plan: &Plan) -> Vec<String> {
    let mut reasons = Vec::new();
    if !verdict.approved {
        reasons.push("the reviewer did not approve".to_string());
    }
    // A verdict whose evidence was checked (`check_evidence`) names each criterion by its number;
    // one recorded before that is matched by text, as it was then.
    let checked = verdict.criteria.iter().any(|c| c.index > 0);
    for (i, criterion) in plan.acceptance_criteria.iter().enumerate() {
        let wanted = normalize(criterion);
        let check = verdict.criteria.iter().find(|c| {
            if checked {
                return c.index == i as u32 + 1;
            }
            let got = normalize(&c.criterion);
            !got.is_empty() && (got == wanted || got.contains(&wanted) || wanted.contains(&got))
        });
        match check {
            None => reasons.push(format!("criterion not checked: {criterion}")),
            Some(c) if !c.met && !c.evidence_problem.is_empty() => {
                reasons.push(format!("criterion not met: {criterion} ({})", c.evidence_problem))
            }
            Some(c) if !c.met => reasons.push(format!("criterion not met: {criterion}")),
            Some(c) if c.evidence.is_empty() => {
                reasons.push(format!("criterion claimed met without evidence: {criterion}"))
            }
            Some(_) => {}
        }
    }
    if verdict.approved {
        let errors = verdict.findings.iter().filter(|f| f.severity == "error").count();
        if errors > 0 {
            reasons.push(format!("the verdict approves but lists {errors} error finding(s)"));
        }
    }
    reasons
}

/// The findings as the executor of the redo reads them.
pub fn findings_for_redo(verdict: &ReviewVerdict, reasons: &[String]) -> String {
    let mut out = String::from("The reviewer rejected the work.\n");
    for r in reasons {
        out.push_str(&format!("- {r}\n"));
    }
    for f in &verdict.findings {
        let place = match (f.file.is_empty(), f.line) {
            (true, _) => String::new(),
            (false, 0) => format!(" {}", f.file),
            (false, line) => format!(" {}:{line}", f.file),
        };
        out.push_str(&format!("- [{}]{place}: {}\n", f.severity, f.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            summary: "s".into(),
            steps: vec!["a".into()],
            acceptance_criteria: vec!["multiply(3, 4) == 12".into(), "python3 -m unittest passes".into()],
            files: vec!["calc.py".into()],
        }
    }

    const APPROVE: &str = r#"{"approved": true, "findings": [{"severity": "info", "file": "calc.py", "line": 5, "message": "fine"}],
        "criteria": [{"criterion": "multiply(3, 4) == 12", "met": true, "evidence": "test_multiply asserts it"},
                     {"criterion": "python3 -m unittest passes", "met": true, "evidence": "the diff adds a passing test"}]}"#;

    #[test]
    fn a_complete_approval_approves() {
        let v = parse_verdict(&format!("Verdict:\n```json\n{APPROVE}\n```")).unwrap();
        assert!(v.approved);
        assert!(rejection_reasons(&v, &plan()).is_empty());
    }

    #[test]
    fn approval_needs_every_criterion_met_with_evidence() {
        let missing =
            r#"{"approved": true, "criteria": [{"criterion": "multiply(3, 4) == 12", "met": true, "evidence": "x"}]}"#;
        let reasons = rejection_reasons(&parse_verdict(missing).unwrap(), &plan());
        assert_eq!(reasons, ["criterion not checked: python3 -m unittest passes"]);
        let no_evidence = APPROVE.replace("the diff adds a passing test", "");
        let reasons = rejection_reasons(&parse_verdict(&no_evidence).unwrap(), &plan());
        assert_eq!(
            reasons,
            ["criterion claimed met without evidence: python3 -m unittest passes"]
        );
        let contradiction = APPROVE.replace("\"info\"", "\"error\"");
        assert_eq!(
            rejection_reasons(&parse_verdict(&contradiction).unwrap(), &plan()).len(),
            1
        );
    }

    #[test]
    fn a_rejection_lists_its_findings_for_the_redo() {
        let v = parse_verdict(r#"{"approved": false, "findings": [{"severity": "ERROR", "file": "calc.py", "line": 6, "message": "multiply adds"}], "criteria": []}"#).unwrap();
        let reasons = rejection_reasons(&v, &plan());
        assert!(reasons.contains(&"the reviewer did not approve".to_string()));
        let text = findings_for_redo(&v, &reasons);
        assert!(text.contains("- [error] calc.py:6: multiply adds"), "{text}");
    }

    #[test]
    fn malformed_verdicts_are_errors_not_approvals() {
        for (answer, why) in [
            ("LGTM!", "no JSON object"),
            (r#"{"findings": []}"#, "missing field `approved`"),
            (r#"{"approved": "yes"}"#, "does not parse"),
            (
                r#"{"approved": true, "findings": [{"severity": "critical", "message": "x"}]}"#,
                "\"critical\" is not one of",
            ),
            (r#"{"approved": true, "verdict": "ok"}"#, "unknown field `verdict`"),
        ] {
            let err = parse_verdict(answer).expect_err(answer);
            assert!(err.contains(why), "{answer}: {err}");
        }
    }

    const DIFF: &str = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,6 @@\n def add(a, b):\n     return a + b\n+\n+\n+def multiply(a, b):\n+    return a * b\ndiff --git a/test_multiply.py b/test_multiply.py\n--- /dev/null\n+++ b/test_multiply.py\n@@ -0,0 +1,3 @@\n+from calc import multiply\n+def test_multiply():\n+    assert multiply(3, 4) == 12\n";

    fn two_criteria() -> Plan {
        Plan {
            summary: "s".into(),
            acceptance_criteria: vec!["multiply(3, 4) == 12".into(), "multiply is defined in calc.py".into()],
            ..Plan::default()
        }
    }

    fn claims(list: &[(u32, &str, bool, &str)]) -> ReviewVerdict {
        ReviewVerdict {
            approved: true,
            findings: vec![],
            criteria: list
                .iter()
                .map(|(index, criterion, met, evidence)| CriterionCheck {
                    index: *index,
                    criterion: criterion.to_string(),
                    met: *met,
                    evidence: evidence.to_string(),
                    evidence_problem: String::new(),
                })
                .collect(),
        }
    }

    fn problems(v: ReviewVerdict) -> Vec<String> {
        let checked = check_evidence(v, &two_criteria(), &AddedLines::from_diff(DIFF));
        rejection_reasons(&checked, &two_criteria())
    }

    #[test]
    fn evidence_that_names_or_quotes_the_diff_approves() {
        let v = claims(&[
            (1, "", true, "test_multiply.py:3 asserts it"),
            (2, "", true, "`def multiply(a, b):` in calc.py"),
        ]);
        assert_eq!(problems(v), Vec::<String>::new());
        // A line range that touches an added line counts too; criteria may be named by text.
        let v = claims(&[
            (0, "multiply(3, 4) == 12", true, "calc.py:1-5"),
            (0, "multiply is defined in calc.py", true, "calc.py:5"),
        ]);
        assert_eq!(problems(v), Vec::<String>::new());
    }

    #[test]
    fn tricky_verdicts_do_not_approve() {
        // Vague evidence: no file:line of the diff, nothing quoted.
        let vague = problems(claims(&[
            (1, "", true, "the tests cover it"),
            (2, "", true, "calc.py:5"),
        ]));
        assert!(
            vague
                .iter()
                .any(|r| r.contains("criterion not met: multiply(3, 4) == 12") && r.contains("names no file:line")),
            "{vague:?}"
        );
        // Evidence pointing at a line the diff does not add.
        let elsewhere = problems(claims(&[(1, "", true, "calc.py:1"), (2, "", true, "calc.py:5")]));
        assert!(
            elsewhere
                .iter()
                .any(|r| r.contains("calc.py:1, which the diff does not add")),
            "{elsewhere:?}"
        );
        // A quote the diff does not contain.
        let invented = problems(claims(&[
            (1, "", true, "`assert multiply(3, 4) == 13`"),
            (2, "", true, "calc.py:5"),
        ]));
        assert!(
            invented.iter().any(|r| r.contains("no line the diff adds contains")),
            "{invented:?}"
        );
        // One finding claiming several criteria: the same evidence for both.
        let shared = problems(claims(&[
            (1, "", true, "test_multiply.py:3"),
            (2, "", true, "test_multiply.py:3"),
        ]));
        assert!(
            shared.iter().any(|r| r.contains("the same evidence as criterion 1")),
            "{shared:?}"
        );
        // One sentence standing for both criteria by text matches neither.
        let lumped = problems(claims(&[(
            0,
            "multiply(3, 4) == 12 and multiply is defined in calc.py",
            true,
            "calc.py:5",
        )]));
        assert_eq!(
            lumped
                .iter()
                .filter(|r| r.contains("does not check this criterion"))
                .count(),
            2,
            "{lumped:?}"
        );
        // A missing criterion.
        let missing = problems(claims(&[(1, "", true, "test_multiply.py:3")]));
        assert!(
            missing
                .iter()
                .any(|r| r.contains("multiply is defined in calc.py (the verdict does not check this criterion)")),
            "{missing:?}"
        );
    }
}
