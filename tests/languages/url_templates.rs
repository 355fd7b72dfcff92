//! URL templates as SPEC §3 describes them, filled with a resource's lower bound.
//! Expected date texts are Java's, from tests/data/java-dates.tsv (epoch 994248536235); a value
//! is percent-encoded for where it stands, so a space in the path arrives as `%20`.
//! The last tests send rendered URLs to a real HTTP server on 127.0.0.1, which decodes the query
//! as servers do (a raw `+` is a space there).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use crate::support::java_dates::{JavaRow, java_rows};
use crate::support::{DaemonDir, WAIT, wait_for};
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::Bytes;
use pollerd::template::UrlTemplate;
use serde_json::json;

/// 2001-07-04T12:08:56.235Z, a row of the Java fixture table.
fn lower_bound() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(994_248_536_235).unwrap()
}

fn render(template: &str) -> String {
    UrlTemplate::parse(template)
        .unwrap_or_else(|e| panic!("{template}: {e}"))
        .render(lower_bound())
}

#[test]
fn the_seed_url_keeps_its_closing_quote() {
    let seed = "/hubs/crm/contacts?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'";
    let template = UrlTemplate::parse(seed).unwrap();
    assert_eq!(template.source(), seed);
    assert_eq!(
        template.render(lower_bound()),
        "/hubs/crm/contacts?where=lastUpdated>'2001-07-04T12:08:56Z'"
    );
}

#[test]
fn every_placeholder_form_renders_the_lower_bound() {
    let cases = [
        ("${gmtDate:yyyy-MM-dd HH:mm:ss}", "2001-07-04%2012:08:56"),
        (
            "${date:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}",
            "2001-07-04T12:08:56.235Z",
        ),
        ("${gmtDate:yyyy-MM-dd'T'HH:mmz}", "2001-07-04T12:08GMT"),
        (
            "${dateTimeZone:America/Denver:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}",
            "2001-07-04T06:08:56.235-06:00",
        ),
        (
            "${dateTimeZone:Asia/Kolkata:yyyy-MM-dd HH:mm:ss}",
            "2001-07-04%2017:38:56",
        ),
        ("${epoch}", "994248536235"),
        ("${epoch:ms}", "994248536235"),
        ("${milliseconds}", "994248536235"),
        ("${epoch:s}", "994248536"),
        ("${epoch:us}", "994248536235000"),
    ];
    for (template, expected) in cases {
        assert_eq!(render(template), expected, "{template}");
    }
}

#[test]
fn descriptors_are_case_insensitive() {
    assert_eq!(render("${GMTDATE:yyyy-MM-dd}"), "2001-07-04");
    assert_eq!(render("${Date:yyyy-MM-dd}"), "2001-07-04");
    assert_eq!(render("${EPOCH:S}"), "994248536");
    assert_eq!(render("${MilliSeconds}"), "994248536235");
    // PST is Java's short id for America/Los_Angeles: 05:08 PDT on that day.
    assert_eq!(
        render("${DateTimeZone:PST:yyyy-MM-dd HH:mm z}"),
        "2001-07-04%2005:08%20PDT"
    );
}

#[test]
fn a_zone_holding_colons_takes_the_longest_prefix_that_is_a_zone() {
    // Java's "-08:00" rows of the fixture print 04:08:56 for this instant.
    assert_eq!(
        render("${dateTimeZone:-8:00:yyyy-MM-dd HH:mm:ss}"),
        "2001-07-04%2004:08:56"
    );
    assert_eq!(
        render("${dateTimeZone:+06:00:HH:mm}"),
        "18:08",
        "the pattern keeps its own colon"
    );
}

#[test]
fn several_placeholders_and_plain_text_mix() {
    let template = "/q?from=${epoch:s}&day=${gmtDate:yyyy-MM-dd}&page={page}&cost=$5&x=${epoch:ms}";
    assert_eq!(
        render(template),
        "/q?from=994248536&day=2001-07-04&page={page}&cost=$5&x=994248536235"
    );
}

