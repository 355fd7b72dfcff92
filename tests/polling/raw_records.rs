//! Provider records stay the provider's JSON text from the page to the notification: `raw`
//! holds each record byte for byte (key order, number spelling, escapes), and ids and dates are
//! read from that text as parsed JSON would read them. A small JSON API on loopback serves fixed
//! bodies to the generic `http` element.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::load_spec;
use chrono::DateTime;
use pollerd::config::InstanceSpec;
use pollerd::element::{Element, ProviderClient};
use pollerd::poller::{MemorySink, PollError, RunReport, scan};
use serde_json::{Value, json};

const ISO: &str = "yyyy-MM-dd'T'HH:mm:ss'Z'";

/// Serves `body` as `application/json` at `/v1/items`.
async fn serve(body: &'static str) -> SocketAddr {
    let app = axum::Router::new().route(
        "/v1/items",
        axum::routing::get(move || async move { ([("content-type", "application/json")], body) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// An `http` instance reading `/v1/items` with the given resource settings.
fn instance(dir: &tempfile::TempDir, addr: SocketAddr, resource: Value) -> InstanceSpec {
    let file = dir.path().join("items.json");
    let mut items = json!({
        "url": "/items",
        "idField": "id",
        "datesConfiguration": {"updatedDateField": "meta.updated", "updatedDateFormat": ISO}
    });
    for (k, v) in resource.as_object().unwrap() {
        items[k] = v.clone();
    }
    let text = json!({
        "element": {"key": "http"},
        "name": "items",
        "configuration": {
            "baseUrl": format!("http://{addr}/v1"),
            "event.notification.enabled": true,
            "event.notification.callback.url": "http://127.0.0.1:9/hook",
            "event.poller.configuration": {"items": items}
        }
    });
    load_spec(&file, &text)
}

/// One scan of everything since 2020 into memory.
async fn scan_all(spec: &InstanceSpec) -> (Result<RunReport, PollError>, MemorySink) {
    let element = Element::new(&spec.element);
    let client = ProviderClient::new(Duration::from_secs(30), 4).unwrap();
    let mut sink = MemorySink::default();
    let from = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let resource = spec.resource("items").unwrap();
    let result = scan(&client, &mut sink, spec, &element, resource, from).await;
    (result, sink)
}

const RECORD_1: &str = r#"{"zeta": 1.50, "id": 12, "meta": {"updated": "2024-03-01T10:00:00Z", "created": "2024-03-01T10:00:00Z"}, "name": "caf\u00e9 \"q\"", "big": 123456789012345678901234567890, "list": [1e2, -0.0, {}]}"#;
const RECORD_2: &str = r#"{"id":"abc","meta":{"created":"2023-01-01T00:00:00Z","updated":"2024-03-02T10:00:00Z"},"k":true}"#;

#[tokio::test]
async fn raw_holds_each_record_byte_for_byte() {
    // Pretty-printed around the records, as some providers answer.
    let body: &'static str = Box::leak(
        format!(
            "{{\n  \"data\" : [\n    {RECORD_1} ,\n    {RECORD_2}\n  ],\n  \"next\": null\n}}\n"
        )
        .into_boxed_str(),
    );
    let addr = serve(body).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = instance(
        &dir,
        addr,
        json!({
            "itemsPath": "data",
            "datesConfiguration": {
                "updatedDateField": "meta.updated", "updatedDateFormat": ISO,
                "createdDateField": "meta.created", "createdDateFormat": ISO
            }
        }),
    );
    let (result, sink) = scan_all(&spec).await;
    let report = result.unwrap();
    assert_eq!((report.records, report.events), (2, 2), "{report:?}");
    assert_eq!(sink.notifications.len(), 1, "two events fit one batch");
    let note = &sink.notifications[0];
    let text = std::str::from_utf8(&note.body).unwrap();
    assert!(
        text.contains(&format!(r#""items":[{RECORD_1},{RECORD_2}]"#)),
        "raw.items is not the provider's text: {text}"
    );

    let parsed: Value = serde_json::from_slice(&note.body).unwrap();
    let events = parsed["message"]["events"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["objectId"].as_str().unwrap(),
                e["eventType"].as_str().unwrap(),
                e["date"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("12", "CREATED", "2024-03-01T10:00:00Z"),
            ("abc", "UPDATED", "2024-03-02T10:00:00Z")
        ]
    );
    assert_eq!(parsed["message"]["raw"]["objectType"], "items");
}

#[tokio::test]
async fn ids_and_dates_of_every_json_kind_are_read_or_skipped() {
    let addr = serve(
        r#"[
        {"\u0069d": 5, "meta": {"updated": 1709287200000}},
        {"id": 6, "id": "six", "meta": {"updated": "1709287200000"}},
        {"id": true, "meta": {"updated": 1709287200000}},
        {"id": "", "meta": {"updated": 1709287200000}},
        {"id": {"n": 1}, "meta": {"updated": 1709287200000}},
        {"id": 7, "meta": {"updated": {"at": 1709287200000}}},
        {"id": 8, "meta": {"updated": null}},
        {"id": 9, "meta": []},
        {"id": 10, "meta": {"updated": "not a number"}}
    ]"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let spec = instance(
        &dir,
        addr,
        json!({"datesConfiguration": {"updatedDateField": "meta.updated", "updatedDateFormat": "milliseconds"}}),
    );
    let (result, sink) = scan_all(&spec).await;
    let report = result.unwrap();
    assert_eq!((report.records, report.skipped), (9, 7), "{report:?}");
    let ids: Vec<String> = sink
        .notifications
        .iter()
        .flat_map(|n| {
            let v: Value = serde_json::from_slice(&n.body).unwrap();
            v["message"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["objectId"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    // An escaped key is the same key; a repeated key keeps its last value.
    assert_eq!(ids, ["5", "six"]);
}

#[tokio::test]
async fn bodies_of_the_wrong_shape_fail_the_page_with_a_clear_reason() {
    let cases: [(&'static str, Value, &str, &str); 4] = [
        (
            r#"{"data": {"id": 1}}"#,
            json!({"itemsPath": "data"}),
            "unexpected shape",
            "expected an array of records at data, got an object",
        ),
        (
            r#"{"items": []}"#,
            json!({"itemsPath": "data"}),
            "unexpected shape",
            "no data in the body",
        ),
        (
            r#"{"data": []}"#,
            json!({}),
            "unexpected shape",
            "expected an array of records, got an object",
        ),
        (r#"[{"id": 1},"#, json!({}), "bad json", "not valid JSON"),
    ];
    for (body, resource, class, message) in cases {
        let addr = serve(body).await;
        let dir = tempfile::tempdir().unwrap();
        let spec = instance(&dir, addr, resource);
        let (result, sink) = scan_all(&spec).await;
        let error = result.expect_err(body);
        assert_eq!(error.class(), class, "{body}: {error}");
        assert!(error.to_string().contains(message), "{body}: {error}");
        assert!(sink.notifications.is_empty());
    }
}
