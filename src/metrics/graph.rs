//! Service-graph metrics in the names and labels of the OpenTelemetry
//! Collector's `servicegraph` connector and Tempo's metrics-generator, so
//! Grafana's service-graph view reads a sidetrace Prometheus as it reads
//! theirs:
//!
//! - `traces_service_graph_request_total{client, server, connection_type}`
//! - `traces_service_graph_request_failed_total{…}`
//! - `traces_service_graph_request_server_seconds{…}` (histogram)
//! - `traces_service_graph_request_client_seconds{…}` (histogram)
//!
//! Each edge is counted once across the mesh. The server's sidecar counts
//! a call (and its server-side duration); the caller's sidecar adds only
//! the client-side duration — unless the server has no sidecar (it did not
//! answer with its name), and then the caller counts the edge itself, to
//! the server's address, as a `virtual_node`. A request from a caller
//! without a sidecar comes from the virtual node `user`, as Tempo names
//! the client of a root span.
//!
//! Peers are bounded like routes (`--max-routes` per direction); overflow
//! goes to `_other` and is counted in `sidetrace_label_overflow`.

use super::bounded::Bounded;
use super::histogram::Histogram;
use super::red::DURATION;
use super::writer::{Kind, SECONDS, Writer};
use crate::trace::SpanRecord;
use crate::trace::semconv::plain_authority;
use crate::trace::span::Upstream;
use crate::vocab::Direction;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tempo's name for the client of a request that came from no sidecar.
pub const USER: &str = "user";
const VIRTUAL_NODE: &str = "virtual_node";

/// One edge between this service and a peer, as this side sees it.
pub struct Edge {
    requests: AtomicU64,
    failed: AtomicU64,
    server_seconds: Histogram,
    client_seconds: Histogram,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            server_seconds: Histogram::new(&DURATION),
            client_seconds: Histogram::new(&DURATION),
        }
    }
}