#[test]
fn text_without_placeholders_is_left_alone() {
    for template in ["/contacts/{id}", "/a$b", "/plain", "", "price=$ {x}"] {
        assert_eq!(render(template), template);
    }
}

#[test]
fn an_unclosed_placeholder_is_an_error_at_its_offset() {
    let error = UrlTemplate::parse("/contacts?since=${gmtDate:yyyy-MM-dd").unwrap_err();
    assert_eq!(error.offset, 16);
    assert!(error.message.contains("unclosed"), "{error}");
    // A brace inside quoted pattern text does not close the placeholder.
    let quoted = UrlTemplate::parse("/x?${gmtDate:'}'yyyy").unwrap_err();
    assert_eq!(quoted.offset, 3);
}

#[test]
fn an_unknown_descriptor_lists_the_valid_ones() {
    let error = UrlTemplate::parse("/contacts?since=${now:yyyy}").unwrap_err();
    assert_eq!(error.offset, 16);
    assert!(error.message.contains("${now:yyyy}"), "{error}");
    for valid in ["gmtDate", "dateTimeZone", "${epoch:us}", "${milliseconds}"] {
        assert!(error.message.contains(valid), "{error} lacks {valid}");
    }
    let unit = UrlTemplate::parse("${epoch:ns}").unwrap_err();
    assert!(unit.message.contains("ms, s or us"), "{unit}");
}

#[test]
fn a_bad_pattern_or_zone_is_an_error_at_its_offset() {
    let pattern = UrlTemplate::parse("/a?d=${gmtDate:yyyy-QQ}").unwrap_err();
    assert_eq!(pattern.offset, 5);
    assert!(
        pattern
            .message
            .contains("unsupported pattern letter 'Q' at position 6 of \"yyyy-QQ\""),
        "{pattern}"
    );
    let zone = UrlTemplate::parse("/a?d=${dateTimeZone:Mars/Base:yyyy}").unwrap_err();
    assert_eq!(zone.offset, 5);
    assert!(
        zone.message.contains("unknown time zone \"Mars/Base\""),
        "{zone}"
    );
    let missing = UrlTemplate::parse("${gmtDate}").unwrap_err();
    assert_eq!(missing.offset, 0);
    assert!(
        missing.message.contains("needs a date pattern"),
        "{missing}"
    );
}

#[test]
fn a_query_value_is_encoded_as_one_query_component() {
    let tokyo = render("/q?since=${dateTimeZone:Asia/Tokyo:yyyy-MM-dd'T'HH:mm:ssXXX}&x=1");
    assert_eq!(tokyo, "/q?since=2001-07-04T21:08:56%2B09:00&x=1");
    // Text that would end the value, start another or cut the URL is encoded.
    let shaped = render("/q?a=${gmtDate:yyyy'&b=c#d e+f%'}&z=1");
    assert_eq!(shaped, "/q?a=2001%26b%3Dc%23d%20e%2Bf%25&z=1");
    // `:` `/` `,` `?` stand raw in a query (RFC 3986), which keeps dates readable in logs.
    assert_eq!(
        render("/q?d=${gmtDate:EEE, d MMM yyyy HH:mm/ss?}"),
        "/q?d=Wed,%204%20Jul%202001%2012:08/56?"
    );
}

#[test]
fn a_path_value_is_encoded_as_one_path_segment() {
    assert_eq!(
        render("/days/${gmtDate:yyyy/MM/dd'?a'}/x?d=${gmtDate:yyyy/MM/dd}"),
        "/days/2001%2F07%2F04%3Fa/x?d=2001/07/04"
    );
    // After a `#` the value is encoded as in the query.
    assert_eq!(render("/p#${gmtDate:yyyy/MM}"), "/p#2001/07");
}

