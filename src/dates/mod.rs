//! TEMPORARY stub with the agreed API; replaced by the real engine from the `dates` branch.
#![allow(dead_code, unused_variables)]
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq)]
pub struct Zone(String);
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone {0:?}")]
pub struct ZoneError(String);
impl Zone {
    pub fn parse(s: &str) -> Result<Zone, ZoneError> {
        if s.is_empty() || s.starts_with("Mars") {
            return Err(ZoneError(s.into()));
        }
        Ok(Zone(s.into()))
    }
    pub fn utc() -> Zone {
        Zone("UTC".into())
    }
    pub fn name(&self) -> &str {
        &self.0
    }
}
#[derive(Clone, Debug)]
pub struct DatePattern(String);
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    pub position: usize,
    pub message: String,
}
#[derive(Debug, thiserror::Error)]
#[error("bad date")]
pub struct DateParseError;
impl DatePattern {
    pub fn compile(pattern: &str) -> Result<DatePattern, PatternError> {
        if let Some(p) = pattern.find('Q') {
            return Err(PatternError {
                position: p + 1,
                message: format!("unsupported pattern letter 'Q' at position {}", p + 1),
            });
        }
        Ok(DatePattern(pattern.into()))
    }
    pub fn source(&self) -> &str {
        &self.0
    }
    pub fn format(&self, instant: DateTime<Utc>, zone: &Zone) -> String {
        instant.to_rfc3339()
    }
    pub fn parse(&self, text: &str, zone: &Zone) -> Result<DateTime<Utc>, DateParseError> {
        DateTime::parse_from_rfc3339(text)
            .map(|d| d.to_utc())
            .map_err(|_| DateParseError)
    }
}
