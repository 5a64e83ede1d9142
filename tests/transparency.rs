//! The proxy changes nothing a client or an app can see: a table of
//! requests, each sent over HTTP/1.1 and over HTTP/2 (h2c, prior
//! knowledge), once straight to the `echo` app and once through sidetrace,
//! and the two results compared. On the client's side: status, headers,
//! body bytes and trailers; on the app's side: method, path and query,
//! version and headers. Left out of the comparison are the hop-by-hop
//! headers (RFC 9110 §7.6.1), which each connection has its own of,
//! `date`, the trace context sidetrace adds (`traceparent`, and
//! `tracestate`/B3 no case sends), and the address the client connected
//! to (the Host or `:authority`, which names the app or the proxy). A
//! difference names the case and the protocol.

mod support;

use bytes::Bytes;
use http::{HeaderMap, Method};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use support::apps::{self, Seen};
use support::client::{self, Body, Proto, Response};
use support::{Client, TestProxy};

/// What a case sends as its body.
enum Send {
    Nothing,
    Bytes(Vec<u8>),
    /// A body of unknown length (chunked on HTTP/1.1): `n` chunks of
    /// `size` bytes, then the trailers if any.
    Chunks {
        n: usize,
        size: usize,
        trailers: &'static [(&'static str, &'static str)],
    },
}

impl Send {
    fn body(&self) -> Option<Body> {
        match self {
            Send::Nothing => None,
            Send::Bytes(b) => Some(client::full(b.clone())),
            Send::Chunks { n, size, trailers } => {
                let chunk = Bytes::from(apps::pattern(*size));
                let trailers = (!trailers.is_empty()).then(|| {
                    let mut map = HeaderMap::new();
                    for (k, v) in *trailers {
                        map.append(*k, v.parse().unwrap());
                    }
                    map
                });
                Some(client::chunks(vec![chunk; *n], trailers))
            }
        }
    }
}

struct Case {
    name: &'static str,
    method: Method,
    /// Path and query.
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    send: Send,
    /// The answer ends with trailers (checked on the direct run, so the
    /// case tests what it says).
    trailers: bool,
}

fn case(name: &'static str, method: Method, target: &'static str) -> Case {
    Case { name, method, target, headers: &[], send: Send::Nothing, trailers: false }
}

fn cases() -> Vec<Case> {
    let long: &'static str = "x".repeat(6000).leak();
    vec![
        case("GET", Method::GET, "/"),
        case("HEAD", Method::HEAD, "/"),
        case("query string", Method::GET, "/search?q=a%20b&tag=x&tag=y&empty=&flag&plus=1+2"),
        case("percent-encoded path", Method::GET, "/a%2Fb/%E2%9C%93/c;v=1"),
        Case {
            send: Send::Bytes(b"{\"hello\":\"app\"}".to_vec()),
            headers: &[("content-type", "application/json")],
            ..case("POST with a body", Method::POST, "/echo")
        },
        Case { send: Send::Bytes(Vec::new()), ..case("POST, empty body", Method::POST, "/echo") },
        Case {
            send: Send::Chunks { n: 64, size: 4093, trailers: &[] },
            ..case("PUT, chunked upload", Method::PUT, "/echo")
        },
        Case {
            send: Send::Bytes(apps::pattern(3 << 20)),
            headers: &[("content-type", "application/octet-stream")],
            ..case("POST, 3 MiB upload", Method::POST, "/sink")
        },
        case("large download", Method::GET, "/bytes/5000003"),
        Case { headers: &[("te", "trailers")], trailers: true, ..case("response trailers", Method::GET, "/trailers") },
        Case {
            send: Send::Chunks { n: 3, size: 1000, trailers: &[("x-request-checksum", "c0ffee")] },
            headers: &[("te", "trailers"), ("trailer", "x-request-checksum")],
            trailers: true,
            ..case("request trailers", Method::POST, "/echo")
        },
        case("204 No Content", Method::GET, "/status/204"),
        Case { headers: &[("if-none-match", "\"v1\"")], ..case("304 Not Modified", Method::GET, "/status/304") },
        case("404", Method::GET, "/status/404"),
        case("503", Method::GET, "/status/503"),
        case("DELETE, 202", Method::DELETE, "/status/202"),
        case("OPTIONS", Method::OPTIONS, "/"),
        Case {
            send: Send::Bytes(b"[{\"op\":\"add\"}]".to_vec()),
            headers: &[("content-type", "application/json-patch+json")],
            ..case("PATCH", Method::PATCH, "/echo")
        },
        Case {
            headers: &[
                ("x-custom", "one"),
                ("x-repeated", "a"),
                ("x-repeated", "b"),
                ("X-Mixed-Case", "Value With Spaces"),
                ("user-agent", "transparency-test/1"),
                ("accept", "text/html, application/json;q=0.9"),
                ("accept-encoding", "gzip, br"),
                ("cookie", "a=1; b=2"),
                ("authorization", "Bearer not-a-secret"),
                ("x-empty", ""),
            ],
            ..case("request headers", Method::GET, "/")
        },
        Case { headers: Vec::leak(vec![("x-long", long)]), ..case("a long header", Method::GET, "/") },
        case(
            "response headers",
            Method::GET,
            "/respond?x-a=1&x-a=2&set-cookie=a%3D1%3B%20Path%3D%2F&set-cookie=b%3D2&cache-control=no-store\
             &content-type=application%2Fjson&x-empty=",
        ),
    ]
}

/// Headers that belong to one connection (RFC 9110 §7.6.1, and HTTP/2's
/// ban on them, RFC 9113 §8.2.2), or to the moment (`date`).
const PER_CONNECTION: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "date"];
/// The trace context sidetrace adds to what the app receives.
const ADDED_CONTEXT: &[&str] = &["traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"];

