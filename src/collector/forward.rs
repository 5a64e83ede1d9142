//! `--forward URL`: everything the collector stores is also sent on over
//! OTLP/HTTP protobuf, through the sidecar's own exporter (`export::exporter`:
//! memory queue, retries with backoff, a disk spool beside the store), so a
//! collector that outgrows one machine hands off to an OpenTelemetry
//! Collector, Tempo or Jaeger with the same rules as every sidecar.
//!
//! Forwarding starts after the batch is stored and never holds up the
//! sender's answer; what the exporter cannot keep is counted in its stats
//! and logged there, as in the sidecar.

use crate::config::export::RetryPolicy;
use crate::export::exporter::{self, Batch, Exporter, Handoff, Transport};
use crate::export::http_sender::{Format, HttpSender};
use crate::export::spool::Spool;
use crate::metrics::export_health::ExporterStats;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Items (spans or log records) held in memory per signal before the spool.
const MEMORY_ITEMS: u64 = 200_000;
const SPOOL_BYTES: u64 = 256 << 20;
const RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(30),
    max_elapsed: Duration::from_secs(300),
};

pub struct Forwarder {
    traces: Signal,
    logs: Signal,
    /// Kept so the exporters run until the process ends.
    _deadline: watch::Sender<Option<Instant>>,
}

struct Signal {
    tx: Handoff,
    stats: Arc<ExporterStats>,
}

impl Signal {
    fn push(&self, payload: Vec<u8>, items: usize) {
        let items = u32::try_from(items).unwrap_or(u32::MAX);
        let batch = Batch { payload: payload.into(), spans: items, spooled: None };
        if !self.tx.try_send(batch) {
            tracing::warn!(exporter = self.stats.name, items, "forwarding queue full; dropped");
        }
    }
}

impl Forwarder {
    /// Starts one exporter per signal on the current runtime; spools under
    /// `spool_dir` when the store is on disk.
    pub fn start(base: &str, spool_dir: Option<&Path>) -> Result<Forwarder, String> {
        let tls = crate::config::client_config(&crate::config::TlsFiles::default()).map_err(|e| e.to_string())?;
        let tls = Arc::new(tls);
        let (deadline, deadline_rx) = watch::channel(None);
        let signal = |name: &'static str, path: &str| -> Result<Signal, String> {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let url: http::Uri = url.parse().map_err(|e| format!("invalid --forward URL {base:?}: {e}"))?;
            if !matches!(url.scheme_str(), Some("http" | "https")) {
                return Err(format!("--forward {base:?}: the URL must start with http:// or https://"));
            }
            let sender =
                HttpSender::new(url, Vec::new(), Format::OtlpProtobuf, false, Duration::from_secs(10), tls.clone());
            let spool = match spool_dir {
                None => None,
                Some(dir) => {
                    let dir = dir.join(format!("forward-{name}"));
                    let (spool, _) = Spool::open(&dir, SPOOL_BYTES)
                        .map_err(|e| format!("cannot open the forwarding spool {}: {e}", dir.display()))?;
                    Some(Arc::new(Mutex::new(spool)))
                }
            };
            let stats = Arc::new(ExporterStats { name, ..Default::default() });
            let exporter = Exporter {
                transport: Arc::new(Transport::Http(sender)),
                stats: stats.clone(),
                retry: RETRY,
                concurrency: 2,
                capacity_spans: MEMORY_ITEMS,
                spool,
                always: false,
            };
            let (tx, rx) = exporter::handoff(stats.clone(), 1024);
            tokio::spawn(exporter.run(rx, deadline_rx.clone()));
            Ok(Signal { tx, stats })
        };
        Ok(Forwarder {
            traces: signal("forward-traces", "/v1/traces")?,
            logs: signal("forward-logs", "/v1/logs")?,
            _deadline: deadline,
        })
    }

    pub fn traces(&self, request: &ExportTraceServiceRequest) {
        let items = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        self.traces.push(request.encode_to_vec(), items);
    }

    pub fn logs(&self, request: &ExportLogsServiceRequest) {
        let items = request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
        self.logs.push(request.encode_to_vec(), items);
    }
}
