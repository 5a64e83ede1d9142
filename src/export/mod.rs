//! Where finished spans go. The request path only ever calls
//! `SpanSink::push`, a non-blocking send onto a bounded queue; a full queue
//! drops the span and counts it. The pipeline task batches the queue (by
//! size or delay), feeds the in-memory ring behind `/api/traces`, and hands
//! each batch, encoded once per exporter, to the exporters (`exporter`):
//! OTLP/HTTP protobuf or JSON, OTLP/gRPC, Zipkin v2 JSON.

mod error;
pub mod exporter;
pub mod grpc_sender;
pub mod http_sender;
pub mod otlp;
pub mod otlp_wire;
pub mod retry;
pub mod ring;
pub mod spool;
pub mod zipkin;

pub use error::StartError;

use crate::config::Config;
use crate::config::OtlpProtocol;
use crate::config::SpoolMode;
use crate::metrics::export_health::{ExportStats, ExporterStats};
use crate::trace::SpanRecord;
use bytes::Bytes;
use exporter::{Batch, Exporter, Handoff, Transport};
use http_sender::{Format, HttpSender};
use otlp::Encoder;
use otlp_wire::ProtoWriter;
use ring::Ring;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<SpanRecord>,
    stats: Arc<ExportStats>,
    keep_slower_than: Option<Duration>,
    /// The access log goes out as OTLP log records: every request's record
    /// travels the queue, the sampled-out ones only as log records.
    logs: bool,
}

/// Whether a record in the queue is exported as a span (the rest are
/// there for the access log's records only).
fn kept(s: &SpanRecord) -> bool {
    s.sampled || s.tail
}

