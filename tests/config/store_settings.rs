//! `[store] engine`, `url` and `pool_size` in pollerd.toml: the default engine, the postgres
//! engine's settings, secret references for the url, and errors at the line and column of what
//! is wrong that never repeat a password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pollerd::config::settings::{DEFAULT_POOL_SIZE, PostgresSettings, StoreEngine, StoreUrl};
use pollerd::config::{Environment, Settings};

fn parse(text: &str, env: &Environment) -> Result<Settings, pollerd::config::Diagnostic> {
    Settings::parse(Path::new("/etc/pollerd/pollerd.toml"), text, env)
}

/// The error's position as (line, column), and its message.
fn error_at(text: &str, env: &Environment) -> ((usize, usize), String) {
    let error = parse(text, env).expect_err("the settings must be refused");
    let position = error.position.expect("an error with its position");
    ((position.line, position.column), error.message)
}

fn postgres_settings(settings: &Settings) -> &PostgresSettings {
    match &settings.store_engine {
        StoreEngine::Postgres(postgres) => postgres,
        other => panic!("engine {other:?}, not postgres"),
    }
}

#[test]
fn sled_is_the_engine_unless_postgres_is_chosen() {
    let env = Environment::default();
    assert_eq!(parse("", &env).unwrap().store_engine, StoreEngine::Sled);
    let explicit = parse("[store]\nengine = \"sled\"\ncache_mb = 8\n", &env).unwrap();
    assert_eq!(explicit.store_engine, StoreEngine::Sled);
}

#[test]
fn the_postgres_engine_takes_a_url_and_a_pool_size_and_never_shows_the_password() {
    let env = Environment::default();
    let text = "[store]\nengine = \"postgres\"\nurl = \"postgres://pollerd:hunter2-secret@db.example/pollerd\"\npool_size = 4\n";
    let settings = parse(text, &env).unwrap();
    let postgres = postgres_settings(&settings);
    assert_eq!(postgres.pool_size, 4);
    let url = postgres.url.resolve(&env).unwrap();
    assert_eq!(
        url.expose(),
        "postgres://pollerd:hunter2-secret@db.example/pollerd"
    );
    let shown = format!("{settings:?}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let defaults = parse(
        "[store]\nengine = \"postgres\"\nurl = \"host=db user=pollerd\"\n",
        &env,
    );
    assert_eq!(postgres_of(defaults).pool_size, DEFAULT_POOL_SIZE);
}

fn postgres_of(settings: Result<Settings, pollerd::config::Diagnostic>) -> PostgresSettings {
    postgres_settings(&settings.unwrap()).clone()
}

#[test]
fn the_url_may_be_a_credential_resolved_where_systemd_provides_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pg-url"),
        "postgres://pollerd:from-credential@db/pollerd\n",
    )
    .unwrap();
    let text = "[store]\nengine = \"postgres\"\nurl = \"${credential:pg-url}\"\n";
    let under_systemd = Environment {
        credentials_directory: Some(dir.path().to_path_buf()),
        ..Environment::default()
    };
    let settings = parse(text, &under_systemd).unwrap();
    let postgres = postgres_settings(&settings);
    assert_eq!(
        postgres.url,
        StoreUrl::Reference("${credential:pg-url}".into())
    );
    assert_eq!(
        postgres.url.resolve(&under_systemd).unwrap().expose(),
        "postgres://pollerd:from-credential@db/pollerd"
    );
    // `pollerd check` from a shell has no credentials: accepted, and resolving says why not.
    let from_a_shell = Environment::default();
    let settings = parse(text, &from_a_shell).unwrap();
    let reason = postgres_settings(&settings)
        .url
        .resolve(&from_a_shell)
        .unwrap_err();
    assert!(reason.contains("CREDENTIALS_DIRECTORY"), "{reason}");
    // Present but missing: refused at the url's line and column.
    let empty = tempfile::tempdir().unwrap();
    let env = Environment {
        credentials_directory: Some(empty.path().to_path_buf()),
        ..Environment::default()
    };
    let (at, message) = error_at(text, &env);
    assert_eq!(at, (3, 7), "{message}");
    assert!(message.contains("credential pg-url"), "{message}");
}

