//! The generic `http` element against a small JSON API with cursor paging, over real HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::support::{load_spec, poll_shared};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use pollerd::element::Element;
use pollerd::poller::run_resource;
use pollerd::store::ResourceKey;
use serde_json::{Value, json};

/// Items with a string id and an epoch-millisecond `modified`; 3 per page, cursor = last index.
#[derive(Default)]
struct Api {
    items: Vec<(String, i64)>,
    requests: Vec<(HashMap<String, String>, Option<String>)>,
}

async fn list(
    State(api): State<Arc<Mutex<Api>>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let mut api = api.lock().unwrap();
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap().to_string());
    api.requests.push((q.clone(), key.clone()));
    if key.as_deref() != Some("k-123") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "bad key"})),
        )
            .into_response();
    }
    let since: i64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let matching: Vec<&(String, i64)> = api.items.iter().filter(|(_, m)| *m > since).collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(3)
        .map(|(id, m)| json!({"uuid": id, "modified": m, "name": format!("item {id}")}))
        .collect();
    let next = (start + 3 < matching.len()).then(|| (start + 3).to_string());
    let date = httpdate(chrono::Utc::now());
    (
        [("date", date)],
        axum::Json(json!({"data": page, "paging": {"next": next}})),
    )
        .into_response()
}

fn httpdate(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[tokio::test]
async fn cursor_paging_api_yields_every_new_item_once() {
    let api = Arc::new(Mutex::new(Api::default()));
    let app = axum::Router::new()
        .route("/v1/items", axum::routing::get(list))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let instance = json!({
        "element": {"key": "http"},
        "name": "items",
        "configuration": {
            "baseUrl": format!("http://{addr}/v1"),
            "headers": {"X-Api-Key": "k-123"},
            "event.notification.enabled": true,
            "event.notification.callback.url": "http://127.0.0.1:9/hook",
            "event.poller.configuration": {
                "items": {
                    "url": "/items?since=${epoch:ms}",
                    "idField": "uuid",
                    "itemsPath": "data",
                    "nextPageField": "paging.next",
                    "nextPageParam": "cursor",
                    "datesConfiguration": {"updatedDateField": "modified", "updatedDateFormat": "milliseconds"}
                }
            }
        }
    });
    let spec = load_spec(&dir.path().join("items.json"), &instance);
    let (store, shared) = poll_shared(&dir.path().join("state"));
    let element = Element::new(&spec.element);
    let resource = spec.resource("items").unwrap();

    assert!(
        run_resource(&shared, &spec, &element, resource, &mut None)
            .await
            .unwrap()
            .baseline
    );
    let now = chrono::Utc::now().timestamp_millis() + 1000;
    api.lock().unwrap().items = (0..8).map(|i| (format!("u{i}"), now + i)).collect();
    let report = run_resource(&shared, &spec, &element, resource, &mut None)
        .await
        .unwrap();
    assert_eq!((report.pages, report.events), (3, 8), "{report:?}");
    let again = run_resource(&shared, &spec, &element, resource, &mut None)
        .await
        .unwrap();
    assert_eq!(again.events, 0, "{again:?}");

    let key = ResourceKey::new("items", "items");
    let mut ids = Vec::new();
    while let Some(head) = store.outbox_head(&key).unwrap() {
        let body: Value = serde_json::from_slice(&head.body).unwrap();
        assert_eq!(body["message"]["elementKey"], "http");
        for e in body["message"]["events"].as_array().unwrap() {
            assert_eq!(e["hubKey"], "general");
            ids.push(e["objectId"].as_str().unwrap().to_string());
        }
        store.ack(&key, head.seq).unwrap();
    }
    assert_eq!(ids, (0..8).map(|i| format!("u{i}")).collect::<Vec<_>>());
    let requests = &api.lock().unwrap().requests;
    assert!(
        requests
            .iter()
            .all(|(_, key)| key.as_deref() == Some("k-123"))
    );
    let cursors: Vec<Option<&str>> = requests[1..4]
        .iter()
        .map(|(q, _)| q.get("cursor").map(String::as_str))
        .collect();
    assert_eq!(cursors, [None, Some("3"), Some("6")]);
}
