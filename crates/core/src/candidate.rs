//! Monte Carlo candidates: which passing candidate is best, and a bead's labels that ask for
//! candidates (`fanout:N`, `select:first|best`). One place for the label rules: the CLI checks new
//! beads with them and the activities read them for a run.

use crate::config::{MAX_FANOUT, SelectMode};
use crate::proto::{GateName, SharkResult};

/// The `best` order among passing candidates (smaller is better): fewest failed gate runs on the
/// way (review rejections and Semgrep findings that forced redos), then the smallest diff, then
/// the quickest definition of done, then the lowest number.
pub fn candidate_score(k: u32, result: &SharkResult) -> (usize, u64, u64, u32) {
    let failed = result.gate_results.iter().filter(|g| !g.passed).count();
    let dod_ms = result
        .gate_results
        .iter()
        .filter(|g| g.gate() == GateName::Dod)
        .map(|g| g.duration_ms)
        .sum();
    (failed, result.diff_lines, dod_ms, k)
}

/// Lines added plus removed, from `git diff --stat`'s summary line.
pub fn diff_lines(stat: &str) -> u64 {
    let summary = stat.lines().last().unwrap_or_default();
    summary
        .split(',')
        .filter(|part| part.contains("insertion") || part.contains("deletion"))
        .filter_map(|part| part.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// A bead's Monte Carlo fanout: its label `fanout:N` (1..=MAX_FANOUT), else the project's.
pub fn fanout_of(labels: &[String], project_fanout: u32) -> u32 {
    labels
        .iter()
        .filter_map(|l| l.strip_prefix("fanout:"))
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .find(|n| (1..=MAX_FANOUT).contains(n))
        .unwrap_or(project_fanout)
}

/// A bead's winner selection: its label `select:first` / `select:best`, else the project's.
pub fn select_of(labels: &[String], project_select: SelectMode) -> SelectMode {
    labels
        .iter()
        .find_map(|l| match l.as_str() {
            "select:first" => Some(SelectMode::First),
            "select:best" => Some(SelectMode::Best),
            _ => None,
        })
        .unwrap_or(project_select)
}

/// Refuses a malformed candidate label on a new bead (a run would ignore it silently).
pub fn check_candidate_label(label: &str) -> Result<(), String> {
    if let Some(n) = label.strip_prefix("fanout:")
        && !n.parse::<u32>().is_ok_and(|n| (1..=MAX_FANOUT).contains(&n))
    {
        return Err(format!(
            "{label}: fanout takes a number of candidates from 1 to {MAX_FANOUT}, e.g. fanout:3"
        ));
    }
    if label.starts_with("select:") && label != "select:first" && label != "select:best" {
        return Err(format!("{label}: select is select:first or select:best"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::GateResult;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_bead_label_overrides_the_projects_fanout_and_select_within_bounds() {
        assert_eq!(fanout_of(&labels(&[]), 1), 1);
        assert_eq!(fanout_of(&labels(&["ui", "fanout:3"]), 1), 3);
        assert_eq!(
            fanout_of(&labels(&["fanout:0", "fanout:99", "fanout:x"]), 2),
            2,
            "out of bounds is ignored"
        );
        assert_eq!(select_of(&labels(&[]), SelectMode::First), SelectMode::First);
        assert_eq!(
            select_of(&labels(&["select:best"]), SelectMode::First),
            SelectMode::Best
        );
        assert_eq!(
            select_of(&labels(&["select:worst"]), SelectMode::Best),
            SelectMode::Best
        );
    }

    #[test]
    fn a_malformed_candidate_label_is_refused_with_what_to_write() {
        for ok in ["fanout:1", "fanout:8", "select:first", "select:best", "ui", "fanoutish"] {
            assert_eq!(check_candidate_label(ok), Ok(()), "{ok}");
        }
        let err = check_candidate_label("fanout:9").unwrap_err();
        assert!(err.contains("from 1 to 8, e.g. fanout:3"), "{err}");
        assert!(check_candidate_label("fanout:x").is_err());
        assert!(check_candidate_label("fanout:0").is_err());
        let err = check_candidate_label("select:worst").unwrap_err();
        assert!(err.contains("select:first or select:best"), "{err}");
    }

    #[test]
    fn the_best_candidate_failed_least_then_changed_least_then_tested_quickest() {
        let gate = |gate: GateName, passed: bool, ms: u64| GateResult {
            gate: gate as i32,
            passed,
            duration_ms: ms,
            ..GateResult::default()
        };
        let clean_big = SharkResult {
            diff_lines: 40,
            gate_results: vec![gate(GateName::Review, true, 0), gate(GateName::Dod, true, 900)],
            ..SharkResult::default()
        };
        let redone_small = SharkResult {
            diff_lines: 4,
            gate_results: vec![
                gate(GateName::Review, false, 0),
                gate(GateName::Review, true, 0),
                gate(GateName::Dod, true, 100),
            ],
            ..SharkResult::default()
        };
        let clean_small_slow = SharkResult {
            diff_lines: 4,
            gate_results: vec![gate(GateName::Dod, true, 5000)],
            ..SharkResult::default()
        };
        let clean_small_quick = SharkResult {
            diff_lines: 4,
            gate_results: vec![gate(GateName::Dod, true, 50)],
            ..SharkResult::default()
        };
        let mut ranked = [
            (1, &clean_big),
            (2, &redone_small),
            (3, &clean_small_slow),
            (4, &clean_small_quick),
        ];
        ranked.sort_by_key(|(k, r)| candidate_score(*k, r));
        let order: Vec<u32> = ranked.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, [4, 3, 1, 2]);
        assert_eq!(
            candidate_score(7, &clean_small_quick),
            candidate_score(7, &clean_small_quick)
        );
        assert!(candidate_score(1, &clean_small_quick) < candidate_score(2, &clean_small_quick));
    }

    #[test]
    fn diff_lines_adds_insertions_and_deletions_from_the_stat_summary() {
        let stat = " src/lib.rs | 5 +++--\n 1 file changed, 3 insertions(+), 2 deletions(-)";
        assert_eq!(diff_lines(stat), 5);
        assert_eq!(diff_lines(" 1 file changed, 1 insertion(+)"), 1);
        assert_eq!(diff_lines(""), 0);
    }
}
