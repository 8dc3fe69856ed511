//! The backlog of every project: ready, blocked (by what), in progress, closed (with the evidence),
//! and the dependency DAG drawn as an SVG on the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chum_activities::backlog::Backlog;
use chum_core::backlog::{BacklogCounts, BacklogItem, BacklogRow, backlog_rows};
use maud::{Markup, html};

use super::{layout, viewer};
use crate::api::ApiState;

pub(super) async fn page(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(to_login) => return to_login.into_response(),
    };
    let config = state.config();
    let mut sections = Vec::new();
    for project in config.projects.values() {
        let items = Backlog::of(project).items().await;
        sections.push((project.name.clone(), items));
    }
    layout::page(
        "Backlog",
        &viewer,
        html! {
            h1 { "Backlog" }
            @for (name, items) in &sections {
                section.project data-project=(name) {
                    h2 { (name) }
                    @match items {
                        Err(e) => div.notice.error role="alert" { "The backlog cannot be read: " (e) },
                        Ok(items) => {
                            @let rows = backlog_rows(items);
                            @let counts = BacklogCounts::of(&rows);
                            p.counts { (counts.ready) " ready · " (counts.blocked) " blocked · " (counts.in_progress)
                                " in progress · " (counts.closed) " closed · " (counts.total) " in all" }
                            (dag(items, &rows))
                            (table(name, &rows))
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

fn table(project: &str, rows: &[BacklogRow]) -> Markup {
    html! {
        table.backlog {
            thead { tr { th { "Bead" } th { "P" } th { "State" } th { "Title" } th { "Why / evidence" } } }
            tbody {
                @for r in rows {
                    tr class={"state-" (r.state)} data-bead=(r.id) {
                        td { a href={"/ui/runs/" (chum_core::ids::shark_workflow_id(project, &r.id))} { (r.id) } }
                        td { (r.priority) }
                        td { span class={"badge state-" (r.state)} { (r.state) } }
                        td { (r.title) }
                        td.muted { @if !r.blocked_by.is_empty() { (r.blocked_by) } @else { (r.close_reason) } }
                    }
                }
            }
        }
    }
}

/// Node size and spacing of the drawing.
const NODE_W: i64 = 150;
const NODE_H: i64 = 34;
const GAP_X: i64 = 50;
const GAP_Y: i64 = 14;

/// The DAG in layers: a bead sits one column right of the deepest bead it depends on. Edges go
/// from a dependency to the bead that waits on it.
fn dag(items: &[BacklogItem], rows: &[BacklogRow]) -> Markup {
    let state: BTreeMap<&str, &str> = rows.iter().map(|r| (r.id.as_str(), r.state.as_str())).collect();
    let shown: Vec<&BacklogItem> = items.iter().filter(|i| state.contains_key(i.id.as_str())).collect();
    let by_id: BTreeMap<&str, &BacklogItem> = shown.iter().map(|i| (i.id.as_str(), *i)).collect();
    // Depth by repeated relaxation (bounded: a cycle, which Beads refuses, cannot loop forever).
    let mut depth: BTreeMap<&str, i64> = shown.iter().map(|i| (i.id.as_str(), 0)).collect();
    for _ in 0..shown.len() {
        let mut changed = false;
        for item in &shown {
            for (dep, _) in &item.dependencies {
                if let Some(d) = depth.get(dep.as_str()).copied() {
                    let here = depth.entry(item.id.as_str()).or_insert(0);
                    if *here < d + 1 {
                        *here = d + 1;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut columns: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for item in &shown {
        columns
            .entry(depth[item.id.as_str()])
            .or_default()
            .push(item.id.as_str());
    }
    let mut place: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (col, ids) in &columns {
        for (row, id) in ids.iter().enumerate() {
            place.insert(id, (col * (NODE_W + GAP_X) + 10, row as i64 * (NODE_H + GAP_Y) + 10));
        }
    }
    let width = (columns.len() as i64).max(1) * (NODE_W + GAP_X) + 20;
    let height = columns.values().map(Vec::len).max().unwrap_or(1) as i64 * (NODE_H + GAP_Y) + 20;
    html! {
        svg.dag xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) viewBox={"0 0 " (width) " " (height)} role="img" aria-label="dependency graph" {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
            @for item in &shown {
                @for (dep, kind) in &item.dependencies {
                    @if let (Some((x1, y1)), Some((x2, y2))) = (place.get(dep.as_str()), place.get(item.id.as_str())) {
                        line class={"edge " (kind)} x1=(x1 + NODE_W) y1=(y1 + NODE_H / 2) x2=(x2) y2=(y2 + NODE_H / 2) marker-end="url(#arrow)" {}
                    }
                }
            }
            @for (id, (x, y)) in &place {
                @let title = by_id.get(id).map_or("", |i| i.title.as_str());
                g class={"node state-" (state.get(id).copied().unwrap_or("other"))} data-bead=(id) {
                    title { (id) ": " (title) }
                    rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6" {}
                    text x=(x + 8) y=(y + 21) { (id) " " (title.chars().take(14).collect::<String>()) }
                }
            }
        }
    }
}
