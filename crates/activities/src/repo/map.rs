//! The repo map: a compact, language-aware outline of a repository for the strategic groomer.
//! Each tracked Rust, Go and Python file is parsed with tree-sitter and its public items (with
//! their signatures, bodies left out) are listed under the file's path.
//!
//! "Public" is each language's own rule: `pub` items in Rust, capitalized names in Go, names
//! without a leading underscore in Python.

use std::fmt::Write as _;
use std::path::Path;

use tree_sitter::{Language, Node, Parser};

use crate::repo::{GitError, git};

/// Characters of one item's signature kept.
const SIGNATURE_CHARS: usize = 160;
/// Bytes of a source file read; larger files are outlined from their start.
const FILE_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Go,
    Python,
}

impl Lang {
    pub fn of(path: &str) -> Option<Lang> {
        match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("rs") => Some(Lang::Rust),
            Some("go") => Some(Lang::Go),
            Some("py") => Some(Lang::Python),
            _ => None,
        }
    }

    fn grammar(self) -> Language {
        match self {
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
        }
    }
}

/// The map of a repository, bounded in size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoMap {
    pub text: String,
    /// Source files outlined.
    pub files: usize,
    /// Public items listed.
    pub items: usize,
    /// Files left out because the map reached its size limit.
    pub omitted_files: usize,
}

/// The header of an item: its text up to the body, on one line.
fn signature(node: Node<'_>, source: &str) -> String {
    let end = node
        .child_by_field_name("body")
        .map(|b| b.start_byte())
        .unwrap_or(node.end_byte());
    let text = source.get(node.start_byte()..end).unwrap_or_default();
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line = line.trim_end_matches([':', '{', ' ', ';']).to_string();
    if line.chars().count() > SIGNATURE_CHARS {
        line = line.chars().take(SIGNATURE_CHARS).collect::<String>() + "…";
    }
    line
}

fn text<'a>(node: Node<'_>, source: &'a str) -> &'a str {
    source.get(node.byte_range()).unwrap_or_default()
}

fn is_pub_rust(node: Node<'_>) -> bool {
    let mut cursor = node.walk();
    node.children(&mut cursor).any(|c| c.kind() == "visibility_modifier")
}

fn rust_items(node: Node<'_>, source: &str, indent: usize, out: &mut Vec<String>) {
    let pad = "  ".repeat(indent);
    let mut cursor = node.walk();
    for item in node.children(&mut cursor) {
        match item.kind() {
            "function_item" | "struct_item" | "enum_item" | "trait_item" | "type_item" | "const_item"
            | "static_item" | "union_item"
                if is_pub_rust(item) =>
            {
                out.push(format!("{pad}{}", signature(item, source)));
            }
            "mod_item" if is_pub_rust(item) => {
                out.push(format!("{pad}{}", signature(item, source)));
                if let Some(body) = item.child_by_field_name("body") {
                    rust_items(body, source, indent + 1, out);
                }
            }
            "impl_item" => {
                // The public methods of an inherent impl, or every method of a trait impl.
                let trait_impl = item.child_by_field_name("trait").is_some();
                let Some(body) = item.child_by_field_name("body") else {
                    continue;
                };
                let mut methods = Vec::new();
                let mut c = body.walk();
                for m in body.children(&mut c) {
                    if m.kind() == "function_item" && (trait_impl || is_pub_rust(m)) {
                        methods.push(format!("{pad}  {}", signature(m, source)));
                    }
                }
                if trait_impl {
                    out.push(format!("{pad}{}", signature(item, source)));
                } else if !methods.is_empty() {
                    out.push(format!("{pad}{}", signature(item, source)));
                    out.extend(methods);
                }
            }
            "macro_definition" => out.push(format!(
                "{pad}macro_rules! {}",
                item.child_by_field_name("name").map(|n| text(n, source)).unwrap_or("?")
            )),
            _ => {}
        }
    }
}

fn exported_go(name: &str) -> bool {
    name.chars().next().is_some_and(char::is_uppercase)
}

fn go_items(root: Node<'_>, source: &str, out: &mut Vec<String>) {
    let mut cursor = root.walk();
    for item in root.children(&mut cursor) {
        match item.kind() {
            "function_declaration" | "method_declaration"
                if item
                    .child_by_field_name("name")
                    .is_some_and(|n| exported_go(text(n, source))) =>
            {
                out.push(signature(item, source));
            }
            "type_declaration" | "const_declaration" | "var_declaration" => {
                let mut c = item.walk();
                for spec in item.children(&mut c) {
                    let Some(name) = spec.child_by_field_name("name") else {
                        continue;
                    };
                    if !exported_go(text(name, source)) {
                        continue;
                    }
                    let keyword = match item.kind() {
                        "type_declaration" => "type",
                        "const_declaration" => "const",
                        _ => "var",
                    };
                    let shown = match spec.child_by_field_name("type") {
                        Some(t) if keyword == "type" => {
                            let kind = text(t, source)
                                .split(|c: char| c.is_whitespace() || c == '{')
                                .next()
                                .unwrap_or_default();
                            format!("type {} {kind}", text(name, source))
                        }
                        _ => format!("{keyword} {}", text(name, source)),
                    };
                    out.push(shown);
                }
            }
            _ => {}
        }
    }
}

