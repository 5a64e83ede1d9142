//! Request metrics for Prometheus (`GET /metrics`) and live statistics
//! for people (`GET /api/stats`).
//!
//! - `bounded`: label tables capped by `--max-routes`, overflow to `_other`;
//! - `red`: per-direction HTTP RED histograms and active request gauges;
//! - `live`: per-route percentiles and requests per second;
//! - `net`: proxy overhead, connect time, TCP RTT, detection, opaque TCP;
//! - `refusals`: requests and connections refused before forwarding, and
//!   HTTP/2 connections closed with an error GOAWAY;
//! - `histogram`, `native`: the lock-free classic and native histograms;
//! - `expo`, `writer`: exposition through `prometheus-client` (OpenMetrics
//!   and 0.0.4 text, protobuf with native histograms), at scrape time;
//! - `process`, `export_health`: `process_*` and the export pipeline.
//!
//! The request path reaches this module through `record::Recorder` (one
//! `DirectionMetrics` per direction): `request_started` when a request
//! arrives and `record` when its span finishes, sampled or not. Spans are
//! filtered by sampling later, in `export::SpanSink`; metrics count all.
//! The route was templated once when the request arrived (`trace::route`).

pub mod bounded;
pub mod expo;
pub mod export_health;
pub mod graph;
pub mod histogram;
pub mod live;
pub mod native;
pub mod net;
pub mod process;
pub mod red;
pub mod refusals;
pub mod tcp_info;
pub mod writer;

use crate::trace::SpanRecord;
use crate::vocab::Direction;
use expo::Format;
use export_health::ExportStats;
use live::RouteSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use writer::{Kind, Writer};

/// Every metric of one sidecar.
pub struct Metrics {
    pub inbound: Arc<DirectionMetrics>,
    pub outbound: Arc<DirectionMetrics>,
    pub graph: Arc<graph::Graph>,
    started: Instant,
}

/// One direction's metrics: what `http::Shared` holds.
pub struct DirectionMetrics {
    pub direction: Direction,
    pub red: red::Red,
    pub net: net::Net,
    pub refusals: refusals::Refusals,
    /// Shared by both directions: an edge is seen from either end.
    pub graph: Arc<graph::Graph>,
}

impl DirectionMetrics {
    pub fn request_started(&self, span: &SpanRecord) {
        self.red.request_started(span);
    }

    pub fn record(&self, span: &SpanRecord) {
        self.red.record(span);
        self.graph.record(span);
    }
}

/// `GET /api/stats`.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub uptime_seconds: f64,
    /// Per direction and route, busiest first.
    pub routes: Vec<RouteSnapshot>,
}

impl Stats {
    /// The routes of one direction as a text table, for a terminal (the
    /// demo's summary prints this).
    pub fn table(&self, direction: Direction) -> String {
        use std::fmt::Write;
        let rows: Vec<&RouteSnapshot> = self.routes.iter().filter(|r| r.direction == direction.as_str()).collect();
        let w = rows.iter().map(|r| r.route.len()).max().unwrap_or(0).max("route".len());
        let mut out = format!(
            "  {:<w$} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "route", "count", "errors", "TPS", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "  {:<w$} {:>7} {:>7} {:>7.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                r.route, r.count, r.errors, r.tps, r.mean_ms, r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
            );
        }
        out
    }
}

impl Metrics {
    /// `max_routes` bounds each direction's distinct routes, outbound
    /// server addresses, TLS server names and service-graph peers;
    /// `service` is this sidecar's `service.name`.
    pub fn new(service: &str, max_routes: usize) -> Metrics {
        let graph = Arc::new(graph::Graph::new(service, max_routes));
        let direction = |direction| {
            Arc::new(DirectionMetrics {
                direction,
                red: red::Red::new(direction, max_routes),
                net: net::Net::new(max_routes),
                refusals: refusals::Refusals::default(),
                graph: graph.clone(),
            })
        };
        Metrics {
            inbound: direction(Direction::Inbound),
            outbound: direction(Direction::Outbound),
            graph,
            started: Instant::now(),
        }
    }

    pub fn direction(&self, d: Direction) -> Arc<DirectionMetrics> {
        match d {
            Direction::Inbound => self.inbound.clone(),
            Direction::Outbound => self.outbound.clone(),
        }
    }

    fn both(&self) -> [&DirectionMetrics; 2] {
        [&self.inbound, &self.outbound]
    }

    pub fn stats(&self) -> Stats {
        let (now, age) = (SystemTime::now(), self.started.elapsed().as_secs_f64());
        let mut routes: Vec<RouteSnapshot> = self.both().iter().flat_map(|d| d.red.stats(now, age)).collect();
        routes
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (a.direction, &a.route).cmp(&(b.direction, &b.route))));
        Stats { uptime_seconds: age, routes }
    }

    /// The exposition, in the format the scraper asked for.
    pub fn render(self: &Arc<Self>, format: Format, export: &Arc<ExportStats>) -> Result<Vec<u8>, expo::Error> {
        expo::encode(format, Exposition { metrics: self.clone(), export: export.clone(), format })
    }

    fn write_families(&self, w: &mut Writer, export: &ExportStats) -> fmt::Result {
        for d in self.both() {
            d.red.render(w)?;
        }
        self.graph.render(w)?;
        let dirs = self.both().map(|d| (d.direction.as_str(), &d.net));
        net::render(w, &dirs)?;
        refusals::render(w, &self.both().map(|d| (d.direction.as_str(), &d.refusals)))?;
        let mut f = w.family(
            "sidetrace_route_overflow",
            Kind::Counter,
            None,
            "Requests recorded under the http_route _other because --max-routes distinct routes were already known.",
        )?;
        for d in self.both() {
            f.counter(&[("direction", d.direction.as_str())], d.red.route_overflow())?;
        }
        let mut f = w.family(
            "sidetrace_label_overflow",
            Kind::Counter,
            None,
            "Observations recorded under _other because the label's table was full (server_address, tls_server_name).",
        )?;
        for d in self.both() {
            if let Some(n) = d.red.server_overflow() {
                f.counter(&[("direction", d.direction.as_str()), ("label", "server_address")], n)?;
            }
            let n = net::tls_name_overflow(&d.net);
            f.counter(&[("direction", d.direction.as_str()), ("label", "tls_server_name")], n)?;
        }
        for d in self.both() {
            let n = self.graph.overflowed(d.direction);
            f.counter(&[("direction", d.direction.as_str()), ("label", "service_graph_peer")], n)?;
        }
        let mut f = w.family(
            "sidetrace_routes",
            Kind::Gauge,
            None,
            "Distinct http_route values tracked, at most --max-routes.",
        )?;
        for d in self.both() {
            f.gauge(&[("direction", d.direction.as_str())], d.red.routes_known() as u64)?;
        }
        export_health::render(w, export)?;
        process::render(w)?;
        let mut f = w.family("sidetrace_build", Kind::Info, None, "sidetrace's version.")?;
        f.info(&[("version", env!("CARGO_PKG_VERSION"))])
    }
}

/// One scrape's view of the metrics, for `prometheus-client`'s registry.
struct Exposition {
    metrics: Arc<Metrics>,
    export: Arc<ExportStats>,
    format: Format,
}

impl fmt::Debug for Exposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exposition").field("format", &self.format).finish_non_exhaustive()
    }
}

impl Collector for Exposition {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        self.metrics.write_families(&mut Writer::new(encoder, self.format), &self.export)
    }
}
