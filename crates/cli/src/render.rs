//! How runs look on a terminal.

use std::fmt::Write;

use chum_activities::repo::GcPlan;
use chum_core::config::ChumConfig;
use chum_core::proto::{EnumName, GateName, GateResult, Outcome, Phase, PhaseSpan, SharkResult, SharkStatus};

pub fn ui_link(config: &ChumConfig, workflow_id: &str) -> String {
    format!(
        "{}/namespaces/{}/workflows/{workflow_id}",
        config.temporal.ui_url.trim_end_matches('/'),
        config.temporal.namespace
    )
}

/// A time in milliseconds since the epoch as UTC RFC 3339 to the second; "-" when unknown (0).
pub fn utc_time(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_string();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

fn mark(passed: bool) -> &'static str {
    if passed { "pass" } else { "FAIL" }
}

fn gate_line(g: &GateResult) -> String {
    let first = g.excerpt.lines().next().unwrap_or_default();
    let took = if g.duration_ms > 0 {
        format!(" ({})", seconds(g.duration_ms))
    } else {
        String::new()
    };
    let round = if g.handoff > 0 {
        format!("{}.{}", g.round, g.handoff)
    } else {
        g.round.to_string()
    };
    let by = if g.provider.is_empty() {
        String::new()
    } else {
        format!(" [{}]", g.provider)
    };
    format!("{} #{round} {}{took}{by}: {first}", g.label(), mark(g.passed))
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// The lines of a failure worth showing on one screen: assertion messages and error lines.
/// The whole output is in the artifact store.
fn highlights(excerpt: &str) -> Vec<&str> {
    const MARKERS: [&str; 7] = ["FAIL", "Error", "error:", "[error]", "panicked", "assert", "killed"];
    let mut lines: Vec<&str> = excerpt
        .lines()
        .skip(1)
        .map(str::trim)
        // Findings lists ("- rule file:line: message") and error lines from test runners.
        .filter(|l| l.starts_with("- ") || MARKERS.iter().any(|m| l.contains(m)))
        .collect();
    lines.dedup();
    lines.truncate(4);
    lines
}

/// The lines `chum watch` prints as a run progresses: phase changes and new gate results. Times
/// are the run's own (its phase list, kept in its history), counted from its first phase, so they
/// are the same as `chum status` shows whenever the watch started and whatever a worker crash
/// delayed; the watcher's clock plays no part.
#[derive(Default)]
pub struct Progress {
    phase: Option<(Phase, u32, u32)>,
    gates_seen: usize,
    refused_seen: usize,
}

/// `[  12.3s]`: when the run's current phase began, from the start of the run.
fn run_time(s: &SharkStatus) -> String {
    let start = s.phases.first().map(|p| p.started_ms).unwrap_or(0);
    match s.phases.last().map(|p| p.started_ms) {
        Some(now) if start > 0 && now >= start => format!("[{:>6.1}s]", (now - start) as f64 / 1000.0),
        _ => format!("[{:>7}]", "-"),
    }
}

impl Progress {
    pub fn update(&mut self, s: &SharkStatus) -> String {
        let mut out = String::new();
        let at = run_time(s);
        for g in s.gate_results.iter().skip(self.gates_seen) {
            let _ = writeln!(out, "{at}   {}", gate_line(g));
            if !g.passed {
                for line in highlights(&g.excerpt) {
                    let _ = writeln!(out, "{:>10}   | {line}", "");
                }
            }
        }
        self.gates_seen = s.gate_results.len();
        for r in s.rejected_signals.iter().skip(self.refused_seen) {
            let _ = writeln!(out, "{at}   refused signal {}: {}", r.payload_excerpt, r.reason);
        }
        self.refused_seen = s.rejected_signals.len();
        let key = (s.phase(), s.plan_round, s.attempt * 1000 + s.handoff);
        if self.phase != Some(key) {
            self.phase = Some(key);
            let detail = match s.phase() {
                Phase::Planning => format!(" (round {})", s.plan_round),
                Phase::AwaitingApproval => format!(" (plan round {}; a person must approve or reject)", s.plan_round),
                Phase::Executing | Phase::Review | Phase::Semgrep | Phase::Dod | Phase::Gate | Phase::Integrating => {
                    let redo = if s.handoff > 0 {
                        format!(", redo {}", s.handoff)
                    } else {
                        String::new()
                    };
                    format!(" (attempt {}/{}{redo})", s.attempt, s.max_attempts)
                }
                Phase::Done => format!(": {}", s.outcome().name()),
                Phase::WaitingForSlot => " (approved; waits for an execution slot: `chum queue` says why)".to_string(),
                Phase::Queued => " (its gates passed; waits for its turn at the base branch: `chum queue`)".to_string(),
                Phase::AwaitingResultApproval => format!(
                    " (attempt {}: its result passed the gates and waits for a person: `chum show {} --diff`, then `chum approve` or `chum reject`)",
                    s.attempt, s.bead_id
                ),
                Phase::AwaitingPullRequest => format!(
                    " (its pull request waits for a person to merge it, close it or ask for changes: {})",
                    s.pull_request_url
                ),
                _ => String::new(),
            };
            let _ = writeln!(out, "{at} {}{detail}", s.phase().name());
        }
        out
    }
}

/// What `chum gc` removed (or, with --dry-run, would remove) and what it kept.
pub fn gc(plan: &GcPlan, dry_run: bool) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would remove" } else { "removed" };
    if plan.is_empty() {
        let _ = writeln!(out, "{}: nothing to clean up", plan.project);
    }
    for w in &plan.worktrees {
        let _ = writeln!(out, "{verb} worktree {}", w.display());
    }
    for b in &plan.merged_branches {
        let _ = writeln!(out, "{verb} branch {b} (merged)");
    }
    for r in &plan.candidate_refs {
        let _ = writeln!(out, "{verb} ref {r}");
    }
    for k in &plan.kept_branches {
        let _ = writeln!(out, "kept branch {}: {}", k.branch, k.why);
    }
    if !plan.running.is_empty() {
        let _ = writeln!(out, "left alone (running): {}", plan.running.join(", "));
    }
    if plan.beads_file_uncommitted {
        let _ = writeln!(
            out,
            "{} has uncommitted changes (CHUM records bead updates there and never commits them): \
             commit it with `git add {} && git commit -m \"beads\"`",
            plan.beads_file, plan.beads_file
        );
    }
    out
}

