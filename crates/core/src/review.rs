//! Cross-model review: reading a reviewer's verdict and deciding whether it approves.
//!
//! Fail-closed: a verdict approves only when it says so *and* confirms every acceptance criterion
//! of the plan with evidence. Anything unreadable is an error the caller treats as a rejection.

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
            criterion: c.criterion.trim().to_string(),
            met: c.met,
            evidence: c.evidence.trim().to_string(),
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

/// Why a verdict does not approve the work; empty when it does. Every plan criterion must be
/// confirmed met with evidence, and an approval with error findings is a contradiction, not a pass.
pub fn rejection_reasons(verdict: &ReviewVerdict, plan: &Plan) -> Vec<String> {
    let mut reasons = Vec::new();
    if !verdict.approved {
        reasons.push("the reviewer did not approve".to_string());
    }
    for criterion in &plan.acceptance_criteria {
        let wanted = normalize(criterion);
        let check = verdict.criteria.iter().find(|c| {
            let got = normalize(&c.criterion);
            !got.is_empty() && (got == wanted || got.contains(&wanted) || wanted.contains(&got))
        });
        match check {
            None => reasons.push(format!("criterion not checked: {criterion}")),
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
}
