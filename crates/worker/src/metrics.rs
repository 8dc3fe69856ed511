//! Prometheus metrics: the SDK's worker metrics (its own exporter on an ephemeral loopback port,
//! served through the API's `/metrics`) followed by CHUM's, computed at scrape time from the
//! store (finished runs, agent usage, lessons, rules), Temporal visibility (running Sharks) and
//! the backlogs (queue depth). Computed from durable data, CHUM's counters survive restarts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use chum_activities::backlog::Backlog;
use chum_activities::store::Store;
use chum_core::backlog::ready;
use chum_core::config::ChumConfig;
use chum_core::proto::EnumName;
use temporalio_client::Client;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter};
use temporalio_sdk::Runtime;
use temporalio_sdk::runtime::RuntimeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bounds (seconds) of the phase duration histogram buckets.
const PHASE_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

/// A worker runtime whose SDK metrics go to a Prometheus exporter on 127.0.0.1 (an ephemeral
/// port, returned); the API's `/metrics` serves them.
pub fn runtime_with_metrics() -> anyhow::Result<(Runtime, SocketAddr)> {
    let exporter = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
            .build(),
    )?;
    let meter: Arc<dyn CoreMeter> = exporter.meter.clone();
    let telemetry = TelemetryOptions::builder().metrics(meter).build();
    let options = RuntimeOptions::builder()
        .telemetry_options(telemetry)
        .build()
        .map_err(anyhow::Error::msg)?;
    Ok((Runtime::from_current_tokio(options)?, exporter.bound_addr))
}

/// The SDK exporter's text, fetched over loopback (empty when it does not answer).
pub async fn sdk_metrics(addr: SocketAddr) -> String {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), fetch).await {
        Ok(Ok(response)) => response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes Prometheus text exposition, one family at a time.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(self.text, "{name}{labels} {value}");
    }
}

