//! Export over TLS with rustls: a private CA given with `--otlp-ca`, and a
//! client certificate for a collector that requires mTLS. Unreadable or
//! malformed certificates stop the sidecar at start-up with one line.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use support::collectors::Collector;
use support::pki::Ca;
use support::proxy::sidetrace;
use support::{Client, TestProxy, apps, tools};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_to_a_collector_with_a_private_ca() {
    let dir = tools::scratch_dir("tls-export");
    let ca = Ca::new(&dir, "sidetrace test CA");
    let (server, server_key) = ca.server("server", None);
    let (client, client_key) = ca.client("client");
    let collector = Collector::start_with(
        0,
        0,
        &["--tls-cert", s(&server), "--tls-key", s(&server_key), "--client-ca", s(&ca.cert)],
    )
    .reached_with(&ca.cert, &client, &client_key);
    let app = apps::echo().await;
    let endpoint = collector.http_url();
    let flags = [
        "--otlp-endpoint",
        &endpoint,
        "--otlp-ca",
        s(&ca.cert),
        "--otlp-client-cert",
        s(&client),
        "--otlp-client-key",
        s(&client_key),
        "--export-delay",
        "100ms",
    ];
    let proxy = TestProxy::to(app.addr).service("tls-test").flags(&flags).start().await;
    let r = Client::http1().get(&format!("{}/over-tls", proxy.inbound_url())).send().await;
    assert_eq!(r.status, 200);
    let received = collector.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "the span arrived over mTLS");

    // Without the client certificate the collector refuses the handshake:
    // nothing arrives, and the failures are retried, not lost silently.
    let flags =
        ["--otlp-endpoint", &endpoint, "--otlp-ca", s(&ca.cert), "--export-delay", "100ms", "--retry-initial", "100ms"];
    let proxy = TestProxy::to(app.addr).service("tls-test").flags(&flags).start().await;
    let r = Client::http1().get(&format!("{}/no-client-cert", proxy.inbound_url())).send().await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(collector.otlp_spans().await.len(), 1);
    assert!(proxy.sidecar().stats.exporters()[0].retries.load(Relaxed) > 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_tls_files_and_urls_stop_start_up() {
    let dir = tools::scratch_dir("tls-bad");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let garbage_pem = dir.join("garbage.pem");
    std::fs::write(&garbage_pem, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
        .unwrap();
    let off = ["run", "--inbound", "off", "--outbound", "off", "--admin", "off"];
    let cases: [(&[&str], &str); 4] = [
        (&["--otlp-ca", "/nonexistent/ca.pem"], "--otlp-ca"),
        (&["--otlp-ca", s(&not_pem)], "--otlp-ca"),
        (&["--otlp-ca", s(&garbage_pem)], "--otlp-ca"),
        (&["--otlp-client-cert", s(&garbage_pem)], "--otlp-client-key"),
    ];
    for (flags, names) in cases {
        let args: Vec<&str> =
            off.iter().chain(&["--otlp-endpoint", "https://127.0.0.1:1"]).chain(flags).copied().collect();
        let out = sidetrace(&args).output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(names), "{flags:?}: {stderr}");
    }
    for url in ["collector:4318", "ftp://collector/x", "http://"] {
        let args: Vec<&str> = off.iter().chain(&["--otlp-endpoint", url]).copied().collect();
        let out = sidetrace(&args).output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("--otlp-endpoint"), "{url}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
