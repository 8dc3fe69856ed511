//! Lessons: what the learner's answer must look like, how duplicates are recognized, how lesson
//! search text becomes a safe FTS5 query, and how a lesson and its rule become a `semgrep --test`
//! fixture. Pure functions; the store and the semgrep runs are in the activities crate.

use serde::Deserialize;

use crate::proto::Lesson;

pub const CATEGORIES: [&str; 4] = ["pattern", "antipattern", "rule", "insight"];

/// The learner's answer for one lesson.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LessonAnswer {
    category: String,
    summary: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    file_paths: Vec<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    bad_example: String,
    #[serde(default)]
    good_example: String,
    #[serde(default)]
    language: String,
}

/// Finds the JSON array in an answer: the whole text, a fenced block, or the outermost `[...]`.
fn extract_json_array(text: &str) -> Option<&str> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') && trimmed.ends_with(']') {
        return Some(trimmed);
    }
    for fence in ["```json", "```"] {
        if let Some(start) = trimmed.find(fence) {
            let body = &trimmed[start + fence.len()..];
            if let Some(end) = body.find("```") {
                let inner = body[..end].trim();
                if inner.starts_with('[') && inner.ends_with(']') {
                    return Some(inner);
                }
            }
        }
    }
    let start = trimmed.find('[')?;
    let end = trimmed.rfind(']')?;
    (end > start).then(|| &trimmed[start..=end])
}

/// Parses and validates the learner's lessons (at most `max`). Only the lesson fields come back;
/// provenance is added by the caller.
pub fn parse_lessons(answer: &str, max: usize) -> Result<Vec<Lesson>, String> {
    let json = extract_json_array(answer).ok_or_else(|| {
        format!(
            "the answer contains no JSON array of lessons (got: {})",
            crate::text::excerpt(answer, 200)
        )
    })?;
    let parsed: Vec<LessonAnswer> =
        serde_json::from_str(json).map_err(|e| format!("the lessons JSON does not parse: {e}"))?;
    let mut lessons = Vec::new();
    for (i, l) in parsed.into_iter().take(max).enumerate() {
        let n = i + 1;
        let category = l.category.trim().to_ascii_lowercase();
        if !CATEGORIES.contains(&category.as_str()) {
            return Err(format!(
                "lesson {n}: category {:?} is not one of pattern, antipattern, rule, insight",
                l.category
            ));
        }
        if l.summary.trim().is_empty() {
            return Err(format!("lesson {n}: the summary is empty"));
        }
        let clean = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        lessons.push(Lesson {
            category,
            summary: l.summary.trim().to_string(),
            detail: l.detail.trim().to_string(),
            file_paths: clean(l.file_paths),
            labels: clean(l.labels),
            bad_example: l.bad_example.trim_end().to_string(),
            good_example: l.good_example.trim_end().to_string(),
            language: l.language.trim().to_ascii_lowercase(),
            ..Lesson::default()
        });
    }
    Ok(lessons)
}

/// Whether a lesson can become a Semgrep rule, and if not, why.
pub fn crystallizable(lesson: &Lesson) -> Result<(), String> {
    if lesson.category != "rule" && lesson.category != "antipattern" {
        return Err(format!("a {} lesson is not turned into a rule", lesson.category));
    }
    if lesson.bad_example.trim().is_empty() || lesson.good_example.trim().is_empty() {
        return Err("a rule needs both a bad and a good example".to_string());
    }
    if file_extension(&lesson.language).is_none() {
        return Err(format!(
            "language {:?} is not one CHUM writes rules for",
            lesson.language
        ));
    }
    Ok(())
}

/// A stable fingerprint of a lesson's content, so the exact same lesson is stored once (FNV-1a
/// over the normalized text: stable across Rust versions, unlike `DefaultHasher`).
pub fn fingerprint(lesson: &Lesson) -> String {
    let normalized = [&lesson.category, &lesson.summary, &lesson.detail, &lesson.bad_example]
        .iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase())
        .collect::<Vec<_>>()
        .join("\u{1f}");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalized.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A safe FTS5 query for free text: its words, quoted, OR-ed. `None` when there is no word to
/// search for (an empty query must not error). Quotes, dashes, `*`, `:` and the like cannot reach
/// the FTS syntax because only `[A-Za-z0-9_]` runs survive.
pub fn fts_query(text: &str) -> Option<String> {
    let words = search_words(text);
    (!words.is_empty()).then(|| {
        words
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" OR ")
    })
}

/// The words a lesson search looks for: lower-cased runs of ASCII letters, digits and `_` of two
/// characters or more, stop words left out, each once, at most 32. Nothing in them is query
/// syntax, for FTS5 or for Postgres' `to_tsquery`.
pub fn search_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let word = word.to_ascii_lowercase();
        if word.len() >= 2 && !words.contains(&word) && !STOP_WORDS.contains(&word.as_str()) {
            words.push(word);
        }
        if words.len() == 32 {
            break;
        }
    }
    words
}

