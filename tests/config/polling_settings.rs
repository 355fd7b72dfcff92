//! `[polling] max_per_host`, `max_per_tenant` and `tenant_requests_per_minute` in pollerd.toml:
//! their defaults, `"off"`, and errors naming the file, the line and column, and the key.

use std::num::NonZeroU32;
use std::path::Path;

use pollerd::config::{Environment, Settings};

const FILE: &str = "/etc/pollerd/pollerd.toml";

fn parse(text: &str) -> Result<Settings, pollerd::config::Diagnostic> {
    Settings::parse(Path::new(FILE), text, &Environment::default())
}

#[test]
fn tenants_get_4_requests_at_once_and_1000_a_minute_and_hosts_64_by_default() {
    let polling = parse("").unwrap().polling;
    assert_eq!(polling.max_per_host, 64);
    assert_eq!(polling.max_per_tenant, 4);
    assert_eq!(polling.tenant_requests_per_minute, NonZeroU32::new(1000));
}

#[test]
fn tenant_limits_are_read_and_off_turns_the_budget_off() {
    let text =
        "[polling]\nmax_per_host = 8\nmax_per_tenant = 2\ntenant_requests_per_minute = 120\n";
    let polling = parse(text).unwrap().polling;
    assert_eq!(
        (
            polling.max_per_host,
            polling.max_per_tenant,
            polling.tenant_requests_per_minute
        ),
        (8, 2, NonZeroU32::new(120))
    );
    let off = parse("[polling]\ntenant_requests_per_minute = \"off\"\n").unwrap();
    assert_eq!(off.polling.tenant_requests_per_minute, None);
}

#[test]
fn bad_tenant_limits_are_errors_naming_the_file_position_and_key() {
    let limit = "must be a whole number from 1 to 65536";
    let budget = "must be a whole number from 1 to 1000000, or \"off\" for no budget";
    let cases = [
        ("max_per_tenant = 0", "max_per_tenant", limit),
        ("max_per_tenant = \"four\"", "max_per_tenant", limit),
        ("max_per_tenant = 2.5", "max_per_tenant", limit),
        ("max_per_host = 100000", "max_per_host", limit),
        ("max_per_host = -1", "max_per_host", limit),
        (
            "tenant_requests_per_minute = 0",
            "tenant_requests_per_minute",
            budget,
        ),
        (
            "tenant_requests_per_minute = 2000000",
            "tenant_requests_per_minute",
            budget,
        ),
        (
            "tenant_requests_per_minute = \"never\"",
            "tenant_requests_per_minute",
            budget,
        ),
        (
            "tenant_requests_per_minute = true",
            "tenant_requests_per_minute",
            budget,
        ),
    ];
    for (line, key, message) in cases {
        let text = format!("log_level = \"info\"\n[polling]\n{line}\n");
        let error = parse(&text).expect_err(line);
        // The value's column: after `key = `.
        let column = key.len() + 4;
        assert_eq!(
            error.to_string(),
            format!("{FILE}:3:{column}: error: [polling] {key} {message}"),
            "{line}"
        );
    }
}
