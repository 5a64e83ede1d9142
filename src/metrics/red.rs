//! RED metrics of one direction, per the OpenTelemetry HTTP semantic
//! conventions as Prometheus names them: `http.server.request.duration`
//! (inbound) and `http.client.request.duration` (outbound) become
//! `http_{server,client}_request_duration_seconds`, with the body size
//! histograms and the active request gauges beside them.
//!
//! Per finished request (`record`): find its route (templated once when the
//! request arrived) in the bounded table, find the series of
//! (route, method, status, version, scheme[, server]) in a sharded map of
//! ready handles, and bump three lock-free histograms and the duration's
//! native histogram. No allocation after a series' first request, and no
//! lock wider than one of 16 shards.

use super::bounded::{Bounded, Entry, ShardedMap};
use super::expo::Format;
use super::histogram::{Buckets, Histogram};
use super::live::{RouteSnapshot, RouteStats};
use super::native::NativeHistogram;
use super::writer::{BYTES, Family, Kind, SECONDS, Writer};
use crate::trace::semconv::plain_authority;
use crate::trace::{SpanRecord, Upstream};
use crate::vocab::{Direction, ErrorType, METHODS, SCHEMES, method_index, protocol_version, version_index};
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

/// The conventions' advice (0.005 … 10 s) with finer buckets below 5 ms,
/// where a sidecar's and a fast service's requests live.
pub static DURATION: LazyLock<Buckets> = LazyLock::new(|| {
    Buckets::new(
        &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
            2.5, 5.0, 7.5, 10.0,
        ],
        1e9,
    )
});

/// Body sizes: powers of four from 64 B to 64 MiB.
pub static BODY_SIZE: LazyLock<Buckets> = LazyLock::new(|| {
    let bounds: Vec<f64> = (0..11).map(|i| 64.0 * 4f64.powi(i)).collect();
    Buckets::new(&bounds, 1.0)
});

/// The labels that identify a series, as small numbers.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
struct Key {
    route: u32,
    server: u32,
    status: u16,
    error: u8,
    method: u8,
    version: u8,
    https: bool,
}

/// `server.address` and `server.port` of an outbound request.
pub struct Server {
    address: Box<str>,
    port: Box<str>,
}

/// Which of a series' histograms.
type Pick = fn(&Series) -> &Histogram;

struct Series {
    route: Arc<Entry<RouteStats>>,
    server: Option<Arc<Entry<Server>>>,
    status: Option<u16>,
    /// `error.type` of a failed request: a bounded set (the proxy's own
    /// failures, or the status code).
    error_type: Option<Box<str>>,
    method: &'static str,
    version: &'static str,
    scheme: &'static str,
    duration: Histogram,
    /// The same durations in exponential buckets, for protobuf scrapes.
    native: NativeHistogram,
    request_size: Histogram,
    response_size: Histogram,
}

impl Series {
    fn labels<'a>(&'a self, status: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut l = vec![
            ("http_request_method", self.method),
            ("http_response_status_code", status),
            ("http_route", &*self.route.name),
            ("network_protocol_version", self.version),
            ("url_scheme", self.scheme),
        ];
        if let Some(s) = &self.server {
            l.push(("server_address", &s.value.address));
            l.push(("server_port", &s.value.port));
        }
        if let Some(e) = &self.error_type {
            l.push(("error_type", e));
        }
        l
    }
}

pub struct Red {
    direction: Direction,
    routes: Bounded<RouteStats>,
    /// Outbound only: the servers called, bounded like the routes.
    servers: Option<Bounded<Server>>,
    series: ShardedMap<Key, Series>,
    /// By method and scheme: a fixed array, no lookup.
    active: [[AtomicI64; 2]; METHODS.len()],
    /// Requests ever started per cell, so idle cells stay out of the output.
    started: [[AtomicU64; 2]; METHODS.len()],
}

thread_local! {
    static SERVER: RefCell<String> = RefCell::new(String::with_capacity(64));
}

impl Red {
    pub fn new(direction: Direction, max_routes: usize) -> Red {
        Red {
            direction,
            routes: Bounded::new(max_routes, RouteStats::default),
            servers: (direction == Direction::Outbound).then(|| {
                Bounded::new(max_routes, || Server { address: super::bounded::OTHER.into(), port: "".into() })
            }),
            series: ShardedMap::default(),
            active: Default::default(),
            started: Default::default(),
        }
    }

