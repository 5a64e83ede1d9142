//! The caller's service on every span: a sidecar's outbound side puts its
//! service name in `tracestate` (the `sidetrace` entry), the next sidecar's
//! inbound side names its caller from it (`peer.service` on the SERVER
//! span) and answers with its own name in a header that the calling
//! sidecar strips (`peer.service` on the CLIENT span). Nothing of it
//! reaches a client outside sidetrace, and `--announce-service false`
//! keeps a service's name to itself.

mod support;

use sidetrace::vocab::Direction;
use support::{Client, TestProxy, apps};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_name_the_service_at_the_other_end() {
    let app = apps::echo().await;
    let callee = TestProxy::to(app.addr).service("inventory").start().await;
    let caller = TestProxy::to(support::apps::refusing()).service("orders").start().await;
    let target = format!("http://{}/items/7", callee.inbound.unwrap());
    let r = Client::http1()
        .get(&target)
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header("tracestate", "rojo=00f067aa0ba902b7")
        .via(caller.outbound.unwrap())
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("sidetrace-service"), None, "the calling sidecar strips the callee's header");
    let seen = app.last();
    assert_eq!(seen.headers["tracestate"], "sidetrace=orders,rojo=00f067aa0ba902b7");

    let client_span = caller.wait_for_spans(1).await.remove(0);
    assert_eq!(client_span.direction, Direction::Outbound);
    assert_eq!(client_span.peer_service(), Some("inventory"));
    let server_span = callee.wait_for_spans(1).await.remove(0);
    assert_eq!(server_span.peer_service(), Some("orders"));
    assert_eq!(server_span.trace_id, client_span.trace_id);

    // Exported as the semantic conventions' peer.service.
    let exported = callee.api_spans().await;
    let peer = support::otlp::string_attr(&exported[0], "peer.service");
    assert_eq!(peer, Some("orders"));

    // A client outside sidetrace learns nothing: no tracestate entry, no header.
    let direct = Client::http1().get(&target).send().await;
    assert_eq!(direct.status, 200);
    assert_eq!(direct.header("sidetrace-service"), None);
    let spans = callee.wait_for_spans(2).await;
    assert_eq!(spans[1].peer_service(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_service_false_keeps_the_name_in_the_pod() {
    let app = apps::echo().await;
    let callee = TestProxy::to(app.addr).service("inventory").flags(&["--announce-service", "false"]).start().await;
    let caller = TestProxy::to(support::apps::refusing())
        .service("orders")
        .flags(&["--announce-service", "false"])
        .start()
        .await;
    let target = format!("http://{}/items/7", callee.inbound.unwrap());
    let r = Client::http1().get(&target).via(caller.outbound.unwrap()).send().await;
    assert_eq!(r.status, 200);
    assert!(!app.last().headers.contains_key("tracestate"), "no tracestate entry leaves the caller");
    assert_eq!(caller.wait_for_spans(1).await[0].peer_service(), None);
    assert_eq!(callee.wait_for_spans(1).await[0].peer_service(), None);
}
