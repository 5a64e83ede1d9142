//! Everything one direction's connections share on a worker: where
//! requests go, how long they may take, the upstream pool, and the
//! recorder that finished spans go to.

use super::limits::Limits;
use super::pool::Pool;
use crate::dial::Dialer;
use crate::metrics::DirectionMetrics;
use crate::record::Recorder;
use crate::record::stitch::Registry;
use crate::trace::capture::HeaderCapture;
use crate::trace::route::RouteTemplates;
use crate::trace::sampling::Sampler;
use crate::trace::tracestate;
use crate::vocab::Direction;
use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// This service's name, ready to send: outbound as the `sidetrace` entry
/// of `tracestate`, inbound in the `sidetrace-service` response header.
#[derive(Clone, Debug)]
pub struct Announce {
    pub tracestate_entry: HeaderValue,
    pub service: HeaderValue,
}

impl Announce {
    pub fn new(service: &str) -> Option<Announce> {
        let value = tracestate::as_value(service);
        Some(Announce {
            tracestate_entry: HeaderValue::from_str(&format!("{}={value}", tracestate::KEY)).ok()?,
            service: HeaderValue::from_str(&value).ok()?,
        })
    }
}

/// The response header an inbound sidecar answers another sidetrace's
/// request with: its own service name. The calling side strips it before
/// its app sees the response.
pub static SERVICE_HEADER: http::HeaderName = http::HeaderName::from_static("sidetrace-service");

pub struct Shared {
    pub direction: Direction,
    pub app: SocketAddr,
    pub opaque_ports: Vec<u16>,
    pub detect_timeout: Duration,
    pub response_timeout: Option<Duration>,
    /// How long an HTTP/1 client connection may wait for its next request.
    pub idle_timeout: Option<Duration>,
    /// Record the kubelet's probes like any request.
    pub trace_probes: bool,
    /// This service's name as peers learn it, unless `--announce-service false`.
    pub announce: Option<Announce>,
    /// The app's inbound requests in flight, shared by both directions,
    /// unless `--stitch off`.
    pub stitch: Option<Arc<Registry>>,
    pub http1: hyper::server::conn::http1::Builder,
    pub dialer: Arc<Dialer>,
    pub pool: Arc<Pool>,
    pub recorder: Arc<Recorder>,
    pub routes: Arc<RouteTemplates>,
    pub sampler: Arc<Sampler>,
    pub metrics: Arc<DirectionMetrics>,
    /// Headers recorded on spans, as the operator listed them.
    pub capture_request: Arc<HeaderCapture>,
    pub capture_response: Arc<HeaderCapture>,
    /// The listener's limits, shared with the other workers.
    pub limits: Arc<Limits>,
}

impl Shared {
    /// Inbound traffic goes to the app; a redirected connection keeps its
    /// original port (the app may listen on several).
    pub fn inbound_target(&self, original_dst: Option<SocketAddr>) -> SocketAddr {
        original_dst.map_or(self.app, |o| SocketAddr::new(self.app.ip(), o.port()))
    }
}
