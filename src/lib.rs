//! sidetrace: a transparent HTTP sidecar proxy that records a span for
//! every request it carries.
//!
//! The path of a request, module by module (ARCHITECTURE.md maps it to
//! files):
//!
//! ```text
//! client ─► listen (accept, SO_ORIGINAL_DST, detect; opaque TCP leaves here)
//!        ─► http::serve (hyper server connection)
//!        ─► http::stack: keepalive_layer ─► guard_layer (malformed HTTP/1
//!           refused) ─► overload_layer (tower load shed and concurrency
//!           limit) ─► record_layer (context, destination, span)
//!           ─► tower timeout ─► forward (rewrite, send)
//!        ─► http::dedicated (inbound HTTP/1) | http::pool ─► dial ─► app / upstream
//! response ◄─ http::response_body (stream, count, trailers)
//!        ─► record::InFlight (finish once) ─► record::Recorder
//!        ─► metrics (RED, live stats) · access_log · export::SpanSink (try_send)
//!        ─► export pipeline ─► exporters, and the ring ─► admin (/api/traces)
//! ```
//!
//! Imports go one way, from the stages down to the ground floor (`vocab`,
//! `trace`, `config`); `tests/layering.rs` holds the order. `config` turns
//! flags and environment into one `Config`; `Sidecar::start` wires the
//! rest: the request path runs on `workers` (one single-threaded runtime
//! per core, each with its own listeners and pools), while the export
//! pipeline and the admin server run on the caller's runtime and meet the
//! workers only through atomics and the span queue, which they poll.
//!
//! Beside the path, `k8s` injects the sidecar into Kubernetes pods
//! (`sidetrace inject`, the admission webhook, `wait-ready`); it reads only
//! `config`. `web` serves sidetrace's own HTTP (admin, webhook, collector)
//! with axum; `ui` is the web UI's embedded files, which the admin server
//! and the collector mount. `collector` is the `sidetrace collector`
//! command: OTLP receivers, the embedded store and the query API; only
//! `main.rs` and `demo` use it.

pub mod access_log;
pub mod admin;
pub mod collector;
pub mod config;
pub mod demo;
pub mod dial;
pub mod drain;
pub mod export;
pub mod http;
pub mod k8s;
pub mod listen;
pub mod memory;
pub mod metrics;
pub mod record;
pub mod trace;
pub mod ui;
pub mod vocab;
pub mod web;
pub mod workers;

use config::Config;
use export::Pipeline;
use export::otlp::Encoder;
use export::ring::Ring;
use metrics::export_health::ExportStats;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vocab::Direction;
use workers::BindError;

/// How long the spans of requests cut at the drain timeout have to be
/// exported, past the timeout.
const CUT_FLUSH: Duration = Duration::from_secs(1);

