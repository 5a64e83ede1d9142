//! What is not plain HTTP passes untouched: TLS, unknown client-first
//! protocols, server-first protocols (by port or after the detection
//! timeout), and CONNECT tunnels through the outbound proxy. Upstream
//! connections are pooled.

mod support;

use sidetrace::config::Config;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes whatever it reads; greets first if `greeting` is set.
async fn tcp_app(greeting: Option<&'static [u8]>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Some(g) = greeting {
                    let _ = s.write_all(g).await;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await.expect("no answer in time").unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_first_protocol_is_relayed() {
    let app = tcp_app(None).await;
    let proxy = proxy_for(app).await;
    let mut s = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    let payload = b"\x00\x01binary protocol, not HTTP\r\n\xff";
    s.write_all(payload).await.unwrap();
    assert_eq!(read_exactly(&mut s, payload.len()).await, payload);
    s.write_all(b"second message").await.unwrap();
    assert_eq!(read_exactly(&mut s, 14).await, b"second message");
    assert!(proxy.ring.is_empty(), "opaque traffic makes no HTTP span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_first_protocols_by_port_and_by_timeout() {
    // The app's port is an opaque port: the greeting comes at once.
    let app = tcp_app(Some(b"220 smtp ready\r\n")).await;
    let mut config = Config::local(app, "server-first");
    config.opaque_ports = vec![app.port()];
    let proxy = proxy_with(config).await;
    let mut s = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    assert_eq!(read_exactly(&mut s, 16).await, b"220 smtp ready\r\n");

    // Any other port: detection waits for the client, gives up, relays.
    let mut config = Config::local(app, "server-first-timeout");
    config.detect_timeout = Duration::from_millis(200);
    let proxy = proxy_with(config).await;
    let mut s = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    assert_eq!(read_exactly(&mut s, 16).await, b"220 smtp ready\r\n");
    s.write_all(b"EHLO x\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut s, 8).await, b"EHLO x\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passes_through_untouched() {
    let dir = std::env::temp_dir().join(format!("sidetrace-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=app.example.test"])
        .args(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{made:?}");
    let port = closed_port().port();
    let _server = KillOnDrop(
        std::process::Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-www", "-quiet"])
            .args(["-cert", cert.to_str().unwrap(), "-key", key.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(port), "openssl s_server did not start");
    let proxy = proxy_for(([127, 0, 0, 1], port).into()).await;
    let inbound = proxy.inbound.unwrap();
    let out = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        "--resolve",
        &format!("app.example.test:{}:127.0.0.1", inbound.port()),
        &format!("https://app.example.test:{}/", inbound.port()),
    ]);
    // The certificate verifies: the client talked TLS to the app itself.
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("s_server"), "{out:?}");
    assert!(proxy.ring.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_through_the_outbound_proxy() {
    let app = echo_app().await;
    let proxy = proxy_for(closed_port()).await;
    let out = curl(&[
        "-p",
        "-x",
        &format!("http://{}", proxy.outbound.unwrap()),
        &format!("http://{}/bytes/100000", app.addr),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, pattern(100_000));
    // Inside the tunnel the proxy sees bytes, not requests: one CONNECT span.
    let span = spans(&proxy, 1).await.pop().unwrap();
    assert_eq!(span.method, http::Method::CONNECT);
    assert_eq!(span.status, Some(200));
    assert!(span.response_body_size >= 100_000, "{span:#?}");
    assert!(!app.last().headers.contains_key("traceparent"), "nothing is injected into a tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_the_app_sees_the_clients_connections_outbound_they_are_pooled() {
    use std::sync::atomic::Ordering::SeqCst;
    let app = echo_app().await;
    let (proxy, url) = inbound_for(&app).await;
    // Inbound: twenty client connections, one after the other, make twenty
    // upstream connections; twenty requests on one make one.
    for i in 0..20 {
        let out = curl(&[&format!("{url}/n/{i}")]);
        assert!(out.status.success());
    }
    spans(&proxy, 20).await;
    assert_eq!(app.connections.load(SeqCst), 20, "one upstream connection per client connection");
    let urls: Vec<String> = (0..20).map(|i| format!("{url}/k/{i}")).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    assert!(curl(&urls).status.success());
    spans(&proxy, 40).await;
    assert_eq!(app.connections.load(SeqCst), 21, "a keep-alive client connection keeps its upstream connection");
    // Outbound (as an HTTP proxy): connections to the same destination are
    // pooled across client connections.
    let before = app.connections.load(SeqCst);
    let outbound = format!("http://{}", proxy.outbound.unwrap());
    for i in 0..20 {
        let out = curl(&["-x", &outbound, &format!("http://{}/o/{i}", app.addr)]);
        assert!(out.status.success());
    }
    spans(&proxy, 60).await;
    let pooled = app.connections.load(SeqCst) - before;
    assert!(pooled <= 2, "20 sequential outbound requests opened {pooled} upstream connections");
    // HTTP/2: ten concurrent streams on one client connection (a hyper
    // client; curl 7.88 fails to multiplex with prior knowledge) share one
    // upstream connection.
    let before = app.connections.load(SeqCst);
    let stream = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut calls = Vec::new();
    for i in 0..10 {
        let mut send = send.clone();
        let uri = format!("{url}/slow/{}", 50 + i);
        calls.push(tokio::spawn(async move {
            let req = http::Request::get(uri).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
            send.send_request(req).await.unwrap().status()
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    spans(&proxy, 70).await;
    let h2_conns = app.connections.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(h2_conns, 1, "ten concurrent h2 streams used {h2_conns} upstream connections");
}
