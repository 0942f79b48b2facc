//! `--report PATH.html`: a self-contained page (inline SVG charts drawn with plotters, no
//! scripts, no external files): throughput over time, the latency histogram, re-keys over time,
//! and the figures and violations.

use plotters::prelude::*;

use super::report::Report;

const W: u32 = 760;
const H: u32 = 300;

fn chart_err<E: std::fmt::Debug>(e: E) -> String {
    format!("chart: {e:?}")
}

/// A line chart of per-second values.
fn series_svg(
    title: &str,
    y_label: &str,
    values: &[f64],
    color: RGBColor,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let x_max = values.len().max(2) as f64;
        let y_max = values.iter().copied().fold(1.0f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_label)
            .draw()
            .map_err(chart_err)?;
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, &v)| (i as f64 + 0.5, v)),
                color.stroke_width(2),
            ))
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

/// The latency histogram (log-spaced buckets from 0.1 ms).
fn histogram_svg(latencies: &[f32]) -> Result<String, String> {
    // Bucket k holds [0.1·2^(k/2), 0.1·2^((k+1)/2)) ms.
    const BUCKETS: usize = 40;
    let bucket = |ms: f32| -> usize {
        if ms <= 0.1 {
            return 0;
        }
        ((f64::from(ms) / 0.1).log2() * 2.0)
            .floor()
            .clamp(0.0, (BUCKETS - 1) as f64) as usize
    };
    let mut counts = [0u64; BUCKETS];
    for &l in latencies {
        counts[bucket(l)] += 1;
    }
    let last = counts.iter().rposition(|&c| c > 0).unwrap_or(0) + 1;
    let edge = |k: usize| 0.1 * 2f64.powf(k as f64 / 2.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("End-to-end latency", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0usize..last, 0f64..y_max)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .x_desc("milliseconds (bucket lower edge)")
            .y_desc("messages")
            .x_label_formatter(&|k| format!("{:.1}", edge(*k)))
            .draw()
            .map_err(chart_err)?;
        chart
            .draw_series(counts[..last].iter().enumerate().map(|(k, &c)| {
                Rectangle::new([(k, 0.0), (k + 1, c as f64)], BLUE.mix(0.6).filled())
            }))
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
///
/// # Errors
/// A chart that could not be drawn.
pub fn render(r: &Report) -> Result<String, String> {
    let per_second: Vec<f64> = r.per_second.iter().map(|&n| f64::from(n)).collect();
    let throughput = series_svg("Throughput", "messages / s", &per_second, BLUE)?;
    let latency = histogram_svg(&r.latencies)?;
    let rekeys = series_svg("Re-keys", "re-keys / s", &r.rekeys_per_second, RED)?;
    let json = serde_json::to_string_pretty(&r.to_json()).unwrap_or_default();
    let verdict = if r.ok() {
        "<p class=ok>OK: every message arrived exactly once, in order, intact; every chat consistent.</p>"
            .to_string()
    } else {
        format!(
            "<p class=bad>FAILED: {} violations.</p><ul>{}</ul>",
            r.violation_count,
            r.violations
                .iter()
                .map(|v| format!(
                    "<li>chat {} direction {} message {}: {} — {}</li>",
                    v.pair,
                    v.dir,
                    v.idx.map_or("-".into(), |i| i.to_string()),
                    v.kind,
                    escape(&v.detail)
                ))
                .collect::<String>()
        )
    };
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=utf-8><title>secretchat simulate</title>\
         <style>body{{font-family:sans-serif;max-width:800px;margin:2em auto}}\
         .ok{{color:#070}}.bad{{color:#b00}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}\
         </style></head><body><h1>secretchat simulate</h1>{verdict}<pre>{summary}</pre>\
         {throughput}{latency}{rekeys}<h2>JSON</h2><pre>{json}</pre></body></html>\n",
        summary = escape(&r.summary()),
        json = escape(&json),
    ))
}
