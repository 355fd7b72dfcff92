//! Secrets never leave pollerd: distinctive values in every kind of secret field, driven through
//! every output of the real binary (check, run logs under provider and receiver failures, status,
//! dead letters, poll, metrics, a reload with a broken file, what the receiver gets), and none of
//! those outputs may hold a value or its base64 form. Also: the admin socket refuses other users.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pollerd::sim::connectwise::{ConnectWiseSim, Fault, FaultScope, RecordKind, SimConfig};
use pollerd::sim::receiver::{Behaviour, Receiver};
use serde_json::{Value, json};
use support::*;

const COMPANY: &str = "leakco";
const CW_PUBLIC: &str = "cwpub-Q7x1Zr8Kd";
const CW_PRIVATE: &str = "cwpriv-M3k9Lp2Wf";
const CW_LITERAL_PRIVATE: &str = "cwlit-V5n8Tb6Hq";
const SIGNATURE_KEY: &str = "sigkey-H4w6Yd1Ns";
/// The key bytes behind the `whsec_` secret, ASCII so a leak of the raw key is searchable too.
const WEBHOOK_KEY: &str = "whkey-raw-K2p7Jm";
const BEARER: &str = "bearer-T9j3Vc5Xe";
const HEADER_VALUE: &str = "hdr-R1s4Ge8Pu";

fn webhook_secret() -> String {
    format!("whsec_{}", STANDARD.encode(WEBHOOK_KEY))
}

/// Every spelling of a secret that must not appear: the values, their base64, the secret's
/// base64 body, and the Basic auth header values of both ConnectWise instances.
fn forbidden() -> Vec<String> {
    let values = [
        CW_PUBLIC,
        CW_PRIVATE,
        CW_LITERAL_PRIVATE,
        SIGNATURE_KEY,
        WEBHOOK_KEY,
        BEARER,
        HEADER_VALUE,
    ];
    let mut out: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    out.extend(values.iter().map(|v| STANDARD.encode(v)));
    out.push(webhook_secret());
    out.push(STANDARD.encode(format!("{COMPANY}+{CW_PUBLIC}:{CW_PRIVATE}")));
    out.push(STANDARD.encode(format!("{COMPANY}+{CW_PUBLIC}:{CW_LITERAL_PRIVATE}")));
    out
}

/// What was collected: (where it came from, the text).
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn command(&mut self, what: &str, out: &Output) {
        self.add(
            format!("{what} stdout"),
            String::from_utf8_lossy(&out.stdout),
        );
        self.add(
            format!("{what} stderr"),
            String::from_utf8_lossy(&out.stderr),
        );
    }

    fn assert_no_secret(&self) {
        let mut leaks = Vec::new();
        for (what, text) in &self.0 {
            for secret in forbidden() {
                if text.contains(&secret) {
                    leaks.push(format!("{what} holds {secret:?}:\n{text}"));
                }
            }
        }
        assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
    }
}

/// `pollerd ARGS` with the ConnectWise keys the leak instances read from the environment.
fn pollerd_with_keys(dd: &DaemonDir, args: &[&str]) -> Command {
    let mut command = pollerd_command(dd, args);
    command
        .env("LEAK_CW_PUBLIC", CW_PUBLIC)
        .env("LEAK_CW_PRIVATE", CW_PRIVATE);
    command
}

fn pollerd(dd: &DaemonDir, args: &[&str]) -> Output {
    pollerd_with_keys(dd, args).output().unwrap()
}

async fn pollerd_async(dd: &DaemonDir, args: &[&str]) -> Output {
    output_async(pollerd_with_keys(dd, args)).await
}

/// ConnectWise with keys from the environment, signed both ways.
fn cw_env_instance(sim: &ConnectWiseSim, callback: &str) -> Value {
    let mut v = seed_instance(sim, callback, "0.01");
    v["name"] = "cw-env".into();
    let conf = &mut v["configuration"];
    conf["company"] = COMPANY.into();
    conf["public.key"] = "${env:LEAK_CW_PUBLIC}".into();
    conf["private.key"] = "${env:LEAK_CW_PRIVATE}".into();
    conf["event.notification.signature.key"] = SIGNATURE_KEY.into();
    conf["event.notification.webhook.secret"] = webhook_secret().into();
    v
}

