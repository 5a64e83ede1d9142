//! Every protocol the proxy carries, with real clients, and what its spans
//! say of them: HTTP/1.0 and 1.1, chunked uploads and `Expect:
//! 100-continue` (curl), h2c, a WebSocket client, tonic gRPC (unary and
//! bidirectional streaming). Whether each request and response passes
//! unchanged, tests/transparency.rs compares case by case.

mod support;

use futures_util::{SinkExt, StreamExt};
use http::Version;
use sidetrace::vocab::Direction;
use std::io::Write;
use support::client::chunks;
use support::{Client, TestProxy, apps};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_spans_count_bytes_and_status() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let client = Client::http1();
    let url = proxy.inbound_url();
    for (path, status) in [("/", 200), ("/bytes/1048577", 200), ("/status/404", 404), ("/trailers", 200)] {
        let r = client.get(&format!("{url}{path}")).send().await;
        assert_eq!(r.status, status, "{path}");
        if path == "/bytes/1048577" {
            assert_eq!(r.body, apps::pattern(1048577), "the body, byte for byte");
        }
    }
    let spans = proxy.wait_for_spans(4).await;
    assert!(spans.iter().all(|s| s.direction == Direction::Inbound && s.version == Version::HTTP_11));
    let big = spans.iter().find(|s| s.uri.path() == "/bytes/1048577").unwrap();
    assert_eq!(big.response_body_size, 1048577);
    assert_eq!(big.status, Some(200));
    let missing = spans.iter().find(|s| s.uri.path() == "/status/404").unwrap();
    assert_eq!(missing.status, Some(404));
}

