//! Whole traces through apps that forward no trace headers: the app's
//! sidecar joins an outbound call to the one inbound request in flight
//! (`--stitch single-flight`, the default), links it to every candidate
//! when several are in flight, and keeps a long-lived request from
//! adopting calls past its bounds.
//!
//! The app (`apps::relay`) has no tracing code: it calls a downstream
//! through its sidecar's outbound listener and copies no header.

mod support;

use sidetrace::trace::{SpanRecord, Stitching};
use sidetrace::vocab::Direction;
use std::collections::HashMap;
use support::{Client, Proto, TestProxy, apps};

/// client → [A] → relay app → [A outbound] → [B] → store. The client
/// speaks HTTP/1.1 or h2c to A; the app calls out as `HTTP_PROXY`
/// clients do, over HTTP/1.1 (an HTTP/2 call reaches the outbound side
/// only by redirection, which needs a network namespace:
/// tests/transparent_outbound.rs).
struct Chain {
    a: TestProxy,
    b: TestProxy,
    _store: apps::App,
}

async fn chain(concurrency: usize, flags: &[&str]) -> Chain {
    let store = apps::echo().await;
    let b = TestProxy::to(store.addr).service("store").start().await;
    let relay = apps::relay(b.inbound.unwrap(), concurrency).await;
    let a = TestProxy::to(relay.addr).service("consumer").flags(flags).start().await;
    relay.through(a.outbound.unwrap());
    Chain { a, b, _store: store }
}

fn by_path(spans: &[SpanRecord], direction: Direction) -> HashMap<String, SpanRecord> {
    spans.iter().filter(|s| s.direction == direction).map(|s| (s.uri.path().to_string(), s.clone())).collect()
}