/// ConnectWise with a literal private key the simulator refuses: every poll is a 401.
fn cw_literal_instance(sim: &ConnectWiseSim, callback: &str) -> Value {
    let mut v = seed_instance(sim, callback, "0.01");
    v["name"] = "cw-literal".into();
    let conf = &mut v["configuration"];
    conf["company"] = COMPANY.into();
    conf["public.key"] = CW_PUBLIC.into();
    conf["private.key"] = CW_LITERAL_PRIVATE.into();
    v
}

/// The generic element with a bearer token and an API key header, against a path the
/// simulator refuses.
fn http_instance(sim: &ConnectWiseSim, callback: &str) -> Value {
    json!({
        "element": {"key": "http"},
        "name": "http-api",
        "configuration": {
            "baseUrl": sim.base_url(),
            "headers": {"X-Api-Key": HEADER_VALUE},
            "auth": {"type": "bearer", "token": BEARER},
            "event.notification.enabled": true,
            "event.notification.callback.url": callback,
            "event.poller.refresh_interval": "0.01",
            "event.poller.configuration": {
                "items": {
                    "url": "/company/contacts?since=${epoch:ms}",
                    "idField": "id",
                    "datesConfiguration": {"updatedDateField": "modified", "updatedDateFormat": "milliseconds"}
                }
            }
        }
    })
}