impl Edge {
    fn count(&self, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Graph {
    service: Box<str>,
    /// Inbound: callers with a sidecar, by the name they sent.
    callers: Bounded<Edge>,
    /// Inbound from no sidecar (`user`), outbound to no sidecar (the
    /// server's address): edges with one virtual end.
    virtual_callers: Edge,
    /// Outbound: callees that answered with their name.
    callees: Bounded<Edge>,
    virtual_callees: Bounded<Edge>,
}

impl Graph {
    pub fn new(service: &str, max_peers: usize) -> Graph {
        Graph {
            service: service.into(),
            callers: Bounded::new(max_peers, Edge::default),
            virtual_callers: Edge::default(),
            callees: Bounded::new(max_peers, Edge::default),
            virtual_callees: Bounded::new(max_peers, Edge::default),
        }
    }

    /// A finished request: no allocation once its peer is known.
    pub fn record(&self, span: &SpanRecord) {
        let nanos = span.duration_nanos();
        let failed = span.is_error();
        match (span.direction, span.peer_service()) {
            (Direction::Inbound, Some(caller)) => {
                let e = self.callers.get(caller, Edge::default);
                e.value.count(failed);
                e.value.server_seconds.observe(nanos);
            }
            (Direction::Inbound, None) => {
                self.virtual_callers.count(failed);
                self.virtual_callers.server_seconds.observe(nanos);
            }
            (Direction::Outbound, Some(callee)) => {
                self.callees.get(callee, Edge::default).value.client_seconds.observe(nanos);
            }
            (Direction::Outbound, None) => with_server_host(span, |server| {
                let e = self.virtual_callees.get(server, Edge::default);
                e.value.count(failed);
                e.value.client_seconds.observe(nanos);
            }),
        }
    }

    /// Peers that went to `_other`, for `sidetrace_label_overflow`.
    pub fn overflowed(&self, direction: Direction) -> u64 {
        match direction {
            Direction::Inbound => self.callers.overflowed(),
            Direction::Outbound => self.callees.overflowed() + self.virtual_callees.overflowed(),
        }
    }

    pub fn render(&self, w: &mut Writer) -> fmt::Result {
        let me: &str = &self.service;
        // (client, server, connection_type, edge); this side counts requests
        // of every edge but the ones whose server has a sidecar of its own.
        let mut edges: Vec<(&str, &str, &str, &Edge, bool)> = Vec::new();
        let callers = self.callers.entries();
        let callees = self.callees.entries();
        let virtual_callees = self.virtual_callees.entries();
        let live = |e: &Edge| e.requests.load(Ordering::Relaxed) > 0 || e.client_seconds.snapshot().count() > 0;
        for e in &callers {
            edges.push((&e.name, me, "", &e.value, true));
        }
        edges.push((USER, me, VIRTUAL_NODE, &self.virtual_callers, true));
        for e in &callees {
            edges.push((me, &e.name, "", &e.value, false));
        }
        for e in &virtual_callees {
            edges.push((me, &e.name, VIRTUAL_NODE, &e.value, true));
        }
        edges.retain(|(.., e, _)| live(e));

        let mut f = w.family(
            "traces_service_graph_request",
            Kind::Counter,
            None,
            "Requests between two services, counted once: by the server's sidecar, or by the client's when the server has none.",
        )?;
        for (c, s, t, e, counts) in &edges {
            if *counts {
                f.counter(&[("client", c), ("server", s), ("connection_type", t)], e.requests.load(Ordering::Relaxed))?;
            }
        }
        let mut f = w.family(
            "traces_service_graph_request_failed",
            Kind::Counter,
            None,
            "Failed requests between two services (server: 5xx or no answer; a client counting for a server without a sidecar: also 4xx).",
        )?;
        for (c, s, t, e, counts) in &edges {
            if *counts {
                f.counter(&[("client", c), ("server", s), ("connection_type", t)], e.failed.load(Ordering::Relaxed))?;
            }
        }
        for (name, help, server_side) in [
            (
                "traces_service_graph_request_server_seconds",
                "Duration of requests between two services, as the server's sidecar measured it.",
                true,
            ),
            (
                "traces_service_graph_request_client_seconds",
                "Duration of requests between two services, as the client's sidecar measured it.",
                false,
            ),
        ] {
            let mut f = w.family(name, Kind::Histogram, Some(&SECONDS), help)?;
            for (c, s, t, e, _) in &edges {
                let h = if server_side { &e.server_seconds } else { &e.client_seconds };
                let snap = h.snapshot();
                if snap.count() > 0 {
                    f.histogram(&[("client", c), ("server", s), ("connection_type", t)], &snap, None)?;
                }
            }
        }
        Ok(())
    }
}

thread_local! {
    static ADDRESS: RefCell<String> = RefCell::new(String::with_capacity(48));
}

/// The host a call without a sidecar at the other end went to: the
/// authority asked for (Host, `:authority`), else the upstream's address.
fn with_server_host(span: &SpanRecord, f: impl FnOnce(&str)) {
    if let Some((host, _)) = span.requested_authority().and_then(plain_authority) {
        return f(host);
    }
    match &span.upstream {
        Some(Upstream::Name(n)) => f(n.host()),
        Some(Upstream::Addr(a)) => ADDRESS.with_borrow_mut(|buf| {
            use std::fmt::Write;
            buf.clear();
            let _ = write!(buf, "{}", a.ip());
            f(buf)
        }),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::expo::Format;
    use crate::metrics::red::tests::span;
    use crate::metrics::writer::text_of;
    use std::sync::Arc;

    fn render(g: &Arc<Graph>) -> String {
        let g = g.clone();
        text_of(Format::Text, move |w| g.render(w))
    }

    #[test]
    fn each_end_counts_what_the_other_cannot() {
        let g = Arc::new(Graph::new("orders", 10));
        // A caller with a sidecar: the edge is counted here, at the server.
        let mut from_cart = span(Direction::Inbound, "GET", "/orders/1", Some("orders"));
        from_cart.tracestate = Some("sidetrace=cart,rojo=1".parse().unwrap());
        g.record(&from_cart);
        // No sidecar behind the caller: the virtual `user`.
        let mut failed = span(Direction::Inbound, "GET", "/orders/2", Some("orders"));
        failed.status = Some(503);
        g.record(&failed);
        // A callee with a sidecar counts the edge itself: only the client's duration here.
        let mut to_stock = span(Direction::Outbound, "GET", "/stock", Some("stock:8080"));
        to_stock.peer_service = Some("stock".parse().unwrap());
        g.record(&to_stock);
        // A callee without one: counted here, to its address, as a virtual node.
        let mut to_bank = span(Direction::Outbound, "POST", "/pay", Some("bank.example"));
        to_bank.status = Some(404);
        g.record(&to_bank);
        let text = render(&g);
        for line in [
            r#"traces_service_graph_request_total{client="cart",server="orders"} 1"#,
            r#"traces_service_graph_request_total{client="user",server="orders",connection_type="virtual_node"} 1"#,
            r#"traces_service_graph_request_total{client="orders",server="bank.example",connection_type="virtual_node"} 1"#,
            r#"traces_service_graph_request_failed_total{client="user",server="orders",connection_type="virtual_node"} 1"#,
            r#"traces_service_graph_request_failed_total{client="orders",server="bank.example",connection_type="virtual_node"} 1"#,
            r#"traces_service_graph_request_client_seconds_count{client="orders",server="stock"} 1"#,
            r#"traces_service_graph_request_server_seconds_count{client="cart",server="orders"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"traces_service_graph_request_total{client="orders",server="stock""#), "{text}");
    }

    #[test]
    fn peers_are_bounded() {
        let g = Arc::new(Graph::new("orders", 2));
        for caller in ["a", "b", "c", "d"] {
            let mut s = span(Direction::Inbound, "GET", "/", None);
            s.tracestate = Some(format!("sidetrace={caller}").parse().unwrap());
            g.record(&s);
        }
        assert_eq!(g.overflowed(Direction::Inbound), 2);
        assert!(render(&g).contains(r#"traces_service_graph_request_total{client="_other",server="orders"} 2"#));
    }
}
