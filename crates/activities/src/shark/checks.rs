//! The Shark's mechanical gates: Semgrep on the lines an attempt added, and the project's
//! definition-of-done commands.

use crate::error::{command_error, program_error, repo_error, retryable};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chum_core::config::ProjectConfig;
use chum_core::egress::AllowList;
use chum_core::proto::{DodCheck, DodReport, DodRequest, NamedGateRequest, RunRef, SemgrepReport, SemgrepRequest};
use temporalio_sdk::activities::ActivityError;
use tracing::Instrument as _;

use crate::agent::Liveness;
use crate::exec::{ProjectCommand, run_project_command};
use crate::repo::{GitError, WorktreeGit};
use crate::repo::{RepoProblem, hold_to_tree};
use crate::semgrep::{added_lines, locate_core, only_new_findings, rule_files, scan};

use super::SharkSteps;

impl SharkSteps {
    /// Scans the files the attempt changed with the valid rules; invalid rule files are quarantined.
    /// Fails closed: a file the engine could not scan (after one retry) and a scan with every rule
    /// quarantined are findings; findings on lines the attempt did not touch are left out.
    pub async fn semgrep_impl(&self, req: SemgrepRequest) -> Result<SemgrepReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let core = locate_core(&self.config.semgrep).map_err(program_error)?;
        let artifacts = self.artifacts(&run);
        let rules = rule_files(&self.config.state_dir, &project.repo)
            .map_err(|e| retryable(format!("cannot prepare the rule files: {e}")))?;
        let worktree = Path::new(&req.worktree);
        // Semgrep scans exactly the tree the execution staged.
        match hold_to_tree(&project.repo, worktree, &req.tree).await {
            Ok(changed) if !changed.is_empty() => {
                tracing::warn!(
                    ?changed,
                    "the worktree had changed since the execution; put back before scanning"
                );
            }
            Ok(_) => {}
            Err(e) => return Err(repo_error(e)),
        }
        let name = match req.verification {
            0 => format!("semgrep-{}-{}", req.attempt, req.handoff),
            // Run again under the merge queue's turn: its own artifacts, the first ones stay.
            n => format!("semgrep-{}-v{n}", req.attempt),
        };
        let work = artifacts.dir().join(&name);
        let changed_files = &req.changed_files;
        let run_scan = |work: PathBuf| {
            let (core, rules) = (core.clone(), rules.clone());
            async move {
                scan(
                    &core,
                    &self.semgrep_cache,
                    &rules,
                    worktree,
                    changed_files,
                    &work,
                    self.config.semgrep.timeout,
                    crate::semgrep::FILE_TIMEOUT,
                )
                .instrument(crate::log_context::component("semgrep scan"))
                .await
                .map_err(retryable)
            }
        };
        // The lines the attempt added are asked of git while the engine scans (both only read the
        // worktree, which `hold_to_tree` has just put in its staged state).
        let (scanned, added) = tokio::join!(run_scan(work.clone()), self.lines_added(project, worktree));
        let mut scan = scanned?;
        if !scan.not_scanned.is_empty() {
            // Once more: a timeout on a loaded machine may not happen twice.
            tracing::warn!(not_scanned = ?scan.not_scanned, "semgrep could not scan some files; scanning again");
            scan = run_scan(work.join("retry")).await?;
        }
        let artifact = artifacts
            .write(&format!("{name}.json"), scan.raw.as_bytes())
            .await
            .map_err(|e| retryable(format!("cannot write the scan artifact: {e}")))?;
        for q in &scan.quarantined {
            tracing::warn!(file = %q.file, reason = %q.reason, "semgrep rule file quarantined");
        }
        let (mut findings, preexisting) = match added {
            Ok(added) => only_new_findings(std::mem::take(&mut scan.findings), &added),
            Err(problem) => {
                let mut all = std::mem::take(&mut scan.findings);
                all.push(closed_finding("", &problem));
                (all, 0)
            }
        };
        for (file, why) in &scan.not_scanned {
            findings.push(closed_finding(
                file,
                &format!("Semgrep could not scan this file ({why}), so the gate fails closed; make the file smaller or simpler, or raise [semgrep] timeout"),
            ));
        }
        if scan.rule_files == 0 && !rules.is_empty() {
            findings.push(closed_finding(
                "",
                "every rule file is quarantined, so the gate checked nothing and fails closed; fix the rule files named in the run's quarantine list",
            ));
        }
        tracing::info!(bead = %run.bead_id, findings = findings.len(), preexisting, files = scan.files_scanned,
            ms = scan.duration.as_millis() as u64, "semgrep scanned");
        Ok(SemgrepReport {
            passed: findings.is_empty(),
            findings,
            quarantined: scan.quarantined,
            duration_ms: scan.duration.as_millis() as u64,
            rule_files: scan.rule_files as u32,
            files_scanned: scan.files_scanned as u32,
            artifact: artifact.display().to_string(),
            preexisting_ignored: preexisting as u32,
            not_scanned: scan.not_scanned.iter().map(|(f, why)| format!("{f}: {why}")).collect(),
        })
    }

    /// What the attempt's staged changes add or change, per file, relative to where its branch
    /// left the base (the Semgrep baseline). `Err` when it cannot be told: then every finding counts.
    async fn lines_added(
        &self,
        project: &ProjectConfig,
        worktree: &Path,
    ) -> Result<std::collections::HashMap<String, Vec<(u32, u32)>>, String> {
        let git = WorktreeGit::open(&project.repo, worktree)
            .await
            .map_err(|e| e.to_string())?;
        let base_ref = format!("refs/heads/{}", project.base_branch);
        let base = git
            .git(&["merge-base", "HEAD", &base_ref])
            .await
            .map_err(|e| e.to_string())?;
        let diff = git
            .git(&[
                "diff",
                "--cached",
                "--unified=0",
                "--no-color",
                "--no-textconv",
                "--no-ext-diff",
                &base,
            ])
            .await
            .map_err(|e| e.to_string())?;
        Ok(added_lines(&diff))
    }

    pub async fn run_dod_impl(&self, req: DodRequest, liveness: &impl Liveness) -> Result<DodReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let commands: Vec<Check<'_>> = project
            .dod
            .iter()
            .enumerate()
            .map(|(i, command)| Check {
                command,
                name: match req.verification {
                    0 => format!("dod-{}-{}", req.attempt, i + 1),
                    n => format!("dod-{}-v{n}-{}", req.attempt, i + 1),
                },
                allow_hosts: None,
            })
            .collect();
        let on = Worktree {
            run: &run,
            path: PathBuf::from(&req.worktree),
            tree: &req.tree,
        };
        let report = self
            .run_checks(project, &on, &commands, req.timeout_secs, liveness)
            .await?;
        tracing::info!(bead = %run.bead_id, attempt = req.attempt, passed = report.passed, discarded = ?report.discarded, "definition of done ran");
        Ok(report)
    }

    /// One of the project's named gates: its command, with its own hosts, on the work's tree.
    pub async fn run_named_gate_impl(
        &self,
        req: NamedGateRequest,
        liveness: &impl Liveness,
    ) -> Result<DodReport, ActivityError> {
        let run = req.run.clone().unwrap_or_default();
        let project = self.project(&run)?;
        let Some(gate) = project.named_gates.iter().find(|g| g.name == req.name) else {
            // The config changed under a running Shark: the gate fails closed and says so.
            return Ok(failed_report(
                "(gate)",
                &format!(
                    "the project has no gate named {:?} any more; the worker's config changed while the run went on",
                    req.name
                ),
            ));
        };
        let name = match req.verification {
            0 => format!("gate-{}-{}-{}", gate.name, req.attempt, req.handoff),
            n => format!("gate-{}-{}-v{n}", gate.name, req.attempt),
        };
        let check = Check {
            command: &gate.command,
            name,
            allow_hosts: Some(&gate.allow_hosts),
        };
        let on = Worktree {
            run: &run,
            path: PathBuf::from(&req.worktree),
            tree: &req.tree,
        };
        let report = self
            .run_checks(project, &on, &[check], req.timeout_secs, liveness)
            .await?;
        tracing::info!(bead = %run.bead_id, attempt = req.attempt, gate = %gate.name, passed = report.passed, "named gate ran");
        Ok(report)
    }

    /// Runs commands in order on exactly the tree the execution staged, within one time budget;
    /// stops at the first that fails. What they write in the worktree is discarded, reported.
    async fn run_checks(
        &self,
        project: &ProjectConfig,
        on: &Worktree<'_>,
        commands: &[Check<'_>],
        timeout_secs: u64,
        liveness: &impl Liveness,
    ) -> Result<DodReport, ActivityError> {
        let worktree = &on.path;
        if !worktree.is_dir() {
            return Ok(failed_report(
                "(worktree)",
                &format!("the attempt's worktree {} is gone", worktree.display()),
            ));
        }
        let artifacts = self.artifacts(on.run);
        let budget = Duration::from_secs(timeout_secs.max(1));
        let started = Instant::now();
        let mut report = DodReport {
            passed: true,
            ..DodReport::default()
        };
        // The checks test exactly the tree the execution staged (and the review saw).
        let held = hold_to_tree(&project.repo, worktree, on.tree).await;
        if let Err(RepoProblem::Git(tampered @ GitError::Tampered { .. })) = &held {
            fail_tampered(&mut report, tampered);
            return Ok(report);
        }
        report.discarded = held.map_err(repo_error)?;
        for check in commands {
            let remaining = budget.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
            let run = run_project_command(
                &self.config,
                project,
                &artifacts,
                ProjectCommand {
                    command: check.command,
                    worktree,
                    name: check.name.clone(),
                    timeout: remaining,
                    allow_hosts: check.allow_hosts,
                },
                liveness,
            )
            .await
            .map_err(command_error)?;
            report.sandbox = run.sandbox.clone();
            if run.outcome.cancelled {
                return Err(ActivityError::cancelled());
            }
            let passed = run.passed();
            report.passed &= passed;
            report.checks.push(DodCheck {
                command: check.command.to_string(),
                exit_code: run.outcome.code(),
                passed,
                timed_out: run.outcome.timed_out,
                duration_ms: run.outcome.duration.as_millis() as u64,
                output_excerpt: run.output,
                artifact: run.stdout_path.display().to_string(),
            });
            if !passed {
                // Later commands usually depend on earlier ones (build before test); stop here.
                break;
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        match hold_to_tree(&project.repo, worktree, on.tree).await {
            Ok(changed) => report.discarded.extend(changed),
            Err(RepoProblem::Git(tampered @ GitError::Tampered { .. })) => fail_tampered(&mut report, &tampered),
            Err(e) => return Err(repo_error(e)),
        }
        Ok(report)
    }
}

/// Where checks run: the run's worktree, held to the tree the execution staged.
struct Worktree<'a> {
    run: &'a RunRef,
    path: PathBuf,
    tree: &'a str,
}

/// One command of a check, the name of its artifacts and the hosts it may reach.
struct Check<'a> {
    command: &'a str,
    name: String,
    allow_hosts: Option<&'a AllowList>,
}

/// A report that failed before any command ran, saying why.
fn failed_report(what: &str, why: &str) -> DodReport {
    DodReport {
        passed: false,
        checks: vec![DodCheck {
            command: what.into(),
            exit_code: -1,
            output_excerpt: why.to_string(),
            ..DodCheck::default()
        }],
        ..DodReport::default()
    }
}

/// A Semgrep finding that fails the gate closed (the engine could not check something).
fn closed_finding(file: &str, message: &str) -> chum_core::proto::SemgrepFinding {
    chum_core::proto::SemgrepFinding {
        rule_id: "chum.semgrep-fails-closed".into(),
        file: file.to_string(),
        line: 0,
        message: message.to_string(),
        severity: "ERROR".into(),
    }
}

/// Fails a definition of done whose worktree was tampered with: the tampering is its last check
/// (no command runs on, and no pass comes from, a tree that is not the one reviewed).
fn fail_tampered(report: &mut DodReport, tampered: &GitError) {
    report.passed = false;
    report.checks.push(DodCheck {
        command: "(worktree)".into(),
        exit_code: -1,
        output_excerpt: tampered.to_string(),
        ..DodCheck::default()
    });
}