/// CHUM's own metrics.
pub async fn chum_metrics(client: &Client, config: &ChumConfig) -> String {
    let mut out = Exposition::default();

    // Running Sharks by phase (visibility + their status queries).
    let running = chum_client::control::running(client).await.unwrap_or_default();
    let mut by_phase: BTreeMap<String, u64> = BTreeMap::new();
    for (_, status) in &running {
        let phase = status
            .as_ref()
            .map(|s| s.phase().name())
            .unwrap_or_else(|_| "unknown".to_string());
        *by_phase.entry(phase).or_default() += 1;
    }
    out.family("chum_sharks_running", "gauge", "Sharks running now, by phase.");
    for (phase, n) in &by_phase {
        out.sample("chum_sharks_running", &[("phase", phase)], *n as f64);
    }

    // Connections the egress proxies refused since this worker started.
    out.family(
        "chum_egress_refused_total",
        "counter",
        "Connections from sandboxed agents and commands that the egress proxy refused, by who asked and why.",
    );
    for ((client, reason), n) in chum_activities::exec::refused_counts() {
        out.sample(
            "chum_egress_refused_total",
            &[("client", &client), ("reason", &reason)],
            n as f64,
        );
    }

    // Counters over every finished run in the store (SQL aggregates), so they only go up.
    let store = Store::for_config(config);
    let totals = store
        .as_ref()
        .ok()
        .and_then(|s| s.run_totals(&PHASE_BUCKETS).ok())
        .unwrap_or_default();
    let finished_runs: u64 = totals.finished.iter().map(|(_, _, n)| n).sum();
    out.family(
        "chum_sharks_started_total",
        "counter",
        "Sharks started: finished (in the store) plus running.",
    );
    out.sample(
        "chum_sharks_started_total",
        &[],
        (finished_runs + running.len() as u64) as f64,
    );
    out.family(
        "chum_sharks_finished_total",
        "counter",
        "Sharks finished, by project and outcome.",
    );
    for (project, outcome, n) in &totals.finished {
        out.sample(
            "chum_sharks_finished_total",
            &[("project", project), ("outcome", outcome)],
            *n as f64,
        );
    }
    out.family(
        "chum_sharks_finished_by_host_total",
        "counter",
        "Sharks finished with their attempts bound to a host ([worker] several_hosts), by project, the host their last attempt ran on, and outcome.",
    );
    for (project, host, outcome, n) in &totals.finished_by_host {
        out.sample(
            "chum_sharks_finished_by_host_total",
            &[("project", project), ("host", host), ("outcome", outcome)],
            *n as f64,
        );
    }
    out.family(
        "chum_worker_info",
        "gauge",
        "This worker: its host name and whether it takes attempts on a queue of its own (1).",
    );
    let several = if config.worker.several_hosts { "true" } else { "false" };
    out.sample(
        "chum_worker_info",
        &[("host", &config.worker.host), ("several_hosts", several)],
        1.0,
    );
    out.family(
        "chum_phase_duration_seconds",
        "histogram",
        "Time finished runs spent in each phase (a phase entered twice counts twice).",
    );
    for phase in &totals.phases {
        for (bound, n) in PHASE_BUCKETS.iter().zip(&phase.at_most) {
            out.sample(
                "chum_phase_duration_seconds_bucket",
                &[("phase", &phase.phase), ("le", &bound.to_string())],
                *n as f64,
            );
        }
        out.sample(
            "chum_phase_duration_seconds_bucket",
            &[("phase", &phase.phase), ("le", "+Inf")],
            phase.count as f64,
        );
        out.sample(
            "chum_phase_duration_seconds_sum",
            &[("phase", &phase.phase)],
            phase.seconds,
        );
        out.sample(
            "chum_phase_duration_seconds_count",
            &[("phase", &phase.phase)],
            phase.count as f64,
        );
    }
    out.family(
        "chum_gate_results_total",
        "counter",
        "Gate verdicts of finished runs, by gate and result.",
    );
    let mut catches = 0u64;
    for (gate, passed, n) in &totals.gates {
        let verdict = if *passed { "pass" } else { "fail" };
        out.sample(
            "chum_gate_results_total",
            &[("gate", gate), ("result", verdict)],
            *n as f64,
        );
        if gate == "semgrep" && !passed {
            catches += n;
        }
    }
    out.family(
        "chum_semgrep_catches_total",
        "counter",
        "Semgrep gate results that sent work back (a mistake stopped before the tests).",
    );
    out.sample("chum_semgrep_catches_total", &[], catches as f64);

    if let Ok(store) = &store {
        let per = store.spent_by_provider_and_role().unwrap_or_default();
        out.family(
            "chum_agent_tokens_total",
            "counter",
            "Tokens the agents reported, by provider and phase (role).",
        );
        for (provider, role, spent) in &per {
            out.sample(
                "chum_agent_tokens_total",
                &[("provider", provider), ("phase", role)],
                spent.tokens as f64,
            );
        }
        out.family(
            "chum_agent_cost_usd_total",
            "counter",
            "USD the agents reported, by provider and phase (role).",
        );
        for (provider, role, spent) in &per {
            out.sample(
                "chum_agent_cost_usd_total",
                &[("provider", provider), ("phase", role)],
                spent.cost_usd,
            );
        }
        out.family(
            "chum_agent_runs_total",
            "counter",
            "Agent runs, by provider and phase (role).",
        );
        for (provider, role, spent) in &per {
            out.sample(
                "chum_agent_runs_total",
                &[("provider", provider), ("phase", role)],
                spent.runs as f64,
            );
        }
        out.family("chum_lessons", "gauge", "Lessons in the store.");
        out.sample("chum_lessons", &[], store.lesson_count(None).unwrap_or(0) as f64);
        let mut rules: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in store.rules(None).unwrap_or_default() {
            *rules.entry(r.status.as_str()).or_default() += 1;
        }
        out.family("chum_rules", "gauge", "Learned Semgrep rules, by status.");
        for (status, n) in &rules {
            out.sample("chum_rules", &[("status", status)], *n as f64);
        }
    }

    out.family(
        "chum_queue_depth",
        "gauge",
        "Ready beads per project that no Shark is working on yet.",
    );
    for project in config.projects.values() {
        if let Ok(items) = Backlog::of(project).items().await {
            let prefix = chum_core::ids::shark_workflow_id(&project.name, "");
            let waiting = ready(&items)
                .iter()
                .filter(|i| {
                    !running
                        .iter()
                        .any(|(id, _)| id.strip_prefix(&prefix) == Some(i.id.as_str()))
                })
                .count();
            out.sample("chum_queue_depth", &[("project", &project.name)], waiting as f64);
        }
    }
    out.text
}