/// Broken files, each with a secret where an error is reported.
fn write_broken_files(dir: &Path, sim: &ConnectWiseSim) {
    std::fs::create_dir_all(dir).unwrap();
    // A literal secret repeated in a number field: the error quotes the value.
    let mut wrong_type = cw_literal_instance(sim, "http://127.0.0.1:9/hook");
    wrong_type["name"] = "wrong-type".into();
    wrong_type["configuration"]["event.poller.refresh_interval"] = CW_LITERAL_PRIVATE.into();
    wrong_type["configuration"]["event.notification.batch.size"] = "${env:LEAK_CW_PRIVATE}".into();
    std::fs::write(dir.join("wrong-type.json"), wrong_type.to_string()).unwrap();
    // A webhook secret that is not one, and a signature key of the wrong type.
    let mut bad_secret = cw_env_instance(sim, "http://127.0.0.1:9/hook");
    bad_secret["name"] = "bad-secret".into();
    bad_secret["configuration"]["event.notification.webhook.secret"] =
        format!("{SIGNATURE_KEY}!").into();
    bad_secret["configuration"]["event.notification.signature.key"] = json!([SIGNATURE_KEY]);
    std::fs::write(dir.join("bad-secret.json"), bad_secret.to_string()).unwrap();
    // TOML and JSON syntax errors on a line holding a secret.
    std::fs::write(
        dir.join("bad-syntax.toml"),
        format!(
            "name = \"bad-syntax\"\n[element]\nkey = \"connectwisecrmrest\"\n[configuration]\n\"private.key\" = {CW_LITERAL_PRIVATE}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("bad-syntax.json"),
        format!("{{\"name\": \"bad-json\", \"configuration\": {{\"private.key\": \"{CW_LITERAL_PRIVATE}\" \"x\": 1}}}}"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_of_pollerd_holds_a_secret() {
    let sim = ConnectWiseSim::start(SimConfig {
        company: COMPANY.to_string(),
        public_key: CW_PUBLIC.to_string(),
        private_key: CW_PRIVATE.to_string(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new(&format!(
        "{METRICS_ANY_PORT}[delivery]\nschedule = [\"100ms\"]\n"
    ));
    let mut outputs = Outputs::default();
    dd.write_instance("cw-env.json", &cw_env_instance(&sim, &receiver.url()));
    dd.write_instance(
        "cw-literal.json",
        &cw_literal_instance(&sim, &receiver.url()),
    );
    dd.write_instance("http-api.json", &http_instance(&sim, &receiver.url()));
    let broken = dd.path().join("broken");
    write_broken_files(&broken, &sim);

    let valid = pollerd(&dd, &["check"]);
    assert_eq!(valid.status.code(), Some(0), "{valid:?}");
    outputs.command("check (valid)", &valid);
    for file in std::fs::read_dir(&broken).unwrap() {
        let file = file.unwrap().path();
        let out = pollerd(&dd, &["check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{} is broken", file.display());
        outputs.command(&format!("check {}", file.display()), &out);
    }

    // The receiver rejects everything: notifications become dead letters.
    receiver.set_default(Behaviour::Status(400));
    let daemon = dd.start(&[
        ("LEAK_CW_PUBLIC", CW_PUBLIC),
        ("LEAK_CW_PRIVATE", CW_PRIVATE),
    ]);
    wait_for("cw-env's baseline", WAIT, || {
        sim.requests()
            .iter()
            .any(|r| r.had_valid_auth && r.status == 200)
    })
    .await;
    sim.create_many(RecordKind::Contact, 2, None);
    wait_for("rejected deliveries", WAIT, || {
        receiver.request_count() >= 1
    })
    .await;
    // The other instances poll the same path: each fault lasts a few requests so cw-env meets it.
    let contacts = FaultScope {
        path_contains: Some("/company/contacts".to_string()),
        skip: 0,
        count: 30,
    };
    for (fault, shows) in [
        (Fault::Unauthorized, "HTTP 401"),
        (Fault::ServerError, "HTTP 500"),
        (Fault::HtmlMaintenance, "HTTP 503"),
        (Fault::HtmlOk, "not JSON"),
    ] {
        sim.clear_faults();
        let seen = daemon.log_text().lines().count();
        sim.inject(fault.clone(), contacts.clone());
        wait_for(
            &format!("cw-env's poll error after {fault:?}"),
            WAIT,
            || {
                daemon.log_text().lines().skip(seen).any(|l| {
                    l.contains("cw-env") && l.contains("polling failed") && l.contains(shows)
                })
            },
        )
        .await;
    }
    sim.clear_faults();
    wait_for("the 401s of the literal key", WAIT, || {
        let log = daemon.log_text();
        log.contains("cw-literal") && log.contains("HTTP 401")
    })
    .await;
    wait_for("a dead letter", WAIT, || {
        String::from_utf8_lossy(&pollerd(&dd, &["dead-letters", "list"]).stdout).contains("cw-env")
    })
    .await;

    for args in [
        &["status"][..],
        &["status", "--json"],
        &["dead-letters", "list"],
    ] {
        let out = pollerd_async(&dd, args).await;
        // `status` exits 2 here: the resources with a wrong key are failing, as they should.
        assert!(
            out.status.success() || (args[0] == "status" && out.status.code() == Some(2)),
            "{args:?}: {out:?}"
        );
        outputs.command(&args.join(" "), &out);
    }
    let since = (sim.now() - chrono::Duration::minutes(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for instance in ["cw-env", "cw-literal", "http-api"] {
        let out = pollerd_async(&dd, &["poll", instance, "--since", &since]).await;
        outputs.command(&format!("poll {instance}"), &out);
    }
    let metrics_addr = daemon
        .log_text()
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address in the log")
        .to_string();
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("pollerd_polls_total"), "{metrics}");
    outputs.add("metrics", metrics);

    // A reload with a broken file that holds secrets.
    std::fs::copy(
        broken.join("wrong-type.json"),
        dd.instances().join("wrong-type.json"),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("the reload's error for the broken file", WAIT, || {
        daemon.log_text().contains("wrong-type.json")
    })
    .await;
    let status = pollerd_async(&dd, &["status"]).await;
    outputs.command("status after reload", &status);

    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    outputs.add("daemon logs", dd.logs());
    for request in receiver.requests() {
        outputs.add(
            format!("receiver request {}", request.path),
            format!(
                "{:?}\n{}",
                request.headers,
                String::from_utf8_lossy(&request.body)
            ),
        );
    }
    outputs.assert_no_secret();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_is_0660_and_refuses_another_user() {
    use std::os::unix::fs::PermissionsExt;

    let (_sim, _receiver, dd) = seed_daemon_dir("", "10").await;
    let daemon = dd.start(&[]);
    // The socket is bound, then set to 0660, then served: wait until it answers.
    wait_for("the admin socket to answer", WAIT, || {
        pollerd(&dd, &["status"]).status.success()
    })
    .await;
    let mode = std::fs::metadata(dd.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    // Let another user reach the socket and read the settings, so only the socket refuses.
    for dir in [dd.path(), &dd.path().join("run")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(dd.settings(), std::fs::Permissions::from_mode(0o644)).unwrap();

    let as_root = pollerd_async(&dd, &["status"]).await;
    assert!(as_root.status.success(), "{as_root:?}");
    let mut as_nobody = Command::new("setpriv");
    as_nobody
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_pollerd"))
        .args(["status", "--config"])
        .arg(dd.settings());
    let refused = output_async(as_nobody).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach pollerd at {}",
            dd.socket().display()
        )) && stderr.contains("Permission denied"),
        "refused at the socket: {stderr}"
    );
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}

// A callback URL's user name, password and query (item 8 of issue 13).
const CALLBACK_USER: &str = "cbuser-N4d7";
const CALLBACK_PASSWORD: &str = "cbpass-W7k2";
const CALLBACK_CODE: &str = "cbcode-SECRET-J5r";

/// The parts of a callback URL that may carry credentials never show: not in the daemon's log
/// of failing deliveries, not in `status`, not in a dead letter, not in `check`'s plain-http
/// warning; the receiver's host and port do, and the receiver gets the credentials it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_urls_credentials_and_query_never_show() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Behaviour::Status(500));
    let address = receiver.addr();
    let callback =
        format!("http://{CALLBACK_USER}:{CALLBACK_PASSWORD}@{address}/hook?code={CALLBACK_CODE}");
    let dd = DaemonDir::new("[delivery]\nschedule = [\"100ms\", \"100ms\"]\n");
    let instance = |callback: &str| {
        let mut v = seed_instance(&sim, callback, "0.01");
        v["name"] = "leaky-hook".into();
        v
    };
    dd.write_instance("leaky-hook.json", &instance(&callback));
    let mut outputs = Vec::new();

    let daemon = dd.start(&[]);
    wait_for("the baseline poll", WAIT, || {
        sim.requests().iter().any(|r| r.status == 200)
    })
    .await;
    sim.create_many(RecordKind::Contact, 2, None);
    wait_for("a dead letter after the receiver's 500s", WAIT, || {
        String::from_utf8_lossy(&pollerd(&dd, &["dead-letters", "list"]).stdout)
            .contains("leaky-hook")
    })
    .await;
    // The URL's credentials were used, and the query was sent: they reached the receiver only.
    let sent = receiver.requests();
    let expected_authorization = format!(
        "Basic {}",
        STANDARD.encode(format!("{CALLBACK_USER}:{CALLBACK_PASSWORD}"))
    );
    assert_eq!(
        sent[0].header("authorization"),
        Some(expected_authorization.as_str())
    );
    assert_eq!(sent[0].path, format!("/hook?code={CALLBACK_CODE}"));

    for args in [
        &["status"][..],
        &["status", "--json"],
        &["dead-letters", "list"],
    ] {
        let out = pollerd_async(&dd, args).await;
        assert!(out.status.success(), "{args:?}: {out:?}");
        outputs.push((
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    let log = dd.logs();
    let shown = format!("http://{address}/hook?…");
    assert!(
        log.contains(&format!("delivery to {shown} failed")),
        "the failing receiver is named by host and port:\n{log}"
    );
    outputs.push(("daemon log".to_string(), log));

    // `check` warns about plain http to another host, naming it the same way.
    let remote = callback.replace(&address.to_string(), "hooks.example.com:8080");
    dd.write_instance("leaky-hook.json", &instance(&remote));
    let check = pollerd(&dd, &["check"]);
    let check_text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check_text.contains(
            "warning: callback URL http://hooks.example.com:8080/hook?… uses plain http://"
        ),
        "{check_text}"
    );
    outputs.push(("check".to_string(), check_text));

    for (what, text) in &outputs {
        for secret in [CALLBACK_USER, CALLBACK_PASSWORD, CALLBACK_CODE] {
            assert!(!text.contains(secret), "{what} holds {secret:?}:\n{text}");
        }
    }
}

// `${file:…}` references (item 15 of issue 13).

/// An instance directory beside the settings file, whose instance reads its private key from
/// `reference` (`${file:…}`).
struct SecretFileCase {
    dir: tempfile::TempDir,
}

impl SecretFileCase {
    fn new(reference: &str) -> SecretFileCase {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pollerd.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("instances.d")).unwrap();
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid-base.json"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("instances.d/acme.json"),
            base.replace("${env:CW_PRIVATE}", reference),
        )
        .unwrap();
        SecretFileCase { dir }
    }

    fn instances(&self) -> std::path::PathBuf {
        self.dir.path().join("instances.d")
    }

    /// A secret file in the instances directory, with `mode`.
    fn write_secret(&self, name: &str, content: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.instances().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `pollerd check` of the instance file, from another working directory, within a bounded
    /// time (a check that hangs on a FIFO fails here instead of hanging the suite).
    fn check(&self) -> (Option<i32>, String) {
        use std::io::Read as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_pollerd"))
            .current_dir("/")
            .arg("--config")
            .arg(self.dir.path().join("pollerd.toml"))
            .arg("check")
            .arg(self.instances().join("acme.json"))
            .env("CW_PUBLIC", CW_PUBLIC)
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("check did not finish within {WAIT:?}: it must not wait on a secret file");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        (status.code(), text)
    }
}

#[test]
fn a_relative_secret_file_is_read_from_the_instance_files_directory() {
    let case = SecretFileCase::new("${file:keys/cw-private}");
    std::fs::create_dir(case.instances().join("keys")).unwrap();
    case.write_secret(
        "keys/cw-private",
        format!("{CW_PRIVATE}\n").as_bytes(),
        0o600,
    );
    let (code, text) = case.check();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 valid, 0 error(s), 0 warning(s)"), "{text}");

    // Read from there and nowhere else: without it, the error names that path.
    std::fs::remove_file(case.instances().join("keys/cw-private")).unwrap();
    let (code, text) = case.check();
    assert_eq!(code, Some(1), "{text}");
    let expected = format!(
        "acme.json:8:20: error: cannot read secret file {} (from ${{file:keys/cw-private}}): No such file",
        case.instances().join("keys/cw-private").display()
    );
    assert!(
        text.contains(&expected),
        "expected {expected:?} in:\n{text}"
    );
}

#[test]
fn a_fifo_a_device_or_a_directory_is_refused_at_once() {
    let fifo_case = SecretFileCase::new("${file:cw-private.fifo}");
    let made = Command::new("mkfifo")
        .arg(fifo_case.instances().join("cw-private.fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    let directory_case = SecretFileCase::new("${file:keys}");
    std::fs::create_dir(directory_case.instances().join("keys")).unwrap();
    let cases = [
        (fifo_case, "${file:cw-private.fifo}", "a FIFO"),
        (
            SecretFileCase::new("${file:/dev/zero}"),
            "${file:/dev/zero}",
            "a device",
        ),
        (directory_case, "${file:keys}", "a directory"),
    ];
    for (case, reference, kind) in cases {
        let (code, text) = case.check();
        assert_eq!(code, Some(1), "{reference}: {text}");
        let expected = format!("(from {reference}): it is {kind}, not a regular file");
        assert!(
            text.contains("acme.json:8:20: error: cannot read secret file ")
                && text.contains(&expected),
            "expected {expected:?} in:\n{text}"
        );
    }
}

#[test]
fn a_secret_file_larger_than_64_kib_is_refused() {
    let case = SecretFileCase::new("${file:cw-private}");
    case.write_secret("cw-private", &vec![b'k'; 64 * 1024 + 1], 0o600);
    let (code, text) = case.check();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("(from ${file:cw-private}): it is larger than 64 KiB"),
        "{text}"
    );
    // At the bound exactly it is read.
    case.write_secret("cw-private", &vec![b'k'; 64 * 1024], 0o600);
    let (code, text) = case.check();
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_secret_file_others_can_read_is_a_warning() {
    let case = SecretFileCase::new("${file:cw-private}");
    case.write_secret("cw-private", CW_PRIVATE.as_bytes(), 0o644);
    let (code, text) = case.check();
    assert_eq!(code, Some(0), "a warning, not an error: {text}");
    let expected = format!(
        "acme.json: warning: secret file {} (from ${{file:cw-private}}) is readable by other users",
        case.instances().join("cw-private").display()
    );
    assert!(
        text.contains(&expected),
        "expected {expected:?} in:\n{text}"
    );
    assert!(!text.contains(CW_PRIVATE), "{text}");

    case.write_secret("cw-private", CW_PRIVATE.as_bytes(), 0o640);
    let (code, text) = case.check();
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("readable by other users"), "{text}");
}
