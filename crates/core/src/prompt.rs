//! The prompts CHUM gives its agents. Pure functions of the bead, the plan and the feedback, so
//! the recorded prompt of any run can be reproduced and tests can assert on what reached an agent.

use std::fmt::Write;

use crate::proto::{Bead, Plan};

fn bead_section(out: &mut String, bead: &Bead) {
    let _ = writeln!(out, "## Work item {}: {}", bead.id, bead.title);
    for (label, text) in [
        ("Description", &bead.description),
        ("Design", &bead.design),
        ("Acceptance criteria from the backlog", &bead.acceptance_criteria),
        ("Notes", &bead.notes),
    ] {
        if !text.trim().is_empty() {
            let _ = writeln!(out, "\n### {label}\n{}", text.trim());
        }
    }
}

/// The lessons section (see `lesson::lessons_section`), when there are lessons.
fn lessons_part(out: &mut String, lessons: &str) {
    if !lessons.trim().is_empty() {
        let _ = write!(out, "\n{}", lessons.trim_end());
        out.push('\n');
    }
}

/// What an agent is given besides the work itself: lessons from earlier runs and the repo map.
#[derive(Debug, Clone, Copy, Default)]
pub struct Background<'a> {
    /// The lessons section (see `lesson::lessons_section`); empty: none.
    pub lessons: &'a str,
    /// The ranked repo map (see `repo_map`); empty: none (its budget is 0, or nothing parsed).
    pub repo_map: &'a str,
}

/// The repo map section, when there is a map.
fn repo_map_part(out: &mut String, repo_map: &str) {
    if !repo_map.trim().is_empty() {
        let _ = write!(
            out,
            "\n## Repository map\nThe definitions most relevant to this work, ranked: each file, then `line: signature` \
             of its definitions (bodies left out). Read the files themselves for more.\n{}\n",
            repo_map.trim_end()
        );
    }
}

fn list(out: &mut String, title: &str, items: &[String]) {
    let _ = writeln!(out, "\n### {title}");
    for item in items {
        let _ = writeln!(out, "- {item}");
    }
}

/// The planner's prompt for one round. `feedback` is the previous round's validation error or a
/// person's rejection; it is empty on the first round.
pub fn planner_prompt(bead: &Bead, round: u32, feedback: &str, background: &Background<'_>) -> String {
    let mut out = String::new();
    out.push_str(
        "You are the planner in CHUM, an autonomous code factory. Write a plan for the work item \
         below, for the repository in the current directory. Do not change any files.\n\n",
    );
    bead_section(&mut out, bead);
    lessons_part(&mut out, background.lessons);
    repo_map_part(&mut out, background.repo_map);
    if !feedback.trim().is_empty() {
        let _ = writeln!(
            out,
            "\n## Feedback on the previous plan (this is planning round {round})\n{}",
            feedback.trim()
        );
    }
    out.push_str(
        "\n## Answer format\nAnswer with exactly one JSON object and nothing else:\n\
         {\"summary\": \"one sentence\", \"steps\": [\"...\"], \"acceptance_criteria\": [\"...\"], \
         \"files\": [\"relative/path\"]}\n\
         Every acceptance criterion must be checkable by the project's tests or by reading the diff. \
         A plan without acceptance criteria is not executed.\n",
    );
    out
}

/// The executor's prompt. `feedback` is what the gates said: on a redo (`handoff` > 0) about the
/// work in the directory, on a new attempt about the previous attempt (which is gone).
pub fn executor_prompt(
    bead: &Bead,
    plan: &Plan,
    attempt: u32,
    handoff: u32,
    dod: &[String],
    feedback: &str,
    background: &Background<'_>,
) -> String {
    let mut out = String::new();
    out.push_str(
        "You are the executor in CHUM, an autonomous code factory. Implement the approved plan \
         below in the current directory, a git worktree of the project. Change only what the plan \
         needs. Do not commit: CHUM commits once the checks pass.\n\n",
    );
    bead_section(&mut out, bead);
    let _ = writeln!(out, "\n## Approved plan\n{}", plan.summary);
    list(&mut out, "Steps", &plan.steps);
    list(&mut out, "Acceptance criteria", &plan.acceptance_criteria);
    list(&mut out, "Files", &plan.files);
    if !dod.is_empty() {
        list(&mut out, "Definition of done: these commands must pass", dod);
    }
    lessons_part(&mut out, background.lessons);
    repo_map_part(&mut out, background.repo_map);
    if handoff > 0 && !feedback.trim().is_empty() {
        let _ = writeln!(
            out,
            "\n## Redo {handoff} of attempt {attempt}: the work so far is in this directory and was sent back; fix this\n{}",
            feedback.trim()
        );
    } else if !feedback.trim().is_empty() {
        let _ = writeln!(
            out,
            "\n## The previous attempt failed (this is attempt {attempt}, starting from a clean checkout); avoid this\n{}",
            feedback.trim()
        );
    }
    out.push_str("\nWhen you are done, answer with a short summary of what you changed.\n");
    out
}

