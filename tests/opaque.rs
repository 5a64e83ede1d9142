//! What is not plain HTTP passes untouched: TLS, unknown client-first
//! protocols, server-first protocols (by port or after the detection
//! timeout), and CONNECT tunnels through the outbound proxy. Upstream
//! connections are pooled.
//!
//! Opaque protocols are spoken with raw sockets: they are bytes, not HTTP.

mod support;

use std::time::Duration;
use support::{Client, TestProxy, apps, pki, tools};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await.expect("no answer in time").unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_first_protocol_is_relayed() {
    let proxy = TestProxy::to(apps::tcp_echo().await).start().await;
    let mut s = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    let payload = b"\x00\x01binary protocol, not HTTP\r\n\xff";
    s.write_all(payload).await.unwrap();
    assert_eq!(read_exactly(&mut s, payload.len()).await, payload);
    s.write_all(b"second message").await.unwrap();
    assert_eq!(read_exactly(&mut s, 14).await, b"second message");
    assert!(proxy.sidecar().ring.is_empty(), "opaque traffic makes no HTTP span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_first_protocols_by_port_and_by_timeout() {
    // The app's port is an opaque port: the greeting comes at once.
    let app = apps::server_first(b"220 smtp ready\r\n").await;
    let port = app.port().to_string();
    let proxy = TestProxy::to(app).service("server-first").flags(&["--opaque-ports", &port]).start().await;
    let mut s = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    assert_eq!(read_exactly(&mut s, 16).await, b"220 smtp ready\r\n");

    // Any other port: detection waits for the client, gives up, relays.
    let flags = ["--detect-timeout", "200ms"];
    let proxy = TestProxy::to(app).service("server-first-timeout").flags(&flags).start().await;
    let mut s = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    assert_eq!(read_exactly(&mut s, 16).await, b"220 smtp ready\r\n");
    s.write_all(b"EHLO x\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut s, 8).await, b"EHLO x\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passes_through_untouched() {
    let dir = tools::scratch_dir("tls-passthrough");
    let ca = pki::Ca::new(&dir, "sidetrace test CA");
    let (cert, key) = ca.server("app", Some("app.example.test"));
    let (_server, addr) = apps::tls(&cert, &key).await;
    let proxy = TestProxy::to(addr).start().await;
    // The certificate verifies for its name: the client talked TLS to the
    // app itself, through the proxy's inbound port.
    let client = Client::http1().tls(&ca.cert, None).server_name("app.example.test");
    let mut conn = client.try_connect(proxy.inbound.unwrap()).await.unwrap_or_else(|e| panic!("{e}"));
    let r = conn.get("/").send().await;
    assert!(r.text().contains("s_server"), "{r:?}");
    assert!(proxy.sidecar().ring.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_through_the_outbound_proxy() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(apps::refusing()).start().await;
    let mut tunnel = Client::http1()
        .connect_tunnel(proxy.outbound.unwrap(), &app.addr.to_string())
        .await
        .unwrap_or_else(|f| panic!("CONNECT: {f}"));
    let r = tunnel.get("/bytes/100000").send().await;
    assert_eq!(r.body, apps::pattern(100_000));
    drop(tunnel);
    // Inside the tunnel the proxy sees bytes, not requests: one CONNECT span.
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    assert_eq!(span.method, http::Method::CONNECT);
    assert_eq!(span.status, Some(200));
    assert!(span.response_body_size >= 100_000, "{span:#?}");
    assert!(!app.last().headers.contains_key("traceparent"), "nothing is injected into a tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_the_app_sees_the_clients_connections_outbound_they_are_pooled() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    let client = Client::http1();
    // Inbound: twenty client connections, one after the other, make twenty
    // upstream connections; twenty requests on one make one.
    for i in 0..20 {
        assert_eq!(client.get(&format!("{url}/n/{i}")).send().await.status, 200);
    }
    proxy.wait_for_spans(20).await;
    assert_eq!(app.connections(), 20, "one upstream connection per client connection");
    let mut kept = client.connect(proxy.inbound.unwrap()).await;
    for i in 0..20 {
        assert_eq!(kept.get(&format!("/k/{i}")).send().await.status, 200);
    }
    drop(kept);
    proxy.wait_for_spans(40).await;
    assert_eq!(app.connections(), 21, "a keep-alive client connection keeps its upstream connection");
    // Outbound (as an HTTP proxy): connections to the same destination are
    // pooled across client connections.
    let before = app.connections();
    let outbound = proxy.outbound.unwrap();
    for i in 0..20 {
        let r = client.get(&format!("http://{}/o/{i}", app.addr)).via(outbound).send().await;
        assert_eq!(r.status, 200);
    }
    proxy.wait_for_spans(60).await;
    let pooled = app.connections() - before;
    assert!(pooled <= 2, "20 sequential outbound requests opened {pooled} upstream connections");
    // HTTP/2: ten concurrent streams on one client connection share one
    // upstream connection.
    let before = app.connections();
    let h2 = Client::h2c().connect(proxy.inbound.unwrap()).await;
    let mut calls = Vec::new();
    for i in 0..10 {
        let mut stream = h2.stream();
        calls.push(tokio::spawn(async move { stream.get(&format!("/slow/{}", 50 + i)).send().await.status }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    proxy.wait_for_spans(70).await;
    let h2_conns = app.connections() - before;
    assert_eq!(h2_conns, 1, "ten concurrent h2 streams used {h2_conns} upstream connections");
}
