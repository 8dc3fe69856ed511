//! The benchmark's pictures (SVG, drawn with `plotters`): the overhead's distribution, each bead's
//! time per phase, throughput against concurrency, and the crystallization payoff. Written to
//! `docs/bench/` (the latest, shown by docs/BENCHMARKS.md) with the date and machine in each title.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bead's time per phase, in the order the phases came (milliseconds).
pub struct BeadPhases {
    pub phases: Vec<(String, f64)>,
}

fn out_dir() -> PathBuf {
    let dir = chum_testkit::workspace_root().join("docs/bench");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Draws with `draw` into `<docs/bench>/<name>.svg`; a failure to draw is reported, never fatal
/// (the table is the benchmark's result).
fn draw_svg(
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), Box<dyn std::error::Error>>,
) -> Option<PathBuf> {
    let path = out_dir().join(format!("{name}.svg"));
    let drawn = {
        let area = SVGBackend::new(&path, size).into_drawing_area();
        area.fill(&WHITE)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            .and_then(|()| draw(&area))
            .and_then(|()| area.present().map_err(|e| Box::new(e) as Box<dyn std::error::Error>))
    };
    match drawn {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("bench: could not draw {}: {e}", path.display());
            None
        }
    }
}

/// Orchestration overhead per bead: a histogram in 10 ms bins.
pub fn overhead_distribution(overheads_ms: &[f64], caption: &str) -> Option<PathBuf> {
    let max = overheads_ms.iter().copied().fold(0.0, f64::max);
    let top = ((max / 10.0).ceil() as u32 + 1) * 10;
    let bins = top / 10;
    let mut counts = vec![0u32; bins as usize];
    for v in overheads_ms {
        let bin = ((*v / 10.0).floor() as usize).min(counts.len().saturating_sub(1));
        counts[bin] += 1;
    }
    let highest = counts.iter().copied().max().unwrap_or(1).max(1);
    draw_svg("overhead", (800, 420), |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("Orchestration overhead per bead — {caption}"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d((0u32..bins).into_segmented(), 0u32..highest + 1)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::Exact(v) | SegmentValue::CenterOf(v) => format!("{}", v * 10),
                SegmentValue::Last => String::new(),
            })
            .x_desc("overhead (ms, 10 ms bins)")
            .y_desc("beads")
            .disable_x_mesh()
            .draw()?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.mix(0.6).filled())
                .margin(1)
                .data(counts.iter().enumerate().map(|(i, n)| (i as u32, *n))),
        )?;
        Ok(())
    })
}

/// Each bead's time per phase, stacked (the human gate's wait left out: the benchmark approves at
/// once, and its wait is the benchmark's polling, not CHUM).
pub fn phases_per_bead(beads: &[BeadPhases], caption: &str) -> Option<PathBuf> {
    let mut names: Vec<String> = Vec::new();
    for bead in beads {
        for (phase, _) in &bead.phases {
            if !names.contains(phase) {
                names.push(phase.clone());
            }
        }
    }
    let total = |b: &BeadPhases| b.phases.iter().map(|(_, ms)| ms).sum::<f64>();
    let top = beads.iter().map(total).fold(0.0, f64::max).max(1.0) * 1.1;
    let palette = |i: usize| Palette99::pick(i).to_rgba();
    draw_svg("phases", (900, 460), |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("Time per phase, each bead one at a time — {caption}"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0u32..beads.len() as u32, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("bead")
            .y_desc("ms")
            .disable_x_mesh()
            .draw()?;
        for (k, name) in names.iter().enumerate() {
            let color = palette(k);
            chart
                .draw_series(beads.iter().enumerate().filter_map(|(i, bead)| {
                    let below: f64 = bead
                        .phases
                        .iter()
                        .filter(|(p, _)| names.iter().position(|n| n == p).is_some_and(|j| j < k))
                        .map(|(_, ms)| ms)
                        .sum();
                    let own: f64 = bead.phases.iter().filter(|(p, _)| p == name).map(|(_, ms)| ms).sum();
                    (own > 0.0)
                        .then(|| Rectangle::new([(i as u32, below), (i as u32 + 1, below + own)], color.filled()))
                }))?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
}

/// Beads per second against how many run at once.
pub fn throughput_curve(points: &[(usize, f64)], caption: &str) -> Option<PathBuf> {
    let right = points.iter().map(|(c, _)| *c).max().unwrap_or(1) as f64 + 1.0;
    let top = points.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(0.1) * 1.2;
    draw_svg("throughput", (800, 420), |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("Throughput against concurrency — {caption}"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..right, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("Sharks at once")
            .y_desc("beads integrated per second")
            .draw()?;
        let line: Vec<(f64, f64)> = points.iter().map(|(c, v)| (*c as f64, *v)).collect();
        chart.draw_series(LineSeries::new(line.clone(), BLUE.stroke_width(2)))?;
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 4, BLUE.filled())))?;
        Ok(())
    })
}

/// The crystallization payoff on the real project: what one repeated mistake cost (execution end →
/// fix starts, p50) caught by its test suite (the DoD) and by its learned rule, each bar labelled
/// with its time, the ratio in the title.
pub fn payoff(payoff: &crate::payoff::Payoff, caption: &str) -> Option<PathBuf> {
    let (by_dod_ms, by_rule_ms) = (payoff.by_dod_ms, payoff.by_rule_ms);
    let top = by_dod_ms.max(by_rule_ms).max(1.0) * 1.2;
    draw_svg("payoff", (860, 420), |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "A repeated mistake in {}: its rule stops it {:.1}× sooner — {caption}",
                    crate::payoff::PROJECT,
                    payoff.ratio()
                ),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d((0u32..1).into_segmented(), 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_label_formatter(&|ms| format!("{ms:.0}"))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(0) => "caught by its test suite (the DoD)".into(),
                SegmentValue::CenterOf(1) => "caught by its learned Semgrep rule".into(),
                _ => String::new(),
            })
            .y_desc("execution end → fix starts, ms (p50)")
            .draw()?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .margin(60)
                .style_func(|x, _| match x {
                    SegmentValue::Exact(0) | SegmentValue::CenterOf(0) => RED.mix(0.6).filled(),
                    _ => GREEN.mix(0.6).filled(),
                })
                .data([(0u32, by_dod_ms), (1, by_rule_ms)]),
        )?;
        chart.draw_series([(0u32, by_dod_ms), (1, by_rule_ms)].map(|(bar, ms)| {
            Text::new(
                format!("{ms:.0} ms"),
                (SegmentValue::CenterOf(bar), ms + top * 0.02),
                TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
        Ok(())
    })
}

/// "2026-12-06 02:10 UTC, 2 cores, release" for the titles (a debug build's figures are not
/// comparable, and say so).
pub fn caption(now: &str) -> String {
    format!(
        "{now}, {} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release"
        }
    )
}

/// Where a picture went, as the table's footnote says it.
pub fn shown(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map(Path::display)
        .map(|p| p.to_string())
        .unwrap_or_else(|| "(not drawn)".into())
}