/// What the reviewer sees: the plan, its criteria, the gates so far and the real diff.
pub struct ReviewContext<'a> {
    pub bead: &'a Bead,
    pub plan: &'a Plan,
    pub diff: &'a str,
    /// Set when the diff was cut to fit: says how much is missing and where the rest is.
    pub trimmed_note: &'a str,
    pub gates_so_far: &'a str,
    /// Why the previous answer could not be used, when this is a retry.
    pub retry_error: &'a str,
    /// The ranked repo map around the plan's files; empty: none.
    pub repo_map: &'a str,
}

/// The reviewer's prompt. The reviewer is a different model from the one that wrote the change.
pub fn reviewer_prompt(c: &ReviewContext<'_>) -> String {
    let mut out = String::new();
    out.push_str(
        "You are the reviewer in CHUM, an autonomous code factory. Another model implemented the \
         approved plan below; review its change against the plan and its acceptance criteria. Do \
         not change any files.\n\n",
    );
    bead_section(&mut out, c.bead);
    let _ = writeln!(out, "\n## Approved plan\n{}", c.plan.summary);
    list(&mut out, "Steps", &c.plan.steps);
    let _ = writeln!(out, "\n### Acceptance criteria");
    for (i, criterion) in c.plan.acceptance_criteria.iter().enumerate() {
        let _ = writeln!(out, "{}. {criterion}", i + 1);
    }
    list(&mut out, "Files", &c.plan.files);
    repo_map_part(&mut out, c.repo_map);
    if !c.gates_so_far.trim().is_empty() {
        let _ = writeln!(out, "\n## Checks so far in this attempt\n{}", c.gates_so_far.trim());
    }
    let _ = writeln!(
        out,
        "\n## The change (git diff against the base branch)\n```diff\n{}\n```",
        c.diff.trim_end()
    );
    if !c.trimmed_note.is_empty() {
        let _ = writeln!(out, "{}", c.trimmed_note);
    }
    if !c.retry_error.trim().is_empty() {
        let _ = writeln!(
            out,
            "\n## Your previous answer could not be used\n{}",
            c.retry_error.trim()
        );
    }
    out.push_str(
        "\n## Answer format\nAnswer with exactly one JSON object and nothing else:\n\
         {\"approved\": true, \"findings\": [{\"severity\": \"error|warning|info\", \"file\": \"path\", \
         \"line\": 1, \"message\": \"...\"}], \"criteria\": [{\"index\": 1, \"criterion\": \"<the criterion>\", \
         \"met\": true, \"evidence\": \"calc.py:6\"}]}\n\
         List every acceptance criterion by its number, each with evidence of its own: a file:line of a \
         line the diff adds or changes (e.g. calc.py:6 or calc.py:6-9), or one of its added lines quoted \
         in backticks. Evidence is checked against the diff; a criterion without evidence that checks out \
         counts as not met. Approve only when every criterion is met. Report real problems as findings \
         with severity \"error\"; they are sent back to be fixed.\n",
    );
    out
}

/// The learner's prompt: the run's journal and the lessons the store already has on the subject.
pub fn learner_prompt(journal: &str, known: &str, max_lessons: usize) -> String {
    let mut out = String::new();
    out.push_str(
        "You are the learner in CHUM, an autonomous code factory. Extract lessons from the finished \
         run below: mistakes that were caught (and how), patterns that worked, rules worth enforcing. \
         Do not change any files.\n\n",
    );
    out.push_str(journal.trim_end());
    out.push('\n');
    if !known.trim().is_empty() {
        let _ = writeln!(
            out,
            "\n## Lessons already known (do not repeat them)\n{}",
            known.trim_end()
        );
    }
    let _ = write!(
        out,
        "\n## Answer format\nExtract lessons: answer with one JSON array of at most {max_lessons} lessons and nothing else:\n\
         [{{\"category\": \"pattern|antipattern|rule|insight\", \"summary\": \"one sentence\", \"detail\": \"why\", \
         \"file_paths\": [\"...\"], \"labels\": [\"...\"], \"bad_example\": \"code showing the mistake\", \
         \"good_example\": \"code avoiding it\", \"language\": \"python|rust|go|...\"}}]\n\
         For an antipattern or rule, give a short bad_example that shows the mistake on its first line and a \
         good_example that avoids it: CHUM turns them into a Semgrep rule and tests it on them. Answer [] when \
         there is nothing new to learn.\n"
    );
    out
}

