//! A diff as people read it: per file, old and new line numbers, additions and deletions marked,
//! code highlighted by language, and the gates' findings shown under the line they are about.

use maud::{Markup, PreEscaped, html};

use chum_core::gate_text::LineFinding;

/// One line of a hunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DiffLine {
    Hunk(String),
    Context { old: u32, new: u32, text: String },
    Added { new: u32, text: String },
    Removed { old: u32, text: String },
}

/// One file's part of a diff.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileDiff {
    pub path: String,
    pub lines: Vec<DiffLine>,
}

/// Splits a `git diff` into files and numbered lines. Anything it does not know (binary files,
/// mode changes) is kept as the file's header only.
pub(crate) fn parse(diff: &str) -> Vec<FileDiff> {
    let mut files: Vec<FileDiff> = Vec::new();
    let (mut old, mut new) = (0u32, 0u32);
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            // "a/<path> b/<path>": the new path is what findings name.
            let path = rest.rsplit_once(" b/").map_or(rest, |(_, b)| b).to_string();
            files.push(FileDiff {
                path,
                lines: Vec::new(),
            });
            continue;
        }
        let Some(file) = files.last_mut() else { continue };
        if let Some(rest) = line.strip_prefix("+++ ") {
            if let Some(path) = rest.strip_prefix("b/") {
                file.path = path.to_string();
            }
            continue;
        }
        if line.starts_with("--- ") && file.lines.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("@@ ") {
            // "@@ -a,b +c,d @@ context"
            let mut parts = rest.split_whitespace();
            let start = |p: Option<&str>, sign: char| {
                p.and_then(|p| p.strip_prefix(sign))
                    .and_then(|p| p.split(',').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            old = start(parts.next(), '-');
            new = start(parts.next(), '+');
            file.lines.push(DiffLine::Hunk(line.to_string()));
            continue;
        }
        if file.lines.is_empty() {
            continue; // index, mode and rename lines before the first hunk
        }
        match line.chars().next() {
            Some('+') => {
                file.lines.push(DiffLine::Added {
                    new,
                    text: line[1..].to_string(),
                });
                new += 1;
            }
            Some('-') => {
                file.lines.push(DiffLine::Removed {
                    old,
                    text: line[1..].to_string(),
                });
                old += 1;
            }
            Some(' ') | None => {
                file.lines.push(DiffLine::Context {
                    old,
                    new,
                    text: line.get(1..).unwrap_or("").to_string(),
                });
                old += 1;
                new += 1;
            }
            _ => {} // "\ No newline at end of file"
        }
    }
    files
}

/// A finding with where it comes from ("semgrep", "review").
pub(crate) struct Placed<'a> {
    pub source: &'static str,
    pub finding: &'a LineFinding,
}

