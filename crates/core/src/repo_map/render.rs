//! Rendering: the best definitions, grouped under their files, as many as fit the budget.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::RankedDefinition;

/// The map as an agent reads it, and what it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderedMap {
    pub text: String,
    /// `estimated_tokens(text)`: never more than the budget it was rendered for.
    pub tokens: usize,
    /// Definitions shown, and in how many files.
    pub definitions: usize,
    pub files: usize,
    /// Ranked definitions left out for the budget.
    pub omitted: usize,
}

/// Tokens a text costs a model, estimated: a token is about four characters of code or English
/// (the usual rule of thumb for current tokenizers; no tokenizer is the same for every provider).
pub fn estimated_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// The first `shown` definitions of `ranked` as text: files in the order of their best definition,
/// each file's definitions by line, and a last line saying how many were left out.
fn render(ranked: &[RankedDefinition], shown: usize) -> String {
    let mut files: Vec<&str> = Vec::new();
    let mut by_file: BTreeMap<&str, Vec<&RankedDefinition>> = BTreeMap::new();
    for d in &ranked[..shown] {
        if !by_file.contains_key(d.file.as_str()) {
            files.push(&d.file);
        }
        by_file.entry(&d.file).or_default().push(d);
    }
    let mut out = String::new();
    for file in files {
        let _ = writeln!(out, "{file}:");
        let mut defs = by_file.remove(file).unwrap_or_default();
        defs.sort_by_key(|d| d.line);
        for d in defs {
            let _ = writeln!(out, "  {}: {}", d.line, d.signature);
        }
    }
    if shown < ranked.len() {
        let _ = writeln!(out, "… {} less relevant definitions not shown", ranked.len() - shown);
    }
    out
}

/// As many of the best definitions as fit `budget_tokens` (by [`estimated_tokens`]), found by
/// bisection: the text grows with every definition added. Nothing fits: an empty map.
pub fn render_map(ranked: &[RankedDefinition], budget_tokens: usize) -> RenderedMap {
    let fits = |n: usize| n == 0 || estimated_tokens(&render(ranked, n)) <= budget_tokens;
    let (mut low, mut high) = (0, ranked.len());
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    if low == 0 {
        return RenderedMap {
            omitted: ranked.len(),
            ..RenderedMap::default()
        };
    }
    let text = render(ranked, low);
    let files = ranked[..low]
        .iter()
        .map(|d| d.file.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    RenderedMap {
        tokens: estimated_tokens(&text),
        text,
        definitions: low,
        files,
        omitted: ranked.len() - low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo_map::Tier;

    fn ranked(n: usize) -> Vec<RankedDefinition> {
        (0..n)
            .map(|i| RankedDefinition {
                file: format!("src/file{}.py", i % 7),
                name: format!("function_{i}"),
                line: (i as u32 % 50) + 1,
                signature: format!("def function_{i}(argument, other_argument) -> int"),
                tier: Tier::Other,
                score: 1.0 / (i + 1) as f64,
            })
            .collect()
    }

    #[test]
    fn the_budget_holds_for_every_budget() {
        let all = ranked(300);
        for budget in [1, 10, 17, 40, 100, 333, 1024, 4096] {
            let map = render_map(&all, budget);
            assert!(map.tokens <= budget, "budget {budget}: {} tokens", map.tokens);
            assert_eq!(map.tokens, estimated_tokens(&map.text));
            assert_eq!(map.definitions + map.omitted, all.len());
        }
    }

    #[test]
    fn a_larger_budget_shows_more_and_the_best_first() {
        let all = ranked(300);
        let small = render_map(&all, 100);
        let large = render_map(&all, 1000);
        assert!(small.definitions > 0 && large.definitions > small.definitions);
        assert!(small.text.contains("def function_0("), "{}", small.text);
        assert!(!small.text.contains("def function_299("), "{}", small.text);
        assert!(
            small.text.ends_with("less relevant definitions not shown\n"),
            "{}",
            small.text
        );
    }

    #[test]
    fn definitions_are_grouped_under_their_file_by_line() {
        let defs = vec![
            RankedDefinition {
                file: "b.py".into(),
                name: "late".into(),
                line: 30,
                signature: "def late()".into(),
                tier: Tier::Other,
                score: 3.0,
            },
            RankedDefinition {
                file: "a.py".into(),
                name: "other".into(),
                line: 5,
                signature: "def other()".into(),
                tier: Tier::Other,
                score: 2.0,
            },
            RankedDefinition {
                file: "b.py".into(),
                name: "early".into(),
                line: 2,
                signature: "def early()".into(),
                tier: Tier::Other,
                score: 1.0,
            },
        ];
        let map = render_map(&defs, 1000);
        assert_eq!(
            map.text,
            "b.py:\n  2: def early()\n  30: def late()\na.py:\n  5: def other()\n"
        );
        assert_eq!((map.definitions, map.files, map.omitted), (3, 2, 0));
    }

    #[test]
    fn a_budget_too_small_for_anything_gives_an_empty_map() {
        let map = render_map(&ranked(5), 3);
        assert_eq!(map.text, "");
        assert_eq!(map.omitted, 5);
    }

    #[test]
    fn tokens_are_about_four_characters() {
        assert_eq!(estimated_tokens(""), 0);
        assert_eq!(estimated_tokens("abcd"), 1);
        assert_eq!(estimated_tokens("abcde"), 2);
        assert_eq!(estimated_tokens("éééé"), 1);
    }
}
