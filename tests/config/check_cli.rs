//! `pollerd check` as an operator runs it: the real binary over a corpus of broken files, each
//! with the exact `FILE:LINE:COL: error: …` lines it must print.

use std::path::Path;
use std::process::{Command, Output};

const PUBLIC: &str = "PUBLIC-SECRET-VALUE-5d1f";
const PRIVATE: &str = "PRIVATE-SECRET-VALUE-9c2e";

fn pollerd(settings: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pollerd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--config")
        .arg(settings)
        .args(args)
        .env("CW_PUBLIC", PUBLIC)
        .env("CW_PRIVATE", PRIVATE)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("POLLERD_CONFIG")
        .output()
        .expect("run pollerd")
}

fn empty_settings() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pollerd.toml");
    std::fs::write(&path, "").unwrap();
    (dir, path)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn error_lines(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| l.contains(": error: "))
        .map(str::to_string)
        .collect()
}

/// (files checked together, the error lines expected, in order)
#[rustfmt::skip]
const CASES: &[(&[&str], &[&str])] = &[
    (&["bad-json.json"], &["bad-json.json:15:25: error: invalid JSON: key must be a string"]),
    (&["bad-toml.toml"], &["bad-toml.toml:6:11: error: invalid TOML: string values must be quoted, expected literal string"]),
    (&["empty.json"], &["empty.json:1:1: error: invalid JSON: EOF while parsing a value"]),
    (&["deleted-check.json"], &[
        "deleted-check.json:21:33: error: invalid deletedCheckInterval \"soon\" (expected number at 0); write e.g. \"6h\" or \"30m\"",
        "deleted-check.json:22:31: error: deletedMaxFraction must be between 0 and 1, not 2",
        "deleted-check.json:32:9: error: idsUrl is for the http element; connectwisecrmrest reconciles through its own url with fields=<idField>",
        "deleted-check.json:41:9: error: deletedMaxFraction has no effect without deletedCheckInterval",
    ]),
    (&["top-level-array.json"], &["top-level-array.json:1:1: error: the instance must be an object, not an array"]),
    (&["not-utf8.json"], &["not-utf8.json:1:1: error: file is not UTF-8 text: invalid utf-8 sequence of 1 bytes from index 17"]),
    (&["unknown-element.json"], &["unknown-element.json:2:22: error: unsupported element \"salesforce\"; supported elements: connectwisecrmrest, http"]),
    (&["missing-callback.json"], &["missing-callback.json:4:20: error: events are enabled but \"event.notification.callback.url\" is missing"]),
    (&["unclosed-template.json"], &["unclosed-template.json:14:16: error: invalid url template: unclosed \"${\": no \"}\" outside single quotes after \"${gmtDate:yyyy-MM-dd\" (at byte 38 of the URL template)"]),
    (&["missing-secret-file.json"], &["missing-secret-file.json:8:20: error: cannot read secret file /nonexistent/pollerd/cw-private (from ${file:/nonexistent/pollerd/cw-private}): No such file or directory (os error 2)"]),
    (&["env-secret-unset.json"], &["env-secret-unset.json:8:20: error: environment variable POLLERD_TEST_UNSET_VARIABLE (from ${env:POLLERD_TEST_UNSET_VARIABLE}) is not set"]),
    (&["credential-bad-name.json"], &["credential-bad-name.json:8:20: error: invalid credential name \"../../etc/shadow\""]),
    (&["unknown-top-key.json"], &[
        "unknown-top-key.json:1:1: error: missing \"element\": write \"element\": {\"key\": \"connectwisecrmrest\"}",
        "unknown-top-key.json:2:3: error: unknown key \"elemnt\" in the instance; expected one of: element, providerData, configuration, tags, name, id, description",
    ]),
    (&["unknown-resource-key.json"], &["unknown-resource-key.json:15:9: error: unknown key \"idFeild\" in resource \"contacts\"; expected one of: url, idField, datesConfiguration, pageSize, pollDelay, createdCheckTolerance, filterByUpdatedDate, filterByUpdateDate, filterByCurrentDate, updatedDateTimezone, paging, backfillSince, itemsPath, nextPageField, nextPageParam, pageParam, deletedCheckInterval, deletedMaxFraction, idsUrl"]),
    (&["unknown-event-key.json"], &[
        "unknown-event-key.json:4:20: error: events are enabled but \"event.notification.callback.url\" is missing",
        "unknown-event-key.json:11:5: error: unknown key \"event.notification.callback.ur\"; event keys are: event.notification.enabled, event.notification.callback.url, event.notification.signature.key, event.notification.webhook.secret, event.notification.batch.size, event.poller.refresh_interval, event.poller.configuration, event.poller.urls",
    ]),
    (&["toml-unknown-key.toml"], &["toml-unknown-key.toml:18:1: error: unknown key \"pollDeley\" in resource \"contacts\"; expected one of: url, idField, datesConfiguration, pageSize, pollDelay, createdCheckTolerance, filterByUpdatedDate, filterByUpdateDate, filterByCurrentDate, updatedDateTimezone, paging, backfillSince, itemsPath, nextPageField, nextPageParam, pageParam, deletedCheckInterval, deletedMaxFraction, idsUrl"]),
    (&["batch-size.json"], &["batch-size.json:12:38: error: event.notification.batch.size must be between 1 and 100, not 500"]),
    (&["refresh-interval.json"], &["refresh-interval.json:12:38: error: event.poller.refresh_interval must be a number, not \"soon\""]),
    (&["enabled-maybe.json"], &["enabled-maybe.json:10:35: error: event.notification.enabled must be true or false, not \"maybe\""]),
    (&["callback-ftp.json"], &["callback-ftp.json:11:40: error: event.notification.callback.url must be an http:// or https:// URL, not ftp:"]),
    (&["callback-not-url.json"], &["callback-not-url.json:11:40: error: event.notification.callback.url is not a valid URL: relative URL without a base"]),
    (&["missing-base-url.json"], &["missing-base-url.json:4:20: error: missing configuration \"baseUrl\""]),
    (&["missing-private-key.json"], &["missing-private-key.json:4:20: error: missing configuration \"private.key\""]),
    (&["missing-dates.json"], &["missing-dates.json:13:19: error: resource \"contacts\" needs \"datesConfiguration\" with at least updatedDateField and updatedDateFormat"]),
    (&["missing-date-format.json"], &["missing-date-format.json:15:31: error: datesConfiguration needs updatedDateField and updatedDateFormat"]),
    (&["embedded-bad-json.json"], &["embedded-bad-json.json:12:35: error: event.poller.configuration holds a string that is not valid JSON: trailing comma at line 1 column 43"]),
    (&["webhook-secret-format.json"], &["webhook-secret-format.json:12:42: error: event.notification.webhook.secret: webhook secret must start with \"whsec_\" followed by the base64-encoded key"]),
    (&["filter-both-spellings.json"], &["filter-both-spellings.json:17:9: error: give filterByUpdatedDate or its old spelling filterByUpdateDate, not both"]),
    (&["page-size.json"], &["page-size.json:16:21: error: pageSize must be between 1 and 1000, not 5000"]),
    (&["tags-not-array.json"], &["tags-not-array.json:4:11: error: tags must be an array of strings, not a string"]),
    (&["http-auth-type.json"], &["http-auth-type.json:6:13: error: auth \"type\" must be \"basic\" (user, password) or \"bearer\" (token)"]),
    (&["legacy-unknown-resource.json"], &["legacy-unknown-resource.json:12:26: error: event.poller.urls line 2 names resource \"companies\", which event.poller.configuration does not define"]),
    (&["backfill-since.json"], &["backfill-since.json:16:26: error: backfillSince must be an RFC 3339 time like 2026-01-02T03:04:05Z: premature end of input"]),
    (&["secret-in-number-field.json"], &["secret-in-number-field.json:12:38: error: event.notification.batch.size must be a number, not \"***\""]),
    (&["duplicate-a.json", "duplicate-b.json"], &["duplicate-b.json:3:3: error: instance name \"Dup\" is already defined by tests/data/broken/duplicate-a.json; this file is ignored"]),
    (&["bad-pattern-letter.json"], &["bad-pattern-letter.json:18:32: error: invalid date format: unsupported pattern letter 'Q' at position 23 of \"yyyy-MM-dd'T'HH:mm:ss.QQQ\""]),
    (&["unknown-zone.json"], &["unknown-zone.json:16:32: error: unknown time zone \"Mars/Base\": use an IANA name like America/Denver, GMT/UTC, or an offset like -08:00"]),
    (&["unknown-hub-object.json"], &["unknown-hub-object.json:14:16: error: unknown hub object 'widgets' in '/hubs/crm/widgets?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}''; supported: contacts, organizations, accounts, incidents, opportunities, activities, time-entries, configurations"]),
    (&["bad-where.json"], &["bad-where.json:14:16: error: in the 'where' parameter of '/hubs/crm/contacts?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}': invalid where clause at byte 12: unterminated string: no closing '"]),
    (&["tls-ca-missing.json"], &["tls-ca-missing.json:10:19: error: tls.caFile: cannot read /nonexistent/pollerd/ca.pem: No such file or directory (os error 2)"]),
    (&["tls-ca-not-pem.json"], &["tls-ca-not-pem.json:10:19: error: tls.caFile: tests/data/broken/../tls/not-a-certificate.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)"]),
    (&["tls-ca-bad-certificate.json"], &["tls-ca-bad-certificate.json:10:19: error: tls.caFile: tests/data/broken/../tls/garbage-certificate.pem holds a certificate that cannot be trusted: builder error: invalid peer certificate: BadEncoding"]),
    (&["tls-ca-wrong-type.json"], &["tls-ca-wrong-type.json:10:19: error: tls.caFile must be a string, not a boolean"]),
    (&["header-control-char.json"], &["header-control-char.json:7:20: error: header \"X-Api-Key\" is not valid HTTP header text (control characters such as a newline, a NUL or DEL are not allowed)"]),
    (&["bearer-token-newline.json"], &["bearer-token-newline.json:6:41: error: auth token is not valid HTTP header text (control characters such as a newline, a NUL or DEL are not allowed)"]),
    (&["clientid-control-char.json"], &["clientid-control-char.json:9:29: error: connectwise.clientID is not valid HTTP header text (control characters such as a newline, a NUL or DEL are not allowed)"]),
    (&["callback-user-not-utf8.json"], &["callback-user-not-utf8.json:11:40: error: event.notification.callback.url: the callback URL's user name or password is not UTF-8 once percent-decoded"]),
    (&["fields-leave-out-info.json"], &["fields-leave-out-info.json:14:16: error: fields=id,name leaves out \"_info\", needed by updatedDateField _info.lastUpdated: ConnectWise answers only the fields listed, so every record would be skipped; add _info to fields"]),
    (&["many-errors.json"], &[
        "many-errors.json:4:20: error: events are enabled but \"event.notification.callback.url\" is missing",
        "many-errors.json:11:38: error: event.notification.batch.size must be between 1 and 100, not 0",
        "many-errors.json:15:20: error: idField must not be empty",
        "many-errors.json:16:125: error: unknown time zone \"Nowhere/Zone\": use an IANA name like America/Denver, GMT/UTC, or an offset like -08:00",
    ]),
];

