//! The ConnectWise simulator over real HTTP on loopback (reqwest against 127.0.0.1:0).

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use pollerd::sim::connectwise::{
    ConnectWiseSim, Fault, FaultScope, ListRequest, RecordKind, Served, SimConfig,
};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::Value;

const CW_JSON: &str = "application/vnd.connectwise.com+json; version=2022.1; charset=utf-8";

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn basic(company: &str, public: &str, private: &str) -> String {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{company}+{public}:{private}"));
    format!("Basic {token}")
}

/// A GET with the default simulator credentials.
fn authed(client: &Client, url: &str) -> RequestBuilder {
    client
        .get(url)
        .header("Authorization", basic("simco", "simpublic", "simprivate"))
        .header("clientId", "sim-client-id")
        .header("Accept", "application/json")
}

fn at(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, hour, minute, second)
        .unwrap()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_string())
}

async fn json_of(response: Response) -> Value {
    assert_eq!(header(&response, "content-type").as_deref(), Some(CW_JSON));
    let body = response.bytes().await.expect("body");
    serde_json::from_slice(&body).expect("JSON body")
}

fn ids_of(records: &Value) -> Vec<u64> {
    records
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect()
}

/// The URL of `rel` in a `Link` header: `<url>; rel="next", <url>; rel="last"`.
fn link(response: &Response, rel: &str) -> Option<String> {
    let value = header(response, "link")?;
    value.split(", ").find_map(|part| {
        let (url, params) = part.split_once(">;")?;
        (params.trim() == format!("rel=\"{rel}\"")).then(|| url.trim_start_matches('<').to_string())
    })
}

async fn start() -> (ConnectWiseSim, Client) {
    (
        ConnectWiseSim::start(SimConfig::default())
            .await
            .expect("sim starts"),
        client(),
    )
}

#[tokio::test]
async fn several_companies_share_one_port_each_logged_as_itself() {
    let (sim, client) = start().await;
    let url = format!("{}/company/contacts", sim.base_url());
    let ask = |company: &str| {
        client
            .get(&url)
            .header("Authorization", basic(company, "simpublic", "simprivate"))
            .header("clientId", "sim-client-id")
            .send()
    };
    // A company the simulator does not serve is refused, as a wrong key is.
    assert_eq!(
        ask("acme").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let configuration = sim.tenant_configuration("acme");
    assert_eq!(configuration["company"], "acme");
    assert_eq!(configuration["baseUrl"], sim.base_url().as_str());
    assert_eq!(ask("acme").await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask("simco").await.unwrap().status(), StatusCode::OK);
    let seen: Vec<(Option<String>, u16)> = sim
        .requests()
        .into_iter()
        .map(|r| (r.company, r.status))
        .collect();
    assert_eq!(
        seen,
        [
            (None, 401),
            (Some("acme".to_string()), 200),
            (Some("simco".to_string()), 200)
        ]
    );
    assert_eq!(
        (
            sim.peak_in_flight_of("acme"),
            sim.peak_in_flight_of("simco")
        ),
        (1, 1)
    );
    assert_eq!(sim.peak_in_flight_of("nobody"), 0);
}

#[tokio::test]
async fn auth_failures_answer_401_with_connectwise_error_body() {
    let (sim, client) = start().await;
    let url = format!("{}/company/contacts", sim.base_url());
    assert!(
        url.starts_with("http://127.0.0.1:")
            && url.ends_with("/v4_6_release/apis/3.0/company/contacts")
    );

    let bad_key = client
        .get(&url)
        .header("Authorization", basic("simco", "simpublic", "wrong"))
        .header("clientId", "sim-client-id");
    let no_client_id = client
        .get(&url)
        .header("Authorization", basic("simco", "simpublic", "simprivate"));
    let wrong_client_id = client
        .get(&url)
        .header("Authorization", basic("simco", "simpublic", "simprivate"))
        .header("clientId", "someone-else");
    let no_auth = client.get(&url).header("clientId", "sim-client-id");
    for request in [bad_key, no_client_id, wrong_client_id, no_auth] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&response, "date").is_some());
        let body = json_of(response).await;
        assert_eq!(body["code"], "Unauthorized");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(body["errors"].is_null(), "{body}");
    }
    let ok = authed(&client, &url).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(json_of(ok).await, Value::Array(vec![]));

    let log = sim.requests();
    let seen: Vec<(bool, Option<&str>, u16)> = log
        .iter()
        .map(|r| (r.had_valid_auth, r.client_id.as_deref(), r.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            (false, Some("sim-client-id"), 401),
            (true, None, 401),
            (true, Some("someone-else"), 401),
            (false, Some("sim-client-id"), 401),
            (true, Some("sim-client-id"), 200),
        ]
    );
    assert_eq!(sim.request_count(), 5);
    assert!(!format!("{:?}", sim.config()).contains("simprivate"));
}

