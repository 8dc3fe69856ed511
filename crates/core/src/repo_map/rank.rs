//! Ranking: a graph of files linked by the identifiers they reference and define, a PageRank
//! personalized toward the work, and each definition scored by the rank that flows to it.
//!
//! The weights are Aider's, with one addition: definitions come in tiers. First the definitions of
//! the identifiers the work mentions, then their callers (the definitions whose span holds a
//! reference to one), then the rest; by score within a tier. So an agent sees the code it is asked
//! about and the code that depends on it before anything the graph merely finds central.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Focus, Tag, TagKind};

/// How directly a definition concerns the work; definitions are ordered by tier, then score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// It defines an identifier the work's text mentions (one defined in few files).
    Mentioned,
    /// It references such an identifier: a caller.
    Caller,
    Other,
}

/// One definition with its tier and score (higher is more relevant within a tier).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedDefinition {
    pub file: String,
    pub name: String,
    pub line: u32,
    pub signature: String,
    pub tier: Tier,
    pub score: f64,
}

/// The PageRank's damping: the chance a step follows a reference rather than jumping back to the
/// work's files.
const DAMPING: f64 = 0.85;
const MAX_ITERATIONS: usize = 100;
const TOLERANCE: f64 = 1e-10;
/// A reference to an identifier the work's text mentions counts ten times.
const MENTIONED: f64 = 10.0;
/// A private name (`_name`) counts a tenth: it is rarely what another file needs to see.
const PRIVATE: f64 = 0.1;
/// A name defined in more files than this is generic (`new`, `get`, `main`) and counts a tenth.
const COMMON_DEFINERS: usize = 5;
const COMMON: f64 = 0.1;
/// A name defined in more files than this links nothing: a reference to it (`__init__`, `new`,
/// `toString`) says nothing about which file it means, and its edges, referencing files times
/// defining files, would dominate the work on a large repository.
const MAX_DEFINERS: usize = 50;
/// Part of a file's own rank its definitions share, so the definitions of a file the work names
/// are shown even when nothing references them yet.
const OWN_FILE_SHARE: f64 = 0.1;
/// A file that references a mentioned identifier gets this much of a focus file's pull.
const CALLER_FILE_PULL: f64 = 0.5;

/// The identifier-like words of a text (`slugify`, `Parser`, `parse_args`), at least 3 characters
/// (shorter ones are too often plain words).
fn words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 3)
        .collect()
}

/// Whether the work names `file`: its plan lists it (or a directory holding it), or its text
/// mentions its path or its file name.
fn names_file(focus: &Focus<'_>, file: &str) -> bool {
    let listed = focus.files.iter().any(|f| {
        let f = f.trim().trim_start_matches("./").trim_end_matches('/');
        !f.is_empty() && (f == file || file.strip_prefix(f).is_some_and(|rest| rest.starts_with('/')))
    });
    let base = file.rsplit('/').next().unwrap_or(file);
    listed || (base.contains('.') && focus.text.contains(base)) || focus.text.contains(file)
}

struct Graph<'t> {
    files: Vec<&'t str>,
    /// Per source file: (target file, weight, identifier) for each identifier it references that
    /// another file defines.
    edges: Vec<Vec<(usize, f64, &'t str)>>,
}

impl Graph<'_> {
    fn out_weight(&self, file: usize) -> f64 {
        self.edges[file].iter().map(|(_, w, _)| w).sum()
    }

    /// The personalized PageRank of every file. Rank of a file without outgoing edges goes back to
    /// the personalization, as networkx (Aider's) does.
    fn page_rank(&self, personalization: &[f64]) -> Vec<f64> {
        let n = self.files.len();
        let out: Vec<f64> = (0..n).map(|f| self.out_weight(f)).collect();
        let mut rank = vec![1.0 / n as f64; n];
        for _ in 0..MAX_ITERATIONS {
            let dangling: f64 = (0..n).filter(|&f| out[f] == 0.0).map(|f| rank[f]).sum();
            let mut next: Vec<f64> = personalization
                .iter()
                .map(|p| (1.0 - DAMPING) * p + DAMPING * dangling * p)
                .collect();
            for (source, edges) in self.edges.iter().enumerate() {
                for &(target, weight, _) in edges {
                    next[target] += DAMPING * rank[source] * weight / out[source];
                }
            }
            let change: f64 = next.iter().zip(&rank).map(|(a, b)| (a - b).abs()).sum();
            rank = next;
            if change < TOLERANCE {
                break;
            }
        }
        rank
    }
}