/// The prompt asking for a Semgrep rule that catches a lesson's mistake.
pub fn rule_prompt(lesson: &crate::proto::Lesson, rule_id: &str, retry_error: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "You are the learner in CHUM, an autonomous code factory. Write one Semgrep rule that catches \
         the mistake in this lesson, so that it is stopped in milliseconds next time.\n\n\
         ## Lesson #{} ({})\n{}\n{}\n\n## Bad example (must match)\n```{lang}\n{}\n```\n\n\
         ## Good example (must not match)\n```{lang}\n{}\n```",
        lesson.id,
        lesson.category,
        lesson.summary,
        lesson.detail,
        lesson.bad_example.trim_end(),
        lesson.good_example.trim_end(),
        lang = lesson.language
    );
    if !retry_error.trim().is_empty() {
        let _ = writeln!(out, "\n## Your previous rule was refused\n{}", retry_error.trim());
    }
    let _ = write!(
        out,
        "\n## Answer format\nWrite one Semgrep rule: answer with the rule file in a ```yaml block, with exactly one rule whose id \
         is `{rule_id}`, `languages: [{}]`, a `severity`, a `message` that says what to do instead, and a pattern. \
         It must match the bad example, must not match the good one, and must not fire on correct code elsewhere.\n",
        lesson.language
    );
    out
}

/// The mutation vocabulary, shared by both groom prompts.
const MUTATION_FORMAT: &str = "Mutations (JSON objects, applied in order; each is validated first: ids must exist, \
no dependency cycles, priority 0-4, no duplicate titles, no closing of beads in progress):\n\
{\"op\": \"update_priority\", \"id\": \"<bead>\", \"priority\": 0-4}\n\
{\"op\": \"add_dependency\", \"id\": \"<bead>\", \"depends_on\": \"<bead>\", \"type\": \"blocks|related|parent-child|discovered-from\"}\n\
{\"op\": \"append_notes\", \"id\": \"<bead>\", \"notes\": \"...\"}\n\
{\"op\": \"create\", \"title\": \"...\", \"description\": \"...\", \"priority\": 0-4, \"issue_type\": \"task|bug|feature|chore\", \
\"dependencies\": [{\"depends_on\": \"<bead>\", \"type\": \"discovered-from\"}]}\n\
{\"op\": \"close\", \"id\": \"<bead>\", \"reason\": \"...\"} (only with a reason that cites evidence: a commit, a bead, a test)\n";

/// The TacticalGroom's prompt: one finished bead and the open backlog.
pub fn groomer_prompt(finished: &str, backlog: &str, lessons: &str, repo_map: &str, max: u32) -> String {
    let mut out = String::new();
    out.push_str(
        "You are the groomer in CHUM, an autonomous code factory. A bead just finished. Keep the backlog \
         true: follow-up work it revealed, priorities it changed, dependencies it exposed, beads it made \
         obsolete. Change nothing for the sake of it. Do not change any files.\n\n## The finished bead\n",
    );
    out.push_str(finished.trim_end());
    let _ = write!(out, "\n\n## The backlog\n{}\n", backlog.trim_end());
    repo_map_part(&mut out, repo_map);
    if !lessons.trim().is_empty() {
        let _ = write!(out, "\n## Recent lessons\n{}\n", lessons.trim_end());
    }
    let _ = write!(
        out,
        "\n## Answer format\nAnswer with one JSON array of at most {max} mutations and nothing else; [] when \
         the backlog is right as it is.\n{MUTATION_FORMAT}"
    );
    out
}

