//! The `pr` policy's texts and rules: a pull request's title and body (the plan, each acceptance
//! criterion with its evidence, every gate's verdict, usage, `Closes #N`), which bead a branch
//! belongs to, how a review asking for changes becomes the next attempt's findings, and how
//! often a waiting run asks the forge.

use std::time::Duration;

use crate::config::MAX_POLL;
use crate::proto::{AgentUsage, Bead, GateName, GateResult, Plan, ReviewVerdict};
use crate::text::excerpt;

/// The label a bead taken from a forge issue carries (`forge:#12`): its pull request closes it.
pub const FORGE_ISSUE_LABEL: &str = "forge:#";

/// Longest body CHUM writes; GitHub refuses bodies over 65,536 characters.
const MAX_BODY_CHARS: usize = 60_000;

/// The forge issue a bead came from, if it did.
pub fn forge_issue(bead: &Bead) -> Option<u64> {
    bead.labels
        .iter()
        .find_map(|l| l.strip_prefix(FORGE_ISSUE_LABEL))
        .and_then(|n| n.parse().ok())
        .or_else(|| {
            use crate::config::ForgeKind::{GitHub, GitLab};
            [GitHub, GitLab]
                .into_iter()
                .find_map(|forge| crate::forge_intake::issue_of(forge, &bead.id))
        })
}

/// The bead a `chum/<bead>` branch holds the work of (not a candidate's `chum/<bead>-c<k>`,
/// which is never pushed).
pub fn bead_of_branch(branch: &str) -> Option<&str> {
    let bead = branch
        .strip_prefix("refs/heads/")
        .unwrap_or(branch)
        .strip_prefix("chum/")?;
    crate::ids::check_bead_id(bead).ok().map(|_| bead)
}

pub fn title(bead: &Bead) -> String {
    excerpt(&format!("{} ({})", bead.title.trim(), bead.id), 250)
}

/// What the body is made of.
pub struct BodyParts<'a> {
    pub bead: &'a Bead,
    pub plan: &'a Plan,
    pub approved_by: &'a str,
    /// The verdict of the review the work passed, when the project reviews.
    pub verdict: Option<&'a ReviewVerdict>,
    /// Every gate result of the run so far.
    pub gates: &'a [GateResult],
    pub usage: Option<&'a AgentUsage>,
    pub workflow_id: &'a str,
    /// The result waits at CHUM's result gate (`approve_result`): the body says how to decide.
    pub awaiting_result: bool,
}

/// The pull request's body, in Markdown.
pub fn body(parts: &BodyParts<'_>) -> String {
    let mut out = String::new();
    let plan = parts.plan;
    out.push_str(&format!("{}\n\n", plan.summary.trim()));
    if let Some(issue) = forge_issue(parts.bead) {
        out.push_str(&format!("Closes #{issue}\n\n"));
    }
    out.push_str(&format!(
        "Bead `{}`, plan approved by {}; CHUM run `{}`.\n\n",
        parts.bead.id,
        if parts.approved_by.is_empty() {
            "a person"
        } else {
            parts.approved_by
        },
        parts.workflow_id
    ));
    if parts.awaiting_result {
        out.push_str(&format!(
            "**This result waits for a person's approval in CHUM** (the project's result gate): `chum show {id} --diff`, then `chum approve {id}`, or `chum reject {id} --feedback \"...\"` to send it back for another attempt, which updates this pull request.\n\n",
            id = parts.bead.id
        ));
    }
    if !plan.steps.is_empty() {
        out.push_str("### Plan\n\n");
        for (i, step) in plan.steps.iter().enumerate() {
            out.push_str(&format!("{}. {}\n", i + 1, one_line(step)));
        }
        out.push('\n');
    }
    out.push_str("### Acceptance criteria\n\n");
    for (i, criterion) in plan.acceptance_criteria.iter().enumerate() {
        let check = parts
            .verdict
            .and_then(|v| v.criteria.iter().find(|c| c.index == i as u32 + 1));
        match check {
            Some(c) if c.met => out.push_str(&format!(
                "- [x] {}\n  evidence: {}\n",
                one_line(criterion),
                one_line(&c.evidence)
            )),
            Some(c) => out.push_str(&format!(
                "- [ ] {} (not met: {})\n",
                one_line(criterion),
                one_line(&c.evidence_problem)
            )),
            None => out.push_str(&format!("- [ ] {} (not reviewed)\n", one_line(criterion))),
        }
    }
    out.push_str("\n### Gates\n\n| gate | attempt | verdict | detail |\n|---|---|---|---|\n");
    for gate in parts.gates.iter().filter(|g| g.gate() != GateName::PullRequest) {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            gate.gate(),
            gate.round,
            if gate.passed { "passed" } else { "failed" },
            excerpt(&one_line(&gate.excerpt), 200).replace('|', "\\|")
        ));
    }
    if let Some(usage) = parts.usage {
        out.push_str(&format!(
            "\n### Usage\n\n{} input tokens, {} output tokens, ${:.2}\n",
            usage.input_tokens, usage.output_tokens, usage.cost_usd
        ));
    }
    out.push_str("\n---\nOpened by CHUM. Request changes in a review to send the work back for another attempt; merge or close this pull request to end the run.\n");
    excerpt(&out, MAX_BODY_CHARS)
}

