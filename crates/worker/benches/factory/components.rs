//! Where a bead's time goes inside the steps (issue "Speed to the floor", item 2): the activities
//! time their parts with TRACE spans on `chum_activities::log_context::COMPONENT_TARGET`
//! ("worktree", "plan checkout", "git commit", ...), which no log ever shows; this layer, the only
//! subscriber that asks for them, adds up each part's wall time while the benchmark runs its
//! sequential beads.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use chum_activities::log_context::COMPONENT_TARGET;
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use super::{Row, percentile};

/// Each part's durations (ms), by name.
fn times() -> &'static Mutex<BTreeMap<String, Vec<f64>>> {
    static TIMES: OnceLock<Mutex<BTreeMap<String, Vec<f64>>>> = OnceLock::new();
    TIMES.get_or_init(Default::default)
}

/// A span's part name and when it opened.
struct Open {
    name: String,
    at: Instant,
}

struct NameOf(Option<String>);

impl tracing::field::Visit for NameOf {
    fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "name" {
            self.0 = Some(value.to_string());
        }
    }
}

struct ComponentTimes;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ComponentTimes {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut name = NameOf(None);
        attrs.record(&mut name);
        if let (Some(name), Some(span)) = (name.0, ctx.span(id)) {
            span.extensions_mut().insert(Open {
                name,
                at: Instant::now(),
            });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(open) = span.extensions().get::<Open>() {
            let ms = open.at.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut times) = times().lock() {
                times.entry(open.name.clone()).or_default().push(ms);
            }
        }
    }
}

/// Installs the layer (once, for the whole benchmark).
pub fn install() {
    let only_components = tracing_subscriber::filter::filter_fn(|m| m.target() == COMPONENT_TARGET);
    let _ = tracing_subscriber::registry()
        .with(ComponentTimes.with_filter(only_components))
        .try_init();
}

/// Forgets what was timed so far.
pub fn reset() {
    if let Ok(mut times) = times().lock() {
        times.clear();
    }
}

/// One row: each part's time per bead (its total over `beads` beads) and its p50 per call.
pub fn row(beads: usize) -> Row {
    let times = times().lock().map(|t| t.clone()).unwrap_or_default();
    let mut parts: Vec<(f64, String)> = times
        .into_iter()
        .map(|(name, mut ms)| {
            ms.sort_by(f64::total_cmp);
            let per_bead = ms.iter().sum::<f64>() / beads.max(1) as f64;
            let text = format!(
                "{name} {per_bead:.1} ms ({:.1} per bead, p50 {:.1} ms)",
                ms.len() as f64 / beads.max(1) as f64,
                percentile(&ms, 0.5)
            );
            (per_bead, text)
        })
        .collect();
    parts.sort_by(|a, b| b.0.total_cmp(&a.0));
    Row {
        what: format!(
            "where a bead's step time goes, per bead over {beads} sequential beads (calls per bead, p50 per call; parts overlap where steps nest)"
        ),
        measured: parts.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join("; "),
        target: "-".into(),
        met: None,
    }
}
