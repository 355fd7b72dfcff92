//! The checks behind each fuzz target, one module per target, each `check(data: &[u8])`.
//! The modules depend only on pollerd, chrono and serde_json, so the main crate's regression tests
//! (tests/fuzz_regressions.rs) include them by path and replay saved inputs through them.

pub mod ceql;
pub mod dates;
pub mod http_headers;
pub mod instance_file;
pub mod json_split;
pub mod url_template;
