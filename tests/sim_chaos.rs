//! The simulators' random misbehaviour over real HTTP on loopback, as the chaos tests use it:
//! random provider faults, requests the client gave up on, and the flaky webhook receiver.

mod support;

use std::time::Duration;

use pollerd::sim::connectwise::{ConnectWiseSim, Fault, FaultScope, SimConfig};
use pollerd::sim::receiver::{Behaviour, Receiver};
use support::wait_for;

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("client builds")
}

async fn get_contacts(sim: &ConnectWiseSim, client: &reqwest::Client) -> Option<u16> {
    let c = sim.config();
    client
        .get(format!("{}/company/contacts", sim.base_url()))
        .basic_auth(
            format!("{}+{}", c.company, c.public_key),
            Some(&c.private_key),
        )
        .header("clientId", &c.client_id)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_provider_faults_hit_a_share_of_requests_and_the_log_says_which() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    sim.seed_faults(11);
    sim.inject_random(Fault::ServerError, FaultScope::always(), 30);
    let client = client(Duration::from_secs(30));
    let mut answers = Vec::new();
    for _ in 0..200 {
        answers.push(get_contacts(&sim, &client).await.expect("answered"));
    }
    let errors = answers.iter().filter(|s| **s == 500).count();
    assert!((30..=90).contains(&errors), "{errors} of 200 were 500");
    assert!(answers.iter().all(|s| *s == 200 || *s == 500));
    let log = sim.requests();
    let logged: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(logged, answers, "the log has each answer in order");
    for r in &log {
        assert_eq!(r.fault.as_deref() == Some("ServerError"), r.status == 500);
    }

    // The same seed replays the same faults.
    sim.clear_faults();
    sim.seed_faults(11);
    sim.inject_random(Fault::ServerError, FaultScope::always(), 30);
    let mut again = Vec::new();
    for _ in 0..200 {
        again.push(get_contacts(&sim, &client).await.expect("answered"));
    }
    assert_eq!(again, answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_client_gave_up_on_is_still_logged_with_its_latency() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let late = Duration::from_millis(1500);
    sim.inject(Fault::Latency(late), FaultScope::next(1));
    let impatient = client(Duration::from_millis(300));
    assert_eq!(
        get_contacts(&sim, &impatient).await,
        None,
        "the client timed out"
    );
    // The next request overtakes the abandoned one.
    assert_eq!(get_contacts(&sim, &impatient).await, Some(200));
    wait_for(
        "the abandoned request to be logged",
        Duration::from_secs(30),
        || sim.request_count() >= 2,
    )
    .await;
    let log = sim.requests();
    // Logged in answer order; arrival order is in `received_at`.
    assert_eq!(log[0].delayed, Duration::ZERO);
    assert_eq!(log[1].delayed, late);
    assert!(log[1].received_at < log[0].received_at);
    assert!(log[1].at - log[1].received_at >= chrono::Duration::from_std(late).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_receiver_answers_500_cuts_or_200_as_recorded() {
    let receiver = Receiver::start().await.unwrap();
    receiver.seed(5);
    receiver.set_default(Behaviour::Chaos {
        error_percent: 20,
        drop_percent: 20,
    });
    let client = client(Duration::from_secs(30));
    let mut seen = Vec::new();
    for i in 0..150 {
        let answer = client
            .post(receiver.url())
            .body(format!("{{\"n\": {i}}}"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        seen.push(answer);
    }
    let recorded: Vec<Option<u16>> = receiver.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        recorded, seen,
        "what the client saw is what the receiver recorded"
    );
    let count = |s: Option<u16>| seen.iter().filter(|x| **x == s).count();
    assert!((10..=50).contains(&count(Some(500))), "{seen:?}");
    assert!((10..=50).contains(&count(None)), "{seen:?}");
    assert_eq!(count(Some(500)) + count(None) + count(Some(200)), 150);
}