/// The diff as tables, one per file, with `findings` under the lines they name; findings on lines
/// the diff does not show are listed above their file's table.
pub(crate) fn render(files: &[FileDiff], findings: &[Placed<'_>]) -> Markup {
    html! {
        @for file in files {
            @let here: Vec<&Placed> = findings.iter().filter(|p| p.finding.file == file.path).collect();
            @let shown = |line: u32| file.lines.iter().any(|l| matches!(l, DiffLine::Added { new, .. } | DiffLine::Context { new, .. } if *new == line));
            details.file open {
                summary { code { (file.path) } @if !here.is_empty() { " " span.badge.findings { (here.len()) " finding(s)" } } }
                @for p in here.iter().filter(|p| !shown(p.finding.line)) {
                    (finding_note(p))
                }
                table.diff data-path=(file.path) {
                    @for line in &file.lines {
                        @match line {
                            DiffLine::Hunk(h) => tr.hunk { td.n {} td.n {} td.code { (h) } },
                            DiffLine::Context { old, new, text } => tr.ctx data-line=(new) { td.n { (old) } td.n { (new) } td.code { (highlight(&file.path, text)) } },
                            DiffLine::Added { new, text } => tr.add data-line=(new) { td.n {} td.n { (new) } td.code { (highlight(&file.path, text)) } },
                            DiffLine::Removed { old, text } => tr.del { td.n { (old) } td.n {} td.code { (highlight(&file.path, text)) } },
                        }
                        @if let DiffLine::Added { new, .. } | DiffLine::Context { new, .. } = line {
                            @for p in here.iter().filter(|p| p.finding.line == *new) {
                                tr.finding { td colspan="3" { (finding_note(p)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn finding_note(p: &Placed<'_>) -> Markup {
    html! {
        div class={"finding " (p.source)} data-line=(p.finding.line) {
            span.badge { (p.source) } " "
            code { (p.finding.label) } " "
            (p.finding.file) ":" (p.finding.line) ": " (p.finding.message)
        }
    }
}

/// Keywords of the languages agents write most, by file extension.
fn keywords(path: &str) -> &'static [&'static str] {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("py") => &[
            "def", "class", "return", "import", "from", "if", "elif", "else", "for", "while", "in", "not", "and", "or",
            "try", "except", "raise", "with", "as", "None", "True", "False", "lambda", "pass", "yield",
        ],
        Some("rs") => &[
            "fn", "let", "mut", "pub", "struct", "enum", "impl", "trait", "use", "mod", "match", "if", "else", "for",
            "while", "loop", "return", "self", "Self", "as", "in", "where", "async", "await", "const",
        ],
        Some("js" | "ts" | "jsx" | "tsx" | "mjs") => &[
            "function",
            "const",
            "let",
            "var",
            "return",
            "if",
            "else",
            "for",
            "while",
            "class",
            "import",
            "from",
            "export",
            "new",
            "async",
            "await",
            "null",
            "undefined",
            "true",
            "false",
            "this",
        ],
        Some("go") => &[
            "func",
            "package",
            "import",
            "return",
            "if",
            "else",
            "for",
            "range",
            "type",
            "struct",
            "var",
            "const",
            "nil",
            "go",
            "defer",
            "interface",
            "map",
            "chan",
        ],
        Some("sh" | "bash") => &[
            "if", "then", "else", "fi", "for", "do", "done", "case", "esac", "function", "local",
        ],
        _ => &[],
    }
}

/// The comment marker of the file's language.
fn comment_marker(path: &str) -> Option<&'static str> {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("py" | "sh" | "bash" | "toml" | "yaml" | "yml" | "rb") => Some("#"),
        Some("rs" | "js" | "ts" | "jsx" | "tsx" | "mjs" | "go" | "c" | "h" | "cpp" | "java") => Some("//"),
        _ => None,
    }
}

/// A line of code with keywords, strings, numbers and comments marked. A small lexer on
/// purpose: a diff line has no context (a string may open on another line), so a full grammar
/// would be wrong as often as this; the classes only colour, the text is always all there.
pub(crate) fn highlight(path: &str, text: &str) -> Markup {
    let words = keywords(path);
    let comment = comment_marker(path);
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let push = |out: &mut String, class: Option<&str>, s: &str| {
        let escaped = maud::html! { (s) }.into_string();
        match class {
            Some(c) => out.push_str(&format!("<span class=\"{c}\">{escaped}</span>")),
            None => out.push_str(&escaped),
        }
    };
    while i < chars.len() {
        let rest: String = chars[i..].iter().collect();
        if let Some(marker) = comment
            && rest.starts_with(marker)
        {
            push(&mut out, Some("tok-comment"), &rest);
            break;
        }
        let c = chars[i];
        if c == '"' || c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                if chars[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            push(&mut out, Some("tok-string"), &chars[i..end].iter().collect::<String>());
            i = end;
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '.' || chars[j] == '_') {
                j += 1;
            }
            push(&mut out, Some("tok-number"), &chars[i..j].iter().collect::<String>());
            i = j;
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            let class = words.contains(&word.as_str()).then_some("tok-keyword");
            push(&mut out, class, &word);
            i = j;
        } else {
            push(&mut out, None, &c.to_string());
            i += 1;
        }
    }
    PreEscaped(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/calc.py b/calc.py\nindex 1..2 100644\n--- a/calc.py\n+++ b/calc.py\n@@ -1,3 +1,4 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n+\n+x = eval(\"1\")  # <script>\n";

    #[test]
    fn a_diff_is_split_into_files_with_the_new_line_numbers_findings_name() {
        let files = parse(DIFF);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "calc.py");
        assert_eq!(
            files[0].lines[1],
            DiffLine::Context {
                old: 1,
                new: 1,
                text: "def add(a, b):".into()
            }
        );
        assert!(matches!(&files[0].lines[3], DiffLine::Added { new: 2, .. }));
        assert!(matches!(&files[0].lines[5], DiffLine::Added { new: 4, text } if text.contains("eval")));
    }

    #[test]
    fn a_finding_is_rendered_under_its_line_and_code_is_escaped() {
        let finding = LineFinding {
            label: "chum.no-eval".into(),
            file: "calc.py".into(),
            line: 4,
            message: "no eval".into(),
        };
        let html = render(
            &parse(DIFF),
            &[Placed {
                source: "semgrep",
                finding: &finding,
            }],
        )
        .into_string();
        let line = html.find("data-line=\"4\"").expect("line 4 is shown");
        let note = html.find("class=\"finding semgrep\"").expect("the finding is shown");
        assert!(note > line, "the finding follows its line");
        assert!(!html.contains("<script>"), "code is escaped: {html}");
        assert!(html.contains("tok-keyword") && html.contains("tok-comment") && html.contains("tok-string"));
    }
}