/// Where the PageRank jumps back to, summing to 1: the files the work names and the files that
/// define a mentioned identifier fully, the files that use one by half; nothing named, every file
/// alike (the rank of the whole repository).
fn personalization(
    files: &[&str],
    focus: &Focus<'_>,
    mentioned: &BTreeSet<&str>,
    definers: &BTreeMap<&str, BTreeSet<usize>>,
    references: &BTreeMap<&str, BTreeMap<usize, usize>>,
) -> Vec<f64> {
    let mut pull: Vec<f64> = files
        .iter()
        .map(|file| if names_file(focus, file) { 1.0 } else { 0.0 })
        .collect();
    for name in mentioned {
        for &file in definers.get(name).into_iter().flatten() {
            pull[file] = 1.0;
        }
        for &file in references.get(name).map(BTreeMap::keys).into_iter().flatten() {
            pull[file] = f64::max(pull[file], CALLER_FILE_PULL);
        }
    }
    let total: f64 = pull.iter().sum();
    if total == 0.0 {
        return vec![1.0 / files.len() as f64; files.len()];
    }
    pull.iter().map(|p| p / total).collect()
}

/// Every definition in `tags`, most relevant to `focus` first (ties by path and line).
pub fn rank_definitions(tags: &[Tag], focus: Focus<'_>) -> Vec<RankedDefinition> {
    let files: Vec<&str> = tags
        .iter()
        .map(|t| t.file.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if files.is_empty() {
        return Vec::new();
    }
    let index: HashMap<&str, usize> = files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    let mut definitions: Vec<&Tag> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut definers: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let mut references: BTreeMap<&str, BTreeMap<usize, usize>> = BTreeMap::new();
    for tag in tags {
        let file = index[tag.file.as_str()];
        match tag.kind {
            TagKind::Definition => {
                // Two query patterns can match one definition (a method is also a function).
                if seen.insert((file, tag.name.as_str(), tag.line)) {
                    definitions.push(tag);
                    definers.entry(&tag.name).or_default().insert(file);
                }
            }
            TagKind::Reference => {
                *references.entry(&tag.name).or_default().entry(file).or_default() += 1;
            }
        }
    }

    // Only specific names: a generic one (`new`, `get`) in the text says nothing about the work.
    let mentioned: BTreeSet<&str> = words(focus.text)
        .into_iter()
        .filter(|w| definers.get(w).is_some_and(|d| d.len() <= COMMON_DEFINERS))
        .collect();
    let weight_of = |name: &str| {
        let mut weight = 1.0;
        if mentioned.contains(name) {
            weight *= MENTIONED;
        }
        if name.starts_with('_') {
            weight *= PRIVATE;
        }
        if definers.get(name).is_some_and(|d| d.len() > COMMON_DEFINERS) {
            weight *= COMMON;
        }
        weight
    };

    let mut graph = Graph {
        files: files.clone(),
        edges: vec![Vec::new(); files.len()],
    };
    for (name, referencing) in &references {
        let Some(defining) = definers.get(name).filter(|d| d.len() <= MAX_DEFINERS) else {
            continue;
        };
        for (&source, &count) in referencing {
            for &target in defining.iter().filter(|&&t| t != source) {
                graph.edges[source].push((target, weight_of(name) * (count as f64).sqrt(), *name));
            }
        }
    }

    let personalization = personalization(&files, &focus, &mentioned, &definers, &references);
    let rank = graph.page_rank(&personalization);

    // Each file's rank flows along its edges to the definitions it references.
    let mut flowed: HashMap<(usize, &str), f64> = HashMap::new();
    for (source, edges) in graph.edges.iter().enumerate() {
        let out = graph.out_weight(source);
        for &(target, weight, name) in edges {
            *flowed.entry((target, name)).or_default() += rank[source] * weight / out;
        }
    }
    let mut per_file = vec![0usize; files.len()];
    for d in &definitions {
        per_file[index[d.file.as_str()]] += 1;
    }
    let callers = callers_of(&definitions, tags, &mentioned, &index);

    let mut ranked: Vec<RankedDefinition> = definitions
        .iter()
        .map(|d| {
            let file = index[d.file.as_str()];
            let mut score = flowed.get(&(file, d.name.as_str())).copied().unwrap_or(0.0)
                + OWN_FILE_SHARE * rank[file] / per_file[file] as f64;
            let tier = if mentioned.contains(d.name.as_str()) {
                Tier::Mentioned
            } else if callers.contains(&(file, d.line)) {
                Tier::Caller
            } else {
                Tier::Other
            };
            if d.name.starts_with('_') {
                score *= PRIVATE;
            }
            RankedDefinition {
                file: d.file.clone(),
                name: d.name.clone(),
                line: d.line,
                signature: d.signature.clone(),
                tier,
                score,
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        a.tier
            .cmp(&b.tier)
            .then_with(|| b.score.total_cmp(&a.score))
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.line.cmp(&b.line))
    });
    ranked
}

/// The definitions (file index, line) that hold a reference to a mentioned identifier: for each
/// such reference, the innermost definition whose span contains it, unless that is the
/// identifier's own definition (recursion is not a caller).
fn callers_of(
    definitions: &[&Tag],
    tags: &[Tag],
    mentioned: &BTreeSet<&str>,
    index: &HashMap<&str, usize>,
) -> BTreeSet<(usize, u32)> {
    let mut by_file: BTreeMap<&str, Vec<&Tag>> = BTreeMap::new();
    for d in definitions {
        by_file.entry(&d.file).or_default().push(d);
    }
    let mut callers = BTreeSet::new();
    for reference in tags
        .iter()
        .filter(|t| t.kind == TagKind::Reference && mentioned.contains(t.name.as_str()))
    {
        let Some(candidates) = by_file.get(reference.file.as_str()) else {
            continue;
        };
        let innermost = candidates
            .iter()
            .filter(|d| d.line <= reference.line && reference.line <= d.end_line)
            .min_by_key(|d| d.end_line - d.line);
        if let Some(caller) = innermost
            && caller.name != reference.name
        {
            callers.insert((index[reference.file.as_str()], caller.line));
        }
    }
    callers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(file: &str, name: &str, line: u32, end: u32) -> Tag {
        Tag::definition(file, name, line, end, &format!("def {name}()"))
    }

    fn refer(file: &str, name: &str, line: u32) -> Tag {
        Tag::reference(file, name, line)
    }

    fn order(ranked: &[RankedDefinition]) -> Vec<&str> {
        ranked.iter().map(|d| d.name.as_str()).collect()
    }

    /// A small project: `core.py` defines `parse`, used everywhere; `slug.py` defines `slugify`,
    /// called by `cli.py`'s `main`; `report.py` stands alone.
    fn project() -> Vec<Tag> {
        vec![
            def("core.py", "parse", 1, 5),
            def("slug.py", "slugify", 1, 4),
            refer("slug.py", "parse", 2),
            def("cli.py", "main", 1, 9),
            refer("cli.py", "parse", 3),
            refer("cli.py", "slugify", 4),
            def("cli.py", "usage", 10, 12),
            def("report.py", "render", 1, 6),
            refer("report.py", "parse", 2),
            def("report.py", "summary", 8, 9),
        ]
    }

    #[test]
    fn without_focus_the_most_referenced_definition_ranks_first() {
        let ranked = rank_definitions(&project(), Focus::default());
        assert_eq!(ranked[0].name, "parse", "{:?}", order(&ranked));
        assert_eq!(ranked.len(), 6, "every definition is ranked once");
    }

    #[test]
    fn a_mentioned_identifier_ranks_its_definition_then_its_callers_first() {
        let ranked = rank_definitions(
            &project(),
            Focus {
                text: "Make slugify keep unicode letters",
                files: &[],
            },
        );
        assert_eq!(order(&ranked)[..2], ["slugify", "main"], "{:?}", order(&ranked));
    }

    #[test]
    fn the_plans_files_pull_their_definitions_up() {
        let unfocused = rank_definitions(&project(), Focus::default());
        let summary_before = unfocused.iter().position(|d| d.name == "summary");
        let ranked = rank_definitions(
            &project(),
            Focus {
                text: "",
                files: &["report.py".to_string()],
            },
        );
        let summary_after = ranked.iter().position(|d| d.name == "summary");
        assert!(summary_after < summary_before, "{:?}", order(&ranked));
        assert!(ranked[..3].iter().any(|d| d.name == "render"), "{:?}", order(&ranked));
    }

    #[test]
    fn a_plan_directory_focuses_the_files_inside_it_as_if_listed() {
        let tags = vec![
            def("lib/a.py", "alpha", 1, 2),
            def("lib/b.py", "beta", 1, 2),
            refer("lib/a.py", "beta", 2),
            def("tools/x.py", "xray", 1, 2),
            def("tools/y.py", "yank", 1, 2),
            refer("tools/x.py", "beta", 2),
            refer("lib/b.py", "xray", 2),
            refer("lib/b.py", "yank", 2),
        ];
        let listed = ["tools/x.py".to_string(), "tools/y.py".to_string()];
        let by_file = rank_definitions(
            &tags,
            Focus {
                text: "",
                files: &listed,
            },
        );
        let by_directory = rank_definitions(
            &tags,
            Focus {
                text: "",
                files: &["./tools/".to_string()],
            },
        );
        assert_eq!(by_directory, by_file);
        assert_ne!(by_file, rank_definitions(&tags, Focus::default()));
    }

    #[test]
    fn private_and_generic_names_rank_below_specific_public_ones() {
        let mut tags = vec![
            def("a.py", "_helper", 1, 2),
            def("b.py", "compute_total", 1, 2),
            def("user.py", "caller", 1, 9),
            refer("user.py", "_helper", 2),
            refer("user.py", "compute_total", 3),
        ];
        // `get` is defined in seven files: generic.
        for i in 0..7 {
            tags.push(def(&format!("m{i}.py"), "get", 1, 2));
        }
        tags.push(refer("user.py", "get", 4));
        let ranked = rank_definitions(&tags, Focus::default());
        let at = |n: &str| ranked.iter().position(|d| d.name == n).unwrap_or(usize::MAX);
        assert!(at("compute_total") < at("_helper"), "{:?}", order(&ranked));
        assert!(at("compute_total") < at("get"), "{:?}", order(&ranked));
    }

    #[test]
    fn a_name_defined_almost_everywhere_links_nothing() {
        let mut tags = vec![def("lone.py", "lonely", 1, 2), def("user.py", "main", 1, 9)];
        for i in 0..=MAX_DEFINERS {
            tags.push(def(&format!("m{i}.py"), "get", 1, 2));
        }
        tags.push(refer("user.py", "get", 4));
        let ranked = rank_definitions(&tags, Focus::default());
        let score = |file: &str| ranked.iter().find(|d| d.file == file).map(|d| d.score);
        assert_eq!(score("m0.py"), score("lone.py"), "no rank flows to `get`");
    }

    #[test]
    fn a_definition_is_ranked_once_however_many_patterns_found_it() {
        let tags = vec![def("a.rs", "run", 3, 9), def("a.rs", "run", 3, 9)];
        assert_eq!(rank_definitions(&tags, Focus::default()).len(), 1);
    }

    #[test]
    fn the_innermost_definition_holding_a_reference_is_the_caller() {
        let tags = vec![
            def("lib.py", "target", 1, 3),
            def("app.py", "App", 1, 20),
            def("app.py", "run", 5, 8),
            refer("app.py", "target", 6),
            def("app.py", "other", 10, 12),
        ];
        let ranked = rank_definitions(
            &tags,
            Focus {
                text: "fix target",
                files: &[],
            },
        );
        assert_eq!(order(&ranked)[..2], ["target", "run"], "{:?}", order(&ranked));
    }

    #[test]
    fn no_tags_no_ranking() {
        assert!(rank_definitions(&[], Focus::default()).is_empty());
    }
}
