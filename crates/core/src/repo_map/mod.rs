//! The ranked repo map: which definitions of a repository matter for a piece of work, shown as a
//! compact outline (file headers, one signature line per definition) that fits a token budget.
//!
//! Aider's design, the one agent tools copy: tree-sitter finds every file's definitions and the
//! identifiers it references (the activities do that, `activities::repo::map`); a graph links
//! each file to the files defining what it references; a PageRank personalized toward the work
//! (the files its plan names, the identifiers and paths its text mentions) ranks the files, each
//! file's rank flows to the definitions it references, and the best definitions are rendered until
//! the budget is spent. Pure: the caller hands in the tags and the text.

mod rank;
mod render;

pub use rank::{RankedDefinition, Tier, rank_definitions};
pub use render::{RenderedMap, estimated_tokens, render_map};

use serde::{Deserialize, Serialize};

/// Whether a tag defines its name or refers to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagKind {
    Definition,
    Reference,
}

/// One name found in one file: a definition (with its span and one-line signature) or a reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The file's path in the repository (`/`-separated).
    pub file: String,
    pub name: String,
    pub kind: TagKind,
    /// 1-based line of the name.
    pub line: u32,
    /// 1-based last line of a definition's span (the name's line for a reference), so a
    /// reference can be placed inside the definition that makes it (its caller).
    pub end_line: u32,
    /// A definition's header on one line, its body left out; empty for a reference.
    pub signature: String,
}

impl Tag {
    pub fn definition(file: &str, name: &str, line: u32, end_line: u32, signature: &str) -> Tag {
        Tag {
            file: file.to_string(),
            name: name.to_string(),
            kind: TagKind::Definition,
            line,
            end_line: end_line.max(line),
            signature: signature.to_string(),
        }
    }

    pub fn reference(file: &str, name: &str, line: u32) -> Tag {
        Tag {
            file: file.to_string(),
            name: name.to_string(),
            kind: TagKind::Reference,
            line,
            end_line: line,
            signature: String::new(),
        }
    }
}

/// What the map is for: the work's text (bead, plan) and the files its plan names. Empty for a
/// map of the whole repository (the strategic groomer's).
#[derive(Debug, Clone, Copy, Default)]
pub struct Focus<'a> {
    pub text: &'a str,
    pub files: &'a [String],
}

/// The map of a repository for one piece of work: its tags ranked, then rendered within `budget`
/// tokens (0: no map).
pub fn repo_map(tags: &[Tag], focus: Focus<'_>, budget_tokens: usize) -> RenderedMap {
    if budget_tokens == 0 {
        return RenderedMap::default();
    }
    render_map(&rank_definitions(tags, focus), budget_tokens)
}
