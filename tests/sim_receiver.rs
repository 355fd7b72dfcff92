//! The test webhook receiver over real HTTP on loopback, seen from a real HTTP client (reqwest).

use std::time::{Duration, Instant};

use pollerd::sim::receiver::{Behaviour, Receiver};
use reqwest::StatusCode;

/// Generous bound for anything that merely has to happen eventually on a busy machine.
const EVENTUALLY: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    client_with_timeout(EVENTUALLY)
}

fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("client builds")
}

async fn post(client: &reqwest::Client, receiver: &Receiver, body: &str) -> StatusCode {
    client
        .post(receiver.url())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("receiver answers")
        .status()
}

fn statuses(receiver: &Receiver) -> Vec<Option<u16>> {
    receiver.requests().iter().map(|r| r.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_200_by_default_and_records_the_request() {
    let receiver = Receiver::start().await.expect("receiver starts");
    assert!(receiver.url().starts_with("http://127.0.0.1:"));
    assert!(receiver.url().ends_with("/hook"));

    let status = post(&client(), &receiver, r#"{"id":"evt-1","action":"create"}"#).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(receiver.request_count(), 1);
    let request = &receiver.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook");
    assert_eq!(request.status, Some(200));
    assert_eq!(
        request.json(),
        serde_json::json!({"id": "evt-1", "action": "create"})
    );
    assert_eq!(receiver.accepted().len(), 1);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_failures_are_used_up_in_order_then_200_again() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_next(Behaviour::Status(500), 2);
    receiver.respond_next(Behaviour::Status(404), 1);
    let client = client();

    let mut seen = Vec::new();
    for attempt in 0..4 {
        seen.push(post(&client, &receiver, &format!(r#"{{"attempt":{attempt}}}"#)).await);
    }

    assert_eq!(
        seen,
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::NOT_FOUND,
            StatusCode::OK
        ]
    );
    assert_eq!(
        statuses(&receiver),
        [Some(500), Some(500), Some(404), Some(200)]
    );
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].json()["attempt"], 3);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_carries_the_retry_after_value_to_the_client() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_next(Behaviour::StatusWithRetryAfter(429, "120".into()), 1);
    receiver.respond_next(
        Behaviour::StatusWithRetryAfter(503, "Wed, 21 Oct 2015 07:28:00 GMT".into()),
        1,
    );
    let client = client();

    let first = client
        .post(receiver.url())
        .body("{}")
        .send()
        .await
        .expect("answer");
    let second = client
        .post(receiver.url())
        .body("{}")
        .send()
        .await
        .expect("answer");

    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()["retry-after"], "120");
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        second.headers()["retry-after"],
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );
    assert_eq!(statuses(&receiver), [Some(429), Some(503)]);
    assert!(receiver.accepted().is_empty());
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_request_times_out_at_the_client_while_others_are_answered() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_next(Behaviour::Hang, 1);

    let hanging = {
        let client = client_with_timeout(Duration::from_secs(3));
        let url = receiver.url();
        tokio::spawn(async move { client.post(url).body("first").send().await })
    };
    // The attempt is recorded before the receiver starts hanging on it.
    receiver
        .wait_until(EVENTUALLY, |requests| requests.len() == 1)
        .await
        .expect("hanging request recorded");

    let second = post(&client(), &receiver, "second").await;
    assert_eq!(second, StatusCode::OK);
    assert!(
        !hanging.is_finished(),
        "the hanging request ended before the second one was answered"
    );

    let error = hanging
        .await
        .expect("task joins")
        .expect_err("a hanging receiver never answers");
    assert!(
        error.is_timeout(),
        "expected the client's timeout, got {error:?}"
    );
    let requests = receiver.requests();
    assert_eq!(requests[0].body, b"first");
    assert_eq!(requests[0].status, None);
    assert_eq!(requests[1].body, b"second");
    assert_eq!(requests[1].status, Some(200));
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_a_connection_error_for_the_client() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_next(Behaviour::CloseConnection, 1);

    let error = client()
        .post(receiver.url())
        .body(r#"{"n":1}"#)
        .send()
        .await
        .expect_err("no HTTP answer on a cut connection");

    assert!(!error.is_timeout(), "cut, not timed out: {error:?}");
    assert!(error.status().is_none(), "no HTTP status: {error:?}");
    // Exactly one attempt: the client did not quietly retry into a 200.
    assert_eq!(receiver.request_count(), 1);
    assert_eq!(receiver.requests()[0].status, None);
    assert_eq!(receiver.requests()[0].body, br#"{"n":1}"#);

    // The server itself is unharmed.
    assert_eq!(post(&client(), &receiver, "{}").await, StatusCode::OK);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_answer_arrives_after_the_delay_with_its_status() {
    let receiver = Receiver::start().await.expect("receiver starts");
    let delay = Duration::from_millis(400);
    receiver.respond_next(Behaviour::Delay(delay, 503), 1);

    let started = Instant::now();
    let status = post(&client(), &receiver, "{}").await;
    let elapsed = started.elapsed();

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        elapsed >= delay,
        "answered after {elapsed:?}, before the delay"
    );
    assert_eq!(statuses(&receiver), [Some(503)]);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_until_applies_only_before_its_deadline() {
    let receiver = Receiver::start().await.expect("receiver starts");
    let client = client();
    receiver.respond_until(
        Behaviour::Status(503),
        Instant::now() + Duration::from_secs(600),
    );
    assert_eq!(
        post(&client, &receiver, "{}").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        post(&client, &receiver, "{}").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A short outage: keep asking until it is over. A 503 must come from a request sent before
    // the deadline, a 200 from one answered after it.
    let until = Instant::now() + Duration::from_millis(300);
    receiver.respond_until(Behaviour::Status(503), until);
    let give_up = Instant::now() + EVENTUALLY;
    loop {
        assert!(Instant::now() < give_up, "the outage never ended");
        let sent = Instant::now();
        let status = post(&client, &receiver, "{}").await;
        let answered = Instant::now();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => assert!(sent < until, "503 after the outage"),
            StatusCode::OK => {
                assert!(answered >= until, "200 before the outage ended");
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_answers_come_before_the_default() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.set_default(Behaviour::Status(410));
    receiver.respond_next(Behaviour::Ok, 1);
    let client = client();

    assert_eq!(post(&client, &receiver, "{}").await, StatusCode::OK);
    assert_eq!(post(&client, &receiver, "{}").await, StatusCode::GONE);
    assert_eq!(post(&client, &receiver, "{}").await, StatusCode::GONE);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_answers_come_before_an_outage_window() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_until(
        Behaviour::Status(503),
        Instant::now() + Duration::from_secs(600),
    );
    receiver.respond_next(Behaviour::Status(202), 1);
    let client = client();

    assert_eq!(post(&client, &receiver, "{}").await, StatusCode::ACCEPTED);
    assert_eq!(
        post(&client, &receiver, "{}").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_raw_body_are_recorded_byte_exact() {
    let receiver = Receiver::start().await.expect("receiver starts");
    // Not valid UTF-8, with NUL, CRLF and trailing whitespace: nothing may be normalised.
    let body: Vec<u8> = b"\x00\xff{\"a\": 1}\r\n\xfe \t".to_vec();
    let url = receiver.url().replace("/hook", "/other/path?x=1&y=%20z");

    let response = client()
        .put(url)
        .header("X-Custom-Header", "Some Value; with=stuff")
        .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
        .header("Content-Type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);

    let request = &receiver.requests()[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.path, "/other/path?x=1&y=%20z");
    assert_eq!(request.body, body);
    assert_eq!(
        request.header("x-custom-header"),
        Some("Some Value; with=stuff")
    );
    assert_eq!(
        request.header("X-Custom-Header"),
        Some("Some Value; with=stuff")
    );
    assert_eq!(
        request.header("webhook-id"),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
    assert_eq!(
        request.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(request.header("not-sent"), None);
    assert!(
        request
            .headers
            .iter()
            .all(|(name, _)| *name == name.to_lowercase()),
        "{:?}",
        request.headers
    );
    assert!(request.try_json().is_err());
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_returns_once_the_condition_holds() {
    let receiver = Receiver::start().await.expect("receiver starts");
    let waiter = {
        let receiver = receiver.clone();
        tokio::spawn(async move {
            receiver
                .wait_until(EVENTUALLY, |requests| {
                    requests.iter().filter(|r| r.status == Some(200)).count() == 2
                })
                .await
        })
    };
    let client = client();
    post(&client, &receiver, "{}").await;
    post(&client, &receiver, "{}").await;

    waiter.await.expect("task joins").expect("condition met");
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_reports_what_was_seen_when_the_deadline_passes() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_next(Behaviour::Status(500), 1);
    post(&client(), &receiver, r#"{"id":"evt-42"}"#).await;

    let started = Instant::now();
    let error = receiver
        .wait_until(Duration::from_millis(300), |requests| requests.len() >= 2)
        .await
        .expect_err("only one request ever arrives");

    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(error.contains("1 request"), "{error}");
    assert!(error.contains("POST /hook -> 500"), "{error}");
    assert!(error.contains(r#"{"id":"evt-42"}"#), "{error}");
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_forgets_recorded_requests_but_not_queued_answers() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_next(Behaviour::Status(500), 2);
    let client = client();
    assert_eq!(
        post(&client, &receiver, "{}").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    receiver.clear();

    assert_eq!(receiver.request_count(), 0);
    assert_eq!(
        post(&client, &receiver, "{}").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(statuses(&receiver), [Some(500)]);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_keep_alive_requests_are_all_recorded() {
    let receiver = Receiver::start().await.expect("receiver starts");
    let client = client();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let client = client.clone();
        let url = receiver.url();
        senders.spawn(async move {
            for n in 0..100 {
                let response = client
                    .post(&url)
                    .body(format!(r#"{{"sender":{sender},"n":{n}}}"#))
                    .send()
                    .await
                    .expect("answer");
                assert_eq!(response.status(), StatusCode::OK);
            }
        });
    }
    while let Some(joined) = senders.join_next().await {
        joined.expect("sender finished");
    }

    assert_eq!(receiver.request_count(), 800);
    assert_eq!(receiver.accepted().len(), 800);
    // Per sender, the requests arrived in the order they were sent.
    for sender in 0..8 {
        let order: Vec<i64> = receiver
            .requests()
            .iter()
            .map(|r| r.json())
            .filter(|body| body["sender"] == sender)
            .map(|body| body["n"].as_i64().expect("n"))
            .collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_hanging_connections_and_stops_listening() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.set_default(Behaviour::Hang);
    let url = receiver.url();
    let hanging = {
        let client = client();
        let url = url.clone();
        tokio::spawn(async move { client.post(url).body("{}").send().await })
    };
    receiver
        .wait_until(EVENTUALLY, |requests| requests.len() == 1)
        .await
        .expect("request recorded");

    receiver.shutdown().await;

    let error = hanging
        .await
        .expect("task joins")
        .expect_err("cut by shutdown");
    assert!(
        !error.is_timeout(),
        "cut by shutdown, not the 30 s timeout: {error:?}"
    );
    let after = client().post(url).body("{}").send().await;
    assert!(after.is_err(), "still answering after shutdown: {after:?}");
}

#[tokio::test]
#[should_panic(expected = "200..=599")]
async fn an_impossible_status_is_refused_when_configured() {
    let receiver = Receiver::start().await.expect("receiver starts");
    receiver.respond_next(Behaviour::Status(42), 1);
}
