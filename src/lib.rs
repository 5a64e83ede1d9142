//! sidetrace: a transparent HTTP sidecar proxy that records a span for
//! every request it carries.
//!
//! The path of a request, module by module:
//!
//! ```text
//! client ─► listen (accept, SO_ORIGINAL_DST, detect) ─► http (hyper server conn)
//!        ─► http::proxy (context extract, span start, headers, inject)
//!        ─► http::pool (upstream HTTP/1 keep-alive or HTTP/2) ─► app / upstream
//! response ◄─ http::body (stream, count, trailers) ─► http::record (finish once)
//!        ─► metrics (RED, live stats) ─► export::SpanSink (try_send) ─► export task
//!        ─► export::ring ─► admin (/api/traces; /metrics and /api/stats read `metrics`)
//! ```
//!
//! Non-HTTP connections leave at `listen::opaque`. `config` turns flags and
//! environment into one `Config`; `Sidecar::start` wires the rest: the
//! request path runs on `workers` (one single-threaded runtime per core,
//! each with its own listeners and pools), while the export pipeline and
//! the admin server run on the caller's runtime and meet the workers only
//! through atomics and the span queue, which they poll.

pub mod access_log;
pub mod admin;
pub mod config;
pub mod drain;
pub mod export;
pub mod http;
pub mod k8s;
pub mod listen;
pub mod metrics;
pub mod trace;
pub mod workers;

use config::Config;
use export::otlp::Encoder;
use export::ring::Ring;
use export::{ExportStats, Pipeline};
use listen::Direction;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running sidecar: its bound addresses, its spans, and its shutdown.
pub struct Sidecar {
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub ring: Arc<Ring>,
    pub stats: Arc<ExportStats>,
    pub encoder: Arc<Encoder>,
    pub metrics: Arc<metrics::Metrics>,
    sink: export::SpanSink,
    drain: drain::Signal,
    drain_timeout: Duration,
    exporter: JoinHandle<()>,
    export_deadline: tokio::sync::watch::Sender<Option<std::time::Instant>>,
    admin_task: Option<JoinHandle<()>>,
    access_log_thread: Option<std::thread::JoinHandle<()>>,
    worker_threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A configuration problem found only when building the exporters.
    #[error("{0}")]
    Export(String),
    /// The operating system refused a thread or runtime.
    #[error("{0}")]
    Runtime(String),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

async fn bind(what: &'static str, addr: Option<SocketAddr>) -> Result<Option<TcpListener>, BindError> {
    match addr {
        None => Ok(None),
        Some(addr) => TcpListener::bind(addr).await.map(Some).map_err(|source| BindError { what, addr, source }),
    }
}

impl Sidecar {
    /// Binds every listener first (so `/ready` means all are bound), then
    /// starts serving.
    pub async fn start(config: Config) -> Result<Sidecar, StartError> {
        let bound = workers::bind(config.workers, config.inbound, config.outbound)?;
        let (inbound_addr, outbound_addr) = (bound.inbound, bound.outbound);
        let admin = bind("--admin", config.admin).await?;
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());

        let routes = Arc::new(config.routes.clone());
        let metrics = Arc::new(metrics::Metrics::new(config.max_routes));
        let encoder = Arc::new(Encoder {
            resource: config.resource.clone(),
            routes: routes.clone(),
            redact_query_keys: config.redact_query_keys.clone(),
        });
        let pipeline = Pipeline::new(&config, encoder.clone()).map_err(StartError::Export)?;
        let (ring, stats, sink) = (pipeline.ring.clone(), pipeline.stats.clone(), pipeline.sink.clone());
        let export_deadline = pipeline.deadline();
        let exporter = tokio::spawn(pipeline.run());
        let (access_log, access_log_thread) = access_log::AccessLog::start(config.access_log).unzip();
        let sampler = Arc::new(trace::sampling::Sampler::new(
            config.export.parent_based,
            config.export.sampling_ratio,
            config.export.sampling_rate_limit,
        ));
        let (signal, watch) = drain::channel();
        let listener_of = |direction| match direction {
            Direction::Inbound => inbound_addr,
            Direction::Outbound => outbound_addr,
        };
        let shared = |direction| {
            Arc::new(http::Shared {
                direction,
                app: config.app,
                opaque_ports: config.opaque_ports.clone(),
                detect_timeout: config.detect_timeout,
                response_timeout: config.response_timeout,
                idle_timeout: config.idle_timeout,
                http1: {
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(hyper_util::rt::TokioTimer::new());
                    b
                },
                pool: http::pool::Pool::new(
                    config.connect_timeout,
                    metrics.direction(direction),
                    listener_of(direction),
                ),
                sink: sink.clone(),
                access_log: access_log.clone(),
                routes: routes.clone(),
                sampler: sampler.clone(),
                metrics: metrics.direction(direction),
            })
        };
        let worker_threads = workers::spawn(bound.workers, shared, &watch)?;
        drop(watch);
        let sink_probe = sink.clone();
        drop(sink);
        let admin_state = Arc::new(admin::AdminState {
            ready: false.into(),
            ring: ring.clone(),
            encoder: encoder.clone(),
            metrics: metrics.clone(),
            export: stats.clone(),
            config: config.printable(),
        });
        let admin_task = admin.map(|l| tokio::spawn(admin::serve(l, admin_state.clone())));
        admin_state.ready.store(true, Ordering::Release);
        Ok(Sidecar {
            inbound: inbound_addr,
            outbound: outbound_addr,
            admin: admin_addr,
            ring,
            stats,
            encoder,
            metrics,
            sink: sink_probe,
            drain: signal,
            drain_timeout: config.drain_timeout,
            exporter,
            export_deadline,
            admin_task,
            access_log_thread,
            worker_threads,
        })
    }

    /// Spans waiting in the queue in front of the exporters.
    pub fn sink_queued(&self) -> usize {
        self.sink.queued()
    }

    /// Stops accepting, lets in-flight requests finish within the drain
    /// timeout, then flushes the spans. Returns whether the drain finished
    /// in time.
    pub async fn shutdown(self) -> bool {
        drop(self.sink);
        let deadline = std::time::Instant::now() + self.drain_timeout;
        let _ = self.export_deadline.send(Some(deadline));
        let drained = tokio::time::timeout(self.drain_timeout, self.drain.drain()).await.is_ok();
        if !drained {
            tracing::warn!(timeout = ?self.drain_timeout, "drain timeout reached with requests still in flight");
        }
        // With every connection gone the span queue has no sender left, so
        // the pipeline empties it and the exporters deliver what they can
        // before the deadline, spooling (or counting) the rest.
        let _ = tokio::time::timeout_at((deadline + Duration::from_secs(2)).into(), self.exporter).await;
        for t in self.worker_threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        if let Some(t) = self.access_log_thread {
            let _ = tokio::time::timeout(Duration::from_secs(2), tokio::task::spawn_blocking(move || t.join())).await;
        }
        if let Some(a) = self.admin_task {
            a.abort();
        }
        drained
    }
}
