//! The export pipeline's health: spans recorded, sampled out, exported,
//! dropped by reason, retried; batches; queue depth and spool size per
//! exporter. The counters are defined here, below `export`, which bumps
//! them; the admin server renders them with the rest of the metrics.

use super::writer::{Kind, SECONDS, Writer};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans offered to the queue (sampled, or kept by the tail rule).
    pub recorded: AtomicU64,
    /// Spans the head sampler skipped and the tail rule did not keep.
    pub sampled_out: AtomicU64,
    /// Spans dropped because the queue in front of the exporters was full.
    pub dropped_queue_full: AtomicU64,
    /// Access-log records of sampled-out requests (on their way to the
    /// OTLP logs exporter only) dropped because that queue was full.
    pub log_records_dropped_queue_full: AtomicU64,
    pub queue_capacity: u64,
    /// Spans waiting in the queue and in the batch being formed, as the
    /// pipeline last saw them.
    pub queue_spans: AtomicU64,
    /// The same for access-log records (every record in the queue carries one).
    pub queue_log_records: AtomicU64,
    exporters: Vec<Arc<ExporterStats>>,
}

impl ExportStats {
    pub fn new(queue_capacity: u64, exporters: Vec<Arc<ExporterStats>>) -> ExportStats {
        ExportStats { queue_capacity, exporters, ..Default::default() }
    }

    pub fn exporters(&self) -> Vec<Arc<ExporterStats>> {
        self.exporters.clone()
    }
}

/// Self-telemetry of one exporter; the metrics endpoint renders it.
#[derive(Debug, Default)]
pub struct ExporterStats {
    pub name: &'static str,
    /// This exporter carries log records (the access log), not spans: its
    /// counters are rendered under `sidetrace_log_records_*`.
    pub log_records: bool,
    pub exported_spans: AtomicU64,
    pub dropped_spans_queue_full: AtomicU64,
    pub dropped_spans_non_retryable: AtomicU64,
    pub dropped_spans_retries_exhausted: AtomicU64,
    pub dropped_spans_spool_full: AtomicU64,
    /// The spool could not take the batch: a write failed, or the task
    /// writing it panicked.
    pub dropped_spans_spool_error: AtomicU64,
    pub dropped_spans_spool_damaged: AtomicU64,
    pub dropped_spans_shutdown: AtomicU64,
    pub retries: AtomicU64,
    pub batches_ok: AtomicU64,
    pub batches_failed: AtomicU64,
    pub rejected_spans: AtomicU64,
    /// Spans handed to this exporter and waiting in its memory queue (the
    /// hand-off channel included).
    pub queue_spans: AtomicU64,
    /// Spans of the batches being sent now (retries included).
    pub in_flight_spans: AtomicU64,
    /// Spans of in-flight batches whose file is still in the spool; the
    /// spool gauge leaves them out, so that each span is counted once.
    pub in_flight_spooled: AtomicU64,
    /// Spans in the spool, not counting the batches in flight.
    pub spool_spans: AtomicU64,
    /// Spans a previous run left in the spool, found at start-up.
    pub restored_spans: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_batches_damaged: AtomicU64,
    pub export_nanos_sum: AtomicU64,
    pub export_count: AtomicU64,
}