/// A review's comments, one as the forge gives them.
pub struct ReviewComment<'a> {
    pub path: &'a str,
    pub line: Option<u64>,
    pub body: &'a str,
}

/// The next attempt's findings from a review that requested changes.
pub fn changes_requested_feedback(reviewer: &str, review: &str, comments: &[ReviewComment<'_>]) -> String {
    let mut out = format!("{reviewer} requested changes on the pull request.\n");
    if !review.trim().is_empty() {
        out.push_str(&format!("- {}\n", review.trim()));
    }
    for c in comments {
        let place = match c.line {
            Some(line) => format!("{}:{line}", c.path),
            None => c.path.to_string(),
        };
        out.push_str(&format!("- {place}: {}\n", c.body.trim()));
    }
    excerpt(&out, 4000)
}

/// How long a waiting run sleeps before asking the forge again: `poll` at first, doubling up to
/// [`MAX_POLL`]; longer when the forge asked for it (its rate limit).
pub fn next_poll(previous: Option<Duration>, poll: Duration, forge_asked: Duration) -> Duration {
    let backoff = match previous {
        None => poll,
        Some(p) => (p * 2).min(MAX_POLL.max(poll)),
    };
    backoff.max(forge_asked)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CriterionCheck;

    fn bead() -> Bead {
        Bead {
            id: "tk-7".into(),
            title: "Add multiply".into(),
            labels: vec!["forge:#12".into()],
            ..Bead::default()
        }
    }

    fn plan() -> Plan {
        Plan {
            summary: "Add multiply to calc.py".into(),
            steps: vec!["write it".into(), "test it".into()],
            acceptance_criteria: vec!["multiply(3, 4) == 12".into(), "tests pass".into()],
            files: vec!["calc.py".into()],
        }
    }

    #[test]
    fn the_body_carries_the_plan_each_criterion_with_its_evidence_the_gates_and_closes_the_issue() {
        let verdict = ReviewVerdict {
            approved: true,
            criteria: vec![CriterionCheck {
                index: 1,
                met: true,
                evidence: "calc.py:7 returns a * b".into(),
                ..CriterionCheck::default()
            }],
            ..ReviewVerdict::default()
        };
        let gates = vec![GateResult {
            gate: GateName::Dod as i32,
            round: 1,
            passed: true,
            excerpt: "2 commands | passed".into(),
            ..GateResult::default()
        }];
        let bead = bead();
        let plan = plan();
        let parts = BodyParts {
            bead: &bead,
            plan: &plan,
            approved_by: "alice",
            verdict: Some(&verdict),
            gates: &gates,
            usage: Some(&AgentUsage {
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: 0.5,
            }),
            workflow_id: "shark-demo-tk-7",
            awaiting_result: false,
        };
        let text = body(&parts);
        assert!(text.starts_with("Add multiply to calc.py\n\nCloses #12\n"), "{text}");
        assert!(
            text.contains("- [x] multiply(3, 4) == 12\n  evidence: calc.py:7 returns a * b"),
            "{text}"
        );
        assert!(text.contains("- [ ] tests pass (not reviewed)"), "{text}");
        assert!(text.contains("| dod | 1 | passed | 2 commands \\| passed |"), "{text}");
        assert!(text.contains("$0.50"), "{text}");
        assert!(text.contains("approved by alice"), "{text}");
        assert!(!text.contains("waits for a person's approval"), "{text}");
        // At the result gate, the body says how to decide.
        let waiting = body(&BodyParts {
            awaiting_result: true,
            ..parts
        });
        assert!(waiting.contains("`chum approve tk-7`"), "{waiting}");
    }

    #[test]
    fn only_a_beads_own_branch_names_its_bead() {
        assert_eq!(bead_of_branch("chum/tk-7"), Some("tk-7"));
        assert_eq!(bead_of_branch("refs/heads/chum/tk-7"), Some("tk-7"));
        assert_eq!(bead_of_branch("main"), None);
        assert_eq!(bead_of_branch("chum/../x"), None);
        assert_eq!(bead_of_branch("feature/tk-7"), None);
    }

    #[test]
    fn polling_backs_off_to_the_ceiling_and_waits_longer_when_the_forge_asks() {
        let poll = Duration::from_secs(60);
        assert_eq!(next_poll(None, poll, Duration::ZERO), poll);
        assert_eq!(next_poll(Some(poll), poll, Duration::ZERO), Duration::from_secs(120));
        assert_eq!(next_poll(Some(MAX_POLL), poll, Duration::ZERO), MAX_POLL);
        assert_eq!(
            next_poll(None, poll, Duration::from_secs(3600)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn a_review_asking_for_changes_becomes_findings_with_places() {
        let text = changes_requested_feedback(
            "bob",
            "Please handle negatives",
            &[ReviewComment {
                path: "calc.py",
                line: Some(7),
                body: "negative numbers?",
            }],
        );
        assert_eq!(
            text,
            "bob requested changes on the pull request.\n- Please handle negatives\n- calc.py:7: negative numbers?"
        );
        assert_eq!(forge_issue(&bead()), Some(12));
    }
}