#[test]
fn the_operators_own_text_is_not_encoded_again() {
    let template = "/hubs/crm/contacts?where=name like '%ab%' and lastUpdated>'${dateTimeZone:+06:00:yyyy-MM-dd HH:mm:ssXXX}'&page=%20";
    assert_eq!(
        render(template),
        "/hubs/crm/contacts?where=name like '%ab%' and lastUpdated>'2001-07-04%2018:08:56%2B06:00'&page=%20"
    );
}

#[test]
fn connectwise_conditions_hold_the_decoded_date() {
    let url = render(
        "/hubs/crm/contacts?where=lastUpdated>'${dateTimeZone:Asia/Tokyo:yyyy-MM-dd'T'HH:mm:ssXXX}'",
    );
    let native = pollerd::hubs::native_request(&url).unwrap();
    assert_eq!(native.path, "/company/contacts");
    let conditions: Vec<&(String, String)> = native
        .query
        .iter()
        .filter(|(name, _)| name == "conditions")
        .collect();
    // The CEQL translation reads the decoded `+09:00` and writes the instant in UTC.
    assert_eq!(
        conditions,
        [&(
            "conditions".to_string(),
            "lastUpdated>[2001-07-04T12:08:56Z]".to_string()
        )]
    );
}

/// An HTTP/1.1 server that records each raw request target and answers with the query decoded
/// as `application/x-www-form-urlencoded` (as servers read queries: `+` is a space) in a JSON
/// array of `[name, value]`.
struct QueryEcho {
    base: String,
    targets: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
}

/// The test sends far fewer; a runaway client cannot grow the record without bound.
const MAX_RECORDED_TARGETS: usize = 1000;