    pub fn request_started(&self, span: &SpanRecord) {
        let (m, s) = (method_index(&span.method), span.scheme_https as usize);
        self.active[m][s].fetch_add(1, Ordering::Relaxed);
        self.started[m][s].fetch_add(1, Ordering::Relaxed);
    }

    /// A finished request, sampled or not.
    pub fn record(&self, span: &SpanRecord) {
        let method = method_index(&span.method);
        self.active[method][span.scheme_https as usize].fetch_sub(1, Ordering::Relaxed);
        // CONNECT has no route (the conventions leave `http.route` unset).
        let route = self.routes.get(span.route.as_deref().unwrap_or(""), RouteStats::default);
        let server = self.servers.as_ref().map(|servers| {
            SERVER.with_borrow_mut(|buf| {
                server_key(span, buf);
                let key: &str = buf;
                servers.get(key, || {
                    let (address, port) = key.split_once(' ').unwrap_or((key, ""));
                    Server { address: address.into(), port: port.into() }
                })
            })
        });
        let key = Key {
            route: route.id,
            server: server.as_ref().map_or(0, |s| s.id),
            status: span.status.unwrap_or(0),
            error: error_index(span.error),
            method: method as u8,
            version: version_index(span.version) as u8,
            https: span.scheme_https,
        };
        let nanos = span.duration_nanos();
        route.value.record(nanos, span.is_error(), span.end);
        let series = self.series.get_or_insert(&key, || {
            let series = Series {
                route,
                server,
                status: span.status,
                error_type: span.error.map(|e| e.as_str().into()),
                method: METHODS[method],
                version: protocol_version(span.version),
                scheme: SCHEMES[span.scheme_https as usize],
                duration: Histogram::with_exemplars(&DURATION),
                native: NativeHistogram::default(),
                request_size: Histogram::new(&BODY_SIZE),
                response_size: Histogram::new(&BODY_SIZE),
            };
            (key, series)
        });
        let exemplar = span.sampled.then_some((span.trace_id, span.span_id, span.end));
        series.duration.observe_with_exemplar(nanos, exemplar);
        series.native.observe(nanos);
        series.request_size.observe(span.request_body_size);
        series.response_size.observe(span.response_body_size);
    }

    pub fn route_overflow(&self) -> u64 {
        self.routes.overflowed()
    }

    pub fn routes_known(&self) -> usize {
        self.routes.known()
    }

    pub fn server_overflow(&self) -> Option<u64> {
        self.servers.as_ref().map(Bounded::overflowed)
    }

    pub fn stats(&self, now: SystemTime, age: f64) -> Vec<RouteSnapshot> {
        self.routes
            .entries()
            .iter()
            .map(|e| e.value.snapshot(self.direction.as_str(), &e.name, now, age))
            .filter(|s| s.count > 0)
            .collect()
    }

    pub fn render(&self, w: &mut Writer) -> fmt::Result {
        let side = match self.direction {
            Direction::Inbound => "server",
            Direction::Outbound => "client",
        };
        let mut series = self.series.values();
        series.sort_by(|a, b| {
            (&a.route.name, a.method, a.status, a.version, a.scheme).cmp(&(
                &b.route.name,
                b.method,
                b.status,
                b.version,
                b.scheme,
            ))
        });
        let statuses: Vec<String> =
            series.iter().map(|s| s.status.map(|c| c.to_string()).unwrap_or_default()).collect();
        let histograms: [(&str, &str, Pick); 3] = [
            ("request_duration_seconds", "Duration of HTTP {side} requests.", |s| &s.duration),
            ("request_body_size_bytes", "Size of HTTP {side} request bodies.", |s| &s.request_size),
            ("response_body_size_bytes", "Size of HTTP {side} response bodies.", |s| &s.response_size),
        ];
        // Only the protobuf format carries native buckets: skip their
        // snapshot for the others.
        let protobuf = w.format() == Format::Protobuf;
        for (suffix, help, get) in histograms {
            if series.is_empty() {
                break;
            }
            let unit = if suffix.ends_with("seconds") { &SECONDS } else { &BYTES };
            let name = format!("http_{side}_{suffix}");
            let mut f = w.family(&name, Kind::Histogram, Some(unit), &help.replace("{side}", side))?;
            let native = protobuf && suffix == "request_duration_seconds";
            for (s, status) in series.iter().zip(&statuses) {
                let n = native.then(|| s.native.snapshot());
                f.histogram(&s.labels(status), &get(s).snapshot(), n.as_ref())?;
            }
        }
        let name = format!("http_{side}_active_requests");
        let mut f = w.family(&name, Kind::Gauge, None, &format!("HTTP {side} requests in flight."))?;
        self.render_active(&mut f)
    }

