//! Inputs the fuzz targets (fuzz/) found bugs with, replayed through the same checks as part of
//! `cargo test`, plus the committed fuzz corpora: what the fuzzers once passed keeps passing.
//! Saved crashes live in tests/data/fuzz-regressions/TARGET/.

#[path = "../fuzz/src/ceql.rs"]
mod ceql;
#[path = "../fuzz/src/dates.rs"]
mod dates;
#[path = "../fuzz/src/http_headers.rs"]
mod http_headers;
#[path = "../fuzz/src/instance_file.rs"]
mod instance_file;
#[path = "../fuzz/src/json_split.rs"]
mod json_split;
#[path = "../fuzz/src/url_template.rs"]
mod url_template;

use std::path::{Path, PathBuf};

use pollerd::dates::{DatePattern, Zone};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 6] = [
    ("ceql", ceql::check),
    ("dates", dates::check),
    ("http_headers", http_headers::check),
    ("instance_file", instance_file::check),
    ("json_split", json_split::check),
    ("url_template", url_template::check),
];

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `root/TARGET/` through TARGET's check; returns how many ran.
fn replay(root: &Path) -> usize {
    let mut ran = 0;
    for (target, check) in TARGETS {
        for file in files_in(&root.join(target)) {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", file.display());
            ran += 1;
        }
    }
    ran
}

#[test]
fn saved_crashes_pass_their_fuzz_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
    assert!(
        replay(&root) >= 1,
        "no saved crash under {}",
        root.display()
    );
}

#[test]
fn committed_fuzz_corpora_pass_their_fuzz_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let ran = replay(&root);
    assert!(
        ran >= 100,
        "only {ran} corpus inputs under {}",
        root.display()
    );
}

/// Found by the dates target: a numeric field written with more letters than the 9-digit
/// greedy limit (`kkkkkkkkkkkk`) printed 12 digits that parsing then refused to read back.
#[test]
fn a_numeric_field_wider_than_nine_digits_reads_back_what_it_printed() {
    let pattern = DatePattern::compile("yyyy-MM-dd HH:mm:ss kkkkkkkkkkkk").unwrap();
    let utc = Zone::utc();
    let instant = chrono::DateTime::parse_from_rfc3339("2024-03-10T03:14:37Z")
        .unwrap()
        .to_utc();
    let text = pattern.format(instant, &utc);
    assert_eq!(text, "2024-03-10 03:14:37 000000000003");
    assert_eq!(pattern.parse(&text, &utc), Ok(instant));
}