#[tokio::test]
async fn records_look_like_connectwise_and_changes_show_through_conditions() {
    let (sim, client) = start().await;
    let url = format!("{}/company/contacts", sim.base_url());
    let ids = sim.create_many(RecordKind::Contact, 3, Some(at(0, 0, 0)));
    assert_eq!(ids.len(), 3);

    let contact = sim.record(RecordKind::Contact, ids[0]).unwrap();
    let size = serde_json::to_vec(&contact).unwrap().len();
    assert!(
        (700..1600).contains(&size),
        "contact is {size} bytes: {contact}"
    );
    for key in [
        "firstName",
        "lastName",
        "company",
        "site",
        "addressLine1",
        "city",
        "state",
        "zip",
        "country",
        "title",
        "communicationItems",
        "types",
    ] {
        assert!(contact.get(key).is_some(), "contact lacks {key}: {contact}");
    }
    assert_eq!(contact["_info"]["lastUpdated"], "2024-01-01T00:00:00Z");
    assert!(
        contact["_info"].get("dateEntered").is_none(),
        "contacts have no dateEntered"
    );
    assert!(contact["company"]["_info"].is_object());

    let since = |text: &str| authed(&client, &url).query(&[("conditions", text.to_string())]);
    let none = since("lastUpdated>[2024-01-01T00:00:00Z]")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(none).await, Value::Array(vec![]));
    let all = since("lastUpdated>=[2024-01-01T00:00:00Z]")
        .send()
        .await
        .unwrap();
    assert_eq!(ids_of(&json_of(all).await), ids);

    let before_update = sim.record(RecordKind::Contact, ids[1]).unwrap();
    assert!(sim.update(RecordKind::Contact, ids[1], Some(at(1, 0, 0))));
    assert!(!sim.update(RecordKind::Contact, 999_999, None));
    let newer = sim.create(RecordKind::Contact, Some(at(2, 0, 0)));
    let changed = json_of(
        since("lastUpdated>[2024-01-01T00:00:00Z]")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ids_of(&changed), vec![ids[1], newer]);
    assert_eq!(changed[0]["_info"]["lastUpdated"], "2024-01-01T01:00:00Z");
    let before = sim.requests().len();
    let dotted = json_of(
        since("_info/lastUpdated > [2024-01-01T01:00:00Z] or id=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ids_of(&dotted), vec![ids[0], newer]);
    assert_eq!(
        sim.requests()[before].conditions.as_deref(),
        Some("_info/lastUpdated > [2024-01-01T01:00:00Z] or id=1")
    );
    let after_update = sim.record(RecordKind::Contact, ids[1]).unwrap();
    assert_eq!(after_update["id"], before_update["id"]);
    assert_ne!(
        after_update["title"], before_update["title"],
        "an update changes a field"
    );
    assert_eq!(after_update["firstName"], before_update["firstName"]);

    // Companies carry dateEntered; an update moves lastUpdated only.
    let companies = format!("{}/company/companies", sim.base_url());
    let company_ids = sim.create_many(RecordKind::Company, 2, Some(at(0, 0, 0)));
    sim.update(RecordKind::Company, company_ids[0], Some(at(3, 0, 0)));
    let company = sim.record(RecordKind::Company, company_ids[0]).unwrap();
    assert_eq!(company["_info"]["dateEntered"], "2024-01-01T00:00:00Z");
    assert_eq!(company["_info"]["lastUpdated"], "2024-01-01T03:00:00Z");
    let entered = authed(&client, &companies)
        .query(&[("conditions", "dateEntered>[2024-01-01T00:00:00Z]")])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(entered).await, Value::Array(vec![]));
    let tickets = format!("{}/service/tickets", sim.base_url());
    let ticket = sim.create(RecordKind::Ticket, Some(at(4, 0, 0)));
    let ticket_page = authed(&client, &tickets)
        .query(&[(
            "conditions",
            "_info/dateEntered>=[2024-01-01T04:00:00Z] and id<=1",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(ids_of(&json_of(ticket_page).await), vec![ticket]);
    let one = authed(&client, &format!("{tickets}/{ticket}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(one).await,
        sim.record(RecordKind::Ticket, ticket).unwrap()
    );
    let count = authed(&client, &format!("{url}/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(count).await["count"], 4);
}

#[tokio::test]
async fn bad_conditions_answer_400_with_error_body() {
    let (sim, client) = start().await;
    let url = format!("{}/company/contacts", sim.base_url());
    for bad in [
        "lastUpdated>2024-01-01",
        "lastUpdated>[not a date]",
        "dateEntered>[2024-01-01]",
        "name=\"x\"",
        "(id=1",
        "id=1 junk",
    ] {
        let response = authed(&client, &url)
            .query(&[("conditions", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body = json_of(response).await;
        assert!(
            body["code"].is_string() && body["message"].as_str().unwrap().contains("conditions"),
            "{body}"
        );
    }
    let missing = authed(&client, &format!("{url}/424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(missing).await["code"], "NotFound");
}

#[tokio::test]
async fn forward_only_paging_returns_each_id_once_in_order() {
    let (sim, client) = start().await;
    let created = sim.create_many(RecordKind::Contact, 2_500, Some(at(0, 0, 0)));
    let first = format!(
        "{}/company/contacts?conditions=lastUpdated>[2023-12-31T00:00:00Z]&pageSize=1000",
        sim.base_url()
    );
    let mut next = Some(first);
    let mut seen = Vec::new();
    let mut page_lengths = Vec::new();
    while let Some(url) = next.take() {
        assert!(page_lengths.len() < 10, "paging does not end");
        let response = authed(&client, &url)
            .header("pagination-type", "forward-only")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        next = link(&response, "next");
        let ids = ids_of(&json_of(response).await);
        if let Some(next_url) = &next {
            assert!(next_url.starts_with(&sim.base_url()), "{next_url}");
            assert!(
                next_url.contains("pageSize=1000") && next_url.contains("conditions="),
                "{next_url}"
            );
            assert!(
                next_url.ends_with(&format!("pageId={}", ids.last().unwrap())),
                "{next_url}"
            );
        }
        page_lengths.push(ids.len());
        seen.extend(ids);
        if page_lengths.len() == 1 {
            // Records change during the scan: they move in lastUpdated but keep their id.
            sim.update(RecordKind::Contact, created[10], Some(at(5, 0, 0)));
            sim.update(RecordKind::Contact, created[2_400], Some(at(5, 0, 0)));
        }
    }
    assert_eq!(page_lengths, vec![1000, 1000, 500]);
    assert_eq!(seen, created);
    let page_ids: Vec<Option<u64>> = sim.requests().iter().map(|r| r.page_id).collect();
    assert_eq!(
        page_ids,
        vec![None, Some(created[999]), Some(created[1999])]
    );
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.pagination_type.as_deref() == Some("forward-only"))
    );
    assert!(sim.requests().iter().all(|r| r.page_size == Some(1000)));
}

#[tokio::test]
async fn page_paging_returns_each_id_once_with_next_and_last_links() {
    let (sim, client) = start().await;
    let created = sim.create_many(RecordKind::Ticket, 2_500, Some(at(0, 0, 0)));
    let base = format!("{}/service/tickets", sim.base_url());
    let mut next = Some(format!("{base}?pageSize=1000&page=1"));
    let mut seen = Vec::new();
    let mut lasts = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        let response = authed(&client, &url).send().await.unwrap();
        next = link(&response, "next");
        lasts.push(link(&response, "last"));
        if pages > 1 {
            assert_eq!(
                link(&response, "first").as_deref(),
                Some(format!("{base}?pageSize=1000&page=1").as_str())
            );
        }
        seen.extend(ids_of(&json_of(response).await));
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    let last = format!("{base}?pageSize=1000&page=3");
    assert_eq!(lasts, vec![Some(last.clone()), Some(last), None]);
    let pages_asked: Vec<Option<u64>> = sim.requests().iter().map(|r| r.page).collect();
    assert_eq!(pages_asked, vec![Some(1), Some(2), Some(3)]);

    // No paging parameters: ConnectWise's default page of 25.
    let default = authed(&client, &base).send().await.unwrap();
    assert_eq!(
        link(&default, "next").as_deref(),
        Some(format!("{base}?page=2").as_str())
    );
    assert_eq!(ids_of(&json_of(default).await), created[..25].to_vec());
    // pageSize above 1000 is capped.
    let capped = authed(&client, &format!("{base}?pageSize=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(ids_of(&json_of(capped).await).len(), 1000);
}

fn date_header(response: &Response) -> DateTime<Utc> {
    let text = header(response, "date").expect("Date header");
    DateTime::parse_from_rfc2822(&text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test]
async fn date_header_follows_the_clock_skew() {
    let (sim, client) = start().await;
    let url = format!("{}/company/contacts", sim.base_url());
    let unskewed = authed(&client, &url).send().await.unwrap();
    assert!((date_header(&unskewed) - Utc::now()).num_seconds().abs() < 60);

    sim.set_clock_skew(chrono::Duration::hours(-3));
    assert!(
        (sim.now() - (Utc::now() - chrono::Duration::hours(3)))
            .num_seconds()
            .abs()
            < 60
    );
    let skewed = authed(&client, &url).send().await.unwrap();
    let expected = Utc::now() - chrono::Duration::hours(3);
    assert!(
        (date_header(&skewed) - expected).num_seconds().abs() < 60,
        "{:?}",
        header(&skewed, "date")
    );
    let refused = client.get(&url).send().await.unwrap();
    assert!((date_header(&refused) - expected).num_seconds().abs() < 60);

    // Records created without a date take the simulator's clock.
    let id = sim.create(RecordKind::Contact, None);
    let stamped = sim.record(RecordKind::Contact, id).unwrap()["_info"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    let stamped = DateTime::parse_from_rfc3339(&stamped)
        .unwrap()
        .with_timezone(&Utc);
    assert!((stamped - expected).num_seconds().abs() < 60, "{stamped}");
}

#[tokio::test]
async fn each_fault_kind_is_served_and_scoped() {
    let (sim, client) = start().await;
    sim.create_many(RecordKind::Contact, 5, Some(at(0, 0, 0)));
    let contacts = format!("{}/company/contacts", sim.base_url());
    let normal_body = authed(&client, &contacts)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();

    sim.inject(Fault::ServerError, FaultScope::next(1));
    let response = authed(&client, &contacts).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(json_of(response).await["code"].is_string());

    sim.inject(
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
        FaultScope::next(1),
    );
    let response = authed(&client, &contacts).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("7"));
    assert!(json_of(response).await["message"].is_string());

    sim.inject(Fault::HtmlMaintenance, FaultScope::next(1));
    let response = authed(&client, &contacts).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("<html>"));

    sim.inject(Fault::HtmlOk, FaultScope::next(1));
    let response = authed(&client, &contacts).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).is_err());

    sim.inject(Fault::TruncatedJson, FaultScope::next(1));
    let response = authed(&client, &contacts).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type").as_deref(), Some(CW_JSON));
    let truncated = response.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&truncated).is_err());
    assert!(!truncated.is_empty() && truncated.len() < normal_body.len());
    assert!(normal_body.starts_with(&truncated));

    sim.inject(Fault::Unauthorized, FaultScope::next(1));
    let response = authed(&client, &contacts).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(response).await["code"], "Unauthorized");

    sim.inject(
        Fault::Latency(Duration::from_millis(400)),
        FaultScope::next(1),
    );
    let started = Instant::now();
    let response = authed(&client, &contacts).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(response.bytes().await.unwrap(), normal_body);

    // Every fault was used up: the next request is normal.
    let response = authed(&client, &contacts).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let faults: Vec<Option<String>> = sim.requests().iter().map(|r| r.fault.clone()).collect();
    assert_eq!(
        faults,
        [
            None,
            Some("ServerError"),
            Some("TooManyRequests { retry_after_secs: 7 }"),
            Some("HtmlMaintenance"),
            Some("HtmlOk"),
            Some("TruncatedJson"),
            Some("Unauthorized"),
            None,
            None
        ]
        .map(|f| f.map(str::to_string))
        .to_vec()
    );
}

#[tokio::test]
async fn fault_scope_matches_path_skips_and_counts_until_cleared() {
    let (sim, client) = start().await;
    let contacts = format!("{}/company/contacts", sim.base_url());
    let tickets = format!("{}/service/tickets", sim.base_url());
    sim.inject(
        Fault::ServerError,
        FaultScope {
            path_contains: Some("/service/tickets".to_string()),
            skip: 1,
            count: 2,
        },
    );
    let mut statuses = Vec::new();
    for url in [&tickets, &contacts, &tickets, &tickets, &contacts, &tickets] {
        statuses.push(authed(&client, url).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 500, 500, 200, 200]);

    sim.inject(Fault::HtmlMaintenance, FaultScope::always());
    for _ in 0..3 {
        assert_eq!(
            authed(&client, &contacts).send().await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    sim.clear_faults();
    assert_eq!(
        authed(&client, &contacts).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let (sim, client) = start().await;
    let url = format!("{}/company/contacts", sim.base_url());
    assert_eq!(
        authed(&client, &url).send().await.unwrap().status(),
        StatusCode::OK
    );
    sim.shutdown().await;
    assert!(
        client.get(&url).send().await.is_err(),
        "the server still answers after shutdown"
    );

    let (dropped, client) = start().await;
    let url = format!("{}/company/contacts", dropped.base_url());
    let clone = dropped.clone();
    drop(dropped);
    assert_eq!(
        authed(&client, &url).send().await.unwrap().status(),
        StatusCode::OK,
        "a clone keeps it up"
    );
    drop(clone);
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = self::client();
    while fresh.get(&url).send().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server still answers 30 s after the last handle dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval, not synchronisation
    }
}

/// Follows `next` links from `first` (forward-only when `forward_only`), at most `max_pages`;
/// returns each page's records.
async fn all_pages(
    client: &Client,
    first: &str,
    forward_only: bool,
    max_pages: usize,
) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(url) = next.take() {
        assert!(pages.len() < max_pages, "paging does not end: {url}");
        let mut request = authed(client, &url);
        if forward_only {
            request = request.header("pagination-type", "forward-only");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        next = link(&response, "next");
        let records = json_of(response).await;
        pages.push(records.as_array().expect("array").clone());
    }
    pages
}

fn page_ids(pages: &[Vec<Value>]) -> Vec<u64> {
    pages
        .iter()
        .flatten()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect()
}

#[tokio::test]
async fn a_deleted_record_leaves_every_list_and_its_get_answers_404() {
    let (sim, client) = start().await;
    let created = sim.create_many(RecordKind::Contact, 10, Some(at(0, 0, 0)));
    let contacts = format!("{}/company/contacts", sim.base_url());
    assert!(sim.delete(RecordKind::Contact, created[2]));
    assert_eq!(
        sim.delete_many(RecordKind::Contact, &[created[6], created[6], 999_999]),
        1,
        "only the one existing record counts"
    );
    assert!(!sim.delete(RecordKind::Contact, created[2]), "already gone");

    // Over HTTP, as ConnectWise: 204 and no body, then 404; credentials are checked first.
    let unauthorized = client
        .delete(format!("{contacts}/{}", created[4]))
        .header("clientId", "sim-client-id")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert!(sim.record(RecordKind::Contact, created[4]).is_some());
    let delete = |id: u64| {
        client
            .delete(format!("{contacts}/{id}"))
            .header("Authorization", basic("simco", "simpublic", "simprivate"))
            .header("clientId", "sim-client-id")
    };
    let deleted = delete(created[4]).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(deleted.bytes().await.unwrap().is_empty());
    assert_eq!(
        delete(created[4]).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let whole_list = client
        .delete(&contacts)
        .header("Authorization", basic("simco", "simpublic", "simprivate"))
        .header("clientId", "sim-client-id")
        .send()
        .await
        .unwrap();
    assert_eq!(whole_list.status(), StatusCode::METHOD_NOT_ALLOWED);

    let alive: Vec<u64> = created
        .iter()
        .copied()
        .filter(|id| ![created[2], created[4], created[6]].contains(id))
        .collect();
    assert_eq!(sim.ids(RecordKind::Contact), alive);
    assert_eq!(sim.len(RecordKind::Contact), 7);
    let keyset = all_pages(&client, &format!("{contacts}?pageSize=3"), true, 10).await;
    assert_eq!(page_ids(&keyset), alive);
    assert_eq!(keyset.len(), 3, "3 + 3 + 1");
    let numbered = all_pages(&client, &format!("{contacts}?pageSize=3&page=1"), false, 10).await;
    assert_eq!(page_ids(&numbered), alive);
    let filtered = authed(&client, &contacts)
        .query(&[("conditions", "lastUpdated>=[2024-01-01T00:00:00Z]")])
        .send()
        .await
        .unwrap();
    assert_eq!(ids_of(&json_of(filtered).await), alive);
    let count = authed(&client, &format!("{contacts}/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(count).await["count"], 7);
    for gone in [created[2], created[4], created[6]] {
        let one = authed(&client, &format!("{contacts}/{gone}"))
            .send()
            .await
            .unwrap();
        assert_eq!(one.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_of(one).await["code"], "NotFound");
        assert!(sim.record(RecordKind::Contact, gone).is_none());
        assert!(!sim.update(RecordKind::Contact, gone, None));
    }
    // Ids are never reused, as in ConnectWise.
    let newer = sim.create(RecordKind::Contact, None);
    assert_eq!(newer, created[9] + 1);
}

#[tokio::test]
async fn fields_id_answers_only_ids_and_keyset_pages_the_same() {
    let (sim, client) = start().await;
    let created = sim.create_many(RecordKind::Contact, 2_500, Some(at(0, 0, 0)));
    sim.delete_many(RecordKind::Contact, &[created[5], created[1_500]]);
    let alive: Vec<u64> = sim.ids(RecordKind::Contact);
    let query = "conditions=lastUpdated>=[2024-01-01T00:00:00Z]&orderBy=id%20asc&pageSize=1000";
    let contacts = format!("{}/company/contacts", sim.base_url());
    let slim = all_pages(&client, &format!("{contacts}?{query}&fields=id"), true, 10).await;
    assert_eq!(
        slim.iter().map(Vec::len).collect::<Vec<_>>(),
        [1000, 1000, 498]
    );
    for record in slim.iter().flatten() {
        assert_eq!(record, &serde_json::json!({ "id": record["id"] }));
    }
    assert_eq!(page_ids(&slim), alive);
    let log = sim.requests();
    assert_eq!(log.len(), 3);
    for (asked, after) in log.iter().zip([None, Some(alive[999]), Some(alive[1999])]) {
        assert_eq!(asked.page_id, after, "the Link kept the keyset position");
        assert_eq!(asked.fields.as_deref(), Some("id"), "the Link kept fields");
        assert_eq!(asked.page_size, Some(1000));
    }

    // The same scan without fields sees the same ids, in the same pages, many times the bytes.
    let slim_bytes = authed(&client, &format!("{contacts}?{query}&fields=id"))
        .header("pagination-type", "forward-only")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    let full = all_pages(&client, &format!("{contacts}?{query}"), true, 10).await;
    assert_eq!(page_ids(&full), alive);
    let full_bytes = serde_json::to_vec(&full[0]).unwrap().len();
    assert!(
        slim_bytes * 20 < full_bytes,
        "a page of ids is {slim_bytes} bytes, of records {full_bytes}"
    );

    // What was served is counted per kind of record, request by request.
    let log = sim.requests();
    assert_eq!(log.len(), 7);
    assert_eq!(log[3].body_bytes, slim_bytes);
    assert_eq!(
        sim.served(RecordKind::Contact),
        Served {
            requests: 7,
            bytes: log.iter().map(|r| r.body_bytes as u64).sum(),
        }
    );
    assert!(log[4].body_bytes > 20 * slim_bytes);
    assert_eq!(sim.served(RecordKind::Company), Served::default());
}

#[tokio::test]
async fn fields_select_nested_paths_in_lists_and_single_records() {
    let (sim, client) = start().await;
    let ids = sim.create_many(RecordKind::Company, 5, Some(at(0, 0, 0)));
    sim.update(RecordKind::Company, ids[1], Some(at(6, 0, 0)));
    let companies = format!("{}/company/companies", sim.base_url());
    let fields = "fields=id,_info/lastUpdated,noSuchField";
    let pages = all_pages(
        &client,
        &format!("{companies}?pageSize=2&page=1&{fields}"),
        false,
        10,
    )
    .await;
    assert_eq!(
        pages.len(),
        3,
        "2 + 2 + 1, page paging keeps fields in its links"
    );
    let expected: Vec<Value> = ids
        .iter()
        .map(|&id| {
            let updated = if id == ids[1] { "06" } else { "00" };
            serde_json::json!({
                "id": id,
                "_info": { "lastUpdated": format!("2024-01-01T{updated}:00:00Z") }
            })
        })
        .collect();
    assert_eq!(pages.concat(), expected);

    let one = authed(&client, &format!("{companies}/{}?fields=id,name", ids[3]))
        .send()
        .await
        .unwrap();
    let whole = sim.record(RecordKind::Company, ids[3]).unwrap();
    assert_eq!(
        json_of(one).await,
        serde_json::json!({ "id": ids[3], "name": whole["name"] })
    );
    // A path through an array selects in each element.
    let contact = sim.create(RecordKind::Contact, Some(at(0, 0, 0)));
    let items = authed(
        &client,
        &format!(
            "{}/company/contacts/{contact}?fields=communicationItems/value",
            sim.base_url()
        ),
    )
    .send()
    .await
    .unwrap();
    let values: Vec<Value> =
        sim.record(RecordKind::Contact, contact).unwrap()["communicationItems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| serde_json::json!({ "value": item["value"] }))
            .collect();
    assert_eq!(values.len(), 2);
    assert_eq!(
        json_of(items).await,
        serde_json::json!({ "communicationItems": values })
    );
    let bad = authed(&client, &format!("{companies}?fields=id/"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        json_of(bad).await["message"]
            .as_str()
            .unwrap()
            .contains("fields")
    );
}

#[tokio::test]
async fn an_action_runs_once_between_pages_before_the_chosen_page_is_answered() {
    let (sim, client) = start().await;
    let created = sim.create_many(RecordKind::Contact, 35, Some(at(0, 0, 0)));
    // Page 3 of a scan of ids holds created[20..30]; page 4 created[30..35].
    let (early, in_page_3, in_page_4) = (created[3], created[24], created[33]);
    let ran = sim.before_list_request(
        ListRequest::nth(RecordKind::Contact, "fields=id", 3),
        move |sim| {
            assert!(sim.delete_many(RecordKind::Contact, &[early, in_page_3, in_page_4]) == 3);
            sim.create(RecordKind::Contact, Some(at(1, 0, 0)));
        },
    );
    let contacts = format!("{}/company/contacts", sim.base_url());
    // Requests that are not pages of the scan do not count: another list, a count, one record.
    for other in [
        contacts.clone(),
        format!("{contacts}/count?fields=id"),
        format!("{contacts}/{early}?fields=id"),
        format!("{}/company/companies?fields=id", sim.base_url()),
    ] {
        assert_eq!(
            authed(&client, &other).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(sim.pending_actions(), 1);

    let scan = all_pages(
        &client,
        &format!("{contacts}?pageSize=10&fields=id"),
        true,
        10,
    )
    .await;
    let scanned: Vec<Vec<u64>> = scan
        .iter()
        .map(|page| page.iter().map(|r| r["id"].as_u64().unwrap()).collect())
        .collect();
    let newer = created[34] + 1;
    assert_eq!(
        scanned[0],
        created[..10].to_vec(),
        "seen before the action ran"
    );
    assert_eq!(scanned[1], created[10..20].to_vec());
    let page_3: Vec<u64> = created[20..31]
        .iter()
        .copied()
        .filter(|id| *id != in_page_3)
        .collect();
    assert_eq!(scanned[2], page_3, "page 3 was answered after the action");
    assert_eq!(
        scanned[3],
        vec![created[31], created[32], created[34], newer]
    );
    assert_eq!(scanned.len(), 4);
    tokio::time::timeout(Duration::from_secs(30), ran)
        .await
        .expect("the action ran")
        .expect("the action ran without panicking");
    assert_eq!(sim.pending_actions(), 0);

    // It ran once: a second scan changes nothing.
    let again = all_pages(
        &client,
        &format!("{contacts}?pageSize=10&fields=id"),
        true,
        10,
    )
    .await;
    assert_eq!(page_ids(&again), sim.ids(RecordKind::Contact));
    assert_eq!(sim.len(RecordKind::Contact), 33);

    // An action still pending does not keep the server up once the last handle is dropped.
    let never = sim.before_list_request(ListRequest::nth(RecordKind::Contact, "id", 1000), |_| {});
    drop(sim);
    let outcome = tokio::time::timeout(Duration::from_secs(30), never)
        .await
        .expect("the simulator stopped within 30 s of its last handle");
    assert!(outcome.is_err(), "the action never ran");
    assert!(client.get(&contacts).send().await.is_err());
}

#[tokio::test]
async fn inject_at_fails_only_the_chosen_page_of_a_scan() {
    let (sim, client) = start().await;
    let created = sim.create_many(RecordKind::Ticket, 25, Some(at(0, 0, 0)));
    sim.inject_at(
        Fault::ServerError,
        ListRequest::nth(RecordKind::Ticket, "fields=id", 3),
    );
    let tickets = format!("{}/service/tickets", sim.base_url());
    let get = |url: String| {
        authed(&client, &url)
            .header("pagination-type", "forward-only")
            .send()
    };
    let mut statuses = Vec::new();
    for url in [
        format!("{tickets}?pageSize=10&fields=id"),
        // Neither a scan page nor a tickets list: not counted.
        format!("{tickets}?pageSize=10"),
        format!("{}/company/contacts?fields=id", sim.base_url()),
        format!("{tickets}?pageSize=10&fields=id&pageId={}", created[9]),
        format!("{tickets}?pageSize=10&fields=id&pageId={}", created[19]),
        // The client retries the failed page: it is answered.
        format!("{tickets}?pageSize=10&fields=id&pageId={}", created[19]),
    ] {
        statuses.push(get(url).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 500, 200]);
    assert_eq!(sim.pending_actions(), 0);
    let faults: Vec<Option<String>> = sim.requests().iter().map(|r| r.fault.clone()).collect();
    assert_eq!(faults[4].as_deref(), Some("ServerError"));
    assert_eq!(faults.iter().filter(|f| f.is_some()).count(), 1);
}
