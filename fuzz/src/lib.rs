//! The checks behind each fuzz target, one module per target, each `check(data: &[u8])`.
//! The modules depend only on pollerd and chrono, so the main crate's regression tests
//! (tests/fuzz_regressions.rs) include them by path and replay saved inputs through them.

pub mod ceql;
pub mod dates;
pub mod instance_file;
pub mod url_template;
