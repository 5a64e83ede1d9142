//! Export over TLS with rustls: a private CA given with `--otlp-ca`, and a
//! client certificate for a collector that requires mTLS. Unreadable or
//! malformed certificates stop the sidecar at start-up with one line.

mod support;

use sidetrace::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::collector::Collector;
use support::*;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn pki(dir: &Path) -> [PathBuf; 5] {
    std::fs::create_dir_all(dir).unwrap();
    let p = |n: &str| dir.join(n);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (ca, ca_key) = (p("ca.pem"), p("ca.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=sidetrace test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
    ]);
    let leaf = |name: &str, ext: &str| -> (PathBuf, PathBuf) {
        let (cert, key, csr, extfile) = (
            p(&format!("{name}.pem")),
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.ext")),
        );
        std::fs::write(&extfile, ext).unwrap();
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &s(&extfile),
            "-out",
            &s(&cert),
        ]);
        (cert, key)
    };
    let (server, server_key) = leaf("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    let (client, client_key) = leaf("client", "extendedKeyUsage=clientAuth\n");
    [ca, server, server_key, client, client_key]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_to_a_collector_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("sidetrace-tls-export-{}", std::process::id()));
    let [ca, server, server_key, client, client_key] = pki(&dir);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let collector =
        Collector::start_with(0, 0, &["--tls-cert", &s(&server), "--tls-key", &s(&server_key), "--client-ca", &s(&ca)])
            .reached_with(&s(&ca), &s(&client), &s(&client_key));
    let app = echo_app().await;
    let endpoint = format!("https://127.0.0.1:{}", collector.http);
    let flags = [
        "--otlp-endpoint",
        &endpoint,
        "--otlp-ca",
        &s(&ca),
        "--otlp-client-cert",
        &s(&client),
        "--otlp-client-key",
        &s(&client_key),
        "--export-delay",
        "100ms",
    ];
    let proxy = proxy_with(Config::local_with(app.addr, "tls-test", &flags)).await;
    assert!(curl(&[&format!("http://{}/over-tls", proxy.inbound.unwrap())]).status.success());
    let received = collector.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "the span arrived over mTLS");

    // Without the client certificate the collector refuses the handshake:
    // nothing arrives, and the failures are retried, not lost silently.
    let flags =
        ["--otlp-endpoint", &endpoint, "--otlp-ca", &s(&ca), "--export-delay", "100ms", "--retry-initial", "100ms"];
    let proxy = proxy_with(Config::local_with(app.addr, "tls-test", &flags)).await;
    assert!(curl(&[&format!("http://{}/no-client-cert", proxy.inbound.unwrap())]).status.success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(collector.otlp_spans().len(), 1);
    assert!(proxy.stats.exporters()[0].retries.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_tls_files_and_urls_stop_start_up() {
    let dir = std::env::temp_dir().join(format!("sidetrace-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let garbage_pem = dir.join("garbage.pem");
    std::fs::write(&garbage_pem, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
        .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--otlp-ca".into(), "/nonexistent/ca.pem".into()], "--otlp-ca"),
        (vec!["--otlp-ca".into(), not_pem.to_str().unwrap().into()], "--otlp-ca"),
        (vec!["--otlp-ca".into(), garbage_pem.to_str().unwrap().into()], "--otlp-ca"),
        (vec!["--otlp-client-cert".into(), garbage_pem.to_str().unwrap().into()], "--otlp-client-key"),
    ];
    for (flags, names) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_sidetrace"))
            .args([
                "run",
                "--inbound",
                "off",
                "--outbound",
                "off",
                "--admin",
                "off",
                "--otlp-endpoint",
                "https://127.0.0.1:1",
            ])
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(names), "{flags:?}: {stderr}");
    }
    for url in ["collector:4318", "ftp://collector/x", "http://"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sidetrace"))
            .args(["run", "--inbound", "off", "--outbound", "off", "--admin", "off", "--otlp-endpoint", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("--otlp-endpoint"), "{url}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