async fn one_at_a_time_is_whole(proto: Proto) {
    const N: usize = 25;
    let c = chain(1, &[]).await;
    for i in 0..N {
        let r = Client::new(proto).get(&format!("http://{}/once/{i}", c.a.inbound.unwrap())).send().await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let a = c.a.wait_for_spans(2 * N).await;
    let b = c.b.wait_for_spans(N).await;
    let (servers, clients) = (by_path(&a, Direction::Inbound), by_path(&a, Direction::Outbound));
    let downstream = by_path(&b, Direction::Inbound);
    for i in 0..N {
        let server = &servers[&format!("/once/{i}")];
        let client = &clients[&format!("/down/{i}")];
        let down = &downstream[&format!("/down/{i}")];
        let version = if proto == Proto::Http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
        assert_eq!(server.version, version);
        assert_eq!(client.stitching, Stitching::Joined, "call {i}");
        assert_eq!((client.trace_id, client.parent_span_id), (server.trace_id, Some(server.span_id)), "call {i}");
        assert_eq!((down.trace_id, down.parent_span_id), (server.trace_id, Some(client.span_id)), "call {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_serving_one_request_at_a_time_makes_whole_traces_over_http1() {
    one_at_a_time_is_whole(Proto::Http1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_serving_one_request_at_a_time_makes_whole_traces_over_http2() {
    one_at_a_time_is_whole(Proto::Http2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stitch_off_leaves_each_call_its_own_trace() {
    let c = chain(1, &["--stitch", "off"]).await;
    Client::http1().get(&format!("http://{}/once/1", c.a.inbound.unwrap())).send().await;
    let a = c.a.wait_for_spans(2).await;
    let (server, client) = (&by_path(&a, Direction::Inbound)["/once/1"], &by_path(&a, Direction::Outbound)["/down/1"]);
    assert_eq!(client.stitching, Stitching::None);
    assert_ne!(client.trace_id, server.trace_id);
    assert_eq!(client.parent_span_id, None);
}

/// Eight clients at once against an app serving eight at once: a call is
/// joined only when its request was alone in flight, so never to the
/// wrong parent; every other call links to the requests in flight, its
/// own among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrency_no_call_gets_the_wrong_parent() {
    const CLIENTS: usize = 8;
    const EACH: usize = 12;
    let c = chain(CLIENTS, &[]).await;
    let inbound = c.a.inbound.unwrap();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|t| {
            tokio::spawn(async move {
                for k in 0..EACH {
                    let delay = (t * 7 + k * 3) % 6;
                    let url = format!("http://{inbound}/once/{t}-{k}?delay_ms={delay}");
                    assert_eq!(Client::http1().get(&url).send().await.status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let a = c.a.wait_for_spans(2 * CLIENTS * EACH).await;
    let (servers, clients) = (by_path(&a, Direction::Inbound), by_path(&a, Direction::Outbound));
    let (mut joined, mut linked) = (0, 0);
    for (path, server) in &servers {
        let id = path.strip_prefix("/once/").unwrap();
        let client = &clients[&format!("/down/{id}")];
        match &client.stitching {
            Stitching::Joined => {
                joined += 1;
                assert_eq!(client.parent_span_id, Some(server.span_id), "{id} joined to another request");
                assert_eq!(client.trace_id, server.trace_id);
            }
            Stitching::Linked { links, candidates } => {
                linked += 1;
                assert!(*candidates as usize <= CLIENTS, "{candidates} candidates with {CLIENTS} clients");
                assert_eq!(links.len(), *candidates as usize, "{id}: every candidate linked");
                assert!(
                    links.iter().any(|l| (l.trace_id, l.span_id) == (server.trace_id, server.span_id)),
                    "{id}: its own request is not among the links"
                );
                assert_eq!(client.parent_span_id, None, "{id}: a linked call starts its own trace");
                assert_ne!(client.trace_id, server.trace_id);
            }
            Stitching::None => panic!("{id}: a call made while its request was in flight was not stitched"),
        }
    }
    assert_eq!(joined + linked, CLIENTS * EACH);
    assert!(linked > 0, "eight clients at once never overlapped ({joined} joined)");
}

/// A request that keeps calling out adopts at most `--stitch-max-children`
/// calls; the rest start their own traces, linked to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_adopts_at_most_max_children_calls() {
    let c = chain(1, &["--stitch-max-children", "5"]).await;
    let r = Client::http1().get(&format!("http://{}/hold/h?calls=12&every_ms=20", c.a.inbound.unwrap())).send().await;
    assert_eq!(r.status, 200);
    let a = c.a.wait_for_spans(13).await;
    let server = &by_path(&a, Direction::Inbound)["/hold/h"];
    let clients = by_path(&a, Direction::Outbound);
    for k in 0..12 {
        let client = &clients[&format!("/down/h-{k}")];
        if k < 5 {
            assert_eq!(client.stitching, Stitching::Joined, "call {k}");
            assert_eq!(client.parent_span_id, Some(server.span_id));
        } else {
            let Stitching::Linked { links, candidates } = &client.stitching else {
                panic!("call {k} past the bound: {:?}", client.stitching)
            };
            assert_eq!((*candidates, links.len()), (1, 1));
            assert_eq!(links[0].span_id, server.span_id);
            assert_ne!(client.trace_id, server.trace_id);
        }
    }
    assert_eq!(a.iter().filter(|s| s.trace_id == server.trace_id).count(), 6, "the request and its 5 children");

    // As exported (OTLP/JSON): the joined calls say so, the others carry the link.
    let exported = c.a.api_spans().await;
    let path_of = |s: &serde_json::Value| support::otlp::string_attr(s, "url.path").unwrap_or_default().to_string();
    let first = exported.iter().find(|s| path_of(s) == "/down/h-0").unwrap();
    assert_eq!(support::otlp::attr(first, "sidetrace.stitched"), Some(&serde_json::json!({"boolValue": true})));
    assert!(first.get("links").is_none_or(|l| l.as_array().unwrap().is_empty()));
    let last = exported.iter().find(|s| path_of(s) == "/down/h-11").unwrap();
    assert_eq!(support::otlp::int_attr(last, "sidetrace.stitch.candidates"), Some(1));
    let links = last["links"].as_array().expect("links on the call past the bound");
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["spanId"].as_str().unwrap(), hex(&server.span_id.0));
    assert_eq!(links[0]["traceId"].as_str().unwrap(), hex(&server.trace_id.0));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A request older than `--stitch-max-age` adopts nothing more, and a
/// streaming response (its head has left) adopts nothing at all: a poller
/// behind a long-lived request never grows one trace without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_streaming_requests_adopt_nothing() {
    let max_age = std::time::Duration::from_millis(300);
    let c = chain(2, &["--stitch-max-age", "300ms"]).await;
    let inbound = c.a.inbound.unwrap();
    let r = Client::http1().get(&format!("http://{inbound}/hold/old?calls=10&every_ms=100")).send().await;
    assert_eq!(r.status, 200);
    let a = c.a.wait_for_spans(11).await;
    let server = &by_path(&a, Direction::Inbound)["/hold/old"];
    let clients: Vec<_> = a.iter().filter(|s| s.direction == Direction::Outbound).collect();
    let mut linked = 0;
    for client in &clients {
        let age = client.start.duration_since(server.start).unwrap();
        match &client.stitching {
            Stitching::Joined => assert!(age < max_age + std::time::Duration::from_millis(50), "joined at {age:?}"),
            Stitching::Linked { .. } => linked += 1,
            Stitching::None => panic!("a call made while its request was in flight was not stitched"),
        }
    }
    assert!(linked > 0, "a request held for a second still adopted every call");

    // The streaming answer's head leaves at once: its calls start traces of their own.
    let r = Client::http1().get(&format!("http://{inbound}/stream/s?calls=5&every_ms=20")).send().await;
    assert_eq!(r.text().matches("tick").count(), 5);
    let a = c.a.wait_for_spans(11 + 6).await;
    let server = &by_path(&a, Direction::Inbound)["/stream/s"];
    for k in 0..5 {
        let client = &by_path(&a, Direction::Outbound)[&format!("/down/s-{k}")];
        assert_eq!(client.stitching, Stitching::None, "call {k} of a streaming response");
        assert_ne!(client.trace_id, server.trace_id);
    }
}
