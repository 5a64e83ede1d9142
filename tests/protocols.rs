//! Every protocol the proxy carries, with real clients: curl over HTTP/1.0,
//! 1.1 and h2c, a WebSocket client, tonic gRPC (unary and bidirectional
//! streaming). Each case compares the proxied result with the direct one.

mod support;

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sidetrace::vocab::Direction;
use std::io::Write;
use support::*;

fn body_of(out: &std::process::Output) -> Vec<u8> {
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_download_is_byte_identical() {
    let app = echo_app().await;
    let (proxy, url) = inbound_for(&app).await;
    let direct = format!("http://{}", app.addr);
    for path in ["/", "/bytes/1048577", "/status/404", "/trailers"] {
        let d = body_of(&curl(&[&format!("{direct}{path}")]));
        let p = body_of(&curl(&[&format!("{url}{path}")]));
        assert_eq!(d, p, "body differs for {path}");
    }
    let status = curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("{url}/status/404")]);
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404");
    let spans = spans(&proxy, 5).await;
    assert!(spans.iter().all(|s| s.direction == Direction::Inbound && s.version == http::Version::HTTP_11));
    let big = spans.iter().find(|s| s.uri.path() == "/bytes/1048577").unwrap();
    assert_eq!(big.response_body_size, 1048577);
    assert_eq!(big.status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_chunked_upload_and_expect_continue() {
    let app = echo_app().await;
    let (proxy, url) = inbound_for(&app).await;
    let mut file = tempfile();
    let data = pattern(3 * 1024 * 1024 + 7);
    file.1.write_all(&data).unwrap();
    let path = file.0.to_str().unwrap().to_string();
    // Chunked: curl streams the file with Transfer-Encoding: chunked.
    let chunked = body_of(&curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{path}"),
        &format!("{url}/echo"),
    ]));
    assert_eq!(chunked, data);
    // Expect: 100-continue: curl waits for the interim response before sending.
    let out = curl(&["-v", "-H", "Expect: 100-continue", "--data-binary", &format!("@{path}"), &format!("{url}/echo")]);
    assert_eq!(body_of(&out), data);
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("HTTP/1.1 100 Continue"), "no 100 Continue seen:\n{verbose}");
    let spans = spans(&proxy, 2).await;
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
    let app = echo_app().await;
    let (proxy, url) = inbound_for(&app).await;
    // Two requests on one client connection: curl reports one connect.
    let out = curl(&["-w", "|connects=%{num_connects}|", &format!("{url}/"), &format!("{url}/status/200")]);
    let text = String::from_utf8_lossy(&body_of(&out)).to_string();
    assert_eq!(
        text, "hello from the app\n|connects=1|status 200\n|connects=0|",
        "the second request should reuse the connection"
    );
    let d = body_of(&curl(&["--http1.0", &format!("http://{}/bytes/5000", app.addr)]));
    let p = body_of(&curl(&["--http1.0", &format!("{url}/bytes/5000")]));
    assert_eq!(d, p);
    let spans = spans(&proxy, 3).await;
    assert_eq!(spans.last().unwrap().version, http::Version::HTTP_10);
    assert_eq!(app.last().version, http::Version::HTTP_10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let app = echo_app().await;
    let (proxy, url) = inbound_for(&app).await;
    let direct = format!("http://{}", app.addr);
    for path in ["/", "/bytes/2000003", "/status/503"] {
        let d = body_of(&curl(&["--http2-prior-knowledge", &format!("{direct}{path}")]));
        let p = body_of(&curl(&["--http2-prior-knowledge", &format!("{url}{path}")]));
        assert_eq!(d, p, "h2 body differs for {path}");
    }
    let up = body_of(&curl(&["--http2-prior-knowledge", "--data-binary", "hello over h2", &format!("{url}/echo")]));
    assert_eq!(up, b"hello over h2");
    let spans = spans(&proxy, 4).await;
    assert!(spans.iter().all(|s| s.version == http::Version::HTTP_2), "{spans:#?}");
    assert_eq!(app.last().version, http::Version::HTTP_2);
    // The app sees the authority the client used, not the proxy's rewrite.
    assert_eq!(app.last().uri.authority().unwrap().as_str(), proxy.inbound.unwrap().to_string());
    // server.address/port come from the request's :authority, here one
    // that differs from the address the connection went to.
    let inbound = proxy.inbound.unwrap();
    let to = format!("h2.test:8443:127.0.0.1:{}", inbound.port());
    let named = curl(&["--http2-prior-knowledge", "--connect-to", &to, "http://h2.test:8443/status/201"]);
    assert!(named.status.success(), "{named:?}");
    let all = support::spans(&proxy, 5).await;
    let span = all.iter().find(|s| s.status == Some(201)).expect("the span of the named request");
    let otlp = serde_json::to_string(&proxy.encoder.span(span)).unwrap();
    assert!(otlp.contains(r#""key":"server.address","value":{"stringValue":"h2.test"}"#), "{otlp}");
    assert!(otlp.contains(r#""key":"server.port","value":{"intValue":"8443"}"#), "{otlp}");
    let err = spans.iter().find(|s| s.status == Some(503)).unwrap();
    assert!(err.is_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_through_http1_and_h2() {
    let app = echo_app().await;
    let (_proxy, url) = inbound_for(&app).await;
    let addr = url.trim_start_matches("http://").to_string();
    let direct = curl(&["--raw", "-H", "TE: trailers", &format!("http://{}/trailers", app.addr)]);
    let proxied = curl(&["--raw", "-H", "TE: trailers", &format!("{url}/trailers")]);
    assert!(String::from_utf8_lossy(&proxied.stdout).contains("x-checksum: abc"), "{proxied:?}");
    assert_eq!(direct.stdout, proxied.stdout);
    // HTTP/1.1 with TE: trailers, read by hyper.
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/trailers")
        .header("host", "app")
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().expect("HTTP/1 trailers")["x-checksum"], "abc");
    // HTTP/2.
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/trailers"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().expect("h2 trailers")["x-checksum"], "abc");
}

async fn websocket_echo_app() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_end_to_end() {
    use tokio_tungstenite::tungstenite::Message;
    let app = websocket_echo_app().await;
    let proxy = proxy_for(app).await;
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.inbound.unwrap())).await.unwrap();
    assert_eq!(resp.status(), 101);
    let binary: Vec<u8> = pattern(100_000);
    ws.send(Message::text("hello websocket")).await.unwrap();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello websocket"));
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().to_vec(), binary);
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    let spans = spans(&proxy, 1).await;
    let s = &spans[0];
    assert_eq!(s.status, Some(101));
    assert!(s.response_body_size > 100_000 && s.request_body_size > 100_000, "tunnel bytes: {s:#?}");
    assert!(s.error.is_none());
}

async fn grpc_app() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    addr
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
    let app = grpc_app().await;
    let proxy = proxy_for(app).await;
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

    let spans = spans(&proxy, 3).await;
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
    assert_eq!(bidi.version, http::Version::HTTP_2);
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("sidetrace-test-{}-{}", std::process::id(), fastrand::u64(..)));
    let f = std::fs::File::create(&path).unwrap();
    (path, f)
}