const STOP_WORDS: [&str; 16] = [
    "the", "and", "for", "with", "that", "this", "from", "into", "are", "was", "not", "but", "you", "all", "its", "use",
];

/// How a lesson appears in a planner's or executor's prompt: what, why, and where it came from.
pub fn lessons_section(lessons: &[Lesson]) -> String {
    if lessons.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Lessons from earlier work in this project\n");
    for l in lessons {
        let commit = if l.commit.is_empty() {
            String::new()
        } else {
            format!(", commit {}", &l.commit[..l.commit.len().min(10)])
        };
        out.push_str(&format!(
            "- [{}] {} (lesson #{} from bead {}, run {}, attempt {}{commit})\n",
            l.category, l.summary, l.id, l.bead_id, l.workflow_id, l.attempt
        ));
        if !l.detail.is_empty() {
            out.push_str(&format!(
                "  {}\n",
                crate::text::excerpt(&l.detail, 400).replace('\n', "\n  ")
            ));
        }
        if !l.good_example.is_empty() {
            out.push_str(&format!(
                "  Prefer: {}\n",
                crate::text::excerpt(&l.good_example, 200).replace('\n', " ")
            ));
        }
    }
    out
}

/// The file extension for a language CHUM writes rules (and fixtures) for.
pub fn file_extension(language: &str) -> Option<&'static str> {
    Some(match language {
        "python" => "py",
        "rust" => "rs",
        "go" => "go",
        "javascript" => "js",
        "typescript" => "ts",
        "java" => "java",
        "ruby" => "rb",
        "bash" => "sh",
        "c" => "c",
        "cpp" => "cpp",
        _ => return None,
    })
}

fn comment_prefix(language: &str) -> &'static str {
    match language {
        "python" | "ruby" | "bash" => "#",
        _ => "//",
    }
}

/// The rule's id: `chum-<lesson id>`.
pub fn rule_id(lesson_id: u64) -> String {
    format!("chum-{lesson_id}")
}

/// The `semgrep --test` fixture for a lesson's rule: the bad example must match (`ruleid:`), the
/// good example must not (`ok:`). Returns the file extension and the content.
pub fn rule_fixture(lesson: &Lesson, rule_id: &str) -> Option<(&'static str, String)> {
    let ext = file_extension(&lesson.language)?;
    let c = comment_prefix(&lesson.language);
    Some((
        ext,
        format!(
            "{c} Fixture of {rule_id}, from lesson #{}: {}\n\n{c} ruleid: {rule_id}\n{}\n\n{c} ok: {rule_id}\n{}\n",
            lesson.id,
            lesson.summary.replace('\n', " "),
            lesson.bad_example.trim_end(),
            lesson.good_example.trim_end()
        ),
    ))
}

/// The rule with Semgrep `metadata` linking it to its lesson (inserted under the rule's `id`
/// line, at its indentation), unless the rule already has a `metadata` key of its own.
pub fn with_lesson_metadata(yaml: &str, lesson: &Lesson, rule_id: &str) -> String {
    if yaml.lines().any(|l| l.trim_start().starts_with("metadata:")) {
        return yaml.to_string();
    }
    let mut out = String::new();
    let mut done = false;
    for line in yaml.lines() {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim_start();
        if !done && trimmed.trim_start_matches("- ").trim() == format!("id: {rule_id}") {
            let indent = line.len() - trimmed.len() + if trimmed.starts_with("- ") { 2 } else { 0 };
            let pad = " ".repeat(indent);
            let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
            out.push_str(&format!(
                "{pad}metadata:\n{pad}  chum_lesson: {}\n{pad}  chum_bead: {}\n{pad}  chum_run: {}\n{pad}  chum_summary: {}\n",
                lesson.id,
                quote(&lesson.bead_id),
                quote(&lesson.workflow_id),
                quote(&lesson.summary)
            ));
            done = true;
        }
    }
    out
}

