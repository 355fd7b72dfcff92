//! The benchmark harness at tiny scale, so it cannot rot: every scenario runs against the real
//! daemon and prints its JSON line. No figure is judged here (a busy CI machine decides those).

use std::collections::BTreeSet;
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
            "footprint",
            "reload",
            "store",
            "reconcile",
            "steady"
        ],
        "{stdout}"
    );
    let expected: [(&str, &[&str]); 7] = [
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
            // An idle daemon may well use no CPU tick at all; everything else is a positive amount.
            let cpu = ["idle_cpu", "cpu_per_poll", "simulator_cpu"];
            let positive =
                median > 0.0 || (cpu.iter().any(|c| figure.starts_with(c)) && median == 0.0);
            assert!(
                median.is_finite() && positive,
                "{scenario}.{figure} = {value}"
            );
            assert_eq!(value["values"].as_array().map(Vec::len), Some(1));
        }
    }
    // The reconcile found exactly the deletions (10 at tiny scale) both ways, and reading the
    // records in full costs more bytes than asking for ids only.
    let reconcile = &lines[5]["figures"];
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