impl ExporterStats {
    pub fn dropped_total(&self) -> u64 {
        [
            &self.dropped_spans_queue_full,
            &self.dropped_spans_non_retryable,
            &self.dropped_spans_retries_exhausted,
            &self.dropped_spans_spool_full,
            &self.dropped_spans_spool_error,
            &self.dropped_spans_spool_damaged,
            &self.dropped_spans_shutdown,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// Spans this exporter holds: in memory, in flight, in the spool.
    pub fn waiting_total(&self) -> u64 {
        [&self.queue_spans, &self.in_flight_spans, &self.spool_spans].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One counter or gauge of an exporter.
type Field = fn(&ExporterStats) -> &AtomicU64;

pub fn render(w: &mut Writer, stats: &ExportStats) -> fmt::Result {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let exporters = stats.exporters();
    let (log_exporters, span_exporters): (Vec<_>, Vec<_>) = exporters.iter().cloned().partition(|e| e.log_records);
    let mut f = w.family(
        "sidetrace_spans_recorded",
        Kind::Counter,
        None,
        "Finished spans offered to the export queue (head-sampled, or kept by the tail rule).",
    )?;
    f.counter(&[], load(&stats.recorded))?;
    let mut f = w.family(
        "sidetrace_spans_sampled_out",
        Kind::Counter,
        None,
        "Finished spans the head sampler skipped and the tail rule did not keep.",
    )?;
    f.counter(&[], load(&stats.sampled_out))?;
    let mut f =
        w.family("sidetrace_span_queue_capacity", Kind::Gauge, None, "Spans the export queue holds at most.")?;
    f.gauge(&[], stats.queue_capacity)?;
    let mut f = w.family(
        "sidetrace_span_queue_spans",
        Kind::Gauge,
        None,
        "Spans waiting in the export queue and in the batch being formed.",
    )?;
    f.gauge(&[], load(&stats.queue_spans))?;

    // With the OTLP logs exporter, every request's record rides the queue:
    // the sampled spans' records with them, the others alone.
    let logs = !log_exporters.is_empty();
    let logs_only = |n: u64| if logs { n } else { 0 };
    let mut f = w.family(
        "sidetrace_log_records_recorded",
        Kind::Counter,
        None,
        "Access-log records offered to the export queue for the OTLP logs exporter (one per request).",
    )?;
    f.counter(&[], logs_only(load(&stats.recorded) + load(&stats.sampled_out)))?;
    let mut f = w.family(
        "sidetrace_log_records_queued",
        Kind::Gauge,
        None,
        "Access-log records waiting in the export queue and in the batch being formed.",
    )?;
    f.gauge(&[], logs_only(load(&stats.queue_log_records)))?;
    let mut f = w.family(
        "sidetrace_log_records_dropped",
        Kind::Counter,
        None,
        "Access-log records bound for the OTLP logs exporter dropped and never exported, by reason (and exporter, where the exporter dropped them).",
    )?;
    f.counter(
        &[("reason", "queue_full")],
        logs_only(load(&stats.log_records_dropped_queue_full) + load(&stats.dropped_queue_full)),
    )?;
    for e in &log_exporters {
        dropped_by_reason(&mut f, e)?;
    }

    let mut f = w.family(
        "sidetrace_spans_dropped",
        Kind::Counter,
        None,
        "Spans dropped and never exported, by reason (and exporter, where one exporter dropped them).",
    )?;
    f.counter(&[("reason", "queue_full")], load(&stats.dropped_queue_full))?;
    for e in &span_exporters {
        dropped_by_reason(&mut f, e)?;
    }
    if exporters.is_empty() {
        return Ok(());
    }
    let by_signal: [(&str, &str, &str, &str, Field); 2] = [
        (
            "sidetrace_exporter_spans_exported",
            "Spans the backend accepted.",
            "sidetrace_log_records_exported",
            "Access-log records the backend accepted.",
            |e| &e.exported_spans,
        ),
        (
            "sidetrace_exporter_spans_rejected",
            "Spans the backend reported as rejected in a partial success.",
            "sidetrace_log_records_rejected",
            "Access-log records the backend reported as rejected in a partial success.",
            |e| &e.rejected_spans,
        ),
    ];
    for (name, help, logs_name, logs_help, get) in by_signal {
        for (name, help, these) in [(name, help, &span_exporters), (logs_name, logs_help, &log_exporters)] {
            if these.is_empty() {
                continue;
            }
            let mut f = w.family(name, Kind::Counter, None, help)?;
            for e in these {
                f.counter(&[("exporter", e.name)], load(get(e)))?;
            }
        }
    }
    let counters: [(&str, &str, Field); 3] = [
        ("sidetrace_exporter_retries", "Export attempts retried after a retryable failure.", |e| &e.retries),
        ("sidetrace_exporter_spool_batches_damaged", "Batches found damaged in the disk spool.", |e| {
            &e.spool_batches_damaged
        }),
        (
            "sidetrace_exporter_spool_restored",
            "Spans (log records for otlp_logs) a previous run left in the disk spool, found at start-up.",
            |e| &e.restored_spans,
        ),
    ];
    for (name, help, get) in counters {
        let mut f = w.family(name, Kind::Counter, None, help)?;
        for e in &exporters {
            f.counter(&[("exporter", e.name)], load(get(e)))?;
        }
    }
    let mut f = w.family("sidetrace_exporter_batches", Kind::Counter, None, "Batch export attempts, by outcome.")?;
    for e in &exporters {
        f.counter(&[("exporter", e.name), ("outcome", "ok")], load(&e.batches_ok))?;
        f.counter(&[("exporter", e.name), ("outcome", "failed")], load(&e.batches_failed))?;
    }
    let gauges: [(&str, &str, Field); 2] = [
        ("sidetrace_exporter_queue_spans", "Spans waiting for this exporter.", |e| &e.queue_spans),
        ("sidetrace_exporter_spool_bytes", "Bytes in this exporter's disk spool.", |e| &e.spool_bytes),
    ];
    for (name, help, get) in gauges {
        let mut f = w.family(name, Kind::Gauge, None, help)?;
        for e in &exporters {
            f.gauge(&[("exporter", e.name)], load(get(e)))?;
        }
    }
    let mut f = w.family(
        "sidetrace_exporter_waiting",
        Kind::Gauge,
        None,
        "Spans (log records for otlp_logs) this exporter holds, each counted once: in memory, in flight, or in the spool.",
    )?;
    for e in &exporters {
        for (place, c) in [("memory", &e.queue_spans), ("in_flight", &e.in_flight_spans), ("spool", &e.spool_spans)] {
            f.gauge(&[("exporter", e.name), ("where", place)], load(c))?;
        }
    }
    let mut f = w.family(
        "sidetrace_exporter_export_duration_seconds",
        Kind::Histogram,
        Some(&SECONDS),
        "Time spent sending batches to the backend.",
    )?;
    for e in &exporters {
        f.sum_and_count(&[("exporter", e.name)], load(&e.export_nanos_sum) as f64 / 1e9, load(&e.export_count))?;
    }
    Ok(())
}

/// One exporter's drops, by reason.
fn dropped_by_reason(f: &mut super::writer::Family<'_>, e: &ExporterStats) -> fmt::Result {
    for (reason, c) in [
        ("exporter_queue_full", &e.dropped_spans_queue_full),
        ("non_retryable", &e.dropped_spans_non_retryable),
        ("retries_exhausted", &e.dropped_spans_retries_exhausted),
        ("spool_full", &e.dropped_spans_spool_full),
        ("spool_error", &e.dropped_spans_spool_error),
        ("spool_damaged", &e.dropped_spans_spool_damaged),
        ("shutdown", &e.dropped_spans_shutdown),
    ] {
        f.counter(&[("reason", reason), ("exporter", e.name)], c.load(Ordering::Relaxed))?;
    }
    Ok(())
}