pub fn plan(s: &SharkStatus) -> String {
    let mut out = String::new();
    let Some(plan) = &s.plan else {
        return "  (no plan yet)\n".to_string();
    };
    let _ = writeln!(
        out,
        "\n  Plan for {} (round {}): {}",
        s.bead_id, s.plan_round, plan.summary
    );
    let _ = writeln!(out, "  Steps:");
    for step in &plan.steps {
        let _ = writeln!(out, "    - {step}");
    }
    let _ = writeln!(out, "  Acceptance criteria:");
    for c in &plan.acceptance_criteria {
        let _ = writeln!(out, "    - {c}");
    }
    let _ = writeln!(out, "  Files: {}\n", plan.files.join(", "));
    out
}

fn phase_durations(phases: &[PhaseSpan]) -> String {
    phases
        .iter()
        .filter(|p| p.ended_ms >= p.started_ms && p.started_ms > 0)
        .map(|p| {
            let round = match p.phase() {
                Phase::Planning
                | Phase::AwaitingApproval
                | Phase::Executing
                | Phase::Review
                | Phase::Semgrep
                | Phase::Dod
                | Phase::Gate => format!("#{}", p.round),
                _ => String::new(),
            };
            format!(
                "{}{round} {}",
                p.phase().name(),
                seconds((p.ended_ms - p.started_ms) as u64)
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

pub fn status(config: &ChumConfig, workflow_id: &str, s: &SharkStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run         {workflow_id}");
    let _ = writeln!(out, "bead        {} (project {})", s.bead_id, s.project);
    let _ = writeln!(out, "phase       {}", s.phase().name());
    if s.phase() == Phase::Done {
        let _ = writeln!(out, "outcome     {}: {}", s.outcome().name(), s.reason);
    }
    let _ = writeln!(
        out,
        "plan round  {}   attempt {}/{}",
        s.plan_round, s.attempt, s.max_attempts
    );
    if let Some(plan) = &s.plan {
        let _ = writeln!(out, "plan        {}", plan.summary);
    }
    if !s.pull_request_url.is_empty() {
        let _ = writeln!(out, "pull request #{} {}", s.pull_request_number, s.pull_request_url);
    }
    if !s.host.is_empty() {
        let _ = writeln!(out, "host        {}{}", s.host, lost_hosts(&s.hosts_lost));
    }
    if s.phase() == Phase::AwaitingResultApproval {
        let _ = writeln!(
            out,
            "result      attempt {} waits for a person: {} (`chum show {} --diff`)",
            s.attempt,
            s.result_diff_stat.lines().last().unwrap_or_default().trim(),
            s.bead_id
        );
    }
    for d in &s.decisions {
        let verdict = if d.approved { "approved" } else { "rejected" };
        let _ = writeln!(out, "decision    {verdict} by {} {}", d.by, d.feedback);
    }
    for g in &s.gate_results {
        let _ = writeln!(out, "gate        {}", gate_line(g));
    }
    for r in &s.rejected_signals {
        let _ = writeln!(out, "refused     {}: {}", r.payload_excerpt, r.reason);
    }
    for q in &s.quarantined_rules {
        let _ = writeln!(out, "quarantined {}: {}", q.file, q.reason);
    }
    if let Some(u) = &s.usage {
        let _ = writeln!(
            out,
            "usage       {} in / {} out tokens, ${:.4}",
            u.input_tokens, u.output_tokens, u.cost_usd
        );
    }
    let _ = writeln!(out, "phases      {}", phase_durations(&s.phases));
    let _ = writeln!(out, "UI          {}", ui_link(config, workflow_id));
    out
}

pub fn summary(config: &ChumConfig, workflow_id: &str, run_id: &str, r: &SharkResult) -> String {
    let mut out = String::new();
    let rule = "─".repeat(72);
    let _ = writeln!(out, "\n{rule}");
    let _ = writeln!(out, " CHUM run {workflow_id}");
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, " bead         {} (project {})", r.bead_id, r.project);
    let _ = writeln!(out, " outcome      {}: {}", r.outcome().name(), r.reason);
    if let Some(plan) = &r.plan {
        let _ = writeln!(out, " plan         {}", plan.summary);
    }
    if !r.approved_by.is_empty() {
        let _ = writeln!(out, " approved by  {}", r.approved_by);
    }
    let _ = writeln!(out, " attempts     {}", r.attempts);
    for gate in [GateName::Execute, GateName::Review, GateName::Semgrep, GateName::Dod] {
        let marks: Vec<String> = r
            .gate_results
            .iter()
            .filter(|g| g.gate() == gate)
            .map(|g| {
                if g.provider.is_empty() {
                    mark(g.passed).to_string()
                } else {
                    format!("{} [{}]", mark(g.passed), g.provider)
                }
            })
            .collect();
        if !marks.is_empty() {
            let _ = writeln!(out, " {:<12} {}", gate.name(), marks.join(", "));
        }
    }
    let _ = writeln!(out, " time         {}", phase_durations(&r.phases));
    if let Some(u) = &r.usage {
        let _ = writeln!(
            out,
            " usage        {} in / {} out tokens, ${:.4}",
            u.input_tokens, u.output_tokens, u.cost_usd
        );
    }
    if !r.commit.is_empty() {
        let where_ = if r.merged {
            format!("merged into {}", r.base_branch)
        } else {
            "not merged".to_string()
        };
        let _ = writeln!(
            out,
            " commit       {} on {} ({where_})",
            &r.commit[..r.commit.len().min(12)],
            r.branch
        );
    }
    if !r.pull_request_url.is_empty() {
        let _ = writeln!(out, " pull request {}", r.pull_request_url);
    }
    if !r.host.is_empty() {
        let _ = writeln!(out, " host         {}{}", r.host, lost_hosts(&r.hosts_lost));
    }
    let _ = writeln!(out, " look at      {}", ui_link(config, workflow_id));
    if let Ok(project) = config.project(&r.project) {
        let rev = if r.merged {
            r.base_branch.clone()
        } else {
            r.branch.clone()
        };
        if !r.commit.is_empty() {
            let _ = writeln!(
                out,
                "              git -C {} log -1 --stat {rev}",
                project.repo.display()
            );
        }
    }
    let mut artifacts = config.state_dir.join("artifacts").join(workflow_id);
    if !run_id.is_empty() {
        artifacts = artifacts.join(run_id);
    }
    let _ = writeln!(
        out,
        "              artifacts (prompts, agent output, diffs, DoD logs): {}",
        artifacts.display()
    );
    let last_failure = r.gate_results.iter().rev().find(|g| !g.passed);
    if let (true, Some(last)) = (r.outcome() != Outcome::Integrated, last_failure) {
        let _ = writeln!(out, " last failure {}", gate_line(last));
    }
    let _ = writeln!(out, "{rule}");
    out
}

pub fn lesson(l: &chum_core::proto::Lesson) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "lesson      #{} [{}] {}", l.id, l.category, l.summary);
    if !l.detail.is_empty() {
        let _ = writeln!(out, "detail      {}", l.detail);
    }
    let _ = writeln!(
        out,
        "from        project {}, bead {}, run {} ({}), attempt {}",
        l.project, l.bead_id, l.workflow_id, l.run_id, l.attempt
    );
    if !l.commit.is_empty() {
        let _ = writeln!(out, "commit      {}", l.commit);
    }
    if !l.file_paths.is_empty() {
        let _ = writeln!(out, "files       {}", l.file_paths.join(", "));
    }
    if !l.labels.is_empty() {
        let _ = writeln!(out, "labels      {}", l.labels.join(", "));
    }
    if !l.bad_example.is_empty() {
        let _ = writeln!(out, "bad ({})\n{}\ngood\n{}", l.language, l.bad_example, l.good_example);
    }
    let _ = writeln!(out, "used        {} time(s)", l.use_count);
    out
}

pub fn rule(r: &chum_activities::store::RuleRecord, lesson: Option<&chum_core::proto::Lesson>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "rule        {} ({})", r.rule_id, r.status);
    let _ = writeln!(out, "reason      {}", r.reason);
    for c in &r.checks {
        let _ = writeln!(out, "check       {c}");
    }
    if !r.path.is_empty() {
        let _ = writeln!(out, "file        {} (commit {})", r.path, r.commit);
    }
    if let Some(l) = lesson {
        let _ = writeln!(out, "lesson      #{} from bead {}: {}", l.id, l.bead_id, l.summary);
    }
    if !r.yaml.is_empty() {
        let _ = writeln!(out, "\n{}", r.yaml.trim_end());
    }
    out
}

