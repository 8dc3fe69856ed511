//! Tags: the definitions and references of one source file, for the ranked repo map. Found with
//! tree-sitter and each grammar's own tags query (the queries GitHub's code navigation runs,
//! versioned with the grammar), plus a few patterns of CHUM's where those miss what a map needs:
//! Rust's and Java's type references and path calls, constants, Python's base classes and
//! decorators.

use std::sync::OnceLock;

use chum_core::repo_map::Tag;
use tree_sitter::{Language, Node, Parser, Query, QueryCursor, StreamingIterator};

/// Characters of one definition's signature kept.
const SIGNATURE_CHARS: usize = 160;

/// The languages the map reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Go,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Java,
}

const RUST_EXTRA: &str = r#"
(call_expression function: (scoped_identifier name: (identifier) @name)) @reference.call
(scoped_identifier path: (identifier) @name) @reference.type
(type_identifier) @name @reference.type
(const_item name: (identifier) @name) @definition.constant
(static_item name: (identifier) @name) @definition.constant
"#;

const PYTHON_EXTRA: &str = r#"
(class_definition superclasses: (argument_list (identifier) @name)) @reference.class
(decorator (identifier) @name) @reference.call
"#;

const GO_EXTRA: &str = r#"
(const_spec name: (identifier) @name) @definition.constant
"#;

const JAVA_EXTRA: &str = r#"
(type_identifier) @name @reference.type
(enum_declaration name: (identifier) @name) @definition.class
(method_invocation object: (identifier) @name) @reference.class
"#;

impl Lang {
    pub const ALL: [Lang; 7] = [
        Lang::Rust,
        Lang::Go,
        Lang::Python,
        Lang::JavaScript,
        Lang::TypeScript,
        Lang::Tsx,
        Lang::Java,
    ];

    /// The language of a path, by its extension.
    pub fn of(path: &str) -> Option<Lang> {
        let ext = path.rsplit_once('.')?.1;
        Some(match ext {
            "rs" => Lang::Rust,
            "go" => Lang::Go,
            "py" | "pyi" => Lang::Python,
            "js" | "jsx" | "mjs" | "cjs" => Lang::JavaScript,
            "ts" | "mts" | "cts" => Lang::TypeScript,
            "tsx" => Lang::Tsx,
            "java" => Lang::Java,
            _ => return None,
        })
    }

    fn grammar(self) -> Language {
        match self {
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Lang::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Lang::Java => tree_sitter_java::LANGUAGE.into(),
        }
    }

    /// The tags query: the grammar's own, and CHUM's additions. TypeScript's query only adds
    /// what TypeScript has beyond JavaScript, so it runs after JavaScript's.
    fn query_source(self) -> String {
        match self {
            Lang::Rust => format!("{}{RUST_EXTRA}", tree_sitter_rust::TAGS_QUERY),
            Lang::Go => format!("{}{GO_EXTRA}", tree_sitter_go::TAGS_QUERY),
            Lang::Python => format!("{}{PYTHON_EXTRA}", tree_sitter_python::TAGS_QUERY),
            Lang::JavaScript => tree_sitter_javascript::TAGS_QUERY.to_string(),
            Lang::TypeScript | Lang::Tsx => format!(
                "{}\n{}",
                tree_sitter_javascript::TAGS_QUERY,
                tree_sitter_typescript::TAGS_QUERY
            ),
            Lang::Java => format!("{}{JAVA_EXTRA}", tree_sitter_java::TAGS_QUERY),
        }
    }