fn python_items(node: Node<'_>, source: &str, indent: usize, out: &mut Vec<String>) {
    let pad = "  ".repeat(indent);
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        let item = if child.kind() == "decorated_definition" {
            match child.child_by_field_name("definition") {
                Some(def) => def,
                None => continue,
            }
        } else {
            child
        };
        if !matches!(item.kind(), "function_definition" | "class_definition") {
            continue;
        }
        let public = item
            .child_by_field_name("name")
            .is_some_and(|n| !text(n, source).starts_with('_') || text(n, source) == "__init__");
        if !public {
            continue;
        }
        out.push(format!("{pad}{}", signature(item, source)));
        if item.kind() == "class_definition"
            && indent == 0
            && let Some(body) = item.child_by_field_name("body")
        {
            python_items(body, source, indent + 1, out);
        }
    }
}

/// The public items of one source file, one line each (nested ones indented).
pub fn outline(lang: Lang, source: &str) -> Vec<String> {
    let mut parser = Parser::new();
    if parser.set_language(&lang.grammar()).is_err() {
        return Vec::new();
    }
    let Some(tree) = parser.parse(source, None) else {
        return Vec::new();
    };
    let root = tree.root_node();
    let mut out = Vec::new();
    match lang {
        Lang::Rust => rust_items(root, source, 0, &mut out),
        Lang::Go => go_items(root, source, &mut out),
        Lang::Python => python_items(root, source, 0, &mut out),
    }
    out
}

/// Maps the tracked source files of the checkout at `repo`, stopping at about `max_chars`.
pub async fn repo_map(repo: &Path, max_chars: usize) -> Result<RepoMap, GitError> {
    let listing = git(repo, &["ls-files", "-z"]).await?;
    let mut paths: Vec<&str> = listing
        .split('\0')
        .filter(|p| Lang::of(p).is_some())
        .filter(|p| !p.starts_with(".chum/") && !p.contains("/vendor/") && !p.starts_with("vendor/"))
        .collect();
    paths.sort_unstable();
    let mut map = RepoMap::default();
    for (i, path) in paths.iter().enumerate() {
        let Some(lang) = Lang::of(path) else { continue };
        let Ok(bytes) = std::fs::read(repo.join(path)) else {
            continue;
        };
        let cut = &bytes[..bytes.len().min(FILE_BYTES)];
        let source = String::from_utf8_lossy(cut);
        let items = outline(lang, &source);
        if items.is_empty() {
            continue;
        }
        let mut block = format!("{path}\n");
        for item in &items {
            let _ = writeln!(block, "  {item}");
        }
        if map.text.len() + block.len() > max_chars {
            map.omitted_files = paths.len() - i;
            let _ = writeln!(map.text, "… {} more source files not shown", map.omitted_files);
            break;
        }
        map.text.push_str(&block);
        map.files += 1;
        map.items += items.len();
    }
    if map.text.is_empty() {
        map.text = "(no Rust, Go or Python source files with public items)\n".to_string();
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_public_items_with_signatures() {
        let src = r#"
pub fn add(a: i32, b: i32) -> i32 { a + b }
fn private() {}
pub struct Point { pub x: i32 }
pub(crate) enum Mode { A }
pub trait Shape { fn area(&self) -> f64; }
impl Point { pub fn new() -> Self { Point { x: 0 } } fn hidden(&self) {} }
impl Shape for Point { fn area(&self) -> f64 { 0.0 } }
pub mod inner { pub fn deep() {} fn not_this() {} }
"#;
        let items = outline(Lang::Rust, src);
        assert_eq!(
            items,
            vec![
                "pub fn add(a: i32, b: i32) -> i32",
                "pub struct Point",
                "pub(crate) enum Mode",
                "pub trait Shape",
                "impl Point",
                "  pub fn new() -> Self",
                "impl Shape for Point",
                "pub mod inner",
                "  pub fn deep()",
            ]
        );
    }

    #[test]
    fn go_exported_names_only() {
        let src = "package x\nfunc Add(a, b int) int { return a + b }\nfunc helper() {}\n\
                   func (s *Server) Serve(addr string) error { return nil }\ntype Server struct{ port int }\n\
                   type handler func()\nconst Version = \"1\"\nvar debug = false\n";
        assert_eq!(
            outline(Lang::Go, src),
            vec![
                "func Add(a, b int) int",
                "func (s *Server) Serve(addr string) error",
                "type Server struct",
                "const Version",
            ]
        );
    }

    #[test]
    fn python_public_functions_classes_and_methods() {
        let src = "import os\n\ndef slugify(title: str) -> str:\n    return title\n\ndef _private():\n    pass\n\n\
                   class Parser(Base):\n    def __init__(self):\n        pass\n    def parse(self, text):\n        pass\n    def _helper(self):\n        pass\n\n\
                   @cache\ndef cached(x):\n    return x\n";
        assert_eq!(
            outline(Lang::Python, src),
            vec![
                "def slugify(title: str) -> str",
                "class Parser(Base)",
                "  def __init__(self)",
                "  def parse(self, text)",
                "def cached(x)",
            ]
        );
    }

    #[test]
    fn broken_source_still_yields_what_parses() {
        let items = outline(Lang::Rust, "pub fn ok() {}\npub fn broken( {\n");
        assert_eq!(items.first().map(String::as_str), Some("pub fn ok()"));
    }
}
