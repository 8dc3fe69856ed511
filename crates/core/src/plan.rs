//! Reading a plan out of an agent's answer, and deciding whether it is good enough to show a person.

use serde::Deserialize;

use crate::proto::Plan;

/// Finds the JSON object in an agent's answer: the whole text, a fenced ```json block, or the
/// outermost `{...}`. Agents wrap JSON in prose more often than not.
pub fn extract_json_object(text: &str) -> Option<&str> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') && trimmed.ends_with('}') {
        return Some(trimmed);
    }
    for fence in ["```json", "```JSON", "```"] {
        if let Some(start) = trimmed.find(fence) {
            let body = &trimmed[start + fence.len()..];
            if let Some(end) = body.find("```") {
                let inner = body[..end].trim();
                if inner.starts_with('{') && inner.ends_with('}') {
                    return Some(inner);
                }
            }
        }
    }
    let start = trimmed.find('{')?;
    let end = trimmed.rfind('}')?;
    (end > start).then(|| &trimmed[start..=end])
}

/// The plan shape agents are asked for; lenient about extra keys, strict about types.
#[derive(Debug, Deserialize)]
struct PlanAnswer {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    steps: Vec<String>,
    #[serde(default)]
    acceptance_criteria: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
}

/// Parses a planner's answer. The error says what was wrong, for the next planning round.
pub fn parse_plan(answer: &str) -> Result<Plan, String> {
    let json = extract_json_object(answer).ok_or_else(|| {
        format!(
            "the answer contains no JSON object; answer with one JSON object {{\"summary\", \"steps\", \"acceptance_criteria\", \"files\"}} (got: {})",
            crate::text::excerpt(answer, 200)
        )
    })?;
    let parsed: PlanAnswer = serde_json::from_str(json).map_err(|e| format!("the plan JSON does not parse: {e}"))?;
    Ok(Plan {
        summary: parsed.summary.trim().to_string(),
        steps: clean(parsed.steps),
        acceptance_criteria: clean(parsed.acceptance_criteria),
        files: clean(parsed.files),
    })
}

fn clean(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Why a plan cannot go to the human gate. Each problem is one sentence the planner can act on.
pub fn validate_plan(plan: &Plan) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if plan.summary.is_empty() {
        problems.push("`summary` is empty: say in one sentence what the change does".to_string());
    }
    if plan.steps.is_empty() {
        problems.push("`steps` is empty: list the concrete steps".to_string());
    }
    if plan.acceptance_criteria.is_empty() {
        problems.push(
            "`acceptance_criteria` is empty: give at least one checkable criterion; no criteria, no execution"
                .to_string(),
        );
    }
    if plan.files.is_empty() {
        problems.push("`files` is empty: list the repository paths the change touches".to_string());
    }
    for file in &plan.files {
        if file.starts_with('/') || file.split(['/', '\\']).any(|part| part == "..") {
            problems.push(format!(
                "file {file:?} is outside the repository: use a relative path inside it"
            ));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"summary": "Add slugify", "steps": ["write it", "test it"],
        "acceptance_criteria": ["slugify('A B') == 'a-b'"], "files": ["textkit/slug.py"]}"#;

    #[test]
    fn parses_bare_fenced_and_embedded_json() {
        for answer in [
            GOOD.to_string(),
            format!("Here is the plan:\n```json\n{GOOD}\n```\nDone."),
            format!("Plan follows {GOOD} hope that helps"),
        ] {
            let plan = parse_plan(&answer).unwrap();
            assert_eq!(plan.summary, "Add slugify");
            assert_eq!(plan.files, vec!["textkit/slug.py"]);
            assert!(validate_plan(&plan).is_ok());
        }
    }

    #[test]
    fn garbage_answers_give_an_actionable_error() {
        let err = parse_plan("I refuse to plan today.").unwrap_err();
        assert!(err.contains("no JSON object"), "{err}");
        let err = parse_plan(r#"{"summary": 3}"#).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
        let err = parse_plan(r#"{"steps": "one"}"#).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }

    #[test]
    fn a_plan_without_criteria_is_not_executable() {
        let plan =
            parse_plan(r#"{"summary": "x", "steps": ["a"], "acceptance_criteria": [" "], "files": ["a.py"]}"#).unwrap();
        let problems = validate_plan(&plan).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("no criteria, no execution"));
    }

    #[test]
    fn empty_plans_and_escaping_paths_list_every_problem() {
        let problems = validate_plan(&Plan::default()).unwrap_err();
        assert_eq!(problems.len(), 4);
        let plan = Plan {
            summary: "x".into(),
            steps: vec!["a".into()],
            acceptance_criteria: vec!["b".into()],
            files: vec!["../etc/passwd".into(), "/abs".into(), "ok/file.rs".into()],
        };
        assert_eq!(validate_plan(&plan).unwrap_err().len(), 2);
    }
}
