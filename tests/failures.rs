//! Upstream failures become honest answers: refused → 502, slow → 504, a
//! reset mid-body aborts the client's stream. And memory stays flat: a GiB
//! each way streams through, and idle keep-alive clients cost little.

mod support;

use bytes::Bytes;
use sidetrace::vocab::ErrorType;
use std::time::Duration;
use support::client::chunks;
use support::process::{raise_fd_limit, status_kib};
use support::{Client, TestProxy, apps};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_502_with_error_type() {
    let proxy = TestProxy::to(apps::refusing()).start().await;
    let r = Client::http1().get(&format!("{}/x", proxy.inbound_url())).send().await;
    assert_eq!(r.status, 502);
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::ConnectionRefused));
    assert_eq!(span.status, Some(502));
    let otlp = proxy.sidecar().encoder.span(&span);
    let error_type = otlp.attributes.iter().find(|a| a.key == "error.type").expect("error.type set");
    assert_eq!(
        format!("{:?}", error_type.value),
        format!(
            "{:?}",
            Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    "connection_refused".into()
                ))
            })
        )
    );
    assert_eq!(otlp.status.unwrap().code, 2, "status Error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504() {
    let app = apps::slow(Duration::from_secs(3)).await;
    let proxy = TestProxy::to(app).service("timeouts").flags(&["--response-timeout", "200ms"]).start().await;
    let r = Client::http1().get(&format!("{}/slow", proxy.inbound_url())).send().await;
    assert_eq!(r.status, 504);
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::ResponseTimeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_aborts_the_client_stream() {
    let proxy = TestProxy::to(apps::reset().await).start().await;
    let failed = Client::http1().get(&format!("{}/big", proxy.inbound_url())).try_send().await;
    let failure = failed.expect_err("a body cut short is an error to the client, not a short success");
    assert_eq!(failure.status, Some(http::StatusCode::OK), "{failure}");
    assert_eq!(failure.body_len, 1024, "{failure}");
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::UpstreamReset));
    assert_eq!(span.response_body_size, 1024);
}

/// The proxy as its own process, so its memory is its own.
fn spawn_proxy(app: std::net::SocketAddr) -> TestProxy {
    TestProxy::to(app).flags(&["--outbound", "off", "--admin", "off", "--access-log", "off"]).spawn()
}

const GIB: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_flat_memory() {
    let app = apps::echo().await;
    let mut proxy = spawn_proxy(app.addr);
    let pid = proxy.process().id();
    let url = proxy.inbound_url();
    let long = Duration::from_secs(600);
    let down = Client::http1().get(&format!("{url}/bytes/{GIB}")).discard_body().timeout(long).send().await;
    assert_eq!(down.status, 200);
    assert_eq!(down.body_len, GIB);

    // Streamed up with no length (chunked), a MiB at a time.
    let mib = Bytes::from(vec![7u8; 1 << 20]);
    let body = chunks(vec![mib; 1024], None);
    let up = Client::http1().post(&format!("{url}/sink")).body_stream(body).timeout(long).send().await;
    assert_eq!(up.text().trim(), GIB.to_string(), "the app received every byte");
    let peak_kib = status_kib(pid, "VmHWM:");
    eprintln!("proxy peak RSS after 1 GiB each way: {} KiB", peak_kib);
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB is not under 64 MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_cost_little_memory() {
    const CONNS: usize = 1500;
    raise_fd_limit(CONNS as u64);
    let app = apps::echo().await;
    let mut proxy = spawn_proxy(app.addr);
    let pid = proxy.process().id();
    let client = Client::http1();
    assert_eq!(client.get(&format!("{}/", proxy.inbound_url())).send().await.status, 200);
    let before = status_kib(pid, "VmRSS:");
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let mut conn = client.connect(proxy.inbound.unwrap()).await;
        assert_eq!(conn.get("/").send().await.text(), "hello from the app\n");
        conns.push(conn);
    }
    let held = status_kib(pid, "VmRSS:");
    let per_conn = (held.saturating_sub(before)) as f64 * 1024.0 / CONNS as f64;
    eprintln!("{CONNS} idle keep-alive connections: RSS {before} -> {held} KiB, {per_conn:.0} B each");
    // hyper alone would hold ~20 KiB of buffers per connection.
    assert!(per_conn < 10.0 * 1024.0, "{per_conn:.0} bytes per idle connection");
    assert!(conns.iter().all(|c| c.is_open()), "every connection was still open while measured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_would_loop_are_refused_with_508() {
    // HTTP_PROXY-style request naming the outbound listener itself.
    let proxy = TestProxy::to(apps::refusing()).start().await;
    let outbound = proxy.outbound.unwrap();
    let r = Client::http1().get(&format!("http://{outbound}/x")).via(outbound).send().await;
    assert_eq!(r.status, 508);
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    assert_eq!(span.error, Some(ErrorType::LoopDetected));

    // An app address that is the inbound listener under another name.
    let port = apps::refusing().port();
    let proxy = TestProxy::to(([127, 0, 0, 1], port).into())
        .service("loop")
        .config(move |c| c.inbound = Some(([0, 0, 0, 0], port).into()))
        .start()
        .await;
    let r = Client::http1().get(&format!("http://127.0.0.1:{port}/x")).send().await;
    assert_eq!(r.status, 508);
    assert_eq!(proxy.wait_for_spans(1).await.len(), 1, "one request, one span: it did not go round");
}
