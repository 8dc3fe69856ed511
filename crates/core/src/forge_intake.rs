//! Forge issues as intake (`[projects.<name>.intake]`): which bead an issue becomes and back, what
//! its labels and body say (priority, Monte Carlo and result-gate labels, "blocked by #N"), and the
//! label and comment that show the bead's state on the issue. The Beads backlog stays the source
//! of truth for order; the forge is one more way in.

use crate::config::ForgeKind;
use crate::proto::BeadStatus;

/// The prefix of the `chum:<state>` labels CHUM keeps on an issue it took.
pub const STATE_LABEL_PREFIX: &str = "chum:";

/// The bead an issue becomes: its id names the forge and the issue (`gh-12` is GitHub's #12,
/// `gl-12` GitLab's).
pub fn bead_id(forge: ForgeKind, issue: u64) -> String {
    format!("{}-{issue}", forge.issue_prefix())
}

/// The issue of `forge` a bead was taken from, by its id.
pub fn issue_of(forge: ForgeKind, bead_id: &str) -> Option<u64> {
    bead_id
        .strip_prefix(forge.issue_prefix())?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// `priority:0`..`priority:4` (or `P0`..`P4`) on the issue; 2 without one.
pub fn priority(labels: &[String]) -> i64 {
    labels
        .iter()
        .find_map(|l| {
            let n = l.strip_prefix("priority:").or_else(|| l.strip_prefix('P'))?;
            n.trim().parse::<i64>().ok().filter(|p| (0..=4).contains(p))
        })
        .unwrap_or(2)
}

/// The issue's labels a bead carries on: Monte Carlo (`fanout:N`, `select:*`) and the result gate.
pub fn carried_labels(labels: &[String]) -> Vec<String> {
    labels
        .iter()
        .filter(|l| l.starts_with("fanout:") || l.starts_with("select:") || *l == crate::gate::APPROVE_RESULT_LABEL)
        .cloned()
        .collect()
}

/// The issues this one waits for: "blocked by #N" or "depends on #N" anywhere in its body (a task
/// list's `- [ ] blocked by #12` too), in order, once each.
pub fn blocked_by(body: &str) -> Vec<u64> {
    let lower = body.to_ascii_lowercase();
    let mut found = Vec::new();
    for marker in ["blocked by", "depends on"] {
        let mut rest = lower.as_str();
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let after = rest.trim_start();
            if let Some(number) = after.strip_prefix('#') {
                let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(n) = digits.parse::<u64>()
                    && !found.contains(&n)
                {
                    found.push(n);
                }
            }
        }
    }
    found
}

/// The state an issue's label shows for its bead.
pub fn state_label(status: BeadStatus) -> &'static str {
    match status {
        BeadStatus::InProgress => "chum:in-progress",
        BeadStatus::Blocked => "chum:blocked",
        BeadStatus::Closed | BeadStatus::Tombstone => "chum:done",
        _ => "chum:queued",
    }
}

/// The comment that goes with a new state.
pub fn state_comment(label: &str, bead: &str, detail: &str) -> String {
    // Said between blank lines, or not at all (a blocked bead without a note says so plainly).
    let detail = match crate::text::excerpt(detail.trim(), 1500) {
        d if d.is_empty() => String::new(),
        d => format!("\n\n{d}"),
    };
    match label {
        "chum:in-progress" => format!(
            "CHUM is working on this as bead `{bead}`. Its plan waits for a person's approval before anything touches the code: `chum approve {bead}` (or `chum status {bead}`)."
        ),
        "chum:blocked" => {
            format!("CHUM stopped on bead `{bead}`; it needs a person.{detail}\n\n`chum retry {bead}` opens it again.")
        }
        "chum:done" => format!("CHUM finished bead `{bead}`.{detail}"),
        _ => format!("CHUM took this issue as bead `{bead}`; it runs when it is ready and its turn comes."),
    }
}

/// The issue's labels with CHUM's state label set to `state` (others kept as they were).
pub fn with_state_label(labels: &[String], state: &str) -> Vec<String> {
    let mut out: Vec<String> = labels
        .iter()
        .filter(|l| !l.starts_with(STATE_LABEL_PREFIX))
        .cloned()
        .collect();
    out.push(state.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_issue_and_its_bead_name_each_other() {
        assert_eq!(bead_id(ForgeKind::GitHub, 12), "gh-12");
        assert_eq!(bead_id(ForgeKind::GitLab, 12), "gl-12");
        assert_eq!(issue_of(ForgeKind::GitHub, "gh-12"), Some(12));
        assert_eq!(issue_of(ForgeKind::GitLab, "gl-12"), Some(12));
        assert_eq!(issue_of(ForgeKind::GitLab, "gh-12"), None);
        assert_eq!(issue_of(ForgeKind::GitHub, "ghx-12"), None);
        assert_eq!(issue_of(ForgeKind::GitHub, "tk-12"), None);
    }

    #[test]
    fn labels_say_priority_and_what_the_bead_carries_on() {
        assert_eq!(priority(&labels(&["bug", "priority:0"])), 0);
        assert_eq!(priority(&labels(&["P1"])), 1);
        assert_eq!(priority(&labels(&["priority:9", "chum"])), 2);
        assert_eq!(
            carried_labels(&labels(&["chum", "fanout:3", "approve-result", "bug"])),
            ["fanout:3", "approve-result"]
        );
    }

    #[test]
    fn blocked_by_names_the_issues_a_body_waits_for() {
        let body = "Needs the parser.\n\n- [ ] Blocked by #3\n- [x] depends on #7 and blocked by  #3\nsee #9";
        assert_eq!(blocked_by(body), [3, 7]);
        assert!(blocked_by("blocked by nothing").is_empty());
    }

    #[test]
    fn the_state_label_replaces_only_chums_own() {
        assert_eq!(
            with_state_label(
                &labels(&["chum", "bug", "chum:queued"]),
                state_label(BeadStatus::InProgress)
            ),
            ["chum", "bug", "chum:in-progress"]
        );
    }
}