#[test]
fn every_broken_file_gets_its_exact_error_lines() {
    let (_dir, settings) = empty_settings();
    let mut failures = Vec::new();
    for (files, expected) in CASES {
        let paths: Vec<String> = files
            .iter()
            .map(|f| format!("tests/data/broken/{f}"))
            .collect();
        let args: Vec<&str> = std::iter::once("check")
            .chain(paths.iter().map(String::as_str))
            .collect();
        let out = pollerd(&settings, &args);
        let expected: Vec<String> = expected
            .iter()
            .map(|e| format!("tests/data/broken/{e}"))
            .collect();
        let got = error_lines(&out);
        if got != expected || out.status.code() != Some(1) {
            failures.push(format!(
                "{files:?}: exit {:?}\n  expected: {expected:#?}\n  got: {got:#?}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_holds_at_least_25_broken_files_and_all_are_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken");
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let covered: std::collections::BTreeSet<String> = CASES
        .iter()
        .flat_map(|(f, _)| f.iter().map(|s| s.to_string()))
        .collect();
    let uncovered: Vec<_> = on_disk.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "corpus files without an expectation: {uncovered:?}"
    );
    assert!(on_disk.len() >= 25, "only {} broken files", on_disk.len());
}

#[test]
fn secrets_never_appear_in_check_output() {
    let (_dir, settings) = empty_settings();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            format!(
                "tests/data/broken/{}",
                e.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    files.push("tests/data/valid-base.json".into());
    files.sort();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = pollerd(&settings, &args);
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        all.contains(": error: "),
        "the corpus must produce errors:\n{all}"
    );
    for secret in [PUBLIC, PRIVATE] {
        assert!(!all.contains(secret), "secret {secret} leaked:\n{all}");
    }
}

#[test]
fn the_seed_example_checks_clean_with_its_warnings() {
    let (_dir, settings) = empty_settings();
    let out = pollerd(
        &settings,
        &["check", "etc/instances.d/connectwise-contacts.json.example"],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 valid, 0 error(s)"), "{text}");
    for warning in [
        "warning: callback URL http://mycoolapp.com:80/ uses plain http:// to a non-loopback host",
        "warning: no \"connectwise.clientID\"",
        "warning: resource \"contacts\": createdDateField equals updatedDateField (_info.lastUpdated), so every event will be CREATED",
        "warning: providerData is accepted and ignored",
    ] {
        assert!(text.contains(warning), "missing {warning:?} in:\n{text}");
    }
}

#[test]
fn a_company_resource_with_equal_date_fields_is_told_about_date_entered() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("pollerd.toml");
    std::fs::write(&settings, "").unwrap();
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("etc/instances.d/connectwise-contacts.json.example"),
    )
    .unwrap();
    let file = dir.path().join("companies.json");
    std::fs::write(
        &file,
        seed.replace("/hubs/crm/contacts", "/hubs/crm/accounts"),
    )
    .unwrap();
    let out = pollerd(&settings, &["check", file.to_str().unwrap()]);
    assert!(
        stdout(&out).contains(
            "ConnectWise has _info.dateEntered for this resource: use it as createdDateField"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_without_files_reads_the_instances_directory_and_skips_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let inst = dir.path().join("instances.d");
    std::fs::create_dir(&inst).unwrap();
    let valid = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid-base.json"),
    )
    .unwrap();
    std::fs::write(inst.join("good.json"), &valid).unwrap();
    // Editor and package-manager leftovers hold broken JSON; they must be ignored.
    for leftover in [
        ".good.json.swp",
        "good.json~",
        "good.json.dpkg-new",
        "good.json.rpmnew",
        ".hidden.json",
        "notes.txt",
    ] {
        std::fs::write(inst.join(leftover), "{ broken").unwrap();
    }
    let settings = dir.path().join("pollerd.toml");
    std::fs::write(&settings, "instances_dir = \"instances.d\"\n").unwrap();
    let out = pollerd(&settings, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("checked 1 instance file(s): 1 valid, 0 error(s)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn credential_references_are_warned_about_outside_systemd_and_read_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("pollerd.toml");
    std::fs::write(&settings, "").unwrap();
    let valid = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid-base.json"),
    )
    .unwrap();
    let file = dir.path().join("cred.json");
    std::fs::write(
        &file,
        valid.replace("${env:CW_PRIVATE}", "${credential:cw-private}"),
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let out = pollerd(&settings, &["check", file]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("warning: ${credential:cw-private} not verified"),
        "{}",
        stdout(&out)
    );

    // Under systemd the directory is set: a missing credential is an error, a present one loads.
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let run = |creds: &Path| {
        Command::new(env!("CARGO_BIN_EXE_pollerd"))
            .args(["--config", settings.to_str().unwrap(), "check", file])
            .env("CW_PUBLIC", PUBLIC)
            .env("CREDENTIALS_DIRECTORY", creds)
            .output()
            .unwrap()
    };
    let out = run(&creds);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(":8:20: error: cannot read credential cw-private at "),
        "{}",
        stdout(&out)
    );
    std::fs::write(creds.join("cw-private"), format!("{PRIVATE}\n")).unwrap();
    let out = run(&creds);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!stdout(&out).contains(PRIVATE));
}

#[test]
fn broken_settings_files_are_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("pollerd.toml");
    let cases = [
        (
            "[polling]\nmax_concurent = 3\n",
            "2:1: error: unknown field `max_concurent`, expected one of `http_timeout`, `max_concurrent`, `max_per_host`",
        ),
        (
            "[delivery]\ntimeout = \"4 parsecs\"\n",
            "2:11: error: invalid duration \"4 parsecs\"",
        ),
        (
            "log_format = \"xml\"\n",
            "1:14: error: unknown variant `xml`, expected one of `auto`, `text`, `json`, `journald`",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&settings, text).unwrap();
        let out = pollerd(&settings, &["check"]);
        let first = stdout(&out).lines().next().unwrap_or("").to_string();
        assert_eq!(out.status.code(), Some(1), "{first}");
        let want = format!("{}:{expected}", settings.display());
        assert!(
            first.starts_with(&want),
            "expected {want:?}\n got {first:?}"
        );
    }
}

#[test]
fn an_explicit_settings_file_that_does_not_exist_is_an_error() {
    let out = pollerd(Path::new("/nonexistent/pollerd.toml"), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("/nonexistent/pollerd.toml:1:1: error: cannot read settings file"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_proxy_variable_deliveries_cannot_follow_is_a_warning_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("pollerd.toml");
    std::fs::write(&settings, "").unwrap();
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid-base.json");
    let check = |proxies: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pollerd"));
        command
            .args(["--config", settings.to_str().unwrap(), "check"])
            .arg(&valid)
            .env("CW_PUBLIC", PUBLIC)
            .env("CW_PRIVATE", PRIVATE)
            .env_remove("CREDENTIALS_DIRECTORY");
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "NO_PROXY",
            "REQUEST_METHOD",
        ] {
            command.env_remove(name).env_remove(name.to_lowercase());
        }
        command.envs(proxies.iter().copied());
        command.output().unwrap()
    };

    let out = check(&[
        (
            "HTTPS_PROXY",
            "socks5://proxy-user:proxy-secret@127.0.0.1:1080",
        ),
        ("HTTP_PROXY", "http://127.0.0.1:3128"),
    ]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not an error: {text}"
    );
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("environment: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].starts_with("environment: warning: HTTPS_PROXY names a socks5:// proxy"),
        "{text}"
    );
    assert!(warnings[0].contains("connect directly"), "{text}");
    assert!(
        !text.contains("proxy-secret") && !text.contains("proxy-user"),
        "{text}"
    );

    let out = check(&[("HTTPS_PROXY", "http://127.0.0.1:3128")]);
    assert!(!stdout(&out).contains("environment:"), "{}", stdout(&out));
}

/// A header value the daemon could not send fails `check` at the value, naming the header but
/// not the value; the same file with the value fixed passes (the header, not the file, was wrong).
#[test]
fn a_header_value_with_a_control_character_fails_check_without_showing_it() {
    let (dir, settings) = empty_settings();
    let broken =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken/header-control-char.json");
    let out = pollerd(&settings, &["check", broken.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains("header-control-char.json:7:20: error: header \"X-Api-Key\""),
        "{text}"
    );
    assert!(
        !text.contains("hdrval-K9m2") && !text.contains("tail"),
        "the value leaked: {text}"
    );

    let fixed = dir.path().join("header-fixed.json");
    let original = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&fixed, original.replace("\\u0007", "-")).unwrap();
    let out = pollerd(&settings, &["check", fixed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// A `fields` list that names what pollerd reads, as a parent or a `/` path, passes; leaving out
/// the id or the created date field is an error each.
#[test]
fn a_fields_list_must_hold_the_id_and_date_fields() {
    let (dir, settings) = empty_settings();
    let valid = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid-base.json"),
    )
    .unwrap();
    let with_fields = |fields: &str, created: bool| {
        let mut text = valid.replace(
            "HH:mm:ss'Z'}'\"",
            &format!("HH:mm:ss'Z'}}'&fields={fields}\""),
        );
        if created {
            text = text.replace(
                "\"updatedDateFormat\": \"yyyy-MM-dd'T'HH:mm:ss'Z'\"",
                "\"updatedDateFormat\": \"yyyy-MM-dd'T'HH:mm:ss'Z'\", \"createdDateField\": \"_info.dateEntered\", \"createdDateFormat\": \"yyyy-MM-dd'T'HH:mm:ss'Z'\"",
            );
        }
        let file = dir.path().join("fields.json");
        std::fs::write(&file, text).unwrap();
        let out = pollerd(&settings, &["check", file.to_str().unwrap()]);
        (out.status.code(), error_lines(&out))
    };
    for covered in [
        "id,_info",
        "id,name,_info/lastUpdated",
        "id%2C_info",
        "id, _info.lastUpdated",
    ] {
        assert_eq!(
            with_fields(covered, false),
            (Some(0), vec![]),
            "fields={covered}"
        );
    }
    let (code, errors) = with_fields("name,_info/lastUpdated", true);
    assert_eq!(code, Some(1));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("fields.json:14:16: error: fields=name,_info/lastUpdated leaves out \"id\", needed by idField id"), "{errors:#?}");
    assert!(
        errors[1].contains("leaves out \"_info\", needed by createdDateField _info.dateEntered"),
        "{errors:#?}"
    );
}
