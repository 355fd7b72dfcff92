//! Figures, their targets, and how runs are summed up: median with min–max, one table for
//! people and one JSON line per scenario for comparing commits.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

/// Which way a figure must lie from its target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}", number(t)),
            Target::AtMost(t) => format!("<= {}", number(t)),
        }
    }
}

/// One figure of one run.
#[derive(Clone, Debug)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    pub target: Option<Target>,
}

pub fn metric(name: impl Into<String>, unit: &'static str, value: f64) -> Metric {
    Metric {
        name: name.into(),
        unit,
        value,
        target: None,
    }
}

pub fn targeted(name: impl Into<String>, unit: &'static str, value: f64, target: Target) -> Metric {
    Metric {
        name: name.into(),
        unit,
        value,
        target: Some(target),
    }
}

/// A figure over all runs.
#[derive(Clone, Debug)]
pub struct Summary {
    pub name: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
    pub target: Option<Target>,
}

impl Summary {
    pub fn median(&self) -> f64 {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        }
    }

    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.median()))
    }
}

/// Figures of every run of one scenario, by name, in first-seen order.
pub fn summarise(runs: &[Vec<Metric>]) -> Vec<Summary> {
    let mut order: Vec<String> = Vec::new();
    let mut by_name: BTreeMap<String, Summary> = BTreeMap::new();
    for run in runs {
        for m in run {
            let entry = by_name.entry(m.name.clone()).or_insert_with(|| {
                order.push(m.name.clone());
                Summary {
                    name: m.name.clone(),
                    unit: m.unit,
                    values: Vec::new(),
                    target: m.target,
                }
            });
            entry.values.push(m.value);
        }
    }
    order
        .into_iter()
        .filter_map(|n| by_name.remove(&n))
        .collect()
}

/// Numbers as people read them: thousands separated, few decimals.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let (digits, decimals) = match v.abs() {
        a if a >= 1000.0 => (format!("{:.0}", v.abs()), String::new()),
        a if a >= 10.0 => return format!("{v:.1}"),
        a if a >= 0.01 || a == 0.0 => return format!("{v:.3}"),
        _ => return format!("{v:.2e}"),
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}{decimals}", if v < 0.0 { "-" } else { "" })
}

/// The table: one row per figure of every scenario.
pub fn table(scenarios: &[(String, Vec<Summary>)], runs: usize) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "scenario".into(),
        "figure".into(),
        format!("median of {runs}"),
        "min–max".into(),
        "target".into(),
        "met".into(),
    ]];
    for (scenario, summaries) in scenarios {
        for s in summaries {
            rows.push([
                scenario.clone(),
                s.name.clone(),
                format!("{} {}", number(s.median()), s.unit),
                format!("{}–{}", number(s.min()), number(s.max())),
                s.target.map(Target::text).unwrap_or_default(),
                match s.met() {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
        }
        out = out.trim_end().to_string();
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * 5));
            out.push('\n');
        }
    }
    out
}

/// One JSON line: the scenario, how it was run, and every figure with its runs.
/// `store` is the daemon's engine (`sled`, `postgres`); figures keep their names across engines.
pub fn json_line(
    scenario: &str,
    scale: &str,
    store: &str,
    commit: &str,
    summaries: &[Summary],
) -> String {
    let mut figures = serde_json::Map::new();
    for s in summaries {
        let mut f = json!({
            "unit": s.unit,
            "median": s.median(),
            "min": s.min(),
            "max": s.max(),
            "values": s.values,
        });
        if let Some(t) = s.target {
            f["target"] = Value::String(t.text());
            f["met"] = Value::Bool(t.met(s.median()));
        }
        figures.insert(s.name.clone(), f);
    }
    json!({
        "scenario": scenario,
        "scale": scale,
        "store": store,
        "commit": commit,
        "runs": summaries.first().map_or(0, |s| s.values.len()),
        "figures": figures,
    })
    .to_string()
}

/// The value at quantile `q` (0..=1) of `values`, nearest rank.
pub fn quantile(values: &mut [i64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_over_runs() {
        let runs = vec![
            vec![metric("rate", "/s", 3.0)],
            vec![metric("rate", "/s", 1.0)],
            vec![metric("rate", "/s", 2.0)],
        ];
        let s = &summarise(&runs)[0];
        assert_eq!((s.median(), s.min(), s.max()), (2.0, 1.0, 3.0));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(number(123_456.7), "123,457");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(0.5), "0.500");
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
    }
}