/// Header name → its values in order, without `skip`; a value equal to
/// `target` (the address the client connected to) reads `{target}`.
fn view(headers: &HeaderMap, skip: &[&[&str]], target: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if skip.iter().any(|list| list.contains(&name.as_str())) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let value = if value == target { "{target}".to_string() } else { value };
        out.entry(name.to_string()).or_default().push(value);
    }
    out
}

/// One exchange as a transparency test sees it.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    body: Bytes,
    trailers: Option<BTreeMap<String, Vec<String>>>,
    /// What the app saw: method, path and query, version, authority, headers.
    seen: (String, String, String, String, BTreeMap<String, Vec<String>>),
}

impl Outcome {
    fn of(r: Response, seen: Seen, target: &str) -> Outcome {
        let authority = seen.uri.authority().map_or("", |a| a.as_str());
        let authority = if authority == target { "{target}" } else { authority };
        let path = seen.uri.path_and_query().map_or(String::new(), |p| p.to_string());
        Outcome {
            status: r.status.as_u16(),
            headers: view(&r.headers, &[PER_CONNECTION], target),
            body: r.body,
            trailers: r.trailers.as_ref().map(|t| view(t, &[], target)),
            seen: (
                seen.method.to_string(),
                path,
                format!("{:?}", seen.version),
                authority.to_string(),
                view(&seen.headers, &[PER_CONNECTION, ADDED_CONTEXT], target),
            ),
        }
    }
}

/// The case sent to `to` over `proto` on a connection of its own, and
/// what came back and what the app saw; `Err` says how the call failed.
async fn run(case: &Case, proto: Proto, to: SocketAddr, app: &apps::App) -> Result<Outcome, String> {
    let before = app.seen.lock().unwrap().len();
    let mut call = Client::new(proto).request(case.method.clone(), &format!("http://{to}{}", case.target));
    for (k, v) in case.headers {
        call = call.header(k, v);
    }
    if let Some(body) = case.send.body() {
        call = call.body_stream(body);
    }
    let r = call.try_send().await.map_err(|f| f.to_string())?;
    let seen = app.seen.lock().unwrap();
    assert_eq!(seen.len(), before + 1, "{} over {proto} to {to}: the app saw one request", case.name);
    Ok(Outcome::of(r, seen[before].clone(), &to.to_string()))
}

/// What differs between two outcomes, field by field.
fn differences(direct: &Outcome, proxied: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if direct.body != proxied.body {
        let (d, p) = (&direct.body, &proxied.body);
        let at = d.iter().zip(p.iter()).position(|(a, b)| a != b).unwrap_or(d.len().min(p.len()));
        out.push(format!(
            "body: {} bytes direct, {} through sidetrace, first difference at byte {at}",
            d.len(),
            p.len()
        ));
    }
    let mut field = |what: &str, d: String, p: String| {
        if d != p {
            out.push(format!("{what}: direct {d} / through sidetrace {p}"));
        }
    };
    field("status", direct.status.to_string(), proxied.status.to_string());
    let names: BTreeSet<&String> = direct.headers.keys().chain(proxied.headers.keys()).collect();
    for name in names {
        field(
            &format!("response header {name}"),
            format!("{:?}", direct.headers.get(name)),
            format!("{:?}", proxied.headers.get(name)),
        );
    }
    field("trailers", format!("{:?}", direct.trailers), format!("{:?}", proxied.trailers));
    let (ds, ps) = (&direct.seen, &proxied.seen);
    field("the app saw the method", ds.0.clone(), ps.0.clone());
    field("the app saw the path", ds.1.clone(), ps.1.clone());
    field("the app saw the version", ds.2.clone(), ps.2.clone());
    field("the app saw the authority", ds.3.clone(), ps.3.clone());
    let names: BTreeSet<&String> = ds.4.keys().chain(ps.4.keys()).collect();
    for name in names {
        field(
            &format!("the app saw the header {name}"),
            format!("{:?}", ds.4.get(name)),
            format!("{:?}", ps.4.get(name)),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_is_the_same_direct_and_through_sidetrace() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let inbound = proxy.inbound.unwrap();
    let cases = cases();
    let mut report = Vec::new();
    let mut sent = Vec::new();
    for proto in [Proto::Http1, Proto::Http2] {
        for case in &cases {
            let direct = run(case, proto, app.addr, &app).await;
            let proxied = run(case, proto, inbound, &app).await;
            if let Ok(d) = &direct {
                assert_eq!(d.trailers.is_some(), case.trailers, "{} over {proto}, direct: {d:?}", case.name);
            }
            let found = match (&direct, &proxied) {
                (Ok(d), Ok(p)) => differences(d, p),
                (d, p) => vec![format!("direct {:?} / through sidetrace {:?}", d.as_ref().err(), p.as_ref().err())],
            };
            for d in found {
                report.push(format!("{} over {proto}: {d}", case.name));
            }
            let status = proxied.map_or(0, |p| p.status);
            sent.push((case.method.to_string(), case.target.split('?').next().unwrap().to_string(), status));
        }
    }
    assert!(report.is_empty(), "{} differences:\n{}", report.len(), report.join("\n"));

    // And each proxied request left its span, with the status it got.
    let spans = proxy.wait_for_spans(sent.len()).await;
    let mut recorded: Vec<(String, String, u16)> =
        spans.iter().map(|s| (s.method.to_string(), s.uri.path().to_string(), s.status.unwrap_or(0))).collect();
    recorded.sort();
    sent.sort();
    assert_eq!(recorded, sent, "one span per proxied request, with its method, path and status");
}