    fn render_active(&self, f: &mut Family) -> fmt::Result {
        for (m, method) in METHODS.iter().enumerate() {
            for (s, scheme) in SCHEMES.iter().enumerate() {
                if self.started[m][s].load(Ordering::Relaxed) > 0 {
                    let v = self.active[m][s].load(Ordering::Relaxed);
                    f.gauge(&[("http_request_method", method), ("url_scheme", scheme)], v)?;
                }
            }
        }
        Ok(())
    }
}

/// A failed request's `error.type` as a small number for the series key:
/// the status code is in the key already, and gRPC codes share one value.
fn error_index(e: Option<ErrorType>) -> u8 {
    match e {
        None => 0,
        Some(ErrorType::ConnectionRefused) => 1,
        Some(ErrorType::ConnectError) => 2,
        Some(ErrorType::ConnectTimeout) => 3,
        Some(ErrorType::ResponseTimeout) => 4,
        Some(ErrorType::UpstreamReset) => 5,
        Some(ErrorType::UpstreamProtocol) => 6,
        Some(ErrorType::NoDestination) => 7,
        Some(ErrorType::LoopDetected) => 8,
        Some(ErrorType::ClientAborted) => 9,
        Some(ErrorType::RequestBody) => 10,
        Some(ErrorType::Internal) => 11,
        Some(ErrorType::Status(_)) => 12,
        Some(ErrorType::Grpc(_)) => 13,
        Some(ErrorType::OwnPort) => 14,
        Some(ErrorType::DrainTimeout) => 15,
    }
}