impl SpanSink {
    /// Never waits: a full queue drops the span and counts it.
    pub fn push(&self, mut span: SpanRecord) {
        if !span.sampled {
            let slow = self.keep_slower_than.is_some_and(|t| span.duration_nanos() > t.as_nanos() as u64);
            if !(span.is_error() || slow) {
                self.stats.sampled_out.fetch_add(1, Ordering::Relaxed);
                if self.logs && self.tx.try_send(span).is_err() {
                    self.stats.log_records_dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            span.tail = true;
        }
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(span).is_err() {
            self.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

#[derive(Clone, Copy, Debug)]
enum Encoding {
    OtlpProtobuf {
        gzip: bool,
    },
    OtlpJson {
        gzip: bool,
    },
    ZipkinJson,
    /// The access log as OTLP log records.
    OtlpLogs {
        json: bool,
        gzip: bool,
    },
}

struct Output {
    encoding: Encoding,
    tx: Handoff,
}

pub struct Pipeline {
    pub sink: SpanSink,
    pub ring: Arc<Ring>,
    pub stats: Arc<ExportStats>,
    rx: mpsc::Receiver<SpanRecord>,
    encoder: Arc<Encoder>,
    batch_size: usize,
    delay: Duration,
    /// `--spool-mode always`: a batch is in every spool before the next
    /// one is formed.
    durable: bool,
    outputs: Vec<Output>,
    workers: Vec<JoinHandle<()>>,
    deadline: watch::Sender<Option<Instant>>,
}

impl Pipeline {
    /// Builds the queue, the ring and every configured exporter. Fails on
    /// what can only be checked here: TLS material, the spool directory.
    pub fn new(config: &Config, encoder: Arc<Encoder>) -> Result<Pipeline, StartError> {
        let x = &config.export;
        let (tx, rx) = mpsc::channel(config.queue_size);
        let (deadline, deadline_rx) = watch::channel(None);
        let mut outputs = Vec::new();
        let mut all_stats = Vec::new();
        let mut exporters = Vec::new();
        if let Some(o) = &x.otlp {
            let (name, encoding, transport) = match o.protocol {
                OtlpProtocol::Grpc => (
                    "otlp_grpc",
                    Encoding::OtlpProtobuf { gzip: false },
                    Transport::Grpc(grpc_sender::GrpcSender::new(o)?),
                ),
                p => {
                    let (fmt, enc) = if p == OtlpProtocol::HttpJson {
                        (Format::OtlpJson, Encoding::OtlpJson { gzip: o.gzip })
                    } else {
                        (Format::OtlpProtobuf, Encoding::OtlpProtobuf { gzip: o.gzip })
                    };
                    let sender =
                        HttpSender::new(o.url.clone(), o.headers.clone(), fmt, o.gzip, o.timeout, o.http_tls.clone());
                    ("otlp_http", enc, Transport::Http(sender))
                }
            };
            exporters.push((name, encoding, transport));
        }
        if let Some(o) = &x.otlp_logs {
            let json = o.protocol == OtlpProtocol::HttpJson;
            let transport = match o.protocol {
                OtlpProtocol::Grpc => Transport::Grpc(grpc_sender::GrpcSender::logs(o)?),
                _ => {
                    let fmt = if json { Format::OtlpJson } else { Format::OtlpProtobuf };
                    let sender =
                        HttpSender::new(o.url.clone(), o.headers.clone(), fmt, o.gzip, o.timeout, o.http_tls.clone());
                    Transport::Http(sender)
                }
            };
            let gzip = o.gzip && o.protocol != OtlpProtocol::Grpc;
            exporters.push(("otlp_logs", Encoding::OtlpLogs { json, gzip }, transport));
        }
        if let Some(z) = &x.zipkin {
            let sender = HttpSender::new(
                z.url.clone(),
                Vec::new(),
                Format::ZipkinJson,
                false,
                Duration::from_secs(10),
                z.tls.clone(),
            );
            exporters.push(("zipkin", Encoding::ZipkinJson, Transport::Http(sender)));
        }
        let mut workers = Vec::new();
        let always = x.spool.as_ref().is_some_and(|s| s.mode == SpoolMode::Always);
        for (name, encoding, transport) in exporters {
            let log_records = matches!(encoding, Encoding::OtlpLogs { .. });
            let stats = Arc::new(ExporterStats { name, log_records, ..Default::default() });
            let spool = match &x.spool {
                None => None,
                Some(s) => {
                    let dir = s.dir.join(name);
                    let (spool, damaged) =
                        spool::Spool::open(&dir, s.max_bytes).map_err(|source| StartError::Spool { dir, source })?;
                    stats.spool_batches_damaged.fetch_add(damaged as u64, Ordering::Relaxed);
                    stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
                    stats.spool_spans.store(spool.spans(), Ordering::Relaxed);
                    stats.restored_spans.store(spool.spans(), Ordering::Relaxed);
                    Some(Arc::new(Mutex::new(spool)))
                }
            };
            let (btx, brx) = exporter::handoff(stats.clone(), 4);
            let exporter = Exporter {
                transport: Arc::new(transport),
                stats: stats.clone(),
                retry: x.retry,
                concurrency: x.concurrency,
                capacity_spans: config.queue_size as u64,
                spool,
                always,
            };
            workers.push(tokio::spawn(exporter.run(brx, deadline_rx.clone())));
            outputs.push(Output { encoding, tx: btx });
            all_stats.push(stats);
        }
        let stats = Arc::new(ExportStats::new(config.queue_size as u64, all_stats));
        let sink = SpanSink {
            tx,
            stats: stats.clone(),
            keep_slower_than: x.sampling.keep_slower_than,
            logs: x.otlp_logs.is_some(),
        };
        Ok(Pipeline {
            sink,
            ring: Arc::new(Ring::new(config.trace_buffer)),
            stats,
            rx,
            encoder,
            batch_size: x.batch_size,
            delay: x.delay,
            durable: always,
            outputs,
            workers,
            deadline,
        })
    }

    /// The handle that sets the exporters' shutdown deadline.
    pub fn deadline(&self) -> watch::Sender<Option<Instant>> {
        self.deadline.clone()
    }

    /// Runs until every sink is dropped and the queue is empty, then waits
    /// for the exporters to deliver (or stash) what they hold.
    pub async fn run(self) {
        let Pipeline { sink, ring, mut rx, encoder, batch_size, delay, durable, outputs, workers, stats, .. } = self;
        drop(sink);
        // The queue is polled on a short tick, never waited on: a waiting
        // receiver would make every span's `try_send` wake this task across
        // threads, which costs more than the span itself.
        let tick = delay.clamp(Duration::from_millis(1), TICK);
        let mut batch: Vec<SpanRecord> = Vec::with_capacity(batch_size);
        let mut wire = ProtoWriter::default();
        let mut oldest: Option<tokio::time::Instant> = None;
        let mut closed = false;
        while !closed {
            tokio::time::sleep(tick).await;
            loop {
                match rx.try_recv() {
                    Ok(mut span) => {
                        oldest.get_or_insert_with(tokio::time::Instant::now);
                        span.compact();
                        batch.push(span);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
                if batch.len() >= batch_size {
                    flush(&encoder, &mut wire, &outputs, durable, &ring, &mut batch).await;
                    oldest = None;
                }
            }
            let due = oldest.is_some_and(|t| t.elapsed() >= delay);
            if !batch.is_empty() && (outputs.is_empty() || due || closed) {
                flush(&encoder, &mut wire, &outputs, durable, &ring, &mut batch).await;
                oldest = None;
            }
            // What waits for the exporters: the queue and the batch being
            // formed (records there for the access log only are not spans).
            let queued = rx.len() as u64;
            stats.queue_spans.store(queued + batch.iter().filter(|s| kept(s)).count() as u64, Ordering::Relaxed);
            stats.queue_log_records.store(queued + batch.len() as u64, Ordering::Relaxed);
        }
        drop(outputs);
        for w in workers {
            let _ = w.await;
        }
    }
}

/// How often the pipeline looks at the queue (at most).
const TICK: Duration = Duration::from_millis(50);

/// Hands the batch to every exporter, then keeps its spans in the ring.
/// When `durable`, each exporter has the batch in its spool before this
/// returns.
async fn flush(
    encoder: &Encoder,
    wire: &mut ProtoWriter,
    outputs: &[Output],
    durable: bool,
    ring: &Ring,
    spans: &mut Vec<SpanRecord>,
) {
    // Records there only for the access log go last, out of the spans'
    // encodings and the ring.
    let spans_only = match spans.iter().all(kept) {
        true => spans.len(),
        false => {
            spans.sort_unstable_by_key(|s| !kept(s));
            spans.partition_point(kept)
        }
    };
    for out in outputs {
        let these = match out.encoding {
            Encoding::OtlpLogs { .. } => &spans[..],
            _ => &spans[..spans_only],
        };
        if these.is_empty() {
            continue;
        }
        let payload = encode(encoder, wire, these, out.encoding);
        let batch = Batch { payload, spans: these.len() as u32, spooled: None };
        // Waiting here pushes back on the queue, where spans are counted
        // when dropped; it never reaches the request path.
        out.tx.send(batch, durable).await;
    }
    spans.truncate(spans_only);
    ring.extend(spans.drain(..));
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
    if enc.write_all(bytes).is_err() {
        return bytes.to_vec();
    }
    enc.finish().unwrap_or_else(|_| bytes.to_vec())
}

/// OTLP/protobuf is written directly (`otlp_wire`); the JSON encodings go
/// through the message structs, which serde needs anyway.
fn encode(encoder: &Encoder, wire: &mut ProtoWriter, spans: &[SpanRecord], encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::OtlpProtobuf { gzip: true } => Bytes::from(gzip(wire.encode_borrowed(encoder, spans))),
        Encoding::OtlpProtobuf { gzip: false } => wire.encode(encoder, spans),
        Encoding::OtlpJson { gzip: z } => {
            let raw = serde_json::to_vec(&encoder.request(spans)).unwrap_or_default();
            Bytes::from(if z { gzip(&raw) } else { raw })
        }
        Encoding::ZipkinJson => Bytes::from(serde_json::to_vec(&zipkin::encode(encoder, spans)).unwrap_or_default()),
        Encoding::OtlpLogs { json, gzip: z } => {
            let req = encoder.logs_request(spans);
            let raw =
                if json { serde_json::to_vec(&req).unwrap_or_default() } else { prost::Message::encode_to_vec(&req) };
            Bytes::from(if z { gzip(&raw) } else { raw })
        }
    }
}
