//! `pollerd-bench plot`: sweeps of the real daemon (instances, delivery queues, records per page)
//! drawn as SVG charts, each next to a CSV of the numbers it shows (median, min and max of the
//! runs at every point), so a reader can check the plot.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use plotters::prelude::*;
use serde_json::json;

use crate::Bench;
use crate::delivery::{self, DeliveryShape};
use crate::ingest::{self, IngestShape};
use crate::report::{Metric, Summary};
use crate::steady::{self, SteadyShape};

/// The points of every sweep, and how big each point is.
pub struct Sweep {
    /// Instances (× 3 resources each) of the footprint sweep, polled every `interval`, watched
    /// over `window` once every first poll has committed.
    pub instances: &'static [usize],
    pub interval: Duration,
    pub window: Duration,
    /// Resource queues of the delivery sweep (`max_in_flight` = queues), and the notifications
    /// each point delivers.
    pub queues: &'static [usize],
    pub delivery_notifications: usize,
    /// Records per page of the ingest sweep, and the records (over instances) each point reads.
    pub pages: &'static [u32],
    pub ingest_records: usize,
    pub ingest_instances: usize,
}

/// One line of a chart: a value at each x, over every run.
struct Series {
    name: &'static str,
    points: Vec<(f64, Summary)>,
}

impl Series {
    fn new(name: &'static str) -> Series {
        Series {
            name,
            points: Vec::new(),
        }
    }

    fn add(&mut self, x: f64, unit: &'static str, runs: Vec<f64>) {
        let summary = Summary {
            name: self.name.to_string(),
            unit,
            values: runs,
            target: None,
        };
        self.points.push((x, summary));
    }
}

/// One chart, written as `<file>.svg` and `<file>.csv`.
struct Chart {
    file: &'static str,
    title: String,
    x_label: &'static str,
    y_label: &'static str,
    series: Vec<Series>,
}

pub async fn run(bench: &Bench, out: &Path, runs: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = (Utc::now(), load_average());
    let sweep = &bench.scale.plot;
    let mut charts = footprint_charts(bench, sweep, runs).await?;
    charts.push(delivery_chart(bench, sweep, runs).await?);
    charts.push(ingest_chart(bench, sweep, runs).await?);
    for chart in &charts {
        write_chart(out, chart)?;
    }
    let about = json!({
        "commit": crate::git_commit(),
        "scale": bench.scale.name,
        "store": crate::postgres::engine_name(bench.postgres.as_ref()),
        "runs_per_point": runs,
        "started": started.0.to_rfc3339(),
        "finished": Utc::now().to_rfc3339(),
        "loadavg_before": started.1,
        "loadavg_after": load_average(),
        "charts": charts.iter().map(|c| c.file).collect::<Vec<_>>(),
    });
    let run_file = out.join("run.json");
    std::fs::write(&run_file, format!("{about:#}\n"))
        .with_context(|| format!("writing {}", run_file.display()))?;
    Ok(())
}

/// `/proc/loadavg`'s first three fields: the machine is shared, so the run says how busy it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// RSS and daemon CPU per resource-hour against instances, from the steady-state machinery.
async fn footprint_charts(bench: &Bench, sweep: &Sweep, runs: u32) -> anyhow::Result<Vec<Chart>> {
    let mut rss = Series::new("steady RSS");
    let mut cpu = Series::new("daemon CPU per resource-hour");
    for &instances in sweep.instances {
        let shape = SteadyShape {
            instances,
            interval: sweep.interval,
            window: sweep.window,
            targets: (None, None),
        };
        let mut point = Vec::new();
        for run in 1..=runs {
            progress("instances", instances, run, runs);
            point.push(steady::measure(bench, &shape).await?);
        }
        let x = instances as f64;
        rss.add(x, "MiB", figure(&point, "steady_rss_")?);
        cpu.add(x, "ms", figure(&point, "cpu_per_resource_hour_")?);
    }
    let how = format!(
        "{}-s interval, {}-s window",
        sweep.interval.as_secs(),
        sweep.window.as_secs()
    );
    Ok(vec![
        Chart {
            file: "rss_by_instances",
            title: format!("pollerd steady RSS, instances x 3 resources ({how})"),
            x_label: "instances (3 resources each)",
            y_label: "RSS (MiB)",
            series: vec![rss],
        },
        Chart {
            file: "cpu_by_instances",
            title: format!("pollerd CPU per resource-hour ({how})"),
            x_label: "instances (3 resources each)",
            y_label: "daemon CPU per resource-hour (ms)",
            series: vec![cpu],
        },
    ])
}

