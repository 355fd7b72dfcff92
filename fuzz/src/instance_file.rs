//! Instance files: arbitrary JSON or TOML bytes through the same parse + validate path as a
//! file in the instances directory. Never a panic; a file without errors has a spec.

use std::path::Path;

use pollerd::config::{SecretSources, load_instance_text};

/// Panics when the input shows a bug.
pub fn check(data: &[u8]) {
    let Some((&format, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // ${file:…} references and tls.caFile read any path by design (the operator owns the file);
    // a fuzzer that finds /dev/zero or /dev/stdin would only hang itself.
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return;
    }
    let path = if format % 2 == 0 {
        Path::new("/fuzz/instances.d/fuzzed.json")
    } else {
        Path::new("/fuzz/instances.d/fuzzed.toml")
    };
    let loaded = load_instance_text(path, text, &SecretSources::default(), false);
    let has_errors = loaded.diagnostics.iter().any(|d| d.is_error());
    assert_eq!(
        loaded.spec.is_some(),
        !has_errors,
        "a spec exactly when there is no error: {:?}",
        loaded.diagnostics
    );
    for diagnostic in &loaded.diagnostics {
        let _ = diagnostic.to_string();
    }
}
