//! Loading instance files into specs: the seed example unchanged, its TOML twin, value shapes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pollerd::config::{self, ElementSpec, InstanceSpec, Paging, SecretSources};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &Path) -> InstanceSpec {
    let loaded = config::load_instance_file(path, &SecretSources::default());
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    loaded.spec.expect("a spec")
}

fn load_text(name: &str, text: &str) -> InstanceSpec {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    load(&path)
}

/// Everything a spec says, secrets included, without the file it came from.
fn describe(spec: &InstanceSpec) -> String {
    let mut s = spec.clone();
    s.file = PathBuf::new();
    let keys = match &spec.element {
        ElementSpec::ConnectWise(c) => {
            format!("{}:{}", c.public_key.expose(), c.private_key.expose())
        }
        ElementSpec::Http(_) => String::new(),
    };
    format!("{s:?} keys={keys}")
}

#[test]
fn the_seed_example_is_the_shared_seed_byte_for_byte_and_loads() {
    let example = root().join("etc/instances.d/connectwise-contacts.json.example");
    let shared = root().join("../shared/seed-instance.json");
    if shared.exists() {
        assert_eq!(
            std::fs::read(&example).unwrap(),
            std::fs::read(&shared).unwrap()
        );
    }
    let spec = load(&example);
    assert_eq!(spec.name, "API_Polling");
    assert_eq!(spec.tags, vec!["Test".to_string()]);
    assert_eq!(spec.refresh_interval, Duration::from_secs(15 * 60));
    let ElementSpec::ConnectWise(cw) = &spec.element else {
        panic!("expected connectwise")
    };
    assert_eq!(
        cw.base_url,
        "https://api-cloudelements/v4_6_release/apis/3.0"
    );
    assert_eq!(cw.company, "cloudelements");
    assert_eq!(cw.private_key.expose(), "xxxxxxxxxxxxxxxxxx");
    assert_eq!(cw.client_id, None);
    let n = spec.notifications.as_ref().expect("events enabled");
    assert_eq!(n.callback_url, "http://mycoolapp.com");
    assert_eq!(n.batch_size, 10);
    let contacts = spec.resource("contacts").expect("contacts");
    assert_eq!(
        contacts.url.source(),
        "/hubs/crm/contacts?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'"
    );
    assert_eq!(contacts.id_field.as_str(), "id");
    assert_eq!(contacts.updated.field.as_str(), "_info.lastUpdated");
    assert_eq!(
        contacts.updated.pattern.source(),
        "yyyy-MM-dd'T'HH:mm:ss'Z'"
    );
    assert_eq!(
        contacts.created.as_ref().unwrap().field.as_str(),
        "_info.lastUpdated"
    );
    assert!(contacts.filter_by_updated_date);
    assert_eq!(contacts.paging, Paging::Keyset);
    // No `id` in the file: a stable number derived from the name.
    assert_eq!(
        spec.id,
        config::instance::derived_instance_id("API_Polling")
    );
    assert_eq!(load(&example).id, spec.id);
}

#[test]
fn the_toml_twin_yields_the_same_spec() {
    let json = load(&root().join("etc/instances.d/connectwise-contacts.json.example"));
    let toml = load(&root().join("etc/instances.d/connectwise-contacts.toml.example"));
    assert_eq!(describe(&json), describe(&toml));
    assert_eq!(json.fingerprint, toml.fingerprint);
}

#[test]
fn values_may_be_strings_or_native_types_and_configuration_may_be_a_json_string() {
    let native = r#"{"element":{"key":"connectwisecrmrest"},"name":"n","id":42,
      "configuration":{"baseUrl":"https://cw.example.com/v4_6_release/apis/3.0","company":"c","public.key":"p","private.key":"k",
      "connectwise.clientID":"cid","event.notification.enabled":true,"event.notification.callback.url":"https://h.example.com",
      "event.notification.batch.size":25,"event.poller.refresh_interval":0.05,
      "event.poller.configuration":{"companies":{"url":"/hubs/crm/accounts","pollDelay":5,"createdCheckTolerance":2,
        "filterByUpdateDate":false,"filterByCurrentDate":true,"updatedDateTimezone":"America/Denver","paging":"page",
        "datesConfiguration":{"updatedDateField":"_info.lastUpdated","updatedDateFormat":"yyyy-MM-dd'T'HH:mm:ss'Z'",
          "createdDateField":"_info.dateEntered","createdDateFormat":"yyyy-MM-dd'T'HH:mm:ss'Z'","createdDateTimezone":"GMT"}}}}}"#;
    let conf_string = serde_json::json!({"companies": {"url": "/hubs/crm/accounts", "pollDelay": "5", "createdCheckTolerance": "2",
        "filterByUpdateDate": "false", "filterByCurrentDate": "true", "updatedDateTimezone": "America/Denver", "paging": "page",
        "datesConfiguration": {"updatedDateField": "_info.lastUpdated", "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
          "createdDateField": "_info.dateEntered", "createdDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'", "createdDateTimezone": "GMT"}}})
    .to_string();
    let strings = serde_json::json!({"element":{"key":"connectwisecrmrest"},"name":"n","id":"42",
      "configuration":{"baseUrl":"https://cw.example.com/v4_6_release/apis/3.0","company":"c","public.key":"p","private.key":"k",
      "connectwise.clientID":"cid","event.notification.enabled":"TRUE","event.notification.callback.url":"https://h.example.com",
      "event.notification.batch.size":"25","event.poller.refresh_interval":"0.05","event.poller.configuration": conf_string}})
    .to_string();
    let a = load_text("a.json", native);
    let b = load_text("b.json", &strings);
    for spec in [&a, &b] {
        assert_eq!(spec.id, 42);
        assert_eq!(spec.refresh_interval, Duration::from_secs(3));
        assert_eq!(spec.notifications.as_ref().unwrap().batch_size, 25);
        let r = spec.resource("companies").unwrap();
        assert_eq!(r.poll_delay, Duration::from_secs(5));
        assert_eq!(r.created_check_tolerance, Duration::from_secs(2));
        assert!(!r.filter_by_updated_date);
        assert!(r.filter_by_current_date);
        assert_eq!(
            r.paging,
            Paging::Page {
                param: "page".into()
            }
        );
        assert_eq!(
            r.created.as_ref().unwrap().field.as_str(),
            "_info.dateEntered"
        );
    }
    assert_eq!(
        describe(&a).replace(&format!("{:?}", a.fingerprint), ""),
        describe(&b).replace(&format!("{:?}", b.fingerprint), "")
    );
}