    /// The compiled query, once per process. An error is a pinned grammar and its query
    /// disagreeing: a build problem the tests catch, reported rather than panicking.
    fn query(self) -> Result<&'static Query, &'static str> {
        static QUERIES: [OnceLock<Result<Query, String>>; 7] = [const { OnceLock::new() }; 7];
        let index = Lang::ALL.iter().position(|l| *l == self).unwrap_or(0);
        QUERIES[index]
            .get_or_init(|| {
                Query::new(&self.grammar(), &self.query_source()).map_err(|e| format!("{self:?} tags query: {e}"))
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The header of a definition on one line: its text up to its body (a node without a body field,
/// such as a Go type or a JavaScript `const f = () => {...}`, up to its first `{`), whitespace
/// collapsed, cut at [`SIGNATURE_CHARS`].
fn signature(node: Node<'_>, source: &str) -> String {
    let text = match node.child_by_field_name("body") {
        Some(body) => source.get(node.start_byte()..body.start_byte()).unwrap_or_default(),
        None => {
            let whole = source.get(node.byte_range()).unwrap_or_default();
            whole.split('{').next().unwrap_or(whole)
        }
    };
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line = line.trim_end_matches([':', '{', ' ', ';']).to_string();
    if line.chars().count() > SIGNATURE_CHARS {
        line = line.chars().take(SIGNATURE_CHARS).collect::<String>() + "…";
    }
    line
}

/// The definitions and references in one file at `path`. A file that does not parse yields what
/// its parsable parts hold; a language whose query does not compile, nothing (logged).
pub fn extract_tags(lang: Lang, path: &str, source: &str) -> Vec<Tag> {
    let query = match lang.query() {
        Ok(query) => query,
        Err(e) => {
            tracing::warn!("the repo map skips {path}: {e}");
            return Vec::new();
        }
    };
    let mut parser = Parser::new();
    if let Err(e) = parser.set_language(&lang.grammar()) {
        tracing::warn!("the repo map skips {path}: {e}");
        return Vec::new();
    }
    let Some(tree) = parser.parse(source, None) else {
        return Vec::new();
    };
    let names = query.capture_names();
    let mut tags = Vec::new();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(query, tree.root_node(), source.as_bytes());
    while let Some(found) = matches.next() {
        let mut name = None;
        let mut tagged = None;
        for capture in found.captures() {
            let capture_name = names[capture.index as usize];
            if capture_name == "name" {
                name = Some(capture.node);
            } else if capture_name.starts_with("definition.") {
                tagged = Some((true, capture.node));
            } else if capture_name.starts_with("reference.") {
                tagged = Some((false, capture.node));
            }
        }
        let (Some(name), Some((definition, node))) = (name, tagged) else {
            continue;
        };
        let Some(text) = source.get(name.byte_range()).filter(|t| !t.is_empty()) else {
            continue;
        };
        let line = name.start_position().row as u32 + 1;
        tags.push(if definition {
            Tag::definition(
                path,
                text,
                line,
                node.end_position().row as u32 + 1,
                &signature(node, source),
            )
        } else {
            Tag::reference(path, text, line)
        });
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use chum_core::repo_map::TagKind;

    fn names(tags: &[Tag], kind: TagKind) -> Vec<String> {
        let mut names: Vec<String> = tags.iter().filter(|t| t.kind == kind).map(|t| t.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    fn definitions(lang: Lang, source: &str) -> Vec<String> {
        names(&extract_tags(lang, "file", source), TagKind::Definition)
    }

    fn references(lang: Lang, source: &str) -> Vec<String> {
        names(&extract_tags(lang, "file", source), TagKind::Reference)
    }

    #[test]
    fn every_languages_query_compiles_against_its_grammar() {
        for lang in Lang::ALL {
            assert!(lang.query().is_ok(), "{:?}", lang.query().err());
        }
    }

    #[test]
    fn rust_definitions_and_references() {
        let src = "pub struct Point { x: i32 }\nconst LIMIT: u32 = 3;\n\
                   impl Point { pub fn new() -> Self { Point { x: clamp(0) } } }\n\
                   fn clamp(v: i32) -> i32 { Helper::fix(v) }\nmacro_rules! m { () => {} }\n";
        assert_eq!(definitions(Lang::Rust, src), ["LIMIT", "Point", "clamp", "m", "new"]);
        let refs = references(Lang::Rust, src);
        for expected in ["Point", "clamp", "fix", "Helper"] {
            assert!(refs.contains(&expected.to_string()), "{expected} in {refs:?}");
        }
    }

    #[test]
    fn a_definitions_signature_and_span_leave_the_body_out() {
        let src = "fn clamp(\n    v: i32,\n) -> i32 {\n    v.max(0)\n}\n";
        let tags = extract_tags(Lang::Rust, "src/lib.rs", src);
        let clamp = tags.iter().find(|t| t.name == "clamp").expect("clamp is defined");
        assert_eq!(
            (
                clamp.file.as_str(),
                clamp.line,
                clamp.end_line,
                clamp.signature.as_str()
            ),
            ("src/lib.rs", 1, 5, "fn clamp( v: i32, ) -> i32")
        );
        let signatures = |lang, src| -> Vec<String> {
            extract_tags(lang, "f", src)
                .into_iter()
                .filter(|t| t.kind == TagKind::Definition)
                .map(|t| t.signature)
                .collect()
        };
        assert_eq!(
            signatures(Lang::Python, "def f(options={}):\n    return options\n"),
            ["def f(options={})"],
            "a brace in the header is kept"
        );
        assert_eq!(
            signatures(Lang::Go, "package x\ntype Server struct {\n\tport int\n}\n"),
            ["Server struct"]
        );
    }

    #[test]
    fn python_definitions_and_references() {
        let src = "VERSION = '1'\nclass Parser(Base):\n    @cached\n    def parse(self, text):\n        return tokenize(text)\n";
        assert_eq!(definitions(Lang::Python, src), ["Parser", "VERSION", "parse"]);
        assert_eq!(references(Lang::Python, src), ["Base", "cached", "tokenize"]);
    }

    #[test]
    fn go_definitions_and_references() {
        let src = "package x\nconst Version = \"1\"\ntype Server struct{ port int }\n\
                   func (s *Server) Serve(addr string) error { return listen(addr) }\nfunc listen(a string) error { return nil }\n";
        assert_eq!(definitions(Lang::Go, src), ["Serve", "Server", "Version", "listen"]);
        let refs = references(Lang::Go, src);
        assert!(
            refs.contains(&"listen".to_string()) && refs.contains(&"Server".to_string()),
            "{refs:?}"
        );
    }

    #[test]
    fn javascript_definitions_and_references() {
        let src = "class Store { save(item) { return persist(item); } }\n\
                   function persist(x) { return new Record(x); }\nconst slug = (t) => t.toLowerCase();\n";
        assert_eq!(definitions(Lang::JavaScript, src), ["Store", "persist", "save", "slug"]);
        assert_eq!(references(Lang::JavaScript, src), ["Record", "persist", "toLowerCase"]);
    }

    #[test]
    fn typescript_definitions_and_references() {
        let src = "interface Shape { area(): number }\nfunction total(shapes: Shape[]): number { return sum(shapes); }\n\
                   class Circle implements Shape { area(): number { return compute(1); } }\n";
        for lang in [Lang::TypeScript, Lang::Tsx] {
            assert_eq!(definitions(lang, src), ["Circle", "Shape", "area", "total"], "{lang:?}");
            let refs = references(lang, src);
            assert!(
                refs.contains(&"sum".to_string()) && refs.contains(&"compute".to_string()),
                "{refs:?}"
            );
        }
    }

    #[test]
    fn java_definitions_and_references() {
        let src = "public class Calc extends Base {\n  enum Mode { A }\n  public int add(int a, int b) { return Helper.sum(a, b); }\n}\n";
        assert_eq!(definitions(Lang::Java, src), ["Calc", "Mode", "add"]);
        let refs = references(Lang::Java, src);
        for expected in ["Base", "Helper", "sum"] {
            assert!(refs.contains(&expected.to_string()), "{expected} in {refs:?}");
        }
    }

    #[test]
    fn languages_are_told_by_extension() {
        assert_eq!(Lang::of("src/main.rs"), Some(Lang::Rust));
        assert_eq!(Lang::of("web/app.tsx"), Some(Lang::Tsx));
        assert_eq!(Lang::of("lib/index.mjs"), Some(Lang::JavaScript));
        assert_eq!(Lang::of("Main.java"), Some(Lang::Java));
        assert_eq!(Lang::of("README.md"), None);
        assert_eq!(Lang::of("Makefile"), None);
    }

    #[test]
    fn broken_source_still_yields_what_parses() {
        let tags = extract_tags(Lang::Rust, "a.rs", "pub fn ok() {}\npub fn broken( {\n");
        assert!(tags.iter().any(|t| t.name == "ok"), "{tags:?}");
    }
}