/// A running sidecar: its bound addresses, its spans, and its shutdown.
pub struct Sidecar {
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Where /api/* and /ui are served, when on a listener of their own.
    pub api: Option<SocketAddr>,
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
    api_task: Option<JoinHandle<()>>,
    admin_state: Arc<admin::AdminState>,
    access_log_thread: Option<std::thread::JoinHandle<()>>,
    worker_threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Export(#[from] export::StartError),
    /// The operating system refused a thread or runtime.
    #[error(transparent)]
    Workers(#[from] workers::SpawnError),
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
        let api_at = match config.api {
            config::ApiListen::Addr(a) => Some(a),
            _ => None,
        };
        let api = bind("--api", api_at).await?;
        let api_addr = api.as_ref().and_then(|l| l.local_addr().ok());

        let routes = Arc::new(config.routes.clone());
        let metrics = Arc::new(metrics::Metrics::new(config.resource.service_name(), config.max_routes));
        let encoder = Arc::new(Encoder {
            resource: config.resource.clone(),
            redact_query_keys: config.redact_query_keys.clone(),
        });
        let pipeline = Pipeline::new(&config, encoder.clone())?;
        let (ring, stats, sink) = (pipeline.ring.clone(), pipeline.stats.clone(), pipeline.sink.clone());
        let export_deadline = pipeline.deadline();
        let exporter = tokio::spawn(pipeline.run());
        let (access_log, access_log_thread) = access_log::AccessLog::start(config.access_log).unzip();
        let s = &config.export.sampling;
        let sampler =
            Arc::new(trace::sampling::Sampler::new(s.parent_based, s.ratio, s.rate_limit).with_rules(s.rules.clone()));
        let stitch = (config.stitch == config::StitchMode::SingleFlight).then(|| {
            record::stitch::Registry::new(record::stitch::Bounds {
                max_age: config.stitch_max_age,
                max_children: config.stitch_max_children,
            })
        });
        let (signal, watch) = drain::channel();
        let cut = signal.cut_flag();
        let listener_of = |direction| match direction {
            Direction::Inbound => inbound_addr,
            Direction::Outbound => outbound_addr,
        };
        // Per listener, so shared by the workers' listeners of a direction.
        let limits = || Arc::new(http::limits::Limits::new(config.max_connections, config.max_concurrent_requests));
        let (inbound_limits, outbound_limits) = (limits(), limits());
        let capture_request = Arc::new(config.capture_request_headers.clone());
        let capture_response = Arc::new(config.capture_response_headers.clone());
        let shared = |direction| {
            // Inbound traffic goes only to the app: never to sidetrace's
            // other listeners, which a redirect could otherwise reach.
            let own = match direction {
                Direction::Inbound => vec![outbound_addr, admin_addr, api_addr],
                Direction::Outbound => Vec::new(),
            };
            let dialer = Arc::new(
                dial::Dialer::new(config.connect_timeout, metrics.direction(direction), listener_of(direction))
                    .forbidding(own.into_iter().flatten()),
            );
            Arc::new(http::Shared {
                direction,
                app: config.app,
                opaque_ports: config.opaque_ports.clone(),
                detect_timeout: config.detect_timeout,
                response_timeout: config.response_timeout,
                idle_timeout: config.idle_timeout,
                trace_probes: config.trace_probes,
                announce: config
                    .announce_service
                    .then(|| http::shared::Announce::new(config.resource.service_name()))
                    .flatten(),
                stitch: stitch.clone(),
                http1: http::serve::http1_builder(config.header_read_timeout),
                pool: http::pool::Pool::new(dialer.clone()),
                dialer,
                recorder: Arc::new(record::Recorder {
                    metrics: metrics.direction(direction),
                    access_log: access_log.clone(),
                    sink: sink.clone(),
                    cut: cut.clone(),
                }),
                routes: routes.clone(),
                sampler: sampler.clone(),
                capture_request: capture_request.clone(),
                capture_response: capture_response.clone(),
                metrics: metrics.direction(direction),
                limits: match direction {
                    Direction::Inbound => inbound_limits.clone(),
                    Direction::Outbound => outbound_limits.clone(),
                },
            })
        };
        let worker_threads = workers::spawn(bound.workers, shared, &watch)?;
        memory::start_trimming();
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
            shutdown: tokio::sync::Notify::new(),
        });
        let health = admin::health_router(admin_state.clone());
        let traffic = admin::api_router(admin_state.clone());
        let (admin_router, api_router) = match config.api {
            config::ApiListen::Admin => (admin::finish(health.merge(traffic), admin::ALL_PATHS), None),
            config::ApiListen::Off => (admin::finish(health, admin::HEALTH_PATHS), None),
            config::ApiListen::Addr(_) => {
                (admin::finish(health, admin::HEALTH_PATHS), Some(admin::finish(traffic, admin::API_PATHS)))
            }
        };
        let admin_task = admin.map(|l| tokio::spawn(admin::serve(l, admin_router)));
        let api_task = api.zip(api_router).map(|(l, r)| tokio::spawn(admin::serve(l, r)));
        admin_state.ready.store(true, Ordering::Release);
        Ok(Sidecar {
            inbound: inbound_addr,
            outbound: outbound_addr,
            admin: admin_addr,
            api: api_addr,
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
            api_task,
            admin_state,
            access_log_thread,
            worker_threads,
        })
    }

    /// Spans waiting in the queue in front of the exporters.
    pub fn sink_queued(&self) -> usize {
        self.sink.queued()
    }

    /// Resolves when `POST /shutdown` on the admin port asks the sidecar
    /// to stop (as SIGTERM does).
    pub async fn shutdown_requested(&self) {
        self.admin_state.shutdown.notified().await
    }

    /// Stops accepting, lets in-flight requests finish within the drain
    /// timeout, then flushes the spans. Returns whether the drain finished
    /// in time. `/ready` answers 503 from the start, so that Kubernetes
    /// stops sending new requests while the old ones finish. Requests still
    /// running at the timeout are cut: their connections close, and their
    /// spans (`error.type=drain_timeout`) get `CUT_FLUSH` to be exported.
    pub async fn shutdown(self) -> bool {
        self.admin_state.ready.store(false, Ordering::Release);
        drop(self.sink);
        let mut flush_by = std::time::Instant::now() + self.drain_timeout;
        let _ = self.export_deadline.send(Some(flush_by));
        let mut drain = self.drain;
        let drained = drain.drain(self.drain_timeout).await;
        if !drained {
            tracing::warn!(timeout = ?self.drain_timeout, "drain timeout reached: cutting the requests still in flight");
            // Before the cut: the pipeline closes once the cut connections
            // are gone, and must not find the old deadline passed.
            flush_by = std::time::Instant::now() + CUT_FLUSH;
            let _ = self.export_deadline.send(Some(flush_by));
            drain.cut(CUT_FLUSH).await;
        }
        // With every connection gone the span queue has no sender left, so
        // the pipeline empties it and the exporters deliver what they can
        // before the deadline, spooling (or counting) the rest.
        let _ = tokio::time::timeout_at((flush_by + Duration::from_secs(2)).into(), self.exporter).await;
        for t in self.worker_threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        if let Some(t) = self.access_log_thread {
            let _ = tokio::time::timeout(Duration::from_secs(2), tokio::task::spawn_blocking(move || t.join())).await;
        }
        for t in [self.admin_task, self.api_task].into_iter().flatten() {
            t.abort();
        }
        drained
    }
}
