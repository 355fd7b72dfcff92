//! The fixture table tests/data/java-dates.tsv: values Java 17's `SimpleDateFormat` printed.

/// One row of tests/data/java-dates.tsv: what Java 17's `SimpleDateFormat` printed.
pub struct JavaRow {
    pub line: usize,
    pub pattern: String,
    pub zone: String,
    pub epoch_ms: i64,
    pub formatted: String,
}

pub fn java_rows() -> Vec<JavaRow> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/java-dates.tsv");
    let table = std::fs::read_to_string(path).expect("read java-dates.tsv");
    let mut lines = table.lines().enumerate();
    let header = lines.next().map(|(_, header)| header);
    assert_eq!(header, Some("pattern\tzone\tepoch_ms\tformatted"));
    lines
        .map(|(index, line)| {
            let columns: Vec<&str> = line.split('\t').collect();
            assert_eq!(columns.len(), 4, "line {}: {line:?}", index + 1);
            JavaRow {
                line: index + 1,
                pattern: columns[0].to_string(),
                zone: columns[1].to_string(),
                epoch_ms: columns[2].parse().expect("epoch_ms"),
                formatted: columns[3].to_string(),
            }
        })
        .collect()
}
