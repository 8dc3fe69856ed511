//! Forge issues as intake: each open issue carrying the project's intake label becomes a bead
//! (`gh-<number>` on GitHub, `gl-<number>` on GitLab: title, body, priority and Monte Carlo labels, "blocked by #N" as dependencies),
//! and each issue taken shows its bead's state: a `chum:<state>` label, and a comment when the
//! state changes (taken, working with the plan at its gate, blocked and why, done and how). Run
//! at the start of each dispatcher round; safe to repeat: the label is the state already shown.

use chum_core::backlog::BacklogItem;
use chum_core::config::ProjectConfig;
use chum_core::forge_intake::{
    STATE_LABEL_PREFIX, bead_id, blocked_by, carried_labels, issue_of, priority, state_comment, state_label,
    with_state_label,
};
use chum_core::new_bead::{KnownBeads, NewBead};
use chum_core::pull_request::FORGE_ISSUE_LABEL;

use super::{Forge, ForgeError};
use crate::backlog::Backlog;

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct IntakeReport {
    /// Beads made from issues this pass.
    pub taken: Vec<String>,
    /// Issues whose state label (and comment) changed.
    pub updated: Vec<u64>,
    /// What is wrong with issues: not taken (why), or taken without a dependency it names.
    pub problems: Vec<String>,
}

/// Why the issues could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error("the backlog: {0}")]
    Backlog(String),
}

/// One pass over the labelled issues of the project's forge.
pub async fn sync_issues(project: &ProjectConfig) -> Result<IntakeReport, IntakeError> {
    let (Some(forge), Some(intake)) = (&project.forge, &project.intake) else {
        return Ok(IntakeReport::default());
    };
    let kind = forge.kind;
    let repo = forge.repo.clone();
    let forge = Forge::new(forge)?;
    let backlog = Backlog::of(project);
    let mut issues = forge.labelled_issues(&intake.label).await?;
    issues.sort_by_key(|i| i.number);
    let mut items = backlog.items().await.map_err(|e| IntakeError::Backlog(e.to_string()))?;
    let mut report = IntakeReport::default();

    // New open issues become beads, oldest first (so "blocked by" an older one finds its bead).
    for issue in issues.iter().filter(|i| i.open) {
        let id = bead_id(kind, issue.number);
        if items.iter().any(|b| b.id == id) {
            continue;
        }
        let labels = &issue.labels;
        let body = &issue.body;
        let (known, unknown): (Vec<u64>, Vec<u64>) = blocked_by(body)
            .into_iter()
            .partition(|n| items.iter().any(|b| b.id == bead_id(kind, *n)));
        let dependencies = known
            .into_iter()
            .map(|n| (bead_id(kind, n), "blocks".to_string()))
            .collect();
        if !unknown.is_empty() {
            // Said, not dropped: the bead goes on without them, and the dispatcher's round shows it.
            let names: Vec<String> = unknown.iter().map(|n| format!("#{n}")).collect();
            report.problems.push(format!(
                "#{}: blocked by {}, which CHUM has not taken (no `{}` label); label them or drop the line",
                issue.number,
                names.join(", "),
                intake.label
            ));
        }
        let mut bead_labels = carried_labels(labels);
        bead_labels.push(format!("{FORGE_ISSUE_LABEL}{}", issue.number));
        let new = NewBead {
            id: Some(id.clone()),
            title: issue.title.trim().to_string(),
            description: format!("{body}\n\n(From issue #{} on {repo}.)", issue.number),
            acceptance_criteria: String::new(),
            priority: priority(labels),
            issue_type: "task".to_string(),
            labels: bead_labels,
            dependencies,
            created_by: format!("{repo}#{}", issue.number),
        };
        if let Err(e) = new.check(&KnownBeads::of(&items)) {
            report.problems.push(format!("#{}: {e}", issue.number));
            continue;
        }
        backlog
            .create(&new)
            .await
            .map_err(|e| IntakeError::Backlog(e.to_string()))?;
        report.taken.push(id);
        items = backlog.items().await.map_err(|e| IntakeError::Backlog(e.to_string()))?;
    }

    // Every issue taken shows its bead's state.
    for issue in &issues {
        let Some(bead) = items.iter().find(|b| issue_of(kind, &b.id) == Some(issue.number)) else {
            continue;
        };
        let wanted = state_label(bead.state());
        let labels = &issue.labels;
        let shown: Vec<&String> = labels.iter().filter(|l| l.starts_with(STATE_LABEL_PREFIX)).collect();
        if shown.len() == 1 && shown[0] == wanted {
            continue;
        }
        forge
            .comment(
                issue.number,
                &state_comment(wanted, &bead.id, &detail(&backlog, bead).await),
            )
            .await?;
        forge
            .set_labels(issue.number, &with_state_label(labels, wanted))
            .await?;
        report.updated.push(issue.number);
    }
    Ok(report)
}

/// What a comment says about the bead: how it was closed, or the last note (why it is blocked).
async fn detail(backlog: &Backlog, bead: &BacklogItem) -> String {
    if !bead.close_reason.is_empty() {
        return bead.close_reason.clone();
    }
    backlog
        .get(&bead.id)
        .await
        .map(|b| {
            b.notes
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}
