//! Everything one direction's connections share on a worker: where
//! requests go, how long they may take, the upstream pool, and the
//! recorder that finished spans go to.

use super::limits::Limits;
use super::pool::Pool;
use crate::dial::Dialer;
use crate::metrics::DirectionMetrics;
use crate::record::Recorder;
use crate::trace::route::RouteTemplates;
use crate::trace::sampling::Sampler;
use crate::vocab::Direction;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    pub http1: hyper::server::conn::http1::Builder,
    pub dialer: Arc<Dialer>,
    pub pool: Arc<Pool>,
    pub recorder: Arc<Recorder>,
    pub routes: Arc<RouteTemplates>,
    pub sampler: Arc<Sampler>,
    pub metrics: Arc<DirectionMetrics>,
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