pub fn learned(r: &chum_core::proto::LearnerResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "learned {} lesson(s) ({} already known)",
        r.lessons.len(),
        r.duplicates_skipped
    );
    for l in &r.lessons {
        let _ = writeln!(out, "  lesson #{} [{}] {}", l.id, l.category, l.summary);
    }
    for rule in &r.rules {
        let verdict = if rule.accepted { "ACCEPTED" } else { "rejected" };
        let _ = writeln!(out, "  rule {} {verdict}: {}", rule.rule_id, rule.reason);
        for c in &rule.checks {
            let _ = writeln!(out, "    check {c}");
        }
        if rule.accepted {
            let _ = writeln!(
                out,
                "    written to {} (commit {})",
                rule.path,
                &rule.commit[..rule.commit.len().min(12)]
            );
        }
    }
    if !r.error.is_empty() {
        let _ = writeln!(out, "  note: {}", r.error);
    }
    out
}

/// " (moved from b, which stopped answering)" for a run that lost hosts on the way.
fn lost_hosts(lost: &[String]) -> String {
    if lost.is_empty() {
        String::new()
    } else {
        format!(" (moved from {}, which stopped answering)", lost.join(", then "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(phase: Phase, started_ms: i64, ended_ms: i64) -> PhaseSpan {
        PhaseSpan {
            phase: phase as i32,
            round: 1,
            started_ms,
            ended_ms,
        }
    }

    #[test]
    fn watch_times_are_the_runs_own_whenever_the_watch_started() {
        let mut s = SharkStatus {
            phase: Phase::Executing as i32,
            attempt: 1,
            max_attempts: 3,
            phases: vec![
                span(Phase::Planning, 1_000_000, 1_004_000),
                span(Phase::AwaitingApproval, 1_004_000, 1_010_000),
                // A worker died during execution: the phase began at 10 s, whatever the watcher saw.
                span(Phase::Executing, 1_010_000, 0),
            ],
            ..SharkStatus::default()
        };
        let mut late_watcher = Progress::default();
        assert_eq!(late_watcher.update(&s), "[  10.0s] executing (attempt 1/3)\n");
        // Nothing new, nothing printed.
        assert_eq!(late_watcher.update(&s), "");
        s.phase = Phase::Review as i32;
        s.phases.push(span(Phase::Review, 1_095_500, 0));
        assert_eq!(late_watcher.update(&s), "[  95.5s] review (attempt 1/3)\n");
    }

    #[test]
    fn a_run_that_moved_hosts_says_from_which() {
        assert_eq!(lost_hosts(&[]), "");
        assert_eq!(
            lost_hosts(&["b".to_string(), "a".to_string()]),
            " (moved from b, then a, which stopped answering)"
        );
    }

    #[test]
    fn a_run_without_phase_times_shows_none() {
        let s = SharkStatus {
            phase: Phase::Planning as i32,
            plan_round: 1,
            ..SharkStatus::default()
        };
        assert_eq!(Progress::default().update(&s), "[      -] planning (round 1)\n");
    }
}
