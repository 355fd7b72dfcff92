//! The benchmark harness at tiny scale, so it cannot rot: every scenario runs against the real
//! daemon and prints its JSON line, and `plot` writes its charts. No figure is judged here (a busy
//! CI machine decides those).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn every_scenario_runs_and_prints_one_json_line_with_its_figures() {
    let output = Command::new(env!("CARGO_BIN_EXE_pollerd-bench"))
        .args(["all", "--scale", "tiny"])
        .output()
        .expect("run pollerd-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pollerd-bench failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let scenarios: Vec<&str> = lines
        .iter()
        .map(|l| l["scenario"].as_str().expect("scenario name"))
        .collect();
    assert_eq!(
        scenarios,
        [
            "ingest",
            "delivery",
            "delivery-variants",
            "footprint",
            "reload",
            "store",
            "reconcile",
            "steady"
        ],
        "{stdout}"
    );
    let expected: [(&str, &[&str]); 8] = [
        ("ingest", &["records_per_s"]),
        (
            "delivery",
            &[
                "batch1_notifications_per_s",
                "batch1_commit_to_2xx_p99",
                "batch1_ratio_to_ceiling",
                "batch10_events_per_s",
                "batch10_ratio_to_ceiling",
            ],
        ),
        (
            "delivery-variants",
            &[
                "one_queue_notifications_per_s",
                "one_queue_cpu_per_notification",
                "one_queue_ceiling_notifications_per_s",
                "one_queue_ratio_to_ceiling",
                "one_queue_2ms_notifications_per_s",
                "one_queue_2ms_cpu_per_notification",
            ],
        ),
        (
            "footprint",
            &[
                "steady_rss_1x3",
                "peak_rss_1x3",
                "idle_cpu_20x3",
                "start_to_ready_20x3",
            ],
        ),
        ("reload", &["median", "max"]),
        ("store", &["state_dir_size"]),
        (
            "reconcile",
            &[
                "fields_id_requests",
                "fields_id_received",
                "fields_id_deleted",
                "full_received",
                "full_deleted",
                "ratio_received",
            ],
        ),
        (
            "steady",
            &[
                "polls_per_s_20x3_1s",
                "cpu_per_poll_20x3_1s",
                "simulator_cpu_20x3_1s",
                "steady_rss_20x3_1s",
            ],
        ),
    ];
    for (line, (scenario, figures)) in lines.iter().zip(expected) {
        assert_eq!(line["scale"], "tiny");
        assert_eq!(line["runs"], 1, "{line}");
        let names: BTreeSet<&str> = line["figures"]
            .as_object()
            .expect("figures")
            .keys()
            .map(String::as_str)
            .collect();
        for figure in figures {
            assert!(names.contains(figure), "{scenario}: no {figure} in {line}");
            let value = &line["figures"][figure];
            let median = value["median"].as_f64().expect("a number");
            // An idle daemon may well use no CPU tick at all, nor a daemon delivering 50
            // notifications; everything else is a positive amount.
            let cpu = ["idle_cpu", "cpu_per_poll", "simulator_cpu"];
            let cpu_figure = cpu.iter().any(|c| figure.starts_with(c))
                || figure.ends_with("cpu_per_notification");
            let positive = median > 0.0 || (cpu_figure && median == 0.0);
            assert!(
                median.is_finite() && positive,
                "{scenario}.{figure} = {value}"
            );
            assert_eq!(value["values"].as_array().map(Vec::len), Some(1));
        }
    }
    // The reconcile found exactly the deletions (10 at tiny scale) both ways, and reading the
    // records in full costs more bytes than asking for ids only.
    let reconcile = &lines[6]["figures"];
    for deleted in ["fields_id_deleted", "full_deleted"] {
        assert_eq!(reconcile[deleted]["median"], 10.0, "{reconcile}");
    }
    let ratio = reconcile["ratio_received"]["median"]
        .as_f64()
        .expect("a number");
    assert!(ratio > 1.0, "full records / ids only = {ratio}");
    // The table is there too, with a row per figure.
    assert!(stdout.contains("records_per_s"), "{stdout}");
}

#[test]
fn plot_writes_every_chart_with_its_numbers() {
    let out = tempfile::tempdir().expect("a temporary folder");
    let output = Command::new(env!("CARGO_BIN_EXE_pollerd-bench"))
        .args(["plot", "--scale", "tiny", "--out"])
        .arg(out.path())
        .output()
        .expect("run pollerd-bench plot");
    assert!(
        output.status.success(),
        "pollerd-bench plot failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The tiny sweep's points, by chart and series.
    let charts: [(&str, &[&str], &[&str]); 4] = [
        ("rss_by_instances", &["steady RSS"], &["1", "2"]),
        (
            "cpu_by_instances",
            &["daemon CPU per resource-hour"],
            &["1", "2"],
        ),
        (
            "delivery_by_queues",
            &["pollerd", "bare client (ceiling)"],
            &["1", "2"],
        ),
        ("ingest_by_page_size", &["pollerd"], &["100", "200"]),
    ];
    for (chart, series, xs) in charts {
        let svg = read(&out.path().join(format!("{chart}.svg")));
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}.svg is not an SVG document"
        );
        for name in series {
            assert!(svg.contains(name), "{chart}.svg has no legend {name:?}");
        }
        let points = csv_points(&read(&out.path().join(format!("{chart}.csv"))));
        let expected: Vec<(String, String)> = series
            .iter()
            .flat_map(|s| xs.iter().map(|x| (s.to_string(), x.to_string())))
            .collect();
        let found: Vec<(String, String)> =
            points.iter().map(|p| (p.0.clone(), p.1.clone())).collect();
        assert_eq!(found, expected, "{chart}.csv");
        for (name, x, median) in &points {
            assert!(
                median.is_finite() && *median >= 0.0,
                "{chart}.csv: {name} at {x} = {median}"
            );
        }
    }
    let run: serde_json::Value =
        serde_json::from_str(&read(&out.path().join("run.json"))).expect("run.json is JSON");
    assert_eq!(run["scale"], "tiny", "{run}");
    assert_eq!(run["runs_per_point"], 1, "{run}");
    assert_eq!(run["charts"].as_array().map(Vec::len), Some(4), "{run}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A chart's CSV rows as (series, x, median), after checking its header.
fn csv_points(csv: &str) -> Vec<(String, String, f64)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(header[0], "series", "{csv}");
    assert_eq!(
        header[2..],
        ["unit", "median", "min", "max", "runs"],
        "{csv}"
    );
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{line}");
            let median = cells[3]
                .parse()
                .unwrap_or_else(|e| panic!("median not a number ({e}): {line}"));
            (cells[0].to_string(), cells[1].to_string(), median)
        })
        .collect()
}