/// A chunked upload (the client's), then the same body with `Expect:
/// 100-continue` — curl's, because the test is about what curl does: it
/// waits for the interim response before it sends the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_chunked_upload_and_expect_continue() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    let data = apps::pattern(3 * 1024 * 1024 + 7);
    let pieces: Vec<bytes::Bytes> = data.chunks(100_000).map(bytes::Bytes::copy_from_slice).collect();
    let chunked = Client::http1().post(&format!("{url}/echo")).body_stream(chunks(pieces, None)).send().await;
    assert_eq!(chunked.body, data);
    assert_eq!(app.last().headers["transfer-encoding"], "chunked", "the app saw a chunked upload");

    let file = std::env::temp_dir().join(format!("sidetrace-expect-{}", std::process::id()));
    std::fs::File::create(&file).unwrap().write_all(&data).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-v", "-H", "Expect: 100-continue", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("{url}/echo"))
        .output()
        .expect("curl is installed");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, data);
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("HTTP/1.1 100 Continue"), "no 100 Continue seen:\n{verbose}");
    let spans = proxy.wait_for_spans(2).await;
    assert!(
        spans.iter().all(|s| s.request_body_size == data.len() as u64 && s.response_body_size == data.len() as u64),
        "{spans:#?}"
    );
    // The app saw the request as curl sent it, hop-by-hop headers aside.
    let seen = app.last();
    assert_eq!(seen.headers["expect"], "100-continue");
    assert!(seen.headers.contains_key("traceparent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_and_http10() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    // Two requests on one client connection: the proxy keeps it open, and
    // the app sees one connection.
    let mut conn = Client::http1().connect(proxy.inbound.unwrap()).await;
    assert_eq!(conn.get("/").send().await.text(), "hello from the app\n");
    assert!(conn.is_open(), "the proxy closed a keep-alive connection");
    assert_eq!(conn.get("/status/200").send().await.text(), "status 200\n");
    assert_eq!(app.connections(), 1);
    drop(conn);
    // HTTP/1.0, direct and through the proxy.
    let http10 = async |url: String| Client::http1().get(&url).version(Version::HTTP_10).send().await;
    let direct = http10(format!("{}/bytes/5000", app.url())).await;
    let proxied = http10(format!("{}/bytes/5000", proxy.inbound_url())).await;
    assert_eq!((direct.status, direct.body), (proxied.status, proxied.body));
    let spans = proxy.wait_for_spans(3).await;
    let span = spans.iter().find(|s| s.uri.path() == "/bytes/5000").unwrap();
    assert_eq!(span.version, Version::HTTP_10);
    assert_eq!(app.last().version, Version::HTTP_10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let inbound = proxy.inbound.unwrap();
    let mut h2 = Client::h2c().connect(inbound).await;
    for (path, status) in [("/", 200), ("/bytes/2000003", 200), ("/status/503", 503)] {
        assert_eq!(h2.get(path).send().await.status, status, "{path}");
    }
    let up = h2.post("/echo").body("hello over h2").send().await;
    assert_eq!(up.body, "hello over h2");
    let spans = proxy.wait_for_spans(4).await;
    assert!(spans.iter().all(|s| s.version == Version::HTTP_2), "{spans:#?}");
    assert_eq!(app.last().version, Version::HTTP_2);
    // The app sees the authority the client used, not the proxy's rewrite.
    assert_eq!(app.last().uri.authority().unwrap().as_str(), inbound.to_string());
    // server.address/port come from the request's :authority, here one
    // that differs from the address the connection went to.
    let named = h2.get("http://h2.test:8443/status/201").send().await;
    assert_eq!(named.status, 201);
    let all = proxy.wait_for_spans(5).await;
    let span = all.iter().find(|s| s.status == Some(201)).expect("the span of the named request");
    let otlp = serde_json::to_string(&proxy.sidecar().encoder.span(span)).unwrap();
    assert!(otlp.contains(r#""key":"server.address","value":{"stringValue":"h2.test"}"#), "{otlp}");
    assert!(otlp.contains(r#""key":"server.port","value":{"intValue":"8443"}"#), "{otlp}");
    let err = spans.iter().find(|s| s.status == Some(503)).unwrap();
    assert!(err.is_error());
}

/// The chunked body of `/trailers`, trailer section included, as the bytes
/// on the wire: a raw socket, since the test is about the bytes.
async fn raw_trailers(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /trailers HTTP/1.1\r\nhost: app\r\nte: trailers\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut all)).await.unwrap().unwrap();
    let body = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    all.split_off(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_chunks_and_trailers_are_the_same_bytes_on_the_wire() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let direct = raw_trailers(app.addr).await;
    let proxied = raw_trailers(proxy.inbound.unwrap()).await;
    assert!(String::from_utf8_lossy(&proxied).contains("x-checksum: abc"), "{}", String::from_utf8_lossy(&proxied));
    assert_eq!(String::from_utf8_lossy(&direct), String::from_utf8_lossy(&proxied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_end_to_end() {
    use tokio_tungstenite::tungstenite::Message;
    let proxy = TestProxy::to(apps::websocket_echo().await).start().await;
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.inbound.unwrap())).await.unwrap();
    assert_eq!(resp.status(), 101);
    let binary: Vec<u8> = apps::pattern(100_000);
    ws.send(Message::text("hello websocket")).await.unwrap();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello websocket"));
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().to_vec(), binary);
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    let spans = proxy.wait_for_spans(1).await;
    let s = &spans[0];
    assert_eq!(s.status, Some(101));
    assert!(s.response_body_size > 100_000 && s.request_body_size > 100_000, "tunnel bytes: {s:#?}");
    assert!(s.error.is_none());
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_bidi_streaming() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let app = apps::grpc().await;
    let proxy = TestProxy::to(app).start().await;
    let (direct, proxied) = (channel(app).await, channel(proxy.inbound.unwrap()).await);

    // Unary: the same answer both ways; an unknown service is NOT_FOUND.
    for ch in [direct.clone(), proxied.clone()] {
        let mut health = HealthClient::new(ch);
        let ok = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        assert_eq!(ok.status, 1, "SERVING");
        let missing = health.check(HealthCheckRequest { service: "nope".into() }).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }

    // Bidirectional streaming: requests and responses interleave on one call.
    let mut answers = Vec::new();
    for ch in [direct, proxied] {
        let mut client = ServerReflectionClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut responses =
            client.server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        let mut got = Vec::new();
        for symbol in ["grpc.health.v1.Health", "grpc.health.v1.HealthCheckRequest"] {
            tx.send(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
            })
            .await
            .unwrap();
            // Each answer arrives before the next request is sent.
            got.push(format!("{:?}", responses.message().await.unwrap().unwrap().message_response));
        }
        tx.send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .unwrap();
        got.push(format!("{:?}", responses.message().await.unwrap().unwrap().message_response));
        drop(tx);
        assert!(responses.message().await.unwrap().is_none());
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1]);
    assert!(answers[1][2].contains("grpc.health.v1.Health"));

    let spans = proxy.wait_for_spans(3).await;
    let unary_ok = spans
        .iter()
        .find(|s| s.uri.path() == "/grpc.health.v1.Health/Check" && s.grpc_status == Some(0))
        .expect("unary span");
    assert!(!unary_ok.is_error());
    let not_found = spans.iter().find(|s| s.grpc_status == Some(5)).expect("NOT_FOUND span");
    // NOT_FOUND is the caller's problem: not an error on a SERVER span.
    assert!(!not_found.is_error(), "{not_found:#?}");
    let bidi = spans.iter().find(|s| s.uri.path().ends_with("ServerReflectionInfo")).expect("bidi span");
    assert_eq!(bidi.grpc_status, Some(0));
    assert_eq!(bidi.version, Version::HTTP_2);
}
