//! Every example the project ships loads: the default settings file and each example instance.

use std::path::Path;

use pollerd::config::{self, Environment, SecretSources, Settings};

#[test]
fn the_shipped_settings_file_is_valid_and_states_the_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = Settings::load(
        Some(&root.join("etc/pollerd.toml")),
        &Environment::default(),
    )
    .unwrap();
    let defaults =
        Settings::parse(&root.join("etc/pollerd.toml"), "", &Environment::default()).unwrap();
    assert_eq!(
        shipped, defaults,
        "etc/pollerd.toml must only show defaults, commented"
    );
    // Every commented `# key = value` line, uncommented, must still parse and equal the defaults.
    let text = std::fs::read_to_string(root.join("etc/pollerd.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(char::is_uppercase) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let explicit = Settings::parse(
        &root.join("etc/pollerd.toml"),
        &uncommented,
        &Environment::default(),
    )
    .unwrap();
    let mut expected = defaults.clone();
    expected.file = explicit.file.clone();
    expected.metrics_listen = explicit.metrics_listen; // the one key that is off by default
    assert_eq!(explicit, expected);
}

#[test]
fn every_example_instance_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/instances.d");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let loaded = config::load_instance_file(&path, &SecretSources::default());
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        assert!(loaded.spec.is_some());
        count += 1;
    }
    assert!(
        count >= 2,
        "expected the seed example and its TOML twin, found {count}"
    );
}