/// The StrategicGroom's prompt: the whole backlog, the repository's map (ranked for the whole
/// repository: what the most code depends on) and recent lessons.
pub fn strategist_prompt(project: &str, backlog: &str, repo_map: &str, lessons: &str, max: u32) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "You are the strategic groomer in CHUM, an autonomous code factory, for project {project}. This is \
         the periodic strategic review of its backlog: find the top priorities, the risks, the work that is \
         missing or stale, and write a briefing for the team. Do not change any files.\n\n\
         ## The backlog\n{}\n",
        backlog.trim_end(),
    );
    repo_map_part(&mut out, repo_map);
    if !lessons.trim().is_empty() {
        let _ = write!(out, "\n## Recent lessons\n{}\n", lessons.trim_end());
    }
    let _ = write!(
        out,
        "\n## Answer format\nAnswer with one JSON object and nothing else:\n\
         {{\"briefing\": \"Markdown with the sections: Top priorities, Risks, Lessons, Observations\", \
         \"mutations\": [at most {max} mutations]}}\n{MUTATION_FORMAT}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bead() -> Bead {
        Bead {
            id: "tk-1".into(),
            title: "Add slugify".into(),
            description: "Turn titles into URL slugs".into(),
            ..Bead::default()
        }
    }

    #[test]
    fn planner_prompt_carries_the_bead_and_the_feedback() {
        let first = planner_prompt(&bead(), 1, "", &Background::default());
        assert!(first.contains("## Work item tk-1: Add slugify"));
        assert!(first.contains("Turn titles into URL slugs"));
        assert!(!first.contains("Feedback"));
        let second = planner_prompt(
            &bead(),
            2,
            "also handle unicode",
            &Background {
                lessons: "## Lessons from earlier work\n- [rule] x",
                repo_map: "textkit/slug.py:\n  3: def slugify(title: str) -> str\n",
            },
        );
        assert!(second.contains("planning round 2"));
        assert!(second.contains("also handle unicode"));
        assert!(second.contains("## Lessons from earlier work\n- [rule] x"));
        assert!(!first.contains("## Repository map"), "no map, no section");
        assert!(
            second.contains("## Repository map\n")
                && second.contains("textkit/slug.py:\n  3: def slugify(title: str) -> str\n"),
            "{second}"
        );
    }

    #[test]
    fn executor_prompt_carries_plan_dod_and_previous_failure() {
        let plan = Plan {
            summary: "Add slugify()".into(),
            steps: vec!["write it".into()],
            acceptance_criteria: vec!["tests pass".into()],
            files: vec!["textkit/slug.py".into()],
        };
        let p = executor_prompt(
            &bead(),
            &plan,
            2,
            0,
            &["python3 -m unittest".into()],
            "AssertionError: 'a--b' != 'a-b'",
            &Background {
                lessons: "",
                repo_map: "textkit/slug.py:\n  3: def slugify(title)",
            },
        );
        for needle in [
            "Add slugify()",
            "- write it",
            "- tests pass",
            "- textkit/slug.py",
            "- python3 -m unittest",
            "attempt 2",
            "'a--b' != 'a-b'",
            "## Repository map",
            "  3: def slugify(title)",
        ] {
            assert!(p.contains(needle), "missing {needle:?} in\n{p}");
        }
        let redo = executor_prompt(
            &bead(),
            &plan,
            1,
            2,
            &[],
            "- [error] slug.py:3: keeps repeated dashes",
            &Background::default(),
        );
        assert!(
            redo.contains("Redo 2 of attempt 1") && redo.contains("keeps repeated dashes"),
            "{redo}"
        );
    }

    #[test]
    fn reviewer_prompt_shows_plan_criteria_diff_and_retry_reason() {
        let plan = Plan {
            summary: "Add slugify()".into(),
            acceptance_criteria: vec!["slugify('A B') == 'a-b'".into()],
            ..Plan::default()
        };
        let p = reviewer_prompt(&ReviewContext {
            bead: &bead(),
            plan: &plan,
            diff: "+def slugify(t):",
            trimmed_note: "[diff trimmed: 10 of 90 KB shown]",
            gates_so_far: "semgrep: pass",
            retry_error: "the answer contains no JSON object",
            repo_map: "calc.py:\n  6: def slugify(t)",
        });
        for needle in [
            "1. slugify('A B') == 'a-b'",
            "+def slugify(t):",
            "[diff trimmed",
            "semgrep: pass",
            "could not be used",
            "\"criteria\"",
            "## Repository map\nThe definitions most relevant",
        ] {
            assert!(p.contains(needle), "missing {needle:?} in\n{p}");
        }
    }

    #[test]
    fn both_groomers_see_the_repo_map_when_there_is_one() {
        let map = "calc.py:\n  1: def add(a, b)";
        let tactical = groomer_prompt("tk-1: done", "- tk-2 open", "", map, 5);
        let strategic = strategist_prompt("demo", "- tk-2 open", map, "", 10);
        for prompt in [&tactical, &strategic] {
            assert!(
                prompt.contains("## Repository map") && prompt.contains("  1: def add(a, b)"),
                "{prompt}"
            );
        }
        assert!(!groomer_prompt("tk-1: done", "- tk-2 open", "", "", 5).contains("## Repository map"));
    }
}