#[test]
fn disabled_events_load_without_a_callback() {
    let spec = load_text(
        "quiet.json",
        r#"{"element":{"key":"connectwisecrmrest"},"configuration":{"baseUrl":"https://cw.example.com","company":"c",
            "public.key":"p","private.key":"k","clientId":"cid"}}"#,
    );
    assert_eq!(
        spec.name, "quiet",
        "the file stem names an instance without `name`"
    );
    assert!(spec.notifications.is_none());
    assert!(spec.resources.is_empty());
}

#[test]
fn legacy_urls_define_resources_or_select_among_json_ones() {
    let legacy = load_text(
        "legacy.json",
        r#"{"element":{"key":"connectwisecrmrest"},"name":"legacy","configuration":{"baseUrl":"https://cw.example.com","company":"c",
          "public.key":"p","private.key":"k","clientId":"cid","event.notification.enabled":true,"event.notification.callback.url":"https://h.example.com",
          "event.poller.urls":"contacts|/hubs/crm/contacts||_info.lastUpdated|yyyy-MM-dd'T'HH:mm:ss'Z'|GMT\ncompanies|/hubs/crm/accounts||_info.lastUpdated|yyyy-MM-dd'T'HH:mm:ss'Z'|GMT|_info.dateEntered|yyyy-MM-dd'T'HH:mm:ss'Z'|GMT"}}"#,
    );
    let names: Vec<&str> = legacy.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["contacts", "companies"]);
    assert!(legacy.resources[0].created.is_none());
    assert_eq!(
        legacy.resources[1].created.as_ref().unwrap().field.as_str(),
        "_info.dateEntered"
    );

    let seed =
        std::fs::read_to_string(root().join("etc/instances.d/connectwise-contacts.json.example"))
            .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap();
    let conf = v["configuration"].as_object_mut().unwrap();
    let contacts = conf["event.poller.configuration"]["contacts"].clone();
    conf["event.poller.configuration"]["tickets"] = contacts;
    conf.insert("event.poller.urls".into(), "tickets".into());
    let selected = load_text("selected.json", &v.to_string());
    let names: Vec<&str> = selected.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["tickets"]);
}

#[test]
fn secret_references_resolve_and_never_print() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cw-private"), "CREDENTIAL-VALUE-77\n").unwrap();
    std::fs::write(dir.path().join("sigkey"), "SIGNING-KEY-VALUE-88").unwrap();
    let text = format!(
        r#"{{"element":{{"key":"connectwisecrmrest"}},"name":"s","configuration":{{"baseUrl":"https://cw.example.com","company":"c",
          "public.key":"${{file:{}}}","private.key":"${{credential:cw-private}}","clientId":"cid",
          "event.notification.enabled":true,"event.notification.callback.url":"https://h.example.com",
          "event.notification.signature.key":"${{file:{}}}",
          "event.poller.configuration":{{"contacts":{{"url":"/hubs/crm/contacts",
            "datesConfiguration":{{"updatedDateField":"_info.lastUpdated","updatedDateFormat":"yyyy-MM-dd'T'HH:mm:ss'Z'"}}}}}}}}}}"#,
        dir.path().join("sigkey").display(),
        dir.path().join("sigkey").display()
    );
    let path = dir.path().join("s.json");
    std::fs::write(&path, text).unwrap();
    let loaded = config::load_instance_file(
        &path,
        &SecretSources {
            credentials_dir: Some(dir.path().to_path_buf()),
            unverified_credentials_ok: false,
        },
    );
    let spec = loaded
        .spec
        .clone()
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let ElementSpec::ConnectWise(cw) = &spec.element else {
        panic!()
    };
    assert_eq!(cw.private_key.expose(), "CREDENTIAL-VALUE-77");
    assert_eq!(
        spec.notifications
            .as_ref()
            .unwrap()
            .signature_key
            .as_ref()
            .unwrap()
            .expose(),
        "SIGNING-KEY-VALUE-88"
    );
    let printed = format!("{spec:?} {:?}", loaded.diagnostics);
    for secret in ["CREDENTIAL-VALUE-77", "SIGNING-KEY-VALUE-88"] {
        assert!(!printed.contains(secret), "{secret} printed in {printed}");
    }
}