#[test]
fn a_referenced_file_that_is_not_a_connection_string_is_refused_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("pg-url");
    std::fs::write(&file, "hunter2-not-a-url\n").unwrap();
    let text = format!(
        "[store]\nengine = \"postgres\"\nurl = \"${{file:{}}}\"\n",
        file.display()
    );
    let (at, message) = error_at(&text, &Environment::default());
    assert_eq!(at, (3, 7), "{message}");
    assert!(message.contains("connection string"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn store_errors_name_their_line_and_column() {
    let env = Environment::default();
    let cases: [(&str, (usize, usize), &str); 6] = [
        (
            "[store]\nengine = \"postgres\"\n",
            (2, 10),
            "needs [store] url",
        ),
        (
            "[store]\nurl = \"postgres://db/pollerd\"\n",
            (2, 7),
            "url applies to engine = \"postgres\" only",
        ),
        (
            "[store]\nengine = \"sled\"\npool_size = 3\n",
            (3, 13),
            "pool_size applies to engine = \"postgres\" only",
        ),
        (
            "[store]\nengine = \"mysql\"\n",
            (2, 10),
            "unknown variant `mysql`",
        ),
        (
            "[store]\nengine = \"postgres\"\nurl = \"postgres://db/p\"\npool_size = 5000\n",
            (4, 13),
            "at most 1024",
        ),
        (
            "[store]\nengine = \"postgres\"\nurl = \"postgres://db/p\"\npool_size = 0\n",
            (4, 13),
            "at least 1",
        ),
    ];
    for (text, expected_at, expected_message) in cases {
        let (at, message) = error_at(text, &env);
        assert_eq!(at, expected_at, "{text}: {message}");
        assert!(message.contains(expected_message), "{text}: {message}");
    }
}

#[test]
fn a_url_that_is_not_postgres_is_refused_without_repeating_it() {
    let env = Environment::default();
    let text = "[store]\nengine = \"postgres\"\nurl = \"mysql://root:hunter2@db/x\"\n";
    let (at, message) = error_at(text, &env);
    assert_eq!(at, (3, 7), "{message}");
    assert!(
        message.contains("not a PostgreSQL connection string"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    let unset =
        "[store]\nengine = \"postgres\"\nurl = \"${env:POLLERD_TEST_SURELY_UNSET_PG_URL}\"\n";
    let (at, message) = error_at(unset, &env);
    assert_eq!(at, (3, 7), "{message}");
    assert!(
        message.contains("POLLERD_TEST_SURELY_UNSET_PG_URL"),
        "{message}"
    );
}

const PG: &str = "[store]\nengine = \"postgres\"\nurl = \"postgres://db/p\"\n";

#[test]
fn a_node_is_named_by_its_host_and_state_directory_and_leases_renew_every_5_s_for_15_s() {
    let env = Environment {
        state_directory: Some(PathBuf::from("/var/lib/pollerd")),
        ..Environment::default()
    };
    let settings = parse(PG, &env).unwrap();
    let postgres = postgres_settings(&settings);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        postgres.node_id,
        format!("{}:/var/lib/pollerd", host.trim())
    );
    assert_eq!(
        (postgres.lease_renew, postgres.lease_ttl),
        (Duration::from_secs(5), Duration::from_secs(15))
    );
    let text = format!("{PG}node_id = \"eu-1\"\nlease_renew = \"1s\"\nlease_ttl = \"3s\"\n");
    let settings = parse(&text, &env).unwrap();
    let postgres = postgres_settings(&settings);
    assert_eq!(
        (
            postgres.node_id.as_str(),
            postgres.lease_renew,
            postgres.lease_ttl
        ),
        ("eu-1", Duration::from_secs(1), Duration::from_secs(3))
    );
}

#[test]
fn lease_settings_that_cannot_work_name_their_line_and_column() {
    let env = Environment::default();
    let cases: [(String, (usize, usize), &str); 5] = [
        (
            format!("{PG}lease_renew = \"10s\"\n"),
            (4, 15),
            "lease_ttl (15s) must be at least twice lease_renew (10s)",
        ),
        (
            format!("{PG}lease_renew = \"2s\"\nlease_ttl = \"3s\"\n"),
            (5, 13),
            "must be at least twice lease_renew",
        ),
        (
            format!("{PG}lease_renew = \"10ms\"\n"),
            (4, 15),
            "lease_renew must be at least 100ms",
        ),
        (
            format!("{PG}node_id = \" \"\n"),
            (4, 11),
            "node_id must not be empty",
        ),
        (
            "[store]\nlease_ttl = \"30s\"\n".to_string(),
            (2, 13),
            "lease_ttl applies to engine = \"postgres\" only",
        ),
    ];
    for (text, expected_at, expected_message) in cases {
        let (at, message) = error_at(&text, &env);
        assert_eq!(at, expected_at, "{text}: {message}");
        assert!(message.contains(expected_message), "{text}: {message}");
    }
}