/// Notifications/s against queues (`max_in_flight` = queues), beside the bare client.
async fn delivery_chart(bench: &Bench, sweep: &Sweep, runs: u32) -> anyhow::Result<Chart> {
    let mut daemon = Series::new("pollerd");
    let mut bare = Series::new("bare client (ceiling)");
    for &queues in sweep.queues {
        let shape = DeliveryShape {
            notifications: sweep.delivery_notifications,
            queues,
            max_in_flight: queues,
            batch: 1,
            answer_delay: None,
            ceiling: true,
        };
        let (mut rates, mut ceilings) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            progress("queues", queues, run, runs);
            let delivered = delivery::measure(bench, &shape).await?;
            rates.push(delivered.notifications_per_s());
            ceilings.push(
                delivered
                    .ceiling_per_s()
                    .context("the ceiling was asked for")?,
            );
        }
        daemon.add(queues as f64, "notif/s", rates);
        bare.add(queues as f64, "notif/s", ceilings);
    }
    Ok(Chart {
        file: "delivery_by_queues",
        title: format!(
            "delivery, batch.size 1, {} notifications, max_in_flight = queues",
            sweep.delivery_notifications
        ),
        x_label: "resource queues",
        y_label: "notifications/s",
        series: vec![daemon, bare],
    })
}

/// Ingest records/s against records per page.
async fn ingest_chart(bench: &Bench, sweep: &Sweep, runs: u32) -> anyhow::Result<Chart> {
    let mut rate = Series::new("pollerd");
    for &page_size in sweep.pages {
        let shape = IngestShape {
            records: sweep.ingest_records,
            instances: sweep.ingest_instances,
            page_size,
        };
        let mut point = Vec::new();
        for run in 1..=runs {
            progress("page size", page_size as usize, run, runs);
            point.push(ingest::measure(bench, &shape).await?);
        }
        rate.add(
            page_size as f64,
            "records/s",
            figure(&point, "records_per_s")?,
        );
    }
    Ok(Chart {
        file: "ingest_by_page_size",
        title: format!(
            "ingest, {} contacts over {} instances",
            sweep.ingest_records, sweep.ingest_instances
        ),
        x_label: "records per page (pageSize)",
        y_label: "records/s",
        series: vec![rate],
    })
}

fn progress(what: &str, x: usize, run: u32, runs: u32) {
    eprintln!("[plot] {what} {x}, run {run}/{runs}…");
}

/// The value of the figure named `prefix…` in each run.
fn figure(runs: &[Vec<Metric>], prefix: &str) -> anyhow::Result<Vec<f64>> {
    runs.iter()
        .map(|metrics| {
            metrics
                .iter()
                .find(|m| m.name.starts_with(prefix))
                .map(|m| m.value)
                .with_context(|| format!("no figure {prefix}… in the run"))
        })
        .collect()
}

fn write_chart(out: &Path, chart: &Chart) -> anyhow::Result<()> {
    let csv = out.join(format!("{}.csv", chart.file));
    std::fs::write(&csv, chart_csv(chart)).with_context(|| format!("writing {}", csv.display()))?;
    let svg = out.join(format!("{}.svg", chart.file));
    draw(&svg, chart).with_context(|| format!("drawing {}", svg.display()))?;
    eprintln!("[plot] wrote {} and {}", svg.display(), csv.display());
    Ok(())
}

/// One row per point of every series: its median, min, max and every run's value.
fn chart_csv(chart: &Chart) -> String {
    let mut out = format!("series,{},unit,median,min,max,runs\n", chart.x_label);
    for series in &chart.series {
        for (x, s) in &series.points {
            let values: Vec<String> = s.values.iter().map(|v| format!("{v:.3}")).collect();
            let _ = writeln!(
                out,
                "{},{x},{},{:.3},{:.3},{:.3},{}",
                series.name,
                s.unit,
                s.median(),
                s.min(),
                s.max(),
                values.join(" ")
            );
        }
    }
    out
}

const COLOURS: [RGBColor; 3] = [BLUE, RED, GREEN];

/// The medians as lines with points, each point's min–max as a vertical bar; x on a log scale
/// (every sweep grows by factors).
fn draw(path: &Path, chart: &Chart) -> anyhow::Result<()> {
    let xs = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
    };
    let (Some(x_min), Some(x_max)) = (xs().reduce(f64::min), xs().reduce(f64::max)) else {
        bail!("{}: no points to draw", chart.file);
    };
    let y_max = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1.max()))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.1;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((x_min / 1.3..x_max * 1.3).log_scale(), 0.0..y_max)?;
    ctx.configure_mesh()
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| tick(*y))
        .draw()?;
    for (series, colour) in chart.series.iter().zip(COLOURS) {
        let medians: Vec<(f64, f64)> = series
            .points
            .iter()
            .map(|(x, s)| (*x, s.median()))
            .collect();
        ctx.draw_series(LineSeries::new(medians.clone(), colour.stroke_width(2)))?
            .label(series.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        ctx.draw_series(medians.iter().map(|p| Circle::new(*p, 4, colour.filled())))?;
        ctx.draw_series(series.points.iter().map(|(x, s)| {
            PathElement::new(vec![(*x, s.min()), (*x, s.max())], colour.stroke_width(1))
        }))?;
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 16))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// An axis label: thousands grouped, and no trailing zeros (`1`, `2.5`, `10,000`).
fn tick(v: f64) -> String {
    if v.abs() >= 1000.0 {
        return crate::report::number(v);
    }
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
