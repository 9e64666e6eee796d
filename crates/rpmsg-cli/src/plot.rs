//! `rpmsg bench --plot FILE.svg`: one latency histogram per mode, stacked, SVG only.

use crate::bench::PlotSeries;
use plotters::prelude::*;
use std::path::Path;

const BINS: usize = 60;
const PANEL_H: u32 = 220;
const WIDTH: u32 = 900;
const COLORS: [RGBColor; 6] = [
    RGBColor(90, 90, 90),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Draws one histogram per series into `path`, all on the same logarithmic time axis so the
/// modes compare at a glance: x from the fastest round trip of all to the slowest series'
/// 99.9th percentile (slower ones go into the last bin), y the share of round trips.
pub(crate) fn histograms(
    path: &Path,
    series: &[PlotSeries],
) -> Result<(), Box<dyn std::error::Error>> {
    let sorted: Vec<Vec<u32>> = series
        .iter()
        .map(|s| {
            let mut v = s.samples.clone();
            v.sort_unstable();
            v
        })
        .collect();
    let pct = |v: &[u32], q: f64| f64::from(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
    let lo_ns = sorted
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| f64::from(v[0]))
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        * 0.8;
    let hi_ns = sorted
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| pct(v, 0.999))
        .fold(0.0, f64::max)
        .max(lo_ns * 2.0)
        * 1.25;
    let (lo, hi) = (lo_ns / 1e3, hi_ns / 1e3);
    let step = (hi / lo).ln() / BINS as f64;
    let edge = |i: usize| lo * (step * i as f64).exp();

    let n = u32::try_from(series.len().max(1))?;
    let root = SVGBackend::new(path, (WIDTH, PANEL_H * n)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((series.len().max(1), 1));
    for (k, ((s, v), area)) in series.iter().zip(&sorted).zip(panels.iter()).enumerate() {
        if v.is_empty() {
            continue;
        }
        let mut bins = [0u64; BINS];
        for &x in v {
            let us = f64::from(x) / 1e3;
            let i = ((us / lo).max(1.0).ln() / step) as usize;
            bins[i.min(BINS - 1)] += 1;
        }
        let total = v.len() as f64;
        let top = bins.iter().copied().max().unwrap_or(1) as f64 / total * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}: {} round trips, p50 {:.2} µs, p99 {:.2} µs",
                    s.label,
                    v.len(),
                    pct(v, 0.5) / 1e3,
                    pct(v, 0.99) / 1e3
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..top.max(1e-6))?;
        chart
            .configure_mesh()
            .x_desc("round trip (µs, log scale)")
            .y_desc("share")
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .draw()?;
        let color = COLORS[k % COLORS.len()];
        chart.draw_series(bins.iter().enumerate().map(|(i, &c)| {
            Rectangle::new(
                [(edge(i), 0.0), (edge(i + 1), c as f64 / total)],
                color.filled(),
            )
        }))?;
    }
    root.present()?;
    Ok(())
}