impl QueryEcho {
    async fn start() -> QueryEcho {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (recorded, counted) = (targets.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *counted.lock().unwrap() += 1;
                let recorded = recorded.clone();
                let service = hyper::service::service_fn(move |request| {
                    let recorded = recorded.clone();
                    async move { Ok::<_, Infallible>(echo(&recorded, &request)) }
                });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        QueryEcho {
            base: format!("http://{addr}"),
            targets,
            connections,
        }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

fn echo<B>(
    recorded: &Mutex<Vec<String>>,
    request: &hyper::Request<B>,
) -> hyper::Response<Full<Bytes>> {
    let uri = request.uri();
    let target = uri
        .path_and_query()
        .map_or("", |pq| pq.as_str())
        .to_string();
    let mut targets = recorded.lock().unwrap();
    if targets.len() < MAX_RECORDED_TARGETS {
        targets.push(target);
    }
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let mut response =
        hyper::Response::new(Full::new(Bytes::from(serde_json::to_vec(&pairs).unwrap())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The query parameters as the echo server decoded them.
async fn decoded_by_server(
    client: &reqwest::Client,
    server: &QueryEcho,
    rendered: &str,
) -> HashMap<String, String> {
    let url = format!("{}{rendered}", server.base);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let body = response.bytes().await.unwrap();
    let pairs: Vec<(String, String)> = serde_json::from_slice(&body).unwrap();
    pairs.into_iter().collect()
}

#[tokio::test]
async fn every_java_row_arrives_at_a_server_as_java_printed_it() {
    let rows = java_rows();
    assert_eq!(rows.len(), 1088, "the fixture holds 1,088 rows");
    let server = QueryEcho::start().await;
    let client = reqwest::Client::new();
    // One request per instant, one query parameter per row: 8 requests on a kept-alive
    // connection instead of 1,088.
    let mut by_instant: HashMap<i64, Vec<&JavaRow>> = HashMap::new();
    for row in &rows {
        by_instant.entry(row.epoch_ms).or_default().push(row);
    }
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (epoch_ms, group) in &by_instant {
        let params: Vec<String> = group
            .iter()
            .map(|row| {
                format!(
                    "r{}=${{dateTimeZone:{}:{}}}",
                    row.line, row.zone, row.pattern
                )
            })
            .collect();
        let template = format!("/echo?{}", params.join("&"));
        let template = UrlTemplate::parse(&template).unwrap_or_else(|e| panic!("{e}"));
        let instant = DateTime::from_timestamp_millis(*epoch_ms).unwrap();
        let decoded = decoded_by_server(&client, &server, &template.render(instant)).await;
        for row in group {
            compared += 1;
            let arrived = decoded.get(&format!("r{}", row.line));
            if arrived != Some(&row.formatted) {
                mismatches.push(format!(
                    "line {}: ${{dateTimeZone:{}:{}}} at {}: Java {:?}, server got {arrived:?}",
                    row.line, row.zone, row.pattern, row.epoch_ms, row.formatted
                ));
            }
        }
    }
    assert_eq!(compared, rows.len());
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n")
    );
    assert_eq!(server.targets().len(), by_instant.len());
    assert_eq!(
        *server.connections.lock().unwrap(),
        1,
        "one kept-alive connection"
    );
}

#[tokio::test]
async fn a_tokyo_offset_arrives_as_plus_nine_not_a_space() {
    let server = QueryEcho::start().await;
    let client = reqwest::Client::new();
    let template =
        UrlTemplate::parse("/echo?since=${dateTimeZone:Asia/Tokyo:yyyy-MM-dd'T'HH:mm:ssXXX}")
            .unwrap();
    let decoded = decoded_by_server(&client, &server, &template.render(lower_bound())).await;
    assert_eq!(
        decoded.get("since").map(String::as_str),
        Some("2001-07-04T21:08:56+09:00")
    );
    assert_eq!(
        server.targets(),
        ["/echo?since=2001-07-04T21:08:56%2B09:00"]
    );
}

/// The daemon's own request: an `http` instance whose URL carries a Tokyo offset and zone name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_sends_a_tokyo_offset_that_a_server_reads_as_plus_nine() {
    let server = QueryEcho::start().await;
    let dd = DaemonDir::new("");
    dd.write_instance(
        "tokyo.json",
        &json!({
            "element": {"key": "http"},
            "name": "tokyo",
            "configuration": {
                "baseUrl": format!("{}/api", server.base),
                "event.notification.enabled": true,
                "event.notification.callback.url": "http://127.0.0.1:9/hook",
                "event.poller.refresh_interval": "0.01",
                "event.poller.configuration": {
                    "items": {
                        "url": "/items?since=${dateTimeZone:Asia/Tokyo:yyyy-MM-dd'T'HH:mm:ssXXX}&zone=${dateTimeZone:Asia/Tokyo:z}",
                        "idField": "id",
                        "datesConfiguration": {"updatedDateField": "modified", "updatedDateFormat": "milliseconds"}
                    }
                }
            }
        }),
    );
    // The pattern keeps whole seconds: the first run's bound is at or after this.
    let started = Utc::now() - chrono::TimeDelta::seconds(1);
    let daemon = dd.start(&[]);
    wait_for("the daemon's first request", WAIT, || {
        !server.targets().is_empty()
    })
    .await;
    let target = server.targets()[0].clone();
    daemon.kill9();
    let query = target.split_once('?').map_or("", |(_, query)| query);
    let decoded: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let since = decoded.get("since").unwrap_or_else(|| panic!("{target}"));
    let parsed = DateTime::parse_from_rfc3339(since).unwrap_or_else(|e| panic!("{since}: {e}"));
    assert_eq!(parsed.offset().local_minus_utc(), 9 * 3600, "{target}");
    assert!(
        started <= parsed && parsed <= Utc::now(),
        "the first run's bound {since} is not the daemon's start (after {started})"
    );
    assert!(target.contains("%2B09:00"), "{target}");
    assert_eq!(
        decoded.get("zone").map(String::as_str),
        Some("JST"),
        "{target}"
    );
}
