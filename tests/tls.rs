//! Certificates are always verified, for the provider and for the callback; `tls.caFile` adds a
//! private CA for one instance. A CA and a leaf certificate for 127.0.0.1 are made in the test
//! (`support::tls`), and a TLS listener on 127.0.0.1 forwards to the plain simulator and receiver.

mod support;

use std::path::Path;
use std::sync::Arc;

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;
use serde_json::Value;
use support::tls::{backend_of, private_ca, through, tls_front};
use support::*;

fn write_ca(dir: &Path, pem: &str) -> String {
    let path = dir.join("private-ca.pem");
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_certificates_are_verified_and_tls_ca_file_trusts_a_private_ca() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let (ca_pem, acceptor) = private_ca();
    let front = tls_front(acceptor, backend_of(&sim.base_url())).await;
    let dd = DaemonDir::new("");
    let ca_file = write_ca(dd.path(), &ca_pem);
    let mut untrusting = seed_instance(&sim, &receiver.url(), "10");
    untrusting["name"] = "untrusting".into();
    untrusting["configuration"]["baseUrl"] = through(&sim.base_url(), front).into();
    let mut trusting = untrusting.clone();
    trusting["name"] = "trusting".into();
    trusting["configuration"]["tls.caFile"] = ca_file.into();
    dd.write_instance("untrusting.json", &untrusting);
    dd.write_instance("trusting.json", &trusting);
    let since = (sim.now() - chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ids = sim.create_many(RecordKind::Contact, 2, None);

    let refused = pollerd_async(&dd, &["poll", "untrusting", "--since", &since]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("instance untrusting, resource contacts")
            && stderr.contains("invalid peer certificate: UnknownIssuer"),
        "the error names the instance, the resource and the certificate problem: {stderr}"
    );

    let accepted = pollerd_async(&dd, &["poll", "trusting", "--since", &since]).await;
    let stdout = String::from_utf8_lossy(&accepted.stdout);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let objects: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .flat_map(|n| n["message"]["events"].as_array().unwrap().clone())
        .map(|e| e["objectId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        objects,
        ids.iter().map(u64::to_string).collect::<Vec<_>>(),
        "the records came over TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_certificates_are_verified_and_tls_ca_file_trusts_a_private_ca() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let (ca_pem, acceptor) = private_ca();
    let front = tls_front(acceptor.clone(), receiver.addr()).await;
    let callback = through(&receiver.url(), front);
    let provider_front = tls_front(acceptor, backend_of(&sim.base_url())).await;
    let dd = DaemonDir::new("[delivery]\nschedule = [\"200ms\", \"200ms\", \"200ms\"]\n");
    let ca_file = write_ca(dd.path(), &ca_pem);
    let mut untrusting = seed_instance(&sim, &callback, "0.01");
    untrusting["name"] = "untrusting".into();
    let mut trusting = untrusting.clone();
    trusting["name"] = "trusting".into();
    trusting["configuration"]["tls.caFile"] = ca_file.into();
    // The daemon's provider requests trust the CA too (the untrusting one polls over http).
    trusting["configuration"]["baseUrl"] = through(&sim.base_url(), provider_front).into();
    dd.write_instance("untrusting.json", &untrusting);
    dd.write_instance("trusting.json", &trusting);
    let daemon = dd.start(&[]);
    // Both baselines first, then records both instances will notify about.
    wait_for("both baselines", WAIT, || sim.request_count() >= 2).await;
    sim.create_many(RecordKind::Contact, 2, None);

    wait_for("a notification from the trusting instance", WAIT, || {
        receiver
            .accepted()
            .iter()
            .any(|r| r.json()["message"]["instanceName"] == "trusting")
    })
    .await;
    wait_for("the untrusting instance's delivery failure", WAIT, || {
        daemon.log_text().lines().any(|l| {
            l.contains("untrusting")
                && l.contains(&callback)
                && l.contains("invalid peer certificate: UnknownIssuer")
        })
    })
    .await;
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.json()["message"]["instanceName"] == "trusting"),
        "nothing of the untrusting instance reached the receiver"
    );
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_http_on_the_same_host_is_not_followed() {
    use pollerd::sim::connectwise::{Fault, FaultScope};
    // Plain http on 127.0.0.1, counting whoever connects: the credentials must never get there.
    let plain = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let plain_address = plain.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = plain.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let (ca_pem, acceptor) = private_ca();
    let front = tls_front(acceptor, backend_of(&sim.base_url())).await;
    let dd = DaemonDir::new("");
    let mut instance = seed_instance(&sim, &receiver.url(), "10");
    instance["name"] = "downgraded".into();
    instance["configuration"]["baseUrl"] = through(&sim.base_url(), front).into();
    instance["configuration"]["tls.caFile"] = write_ca(dd.path(), &ca_pem).into();
    dd.write_instance("downgraded.json", &instance);
    sim.inject(
        Fault::Redirect(format!(
            "http://127.0.0.1:{}/v4_6_release/apis/3.0/company/contacts?key=K",
            plain_address.port()
        )),
        FaultScope::always(),
    );
    let since = (sim.now() - chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let refused = pollerd_async(&dd, &["poll", "downgraded", "--since", &since]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("instance downgraded, resource contacts")
            && stderr.contains(&format!(
                "refusing to follow a redirect to another origin (http://127.0.0.1:{})",
                plain_address.port()
            )),
        "{stderr}"
    );
    assert!(!stderr.contains("key=K"), "{stderr}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the request was re-sent over plain http"
    );
}