/// The YAML of a rule in the learner's answer: a fenced block or the text from `rules:` on.
pub fn extract_rule_yaml(answer: &str) -> Option<String> {
    for fence in ["```yaml", "```yml", "```"] {
        if let Some(start) = answer.find(fence) {
            let body = &answer[start + fence.len()..];
            if let Some(end) = body.find("```") {
                let inner = body[..end].trim_matches('\n');
                if inner.contains("rules:") {
                    return Some(format!("{}\n", inner.trim_end()));
                }
            }
        }
    }
    let start = answer.find("rules:")?;
    Some(format!("{}\n", answer[start..].trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"Lessons:
```json
[{"category": "antipattern", "summary": "str.split(\" \") keeps empty words", "detail": "Repeated spaces give empty strings.",
  "file_paths": ["textkit/slug.py"], "labels": ["python", " "], "bad_example": "words = title.split(\" \")",
  "good_example": "words = title.split()", "language": "Python"},
 {"category": "insight", "summary": "tests for separators catch it"}]
```"#;

    #[test]
    fn parses_and_cleans_the_learners_lessons() {
        let lessons = parse_lessons(ANSWER, 5).unwrap();
        assert_eq!(lessons.len(), 2);
        assert_eq!(lessons[0].language, "python");
        assert_eq!(lessons[0].labels, ["python"]);
        assert!(crystallizable(&lessons[0]).is_ok());
        assert!(crystallizable(&lessons[1]).unwrap_err().contains("insight"));
        assert_eq!(parse_lessons(ANSWER, 1).unwrap().len(), 1, "at most `max` lessons");
    }

    #[test]
    fn bad_lesson_answers_are_errors() {
        for (answer, why) in [
            ("nothing to learn", "no JSON array"),
            (r#"[{"category": "gossip", "summary": "x"}]"#, "not one of"),
            (r#"[{"category": "rule", "summary": " "}]"#, "summary is empty"),
            (
                r#"[{"category": "rule", "summary": "x", "mood": "bad"}]"#,
                "unknown field",
            ),
        ] {
            let err = parse_lessons(answer, 5).unwrap_err();
            assert!(err.contains(why), "{answer}: {err}");
        }
    }

    #[test]
    fn fingerprints_ignore_case_and_spacing_only() {
        let a = &parse_lessons(ANSWER, 5).unwrap()[0];
        let mut b = a.clone();
        b.summary = format!("  {}  ", b.summary.to_uppercase());
        assert_eq!(fingerprint(a), fingerprint(&b));
        b.summary.push_str(" really");
        assert_ne!(fingerprint(a), fingerprint(&b));
    }

    #[test]
    fn fts_queries_keep_only_words() {
        assert_eq!(
            fts_query("split(\" \") -- *wild*: \"quoted\" OR NOT").as_deref(),
            Some("\"split\" OR \"wild\" OR \"quoted\" OR \"or\"")
        );
        assert_eq!(fts_query(""), None);
        assert_eq!(fts_query("* : - \""), None);
    }

    #[test]
    fn a_fixture_marks_the_bad_and_good_examples() {
        let mut lesson = parse_lessons(ANSWER, 5).unwrap().remove(0);
        lesson.id = 7;
        let (ext, text) = rule_fixture(&lesson, "chum-7").unwrap();
        assert_eq!(ext, "py");
        assert!(
            text.contains("# ruleid: chum-7\nwords = title.split(\" \")\n"),
            "{text}"
        );
        assert!(text.contains("# ok: chum-7\nwords = title.split()\n"), "{text}");
    }

    #[test]
    fn rules_get_metadata_linking_their_lesson() {
        let mut lesson = parse_lessons(ANSWER, 5).unwrap().remove(0);
        lesson.id = 7;
        lesson.bead_id = "tk-1".into();
        let yaml = "rules:\n  - id: chum-7\n    languages: [python]\n    pattern: $S.split(\" \")\n";
        let with = with_lesson_metadata(yaml, &lesson, "chum-7");
        assert!(
            with.contains("  - id: chum-7\n    metadata:\n      chum_lesson: 7\n      chum_bead: \"tk-1\"\n"),
            "{with}"
        );
        let own = "rules:\n  - id: chum-7\n    metadata: {a: 1}\n";
        assert_eq!(with_lesson_metadata(own, &lesson, "chum-7"), own);
    }

    #[test]
    fn rule_yaml_is_found_fenced_or_bare() {
        let fenced = "Here:\n```yaml\nrules:\n  - id: chum-7\n```\nDone";
        assert_eq!(extract_rule_yaml(fenced).unwrap(), "rules:\n  - id: chum-7\n");
        assert_eq!(extract_rule_yaml("rules:\n  - id: x").unwrap(), "rules:\n  - id: x\n");
        assert!(extract_rule_yaml("no rule for you").is_none());
    }

    #[test]
    fn prompts_show_lessons_with_provenance() {
        let mut lesson = parse_lessons(ANSWER, 5).unwrap().remove(0);
        lesson.id = 3;
        lesson.bead_id = "tk-1a".into();
        lesson.workflow_id = "shark-demo-tk-1a".into();
        lesson.attempt = 1;
        lesson.commit = "0123456789abcdef".into();
        let section = lessons_section(&[lesson]);
        assert!(
            section.contains("lesson #3 from bead tk-1a, run shark-demo-tk-1a, attempt 1, commit 0123456789"),
            "{section}"
        );
        assert!(section.contains("Prefer: words = title.split()"), "{section}");
        assert!(lessons_section(&[]).is_empty());
    }
}