/// `server.address`/`server.port` as the span exporter reports them: the
/// authority the client asked for (Host, `:authority`), else the upstream.
/// Writes the table key, `host port`, into `buf`.
fn server_key(span: &SpanRecord, buf: &mut String) {
    buf.clear();
    let default_port = if span.scheme_https { 443 } else { 80 };
    if let Some(a) = span.requested_authority() {
        if let Some((host, port)) = plain_authority(a) {
            let _ = write!(buf, "{host} {}", port.unwrap_or(default_port));
            return;
        }
        if let Ok(auth) = a.parse::<http::uri::Authority>() {
            let host = auth.host().trim_start_matches('[').trim_end_matches(']');
            let _ = write!(buf, "{host} {}", auth.port_u16().unwrap_or(default_port));
            return;
        }
    }
    match &span.upstream {
        Some(Upstream::Addr(a)) => _ = write!(buf, "{} {}", a.ip(), a.port()),
        Some(Upstream::Name(n)) => _ = write!(buf, "{} {}", n.host(), n.port_u16().unwrap_or(default_port)),
        None => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::route::RouteTemplates;
    use crate::trace::{SpanId, TraceId};
    use std::net::SocketAddr;

    pub(crate) fn span(direction: Direction, method: &str, uri: &str, host: Option<&str>) -> SpanRecord {
        let start = SystemTime::now();
        SpanRecord {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_span_id: None,
            sampled: true,
            tail: false,
            probe: false,
            tracestate: None,
            direction,
            start,
            end: start + std::time::Duration::from_millis(3),
            method: method.parse().unwrap(),
            uri: uri.parse().unwrap(),
            route: (method != "CONNECT")
                .then(|| RouteTemplates::default().route(uri.parse::<http::Uri>().unwrap().path())),
            scheme_https: false,
            version: http::Version::HTTP_11,
            host: host.map(|h| h.parse().unwrap()),
            upstream: Some(Upstream::Addr(SocketAddr::from(([10, 0, 0, 1], 8080)))),
            client: SocketAddr::from(([127, 0, 0, 1], 5555)),
            user_agent: None,
            peer_service: None,
            stitching: Default::default(),
            status: Some(200),
            grpc_status: None,
            request_body_size: 10,
            response_body_size: 1000,
            error: None,
            headers: Vec::new(),
        }
    }

    fn render(red: &Arc<Red>) -> String {
        let red = red.clone();
        crate::metrics::writer::text_of(Format::Text, move |w| red.render(w))
    }

    #[test]
    fn labels_of_client_requests() {
        let red = Arc::new(Red::new(Direction::Outbound, 10));
        for (m, uri, host) in [
            ("GET", "http://api.example:9000/users/42", Some("api.example:9000")),
            ("PURGE", "/x", Some("[::1]:81")),
            ("CONNECT", "db.example:5432", None),
            ("DELETE", "/y", None),
        ] {
            let s = span(Direction::Outbound, m, uri, host);
            red.request_started(&s);
            red.record(&s);
        }
        let text = render(&red);
        let has = |needle: &str| assert!(text.contains(needle), "{needle} not in\n{text}");
        has(
            r#"http_client_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/users/{id}",network_protocol_version="1.1",url_scheme="http",server_address="api.example",server_port="9000"} 1"#,
        );
        has(
            r#"http_request_method="_OTHER",http_response_status_code="200",http_route="/x",network_protocol_version="1.1",url_scheme="http",server_address="::1",server_port="81"} 1"#,
        );
        // CONNECT has no route; its target names the server, as in its span.
        has(
            r#"http_client_request_duration_seconds_count{http_request_method="CONNECT",http_response_status_code="200",network_protocol_version="1.1",url_scheme="http",server_address="db.example",server_port="5432"} 1"#,
        );
        // With neither Host nor an authority, the server is the upstream.
        has(
            r#"http_client_request_duration_seconds_count{http_request_method="DELETE",http_response_status_code="200",http_route="/y",network_protocol_version="1.1",url_scheme="http",server_address="10.0.0.1",server_port="8080"} 1"#,
        );
        has(r#"http_client_response_body_size_bytes_sum{http_request_method="GET""#);
        has(r#"http_client_active_requests{http_request_method="GET",url_scheme="http"} 0"#);
    }

    /// The cost of `record` per request, on one hot series from two
    /// threads and across 200 routes: `cargo test --release --lib
    /// record_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn record_cost() {
        let red = std::sync::Arc::new(Red::new(Direction::Inbound, 200));
        const N: u32 = 1_000_000;
        for (name, paths) in [("one route", 1), ("200 routes", 200), ("1000 paths, 200 routes + _other", 1000)] {
            let spans: Vec<SpanRecord> =
                (0..paths).map(|i| span(Direction::Inbound, "GET", &format!("/r/p{i}x/42"), None)).collect();
            let spans = std::sync::Arc::new(spans);
            for threads in [1, 2] {
                let started = std::time::Instant::now();
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let (red, spans) = (red.clone(), spans.clone());
                        std::thread::spawn(move || {
                            for i in 0..N {
                                let s = &spans[i as usize % spans.len()];
                                red.request_started(s);
                                red.record(s);
                            }
                        })
                    })
                    .collect();
                handles.into_iter().for_each(|h| h.join().unwrap());
                let per = started.elapsed().as_nanos() as f64 / N as f64;
                eprintln!("{name}, {threads} thread(s): {per:.0} ns per request (wall time / requests per thread)");
            }
        }
    }

    #[test]
    fn stats_table_lists_routes_per_direction() {
        let m = super::super::Metrics::new("orders", 10);
        for path in ["/a/1", "/a/2", "/b"] {
            m.inbound.record(&span(Direction::Inbound, "GET", path, None));
        }
        let stats = m.stats();
        assert_eq!(stats.routes[0].route, "/a/{id}");
        let a = &stats.routes[0];
        assert_eq!((a.count, a.max_ms, a.mean_ms), (2, 3.0, 3.0));
        assert!((a.p50_ms - 3.0).abs() <= 3.0 / 128.0, "{a:?}");
        let table = stats.table(Direction::Inbound);
        assert!(table.lines().nth(1).unwrap().trim_start().starts_with("/a/{id}"), "{table}");
        assert_eq!(table.lines().count(), 3);
        assert_eq!(stats.table(Direction::Outbound).lines().count(), 1);
    }

    #[test]
    fn server_addresses_are_bounded_too() {
        let red = Arc::new(Red::new(Direction::Outbound, 2));
        for i in 0..5 {
            red.record(&span(Direction::Outbound, "GET", "/", Some(&format!("h{i}.example"))));
        }
        assert_eq!(red.server_overflow(), Some(3));
        let text = render(&red);
        assert!(text.contains(r#"server_address="_other"} 3"#), "{text}");
        assert_eq!(text.matches("http_client_request_duration_seconds_count").count(), 3);
    }
}
